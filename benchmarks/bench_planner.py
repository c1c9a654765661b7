"""Planner search time on a ResNet-56-sized model (55 convs + 1 linear, random weights).

For each array size, rank and groups of the paper's Table I grid (plus uncompressed), the
`auto` search (channel-granular windows, the planner's element-granular pieces at every
window, and L mapped on its own for each low-rank pair) is timed per independent search:
one per low-rank pair (searched jointly, and each half alone), one per other layer, each
with the planner's memo caches cleared first (cold). The issue's budget is one second per
layer.

    python benchmarks/bench_planner.py [--n 9] [--repeat 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import onnx

from imcc.frontend import import_model
from imcc.passes.base import CompileContext
from imcc.passes.fold_bn import FoldBatchNorm
from imcc.passes.lowrank import LowRankPass
from imcc.targets import tiling
from imcc.targets.crossbar import CrossbarTarget

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_compile import search_units  # noqa: E402
from common import environment, timed  # noqa: E402
from resnet import build_resnet  # noqa: E402

CONFIGS = [("none", 1), ("m/2", 2), ("m/2", 8), ("m/8", 4), ("m/16", 8)]
SIZES = (32, 64, 128)


def cold(unit: Callable[[], object]) -> object:
    """Run one search with the planner's memo caches empty (identical layers of the same
    network would otherwise reuse each other's plans), so each time is a cold search."""
    tiling.clear_plan_caches()
    return unit()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=9, help="blocks per stage (9: ResNet-56)")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per search")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="imcc-bench-") as tmp:
        model = Path(tmp) / f"resnet{6 * args.n + 2}.onnx"
        onnx.save(build_resnet(args.n), model)
        print(f"# bench_planner: ResNet-{6 * args.n + 2}, auto search, repeat {args.repeat}")
        print(environment())
        print("\n| rank | groups | array | searches | total s | mean ms / search "
              "| slowest search ms |")
        print("|---|---:|---|---:|---:|---:|---:|")
        for rank, groups in CONFIGS:
            ctx = CompileContext()
            graph = FoldBatchNorm().run(import_model(model, name=model.stem), ctx).graph
            if rank != "none":
                graph = LowRankPass(rank=rank, groups=groups).run(graph, ctx).graph
            for size in SIZES:
                units = search_units(graph, CrossbarTarget(rows=size, cols=size), "auto")
                times = [min(timed(partial(cold, u), args.repeat)) for u in units]
                print(f"| {rank} | {groups if rank != 'none' else '–'} | {size}x{size} "
                      f"| {len(units)} | {sum(times):.2f} | {1e3 * sum(times) / len(units):.1f} "
                      f"| {1e3 * max(times):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
