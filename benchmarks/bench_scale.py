"""Scale benchmark: compile and simulate time and peak memory against onnxruntime, for
ResNet-20 (the bundled pretrained model and images), a ResNet-50-shaped and a VGG-11-shaped
network (random weights, built by ``benchmarks/imagenet.py``; nothing is downloaded).

For each model, in one run:

1. **Compile** as a user runs it, whole processes, paired: ``imcc compile MODEL`` (W4A4 on
   128x128 arrays, mapping auto, synthetic calibration: the defaults) against a process
   that creates an onnxruntime session on the same file and runs one batch-1 inference
   (what onnxruntime needs to "load and run" the model). The two alternate ``--repeat``
   times; the ratio is the median of the per-pair ratios, so both sides of each ratio see
   the same machine load. Peak RSS is each process's own (``wait4`` rusage), against the
   model file's size.
2. **Simulate**, in process, threads pinned to one (numpy's BLAS and onnxruntime alike):
   ``Simulator.run`` on the compiled program (ideal ADC, ``--adc-bits 8`` and 6) against
   onnxruntime on ``compiled.onnx`` (the session ``imcc simulate`` compares with) on the
   same images, interleaved, median of the per-repeat ratios. 8 bits on 128-row arrays is
   lossless for W4A4 on 1-bit cells and 1-bit DACs, so the simulator runs its exact path;
   6 bits is lossy ("(lossy)" in the table) and runs the per-slice ADC path. With the
   ideal ADC the simulator must equal onnxruntime bit for bit (checked).
3. **Simulate memory**: peak RSS of a whole ``imcc simulate OUT --ideal-adc`` process on
   ``--rss-images`` images (it also runs onnxruntime on them for the comparison).

``--doc PATH`` rewrites the part of PATH between the ``<!-- bench_scale -->`` markers with
the tables (and the command that made them).

    python benchmarks/bench_scale.py [--models resnet20,resnet50,vgg11] [--repeat 3]
        [--images 500] [--imagenet-images 8] [--rss-images 64] [--work DIR] [--doc FILE]

The VGG-11 file is 531 MB: keep ``--work`` out of the repository (default: a temporary
directory, removed at the end).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, finish_section  # noqa: E402 -- sibling module
from imagenet import BUILDERS  # noqa: E402 -- sibling module

from imcc.dataset import bundled_example_data, load_npz  # noqa: E402
from imcc.sim.evaluate import adc_lossless, ort_run, ort_session  # noqa: E402
from imcc.sim.simulator import Simulator  # noqa: E402
from imcc.targets.program_io import read_program  # noqa: E402
from imcc.threads import limit_threads  # noqa: E402

# The peer: onnxruntime loads the model file and runs one batch-1 inference (default
# session options: what a user of onnxruntime gets), in its own process.
PEER = """
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
s.run(None, {i.name: np.zeros([1] + list(i.shape[1:]), np.float32)})
"""
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Proc:
    wall: float  # seconds
    rss: int  # peak resident set, bytes


def run_proc(args: list[str]) -> Proc:
    """Run a whole process; its wall time and its own peak RSS (not its children's)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode() if p.stderr else ""
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({p.returncode}):\n{err}")
    return Proc(wall, usage.ru_maxrss * 1024)  # Linux: ru_maxrss in KiB


def imcc_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "imcc.cli", *args]


def model_file(name: str, work: Path) -> Path:

    path = work / f"{name}.onnx"
    if not path.exists():
        if name == "resnet20":
            from imcc.compiler import resolve_model

            shutil.copyfile(resolve_model("resnet20"), path)
        else:
            # In a child process: building VGG-11 here would grow this process by 1 GB
            # (see main: the children's peak RSS would include it).
            subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "imagenet.py"),
                            name, "-o", str(path)], check=True, env=ENV,
                           stdout=subprocess.DEVNULL)
    return path


def images(name: str, n: int, work: Path) -> Path:
    """An .npz of `n` inputs: the bundled CIFAR-10 images for ResNet-20, else standard
    normal 3x224x224 tensors (fixed seed)."""
    if name == "resnet20":
        return bundled_example_data()
    path = work / f"{name}_x{n}.npz"
    if not path.exists():
        x = np.random.default_rng(1).standard_normal((n, 3, 224, 224), dtype=np.float32)
        np.savez(path, x=x)
    return path


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f}"


def bench_compile(name: str, model: Path, work: Path, repeat: int) -> tuple[str, Path]:
    out = work / f"{name}.imcc"
    peer, comp = [], []
    for _ in range(repeat):
        peer.append(run_proc([sys.executable, "-c", PEER, str(model)]))
        comp.append(run_proc(imcc_cmd("compile", str(model), "-o", str(out))))
    ratio = statistics.median(c.wall / p.wall for c, p in zip(comp, peer, strict=True))
    size = model.stat().st_size
    rss = max(c.rss for c in comp)
    row = (f"| {name} | {mb(size)} | {statistics.median(c.wall for c in comp):.1f} "
           f"| {statistics.median(p.wall for p in peer):.2f} | {ratio:.1f}× "
           f"| {mb(rss)} | {rss / size:.2f}× | {mb(max(p.rss for p in peer))} |")
    return row, out


