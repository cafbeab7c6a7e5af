"""The package's shape: layers import only downwards, own imports at the top, one version."""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

import regiondet

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "regiondet"
LAYERS = ["data", "models", "inference", "evaluation", "benchmark", "engine", "experiments", "serve", "cli"]
BASE = {"config", "errors", "io", "zoo"}  # below every layer (zoo: package data)


def _layer(module: str) -> int:
    """-1 for the base modules, else the index of the layer a module belongs to."""
    top = module.split(".")[1] if module.count(".") else ""
    return -1 if top in BASE or top == "" else LAYERS.index(top) if top in LAYERS else -2


def _ours(name: str) -> bool:
    """regiondet's own modules (not its sibling distributions, regiondet_weights and the like)."""
    return name == "regiondet" or name.startswith("regiondet.")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported regiondet module, imported at module level) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and _ours(node.module):
            found.append((node.module, id(node) in top))
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names if _ours(a.name)]
    return found


def test_no_import_runs_back_up_the_layers_and_all_sit_at_the_top():
    wrong, inside = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = "regiondet." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if module == "regiondet.__init__":
            continue
        own = _layer(module)
        assert own != -2, f"{module} is in no layer: add its folder to LAYERS or BASE"
        for imported, at_top in _imports(path):
            if _layer(imported) > own:
                wrong.append(f"{module} -> {imported}")
            if not at_top:
                inside.append(f"{module} -> {imported}")
    assert not wrong, f"imports running up the layers: {wrong}"
    assert not inside, f"package imports inside functions: {inside}"


def test_one_version_for_both_distributions():
    main = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = tomllib.loads((ROOT / "packages" / "regiondet-text-models" / "pyproject.toml").read_text())["project"]
    assert regiondet.__version__ == main["version"] == text["version"]
    assert f"regiondet-text-models=={text['version']}" in main["optional-dependencies"]["text"]
    assert f"## {main['version']}" in (ROOT / "CHANGELOG.md").read_text()
    # the vendored third-party weights keep their own version; every extra that needs them pins it
    weights = tomllib.loads((ROOT / "packages" / "regiondet-weights" / "pyproject.toml").read_text())["project"]
    for extra in ("faces", "pretrained", "dev"):
        assert f"regiondet-weights=={weights['version']}" in main["optional-dependencies"][extra]
