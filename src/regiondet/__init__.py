"""regiondet: region-based detection of cameras/phones and arbitrary-shape scene text."""

from importlib.metadata import PackageNotFoundError, version

from regiondet.inference.prediction import Prediction
from regiondet.inference.predictor import Detector

try:
    __version__ = version("regiondet")  # one number: pyproject.toml's, bumped with each shipped model
except PackageNotFoundError:  # pragma: no cover - run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Detector", "Prediction", "__version__"]