def bench_simulate(name: str, out: Path, data: Path, n: int, repeat: int,
                   adcs: tuple[int, ...]) -> list[str]:
    program = read_program(out)
    in_name, in_shape = program.inputs[0]
    x = load_npz(data, in_name, tuple(in_shape)).x[:n]
    rows = []
    with limit_threads(1):
        sess = ort_session(out / "compiled.onnx", threads=1)
        y_ort = ort_run(sess, x)
        sims = {adc: Simulator(program, adc_bits=adc) for adc in (None, *adcs)}
        ort_t: list[float] = []
        sim_t: dict[int | None, list[float]] = {adc: [] for adc in sims}
        diff: dict[int | None, float] = {}
        for _ in range(repeat):
            t0 = time.perf_counter()
            ort_run(sess, x)
            ort_t.append(time.perf_counter() - t0)
            for adc, sim in sims.items():
                t0 = time.perf_counter()
                res = sim.run({in_name: x})
                sim_t[adc].append(time.perf_counter() - t0)
                assert res.cycles_per_image == program.total_cycles
                diff[adc] = float(np.abs(res.outputs[program.outputs[0]] - y_ort).max())
        if diff[None] != 0.0:
            raise SystemExit(f"{name}: the ideal-ADC simulator differs from onnxruntime "
                             f"by {diff[None]:g}")
        ideal = sim_t[None]
        for adc, times in sim_t.items():
            ratio = statistics.median(s / o for s, o in zip(times, ort_t, strict=True))
            vs_ideal = statistics.median(s / i for s, i in zip(times, ideal, strict=True))
            kind = ("ideal" if adc is None else f"{adc}-bit" + (
                "" if adc_lossless(program, adc, 1) else " (lossy)"))
            rows.append(f"| {name} | {n} | {kind} "
                        f"| {statistics.median(times):.2f} | {statistics.median(ort_t):.2f} "
                        f"| {ratio:.2f}× | {vs_ideal:.2f}× | {diff[adc]:.2g} |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet20,resnet50,vgg11",
                    help="comma-separated: resnet20, resnet50, vgg11")
    ap.add_argument("--repeat", type=int, default=3, help="paired runs per measurement")
    ap.add_argument("--images", type=int, default=500,
                    help="ResNet-20 images simulated per timed run (bundled images 0..N-1)")
    ap.add_argument("--imagenet-images", type=int, default=8,
                    help="images per timed simulator run for the 224x224 models")
    ap.add_argument("--rss-images", type=int, default=64,
                    help="images of the `imcc simulate` peak-RSS run (224x224 models)")
    ap.add_argument("--adcs", default="8,6", help="ADC widths simulated besides the ideal "
                    "one on ResNet-20 (bits; a width lossless for the program runs the exact "
                    "path)")
    ap.add_argument("--imagenet-adcs", default="", help="the same for the 224x224 models "
                    "(default none: their random weights make every width lossy, and the "
                    "per-column ADC path's plan grows with rows x all tiles' columns, "
                    "beyond memory for VGG-11's classifier)")
    ap.add_argument("--work", type=Path, help="directory for models and outputs "
                    "(default: a temporary one, removed afterwards)")
    ap.add_argument("--doc", type=Path, help="Markdown file whose bench_scale section to "
                    "rewrite with the tables")
    args = ap.parse_args()
    adcs = tuple(int(a) for a in args.adcs.split(",") if a.strip())
    big_adcs = tuple(int(a) for a in args.imagenet_adcs.split(",") if a.strip())
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in names if m != "resnet20" and m not in BUILDERS]
    if bad:
        ap.error(f"unknown model(s): {', '.join(bad)}")
    lines = [f"Command: `python benchmarks/bench_scale.py --models {','.join(names)} "
             f"--repeat {args.repeat} --images {args.images} --imagenet-images "
             f"{args.imagenet_images} --rss-images {args.rss_images} --adcs {args.adcs}"
             + (f" --imagenet-adcs {args.imagenet_adcs}" if big_adcs else "") + "`", "",
             f"Start: {environment()}", ""]
    comp_rows, sim_rows, rss_rows = [], [], []
    with tempfile.TemporaryDirectory(prefix="imcc-scale-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        # Every whole process first, while this process is small: the peak RSS the kernel
        # reports for a child (wait4) includes that of the process it was forked from.
        outs, datas = {}, {}
        for name in names:
            model = model_file(name, work)
            row, outs[name] = bench_compile(name, model, work, args.repeat)
            comp_rows.append(row)
            print(row, flush=True)
            n = args.images if name == "resnet20" else args.imagenet_images
            datas[name] = images(name, max(n, args.rss_images), work)
            if name != "resnet20":
                p = run_proc(imcc_cmd("simulate", str(outs[name]), "--data", str(datas[name]),
                                      "--limit", str(args.rss_images), "--ideal-adc"))
                rss_rows.append(f"| {name} | {args.rss_images} | {p.wall:.1f} "
                                f"| {p.rss / 2**30:.2f} |")
                print(rss_rows[-1], flush=True)
        for name in names:
            n = args.images if name == "resnet20" else args.imagenet_images
            widths = adcs if name == "resnet20" else big_adcs
            sim_rows += bench_simulate(name, outs[name], datas[name], n, args.repeat, widths)
            print("\n".join(sim_rows[-1 - len(widths):]), flush=True)
    lines += ["### Compile vs onnxruntime load + one inference (whole processes)", "",
              "| model | file MB | imcc compile s | ORT load+infer s | ratio | compile peak "
              "RSS MB | RSS / file | ORT peak RSS MB |", "|---|---:|---:|---:|---:|---:|---:|---:|",
              *comp_rows, "", "### Simulator vs onnxruntime on compiled.onnx (in process, "
              "1 thread each)", "",
              "| model | images | ADC | simulator s | ORT s | sim / ORT | vs ideal | max abs "
              "diff |", "|---|---:|---|---:|---:|---:|---:|---:|", *sim_rows]
    if rss_rows:
        lines += ["", "### `imcc simulate --ideal-adc` peak memory (whole process)", "",
                  "| model | images | wall s | peak RSS GiB |", "|---|---:|---:|---:|",
                  *rss_rows]
    finish_section(lines, args.doc, "bench_scale")
    return 0


if __name__ == "__main__":
    sys.exit(main())
