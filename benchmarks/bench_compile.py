"""Compile-time benchmark on a ResNet-56-sized model (55 convs + 1 linear, random weights).

Measures, in one run on this machine:

1. ``imcc compile`` end to end, in process (``compile_model`` + ``write_outputs``: import,
   passes, emission, report, files on disk) for mapping im2col / auto, with and without
   ``--rank m/2 --groups 4``, quantized (synthetic calibration, the CLI's default without
   ``--calib``) and ``--no-quantize``;
2. the mapping search alone (``MapPass.run`` on the imported, optionally factorized graph)
   per strategy and array size, as milliseconds per crossbar layer, plus the slowest single
   search (one layer, or one low-rank pair searched jointly);
3. the peer: onnxruntime session creation + one batch-1 inference on the same ONNX file,
   and the ratio of each compile time to it (the peer is timed right before each compile;
   the ratio shown is the median of those per-run ratios).

    python benchmarks/bench_compile.py [--repeat 3] [--n 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from imcc.compiler import CompileOptions, compile_model, write_outputs
from imcc.frontend import import_model
from imcc.ir import Graph
from imcc.passes.base import CompileContext
from imcc.passes.fold_bn import FoldBatchNorm
from imcc.passes.lowrank import LowRankPass
from imcc.passes.map import MapPass, find_pairs, node_geometry
from imcc.targets.cost import best_mapping, best_pair_mapping
from imcc.targets.crossbar import CrossbarTarget

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, timed  # noqa: E402 -- sibling module of this script
from resnet import build_resnet  # noqa: E402 -- sibling module of this script

STRATEGIES: tuple[str, ...] = ("im2col", "sdk", "vw-sdk", "auto")
SEARCH_SIZES: tuple[int, ...] = (32, 128, 512)


def bench_compile(model: Path, workdir: Path, repeat: int, peer: Callable[[], None]) -> None:
    print("\n## imcc compile (compile_model + write_outputs), 128x128, W4 on 1-bit cells\n")
    print("| mapping | low-rank | quantize | median s | min s | vs ORT load+infer | "
          "total cycles |")
    print("|---|---|---|---:|---:|---:|---:|")
    runs = 0
    for quantize in (False, True):
        for rank, groups in (("none", 1), ("m/2", 4)):
            for mapping in ("im2col", "auto"):
                opts = CompileOptions(mapping=mapping, quantize=quantize,
                                      lowrank=LowRankPass(rank=rank, groups=groups))
                cycles: list[int] = []
                times: list[float] = []
                ratios: list[float] = []
                for _ in range(repeat):
                    runs += 1
                    # The peer runs right before each compile so the ratio compares runs
                    # made under the same machine load.
                    peer_t = timed(peer, 1)[0]
                    t0 = time.perf_counter()
                    res = compile_model(str(model), opts)
                    write_outputs(res, workdir / f"out{runs}")
                    times.append(time.perf_counter() - t0)
                    ratios.append(times[-1] / peer_t)
                    cycles.append(int(res.report["total_cycles"]))
                lr = "none" if rank == "none" else f"{rank} g={groups}"
                q = "synthetic calib" if quantize else "--no-quantize"
                print(f"| {mapping} | {lr} | {q} | {statistics.median(times):.2f} "
                      f"| {min(times):.2f} | {statistics.median(ratios):.0f}× | {cycles[0]:,} |")


def search_units(graph: Graph, target: CrossbarTarget, strategy: str) -> list[Callable[[], object]]:
    """One callable per independent search: each low-rank pair, then each other layer."""
    rows, cols, s = target.rows, target.cols, target.slices
    units: list[Callable[[], object]] = []
    paired: set[int] = set()
    for r_node, l_node in find_pairs(graph):
        rg, lg = node_geometry(r_node), node_geometry(l_node)
        units.append(partial(best_pair_mapping, rg, lg, strategy, rows, cols, s))
        paired.update((id(r_node), id(l_node)))
    for node in graph.crossbar_nodes():
        if id(node) not in paired:
            g = node_geometry(node)
            units.append(partial(best_mapping, g, strategy, rows, cols, s))
    return units


def bench_mapping(model: Path, repeat: int) -> None:
    print("\n## Mapping search alone (MapPass.run on the imported graph)\n")
    print("| graph | array | strategy | crossbar layers | pass ms (min) | ms / layer "
          "| slowest search ms |")
    print("|---|---|---|---:|---:|---:|---:|")
    ctx = CompileContext()
    graphs = {
        "uncompressed": FoldBatchNorm().run(import_model(model, name=model.stem), ctx).graph,
        "m/2 g=4": LowRankPass(rank="m/2", groups=4).run(
            FoldBatchNorm().run(import_model(model, name=model.stem), ctx).graph, ctx).graph,
    }
    for label, graph in graphs.items():
        n_layers = len(list(graph.crossbar_nodes()))
        for size in SEARCH_SIZES:
            target = CrossbarTarget(rows=size, cols=size)
            for strategy in STRATEGIES:
                pass_ = MapPass(strategy=strategy)
                best = min(timed(partial(pass_.run, graph, CompileContext(target=target)),
                                 repeat))
                slowest = max(min(timed(u, repeat))
                              for u in search_units(graph, target, strategy))
                print(f"| {label} | {size}x{size} | {strategy} | {n_layers} | "
                      f"{best * 1e3:.1f} | {best * 1e3 / n_layers:.2f} | {slowest * 1e3:.2f} |")


def make_peer(model: Path) -> Callable[[], None]:
    """onnxruntime's equivalent of a compile: load the model, run one batch-1 inference."""
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)

    def once() -> None:
        sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        sess.run(None, {sess.get_inputs()[0].name: x})

    return once


def bench_peer(peer: Callable[[], None], repeat: int) -> None:
    times = timed(peer, repeat + 2)[2:]  # the first runs pay one-off library warm-up
    print("\n## Peer: onnxruntime InferenceSession creation + one batch-1 inference\n")
    print(f"median {statistics.median(times) * 1e3:.1f} ms, min {min(times) * 1e3:.1f} ms "
          f"over {len(times)} runs")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=9, help="blocks per stage (9: ResNet-56)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per configuration")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="imcc-bench-") as tmp:
        work = Path(tmp)
        model = work / f"resnet{6 * args.n + 2}.onnx"
        onnx.save(build_resnet(args.n), model)
        print(f"# bench_compile: ResNet-{6 * args.n + 2} ({6 * args.n + 1} convs + 1 linear), "
              f"repeat {args.repeat}")
        print(environment())
        # Warm-up: first imports and allocations are not what a compile costs.
        compile_model(str(model), CompileOptions(quantize=False))
        peer = make_peer(model)
        bench_peer(peer, args.repeat)
        bench_compile(model, work, args.repeat, peer)
        bench_mapping(model, args.repeat)
        print(f"\nend: {environment()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
