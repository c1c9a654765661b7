"""Simulator throughput against onnxruntime on the same compiled model and images.

For the bundled ResNet-20 on 128x128 arrays (W4 on 1-bit cells) it compiles each
configuration (quantized W4A4 calibrated on bundled images 0..99, or ``--no-quantize``;
mapping im2col or auto; optionally ``--rank m/2 --groups 4``), writes the outputs, then on
the next ``N`` bundled images (default 200) times, in the same run:

* the functional simulator: ``Simulator(program)`` built once (its plan time is printed
  separately), then ``.run`` timed; ideal ADC and ``--adc-bits 8``;
* onnxruntime on ``compiled.onnx`` through ``imcc.sim.evaluate.ort_session`` / ``ort_run``
  (the comparison ``imcc simulate`` makes), session built once, ``ort_run`` timed.

The timings are interleaved (each repeat runs onnxruntime, then the simulators) and the
ratio is the median of the per-repeat ratios, so both sides see the same machine load. It
prints images/s for both (medians), the ratio (how many times slower the simulator is),
and as a sanity check the argmax agreement with onnxruntime, the largest logit difference
and the executed cycles per image.

    python benchmarks/bench_simulator.py [--images 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, timed  # noqa: E402 -- sibling module

from imcc.compiler import CompileOptions, compile_model, write_outputs
from imcc.dataset import Dataset, bundled_example_data, load_npz
from imcc.passes.lowrank import LowRankPass
from imcc.sim.evaluate import ort_run, ort_session
from imcc.sim.simulator import SimResult, Simulator
from imcc.targets.crossbar import CrossbarTarget
from imcc.targets.program_io import read_program

CALIB_IMAGES = 100  # bundled images 0..99 calibrate; the benchmark images follow them


@dataclass(frozen=True)
class Config:
    quantize: bool
    mapping: str
    rank: str = "none"
    groups: int = 1

    @property
    def label(self) -> str:
        q = "W4A4" if self.quantize else "float"
        lr = "" if self.rank == "none" else f", {self.rank} g={self.groups}"
        return f"{q}, {self.mapping}{lr}"


CONFIGS: tuple[Config, ...] = (
    Config(True, "im2col"),
    Config(True, "auto"),
    Config(False, "im2col"),
    Config(False, "auto"),
    Config(True, "auto", "m/2", 4),
)


def bench(cfg: Config, data: Dataset, calib: np.ndarray, work: Path, repeat: int) -> None:
    target = CrossbarTarget(rows=128, cols=128, weight_bits=4, cell_bits=1)
    opts = CompileOptions(target=target, mapping=cfg.mapping, quantize=cfg.quantize,
                          calib=calib if cfg.quantize else None,
                          lowrank=LowRankPass(rank=cfg.rank, groups=cfg.groups))
    outdir = write_outputs(compile_model("resnet20", opts),
                           work / cfg.label.replace(", ", "_").replace("/", ""))
    program = read_program(outdir)
    in_name = program.inputs[0][0]
    out_name = program.outputs[0]
    sess = ort_session(outdir / "compiled.onnx")
    y_ort = ort_run(sess, data.x)
    dac = int(program.target.get("dac_bits", 1))
    adcs: tuple[int | None, ...] = (None, 8)
    sims: dict[int | None, Simulator] = {}
    plan_t: dict[int | None, float] = {}
    for adc in adcs:
        t0 = time.perf_counter()
        sims[adc] = Simulator(program, adc_bits=adc, dac_bits=dac)
        plan_t[adc] = time.perf_counter() - t0
    # Interleaved: each repeat times onnxruntime, then each simulator, so both sides of a
    # ratio see the same machine load (other processes share these cores).
    ort_t: list[float] = []
    sim_t: dict[int | None, list[float]] = {adc: [] for adc in adcs}
    last: dict[int | None, SimResult] = {}
    for _ in range(repeat):
        ort_t += timed(lambda: ort_run(sess, data.x), 1)
        for adc in adcs:
            t0 = time.perf_counter()
            last[adc] = sims[adc].run({in_name: data.x})
            sim_t[adc].append(time.perf_counter() - t0)
    n = len(data)
    for adc in adcs:
        res = last[adc]
        y = res.outputs[out_name]
        agree = float(np.mean(y.argmax(1) == y_ort.argmax(1)))
        diff = float(np.abs(y - y_ort).max())
        assert res.cycles_per_image == program.total_cycles
        ratio = statistics.median([s / o for s, o in zip(sim_t[adc], ort_t, strict=True)])
        adc_label = "ideal" if adc is None else f"{adc}-bit"
        print(f"| {cfg.label} | {adc_label} | {plan_t[adc]:.2f} "
              f"| {n / statistics.median(sim_t[adc]):,.0f} | {n / statistics.median(ort_t):,.0f} "
              f"| {ratio:.1f}× | {agree:.3f} | {diff:.2g} | {res.cycles_per_image:,} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200, help="images simulated per run")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs (median reported)")
    args = ap.parse_args()
    full = load_npz(bundled_example_data(), "input", (None, 3, 32, 32))
    calib, rest = full.split(CALIB_IMAGES)
    data = rest.take(args.images)
    print(f"# bench_simulator: bundled ResNet-20, 128x128, {len(data)} images "
          f"({data.source}), repeat {args.repeat}")
    print(environment())
    print("\n| config | ADC | sim plan s | sim img/s | ORT img/s | sim / ORT time "
          "| argmax agree | max abs diff | cycles/img |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="imcc-bench-") as tmp:
        for cfg in CONFIGS:
            bench(cfg, data, calib.x, Path(tmp), args.repeat)
    print(f"\nend: {environment()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
