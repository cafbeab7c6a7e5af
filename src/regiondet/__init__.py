"""regiondet: region-based detection of cameras/phones and arbitrary-shape scene text."""

import os
from importlib.metadata import PackageNotFoundError, version

# ONNX Runtime writes a telemetry database and a device id under ~/.cache/Microsoft when it is
# imported, unless this is set first. regiondet keeps nothing of what it sees and writes nothing
# the user did not ask for, so it is set before anything (regiondet, a peer) imports the runtime.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from regiondet.inference.prediction import Prediction
from regiondet.inference.predictor import Detector

try:
    __version__ = version("regiondet")  # one number: pyproject.toml's, bumped with each shipped model
except PackageNotFoundError:  # pragma: no cover - run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Detector", "Prediction", "__version__"]
