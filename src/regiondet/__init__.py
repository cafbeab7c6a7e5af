"""regiondet: region-based detection of cameras/phones and arbitrary-shape scene text."""

from regiondet.inference.predictor import Detector, Prediction

__all__ = ["Detector", "Prediction"]
__version__ = "0.2.0"
