"""Regenerate docs/conformance.md from the ONNX conformance run (tests/conformance/runner.py).

    python scripts/conformance_report.py           # rewrite docs/conformance.md, print a summary
    python scripts/conformance_report.py --check   # exit 1 if docs/conformance.md is stale
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT / "docs" / "conformance.md"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that the file is current")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))  # the runner is shared with the test suite
    from conformance.runner import render_conformance, run_all, summary

    with warnings.catch_warnings():
        # ONNX's Cast cases overflow float8 on purpose while generating their data.
        warnings.simplefilter("ignore", RuntimeWarning)
        outcomes = run_all()
    text = render_conformance(outcomes)
    print(summary(outcomes))
    if args.check:
        current = CONFORMANCE.read_text() if CONFORMANCE.is_file() else ""
        if current != text:
            print(f"{CONFORMANCE.relative_to(ROOT)} is stale: "
                  "run python scripts/conformance_report.py", file=sys.stderr)
            return 1
        return 0
    from imcc.fileio import atomic_write_bytes

    CONFORMANCE.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(CONFORMANCE, text.encode())
    print(f"wrote {CONFORMANCE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
