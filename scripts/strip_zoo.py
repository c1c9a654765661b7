"""Write stripped copies of ONNX exports (large float tensors replaced by their statistics,
graph kept verbatim; see tests/zoo/assets.py) for the test suite.

    python scripts/strip_zoo.py /path/to/zoo/*.onnx -o tests/assets/zoo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path, help="ONNX files to strip")
    ap.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))  # the stripping is shared with the test loader
    import onnx
    from zoo.assets import strip

    from imcc.fileio import atomic_write_bytes

    args.output.mkdir(parents=True, exist_ok=True)
    for p in args.models:
        small = strip(onnx.load(str(p)))
        dest = args.output / p.name
        atomic_write_bytes(dest, small.SerializeToString())
        print(f"{p.name}: {p.stat().st_size // 1024} KiB -> {dest.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
