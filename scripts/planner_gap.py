"""Per-layer gap between the planner's `auto` layout and the lower bound, for the Table I
cells of ResNet-20 and of the WRN16-4 that scripts/wrn_cycle_table.py builds.

Usage::

    python scripts/planner_gap.py [--model resnet20|wrn16-4|both] [--sizes 32,64]
        [--cells m/16:2,m/8:4] [--min-ratio 1.03] [--json per-layer.json]

The layer geometries come from one `compile_model` per (rank, groups) (im2col, not
quantized: the shapes do not depend on the mapping or on quantization); each crossbar
layer or low-rank pair is then costed with the search the `map` pass runs
(`best_pair_mapping` / `best_mapping`, request `auto`), its CPU time measured, and
compared with `lower_bound_cycles`. Prints each cell's total, bound, ratio and search time
and, for cells above `--min-ratio` x bound, the layer shapes carrying the excess. The
emitted program of a layer executes exactly the plan's cycles (the emitter checks it), so
these totals are the `total_cycles` the docs tables report.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

RANKS = ("m/2", "m/4", "m/8", "m/16")
GROUPS = (2, 4, 8)


def layer_units(model: str, rank: str, groups: int) -> list[tuple[Any, ...]]:
    """[(names, geoms, slices)] per crossbar unit (a low-rank pair or a single layer)."""
    from imcc.compiler import CompileOptions, compile_model
    from imcc.passes.lowrank import LowRankPass
    from imcc.passes.map import find_pairs
    from imcc.targets.crossbar import CrossbarTarget
    from imcc.targets.tiling import node_geometry, node_slices

    target = CrossbarTarget(rows=64, cols=64, weight_bits=4, cell_bits=1)
    opts = CompileOptions(target=target, mapping="im2col", quantize=False,
                          lowrank=LowRankPass(rank=rank, groups=groups))
    graph = compile_model(model, opts).graph
    units: list[tuple[Any, ...]] = []
    done: set[int] = set()
    for r, l in find_pairs(graph):  # noqa: E741 -- the paper's name
        units.append(((r.name, l.name), (node_geometry(r), node_geometry(l)),
                      (node_slices(r, target), node_slices(l, target))))
        done.update((id(r), id(l)))
    for n in graph.crossbar_nodes():
        if id(n) not in done:
            units.append(((n.name,), (node_geometry(n),), (node_slices(n, target),)))
    return units


def search_seconds(graph: Any, target: Any) -> float:
    """CPU seconds of the `auto` search the map pass runs on `graph`'s crossbar layers for
    `target` (each pair jointly, every other layer alone), from cold planner caches; the
    layouts found are not kept."""
    from imcc.passes.map import find_pairs
    from imcc.targets.cost import best_mapping, best_pair_mapping
    from imcc.targets.tiling import clear_plan_caches, node_geometry, node_slices

    clear_plan_caches()
    t0 = time.process_time()
    done: set[int] = set()
    rows, cols = target.rows, target.cols
    for r, l in find_pairs(graph):  # noqa: E741 -- the paper's name
        best_pair_mapping(node_geometry(r), node_geometry(l), "auto", rows, cols,
                          node_slices(r, target), node_slices(l, target))
        done.update((id(r), id(l)))
    for n in graph.crossbar_nodes():
        if id(n) not in done:
            best_mapping(node_geometry(n), "auto", rows, cols, node_slices(n, target))
    return time.process_time() - t0


def cost_unit(geoms: tuple[Any, ...], slices: tuple[int, ...], size: int
              ) -> tuple[tuple[Any, ...], tuple[int, ...], float]:
    """The auto plans of one unit on size x size arrays, their bounds, and the search's CPU
    seconds."""
    from imcc.targets.cost import best_mapping, best_pair_mapping
    from imcc.targets.tiling import lower_bound_cycles

    t0 = time.process_time()
    if len(geoms) == 2:
        _, pr, _, pl = best_pair_mapping(geoms[0], geoms[1], "auto", size, size, *slices)
        plans: tuple[Any, ...] = (pr, pl)
    else:
        plans = (best_mapping(geoms[0], "auto", size, size, slices[0])[1],)
    dt = time.process_time() - t0
    bounds = tuple(lower_bound_cycles(g, s, size, size)
                   for g, s in zip(geoms, slices, strict=True))
    return plans, bounds, dt


def describe(p: Any) -> str:
    kind = "im2col" if p.pw == (1, 1) else f"{p.pw[0]}x{p.pw[1]}"
    if p.pieces:
        kind += f" k={p.pieces}"
    elif p.group_pack > 1:
        kind += f" gp={p.group_pack}"
    if p.strip:
        kind += f" strip-{p.strip}"
    if p.patch != (0, 0):
        kind += f" patch {p.patch[0]}x{p.patch[1]}"
    if p.bicliques:
        kind += f" dense b={p.bicliques}"
    if p.segments:
        kind += f" segments-{p.segments}"
    return kind


def shape_of(g: Any) -> str:
    return f"{g.ic}->{g.oc} g{g.groups} {g.kh}x{g.kw}/s{g.sh} {g.ho}x{g.wo}"


def cell(units: list[tuple[Any, ...]], size: int) -> dict[str, Any]:
    """Cost every unit of one network on size x size arrays."""
    from imcc.targets.tiling import clear_plan_caches

    clear_plan_caches()  # each cell from cold caches, as one compile would run it
    layers = []
    t_max = t_sum = 0.0
    for names, geoms, slices in units:
        plans, bounds, dt = cost_unit(geoms, slices, size)
        t_max, t_sum = max(t_max, dt), t_sum + dt
        for nm, g, p, b in zip(names, geoms, plans, bounds, strict=True):
            layers.append({"name": nm, "shape": shape_of(g), "layout": describe(p),
                           "cycles": p.cycles, "bound": b})
    return {"cycles": sum(x["cycles"] for x in layers),
            "bound": sum(x["bound"] for x in layers), "search_s": t_sum,
            "search_max_s": t_max, "layers": layers}


def excess_lines(layers: list[dict[str, Any]]) -> list[str]:
    """Layer shapes (with their layout) above their bound, largest excess first."""
    rows: dict[tuple[str, str], list[int]] = {}
    for x in layers:
        r = rows.setdefault((x["shape"], x["layout"]), [0, 0, 0])
        r[0] += 1
        r[1] += x["cycles"]
        r[2] += x["bound"]
    out = []
    for (shape, how), (n, c, b) in sorted(rows.items(), key=lambda kv: kv[1][2] - kv[1][1]):
        if c > b:
            out.append(f"    x{n} {shape:32s} {how:24s} {c:>8,} vs bound {b:>8,} "
                       f"excess {c - b:>7,} ({c / b:.2f})")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="both", choices=("resnet20", "wrn16-4", "both"))
    ap.add_argument("--sizes", default="32,64", help="array sizes (rows = cols), comma list")
    ap.add_argument("--min-ratio", type=float, default=1.03,
                    help="list the layers of cells above this auto / bound ratio")
    ap.add_argument("--cells", default="", help="only these rank:groups, e.g. m/16:2,m/8:4")
    ap.add_argument("--json", type=Path, default=None, help="write every layer's numbers here")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    want = {tuple(c.split(":")) for c in args.cells.split(",") if c}
    models = ["resnet20", "wrn16-4"] if args.model == "both" else [args.model]
    dump: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            path = model
            if model == "wrn16-4":
                import onnx
                from wrn_cycle_table import build_wrn16_4
                path = str(Path(tmp) / "wrn16_4.onnx")
                onnx.save(build_wrn16_4(), path)
            for rank in RANKS:
                for groups in GROUPS:
                    if want and (rank, str(groups)) not in want:
                        continue
                    units = layer_units(path, rank, groups)
                    for size in sizes:
                        c = cell(units, size)
                        ratio = c["cycles"] / c["bound"]
                        flag = "FAIL" if ratio > args.min_ratio else "ok"
                        print(f"{model} {size}x{size} {rank} g{groups}: auto {c['cycles']:,} "
                              f"bound {c['bound']:,} ratio {ratio:.3f} {flag} (search "
                              f"{c['search_s']:.2f}s cpu, max unit {c['search_max_s']:.3f}s)",
                              flush=True)
                        if ratio > args.min_ratio:
                            print("\n".join(excess_lines(c["layers"])), flush=True)
                        dump[f"{model} {size} {rank} {groups}"] = c
    if args.json is not None:
        args.json.write_text(json.dumps(dump, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
