"""Regenerate the model table of docs/limits.md: compile every .onnx file in the given
directories in both modes (--no-quantize and the default 4-bit quantization), simulate its
crossbar program on seeded random inputs and check it (tests/zoo/check.py):

    python scripts/limits_table.py /path/to/zoo /tmp/zoo2 [--images 2] [-o docs/limits.md]

``float``: the program must equal onnxruntime on the original model to float rounding;
``quantized``: onnxruntime on compiled.onnx (argmax agreement 100%, max |diff| <= 1e-4
times the largest |output|); both: executed cycles per image == the report's. Everything
in the output file above the marker line is hand-written and kept; the table below it is
replaced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMITS = ROOT / "docs" / "limits.md"
MARKER = "<!-- Generated below by `python scripts/limits_table.py DIR...`; do not edit below. -->"


def exporter(path: Path, producer: str) -> str:
    """The PyTorch exporter that wrote a file (the zoo names dynamo exports *_dynamo)."""
    if path.stem.endswith("_dynamo"):
        return "dynamo"
    return "torchscript" if producer == "pytorch" else (producer or "?")


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="directories of .onnx files")
    ap.add_argument("--images", type=int, default=2, help="random inputs per model (count)")
    ap.add_argument("-o", "--output", type=Path, default=LIMITS, help="the file to update")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))  # the check is shared with the zoo tests
    import onnx
    from zoo.check import MODES, check, model_input

    from imcc.fileio import atomic_write_bytes

    rows = ["| model | exporter | input | mode | status | max abs diff (max \\|output\\|) | "
            "argmax agreement | cycles/image (report = executed) | reason |",
            "|---|---|---|---|---|---|---:|---:|---|"]
    counts: dict[str, int] = {}
    for d in args.dirs:
        for p in sorted(d.glob("*.onnx")):
            m = onnx.load(str(p), load_external_data=False)
            shape = "x".join("N" if s is None else str(s) for s in model_input(m)[1])
            for mode in MODES:
                o = check(p, mode, n=args.images)
                counts[o.status] = counts.get(o.status, 0) + 1
                ran = o.status != "refused"
                diff = f"{o.max_diff:.2g} ({o.scale:.2g})" if ran else ""
                agree = f"{100 * o.agreement:.0f}%" if ran else ""
                cyc = (f"{o.report_cycles:,}" if o.report_cycles == o.executed_cycles
                       else f"{o.report_cycles:,} != {o.executed_cycles:,}") if ran else ""
                rows.append(f"| {p.stem.removesuffix('_dynamo')} | {exporter(p, m.producer_name)}"
                            f" | {shape} | {mode} | {o.status} | {diff} | {agree} | {cyc} | "
                            f"{cell(o.reason)} |")
                print(rows[-1], flush=True)
    old = args.output.read_text() if args.output.is_file() else ""
    head = old.split(MARKER)[0].rstrip() + "\n\n" if MARKER in old else old
    total = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    body = (f"{MARKER}\n\n{args.images} random inputs per model (seed 0, standard normal, the "
            f"model's input size), default target 128x128. Runs: {total}.\n\n"
            + "\n".join(rows) + "\n")
    atomic_write_bytes(args.output, (head + body).encode())
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
