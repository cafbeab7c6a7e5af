"""Copy ONNX Runtime Web's WebAssembly build from npm into the page's static files.

    python docs/scripts/fetch_ort_web.py [--version 1.31.1]

The page runs box models on the device with ONNX Runtime Web (MIT, Microsoft), served by
`regiondet serve` from the package itself (never from a CDN). This takes the npm tarball of
`onnxruntime-web` (`npm pack`, the npm registry only), copies the files its WebAssembly and
WebGPU builds need (each: the ES module, its Emscripten loader and the SIMD + threads .wasm) to
src/regiondet/serve/static/ort/, and records the version and each file's sha256 in
VERSION.json there (tests/test_device.py checks the files against it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "src" / "regiondet" / "serve" / "static" / "ort"
# the WebAssembly build (SIMD + threads), and the WebGPU one (its WebAssembly part also runs the
# nodes WebGPU lacks)
FILES = (
    "ort.wasm.min.mjs",
    "ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm",
    "ort.webgpu.min.mjs",
    "ort-wasm-simd-threaded.asyncify.mjs",
    "ort-wasm-simd-threaded.asyncify.wasm",
)
VERSION = "1.31.1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--version", default=VERSION)
    version = parser.parse_args().version
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", f"onnxruntime-web@{version}", "--silent"], cwd=tmp, check=True)
        with tarfile.open(next(Path(tmp).glob("onnxruntime-web-*.tgz"))) as tar:
            tar.extractall(tmp, filter="data")
        OUT.mkdir(parents=True, exist_ok=True)
        hashes = {}
        for name in FILES:
            shutil.copyfile(Path(tmp) / "package" / "dist" / name, OUT / name)
            hashes[name] = hashlib.sha256((OUT / name).read_bytes()).hexdigest()
            print(f"{name}: {(OUT / name).stat().st_size / 1e6:.1f} MB sha256 {hashes[name]}")
    record = {"package": "onnxruntime-web", "version": version, "license": "MIT", "sha256": hashes}
    (OUT / "VERSION.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
