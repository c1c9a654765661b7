"""Import benchmark: imcc's ONNX import (`imcc.frontend.import_model`: load, check, shape
inference on a weight-less skeleton, conversion to the IR) against `onnx.load` of the same
file alone, in one process, for the ResNet-50-shaped network of `benchmarks/imagenet.py`
(about 100 MB of random weights; nothing is downloaded) and optionally the VGG-11-shaped
one (531 MB).

Measured two ways, each pair alternating `--repeat` times after one untimed run of each
(the file is then in the page cache for both):

* **in process**: the library calls alone, CPU time (`time.process_time`: user + system
  seconds, one BLAS thread) and wall time;
* **whole process**: a fresh Python that imports the library and reads the file (what a
  user waits for), CPU time of the child from `wait4` and wall time. Python's and the
  libraries' own start-up (onnx pulls in numpy and ml_dtypes) is in both.

Each ratio is the median of the per-pair ratios, so both sides of a ratio see the same
machine load. `--doc PATH` rewrites the
part of PATH between the `<!-- bench_import -->` markers.

    python benchmarks/bench_import.py [--models resnet50,vgg11] [--repeat 5] [--work DIR]
        [--doc docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import onnx  # noqa: E402
from common import environment, finish_section  # noqa: E402
from imagenet import BUILDERS  # noqa: E402

from imcc.frontend import import_model  # noqa: E402


def timed(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    gc.collect()
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    c, w = time.process_time() - c, time.perf_counter() - w
    del out
    return c, w


ONNX_ONLY = "import sys, onnx; onnx.load(sys.argv[1])"
IMCC = ("import sys; from pathlib import Path; from imcc.frontend import import_model; "
        "import_model(Path(sys.argv[1]), name='m')")


def run_proc(code: str, path: Path) -> tuple[float, float]:
    """A fresh Python running `code` on `path`: its CPU seconds (user + system) and wall."""
    w = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], env=os.environ)
    _, status, usage = os.wait4(p.pid, 0)
    w = time.perf_counter() - w
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{code!r} failed on {path}")
    return usage.ru_utime + usage.ru_stime, w


def row(path: Path, imcc_t: list[tuple[float, float]], onnx_t: list[tuple[float, float]],
        how: str) -> str:
    cpu = statistics.median(a[0] / b[0] for a, b in zip(imcc_t, onnx_t, strict=True))
    wall = statistics.median(a[1] / b[1] for a, b in zip(imcc_t, onnx_t, strict=True))
    med = [statistics.median(t[k] for t in ts) for ts in (imcc_t, onnx_t) for k in (0, 1)]
    return (f"| {path.stem} | {how} | {path.stat().st_size / 1e6:,.0f} | {med[0]:.2f} "
            f"| {med[2]:.2f} | {cpu:.2f}× | {med[1]:.2f} | {med[3]:.2f} | {wall:.2f}× |")


def bench_process(path: Path, repeat: int) -> str:
    run_proc(ONNX_ONLY, path)
    run_proc(IMCC, path)
    imcc_t, onnx_t = [], []
    for _ in range(repeat):
        onnx_t.append(run_proc(ONNX_ONLY, path))
        imcc_t.append(run_proc(IMCC, path))
    return row(path, imcc_t, onnx_t, "whole process")


def bench(path: Path, repeat: int) -> str:
    imcc_t, onnx_t = [], []
    timed(lambda: onnx.load(path))          # warm-up: page cache, lazy imports
    timed(lambda: import_model(path, name=path.stem))
    for _ in range(repeat):
        onnx_t.append(timed(lambda: onnx.load(path)))
        imcc_t.append(timed(lambda: import_model(path, name=path.stem)))
    return row(path, imcc_t, onnx_t, "in process")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet50", help="comma-separated: resnet50, vgg11")
    ap.add_argument("--repeat", type=int, default=5, help="timed pairs per model")
    ap.add_argument("--work", type=Path, help="directory for the model files (default: a "
                    "temporary one, removed afterwards; an existing file is reused)")
    ap.add_argument("--doc", type=Path, help="Markdown file whose bench_import section to "
                    "rewrite")
    args = ap.parse_args()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in names if m not in BUILDERS]
    if bad:
        ap.error(f"unknown model(s): {', '.join(bad)}")
    lines = [f"Command: `python benchmarks/bench_import.py --models {','.join(names)} "
             f"--repeat {args.repeat}`", "", f"Start: {environment()}", "",
             "| model | measured | file MB | imcc import CPU s | onnx.load CPU s | CPU ratio "
             "| imcc import wall s | onnx.load wall s | wall ratio |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="imcc-import-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in names:
            path = work / f"{name}.onnx"
            if not path.exists():
                onnx.save(BUILDERS[name](0), path)
            for fn in (bench, bench_process):
                lines.append(fn(path, args.repeat))
                print(lines[-1], flush=True)
    finish_section(lines, args.doc, "bench_import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
