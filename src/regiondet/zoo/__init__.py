"""Package data: the camera model and the model cards of every shipped model."""
