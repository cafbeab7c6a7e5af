"""The shipped models: one table from name to file, and where each file is installed.

The camera model and `text_fast` ship inside regiondet; `text` (its checkpoint and its int8
ONNX file) ships in `regiondet-text-models` (installed by `pip install 'regiondet[text]'`) so
that neither wheel nears PyPI's 100 MB limit.
The model cards of all of them stay in `regiondet/zoo/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

from regiondet.errors import UserError

CARDS = Path(__file__).resolve().parent.parent / "zoo"


@dataclass(frozen=True)
class ShippedModel:
    file: str
    package: str  # the Python package that holds the file
    card: str  # model card in regiondet/zoo
    extra: str | None = None  # the pip extra that installs the package, if not regiondet itself
    about: str = ""
    onnx: str | None = None  # the same model as an ONNX Runtime file (int8) in the package, if shipped


MODELS: dict[str, ShippedModel] = {
    "default": ShippedModel("camera_phone.pt", "regiondet.zoo", "camera_phone.md", about="cameras and phones"),
    "camera_phone": ShippedModel("camera_phone.pt", "regiondet.zoo", "camera_phone.md", about="same as default"),
    "text": ShippedModel(
        "text.pt.gz",
        "regiondet_text_models",
        "text.md",
        "text",
        "scene text on CRAFT, best H-mean, seconds per image",
        onnx="text.int8.onnx",
    ),
    "text_fast": ShippedModel(
        "text_fast.pt",
        "regiondet.zoo",
        "text_fast.md",
        about="scene text on MobileNetV2, under a second",
        onnx="text_fast.int8.onnx",
    ),
}


def shipped_path(name: str) -> Path:
    """The installed file of a shipped model, or a one-line error saying how to install it."""
    model = MODELS[name]
    if find_spec(model.package) is None:
        raise UserError(
            f"shipped model '{name}' comes with the {model.extra} extra: pip install 'regiondet[{model.extra}]'",
            model.file,
        )
    path = Path(str(resources.files(model.package) / model.file))
    if not path.is_file():
        raise UserError(f"shipped model '{name}' is not in this installation (no {model.file})", path)
    return path


def shipped_onnx(name: str | Path) -> Path | None:
    """The ONNX Runtime file shipped beside a shipped model (what runtime "auto" runs), if any."""
    model = MODELS.get(str(name))
    if model is None or model.onnx is None or find_spec(model.package) is None:
        return None
    path = Path(str(resources.files(model.package) / model.onnx))
    return path if path.is_file() else None


def resolve_model_path(path_or_name: str | Path) -> Path:
    """A shipped model's name (see MODELS) or a file path."""
    name = str(path_or_name)
    if name in MODELS:
        return shipped_path(name)
    path = Path(name)
    if not path.exists() and not path.suffix and len(path.parts) == 1:  # a mistyped name, not a file
        raise UserError(f"no such file, nor a shipped model ({', '.join(MODELS)})", path)
    return path
