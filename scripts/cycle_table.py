"""Generate docs/resnet20-cycles.md: ResNet-20 computing cycles per array size, rank and groups.

Usage::

    python scripts/cycle_table.py [--out docs/resnet20-cycles.md] [--jobs N]

Every number comes from `imcc.compiler.compile_model` on the bundled ResNet-20 (the
report's ``total_cycles``, i.e. the (window, tile) activations of the emitted program),
never from a formula typed here. The weights are not quantized (``quantize=False``): the
layout and the cycle count depend only on ``--weight-bits`` / ``--cell-bits`` through
``S``, which the script checks by compiling one configuration both ways.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imcc.targets.program import CrossbarLayer

ARRAY_SIZES: tuple[int, ...] = (32, 64, 128)
RANKS: tuple[str, ...] = ("m/2", "m/4", "m/8", "m/16")
GROUPS: tuple[int, ...] = (1, 2, 4, 8)
MAPPINGS: tuple[str, ...] = ("im2col", "auto")
WEIGHT_BITS, CELL_BITS = 4, 1
# The quantize on/off check runs on this (size, rank, groups): a factorized, grouped
# configuration where auto picks parallel windows, so both halves of a pair are exercised.
QUANT_CHECK: tuple[int, str, int] = (64, "m/2", 4)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "resnet20-cycles.md"


@dataclass(frozen=True)
class Job:
    size: int
    rank: str
    groups: int
    mapping: str
    quantize: bool = False


@dataclass(frozen=True)
class Outcome:
    job: Job
    total_cycles: int
    im2col_cycles: int          # the report's own im2col baseline of the same network
    mix: tuple[str, ...]        # one label per crossbar layer, e.g. "sdk 2x2"
    lower_bound: int = 0        # sum of the layers' lower_bound_cycles
    l_alone: int = 0            # low-rank pairs whose L got its own window
    search_s: float = 0.0       # CPU seconds of the auto search (cold caches), auto runs only


sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_table1 import PAPER as _TABLE1  # noqa: E402
from paper_table1 import is_checked, summary, verdict  # noqa: E402
from planner_gap import search_seconds  # noqa: E402

# The paper's Table I values for ResNet-20 (scripts/paper_table1.py: citation, and why only
# the cells quoted in issue 14 are filled).
PAPER: dict[tuple[int, str, int], str] = {
    (size, rank, groups): v for (model, size, rank, groups), v in _TABLE1.items()
    if model == "resnet20"}


def _layer_label(layer: CrossbarLayer) -> str:
    m = layer.mapping
    base = m.strategy.value if m.strategy.value == "im2col" else \
        f"{m.strategy.value} {m.pw[0]}x{m.pw[1]}"
    if m.patch != (0, 0):
        return base + f" patches {m.patch[0]}x{m.patch[1]}"
    if m.bicliques:
        return base + " dense blocks"
    if m.segments:
        return base + f" segments {m.segments}"
    if m.strip:
        return base + f" strips {m.strip}"
    return base + (" pieces" if m.pieces else "")


def run_job(job: Job) -> Outcome:
    # Imported here so spawned workers pick up the BLAS thread settings of `main`.
    from imcc.compiler import CompileOptions, compile_model
    from imcc.passes.lowrank import LowRankPass
    from imcc.targets.cost import L_ALONE
    from imcc.targets.crossbar import CrossbarTarget

    target = CrossbarTarget(rows=job.size, cols=job.size, weight_bits=WEIGHT_BITS,
                            cell_bits=CELL_BITS)
    opts = CompileOptions(target=target, mapping=job.mapping, quantize=job.quantize,
                          lowrank=LowRankPass(rank=job.rank, groups=job.groups))
    res = compile_model("resnet20", opts)
    rep = res.report
    layers = res.program.crossbar_layers()
    mix = tuple(_layer_label(layer) for layer in layers)
    bound = sum(layer.lower_bound_cycles for layer in layers)
    alone = sum(layer.mapping.reason.startswith(L_ALONE) for layer in layers)
    search = search_seconds(res.graph, target) if job.mapping == "auto" else 0.0
    return Outcome(job, int(rep["total_cycles"]), int(rep["im2col_cycles"]), mix, bound, alone,
                   search)


def jobs() -> list[Job]:
    out: list[Job] = []
    for size in ARRAY_SIZES:
        # Rank none leaves every layer uncompressed, so groups play no part: one row.
        for rank, groups in [("none", 1)] + [(r, g) for r in RANKS for g in GROUPS]:
            out.extend(Job(size, rank, groups, m) for m in MAPPINGS)
    size, rank, groups = QUANT_CHECK
    out.extend(Job(size, rank, groups, m, quantize=True) for m in MAPPINGS)
    return out


def format_mix(mix: tuple[str, ...]) -> str:
    counts = Counter(mix)
    # Most frequent first, then by name, so the text is stable across runs.
    parts = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{label} ×{n}" for label, n in parts)


def render(results: dict[Job, Outcome]) -> str:
    lines = [
        "# ResNet-20 computing cycles by array size, rank and groups",
        "",
        "Generated by `python scripts/cycle_table.py` (do not edit by hand) from "
        "`imcc compile` reports on the "
        "bundled CIFAR-10 ResNet-20 (`compile_model(\"resnet20\", CompileOptions(...))`); "
        "each figure is the report's `total_cycles`, the (window, array tile) activations "
        "of the emitted program for one image.",
        "",
        "## Convention",
        "",
        "DESIGN.md, \"Reference convention for the paper's Table I\":",
        "",
        f"- {WEIGHT_BITS}-bit weights on {CELL_BITS}-bit cells, so `S = "
        f"{-(-WEIGHT_BITS // CELL_BITS)}` columns per weight "
        f"(`--weight-bits {WEIGHT_BITS} --cell-bits {CELL_BITS}`);",
        "- padded inputs (windows run over the zero-padded feature map);",
        "- every crossbar layer is counted: the first conv (uncompressed, as the default "
        "policy leaves it) and the last linear layer (uncompressed, one window) included; "
        "a factorized layer counts both halves, the grouped `KxK` conv `R` and the 1x1 "
        "conv `L`;",
        "- rank `m/r` means `k = floor(m / r)` per layer (`m` = output channels), "
        "`--groups g` splits each factorized layer's input channels into `g` groups;",
        "- `im2col`: `--mapping im2col`; `auto`: the cheapest of im2col, SDK and VW-SDK "
        "per layer, low-rank pairs mapped jointly with one window (Theorem 2); `auto` also "
        "packs several groups of a grouped conv onto one array's block diagonal when a "
        "whole group fits (an extension of DESIGN.md's per-group formula, which `im2col` "
        "keeps), and uses the planner: element-granular pieces (`pieces` in the mix: "
        "rows and columns cut inside a channel's window, shared between groups and "
        "chunks; strips; patches, input-side sub-patches times every output pixel "
        "whose field touches them; dense blocks, pixels times the input positions "
        "all of them read; and segments, each column's fan-in cut by the input rows it "
        "reads, adjacent pixels' segments sharing rows; all of these packed from all "
        "groups into arrays block-diagonally) "
        "where they are strictly cheaper, and a pair's `L` on its own window "
        "where that is strictly cheaper than R's (`L alone`: how many pairs);",
        "- bound: the sum over crossbar layers of `lower_bound_cycles`, the largest of "
        "the column bound `ceil(Ho*Wo*OC * S * ceil(Kh*Kw*IC_g / rows) / cols)`, "
        "when a column's fan-in fits the rows its complete-column refinement "
        "`ceil(2 N / (cols + h))` (`h`: the most output columns one activation can "
        "complete, from the receptive fields its rows can hold), and the row bound "
        "`ceil(IC * sum over input positions of ceil(K * OC_g * S / cols) / rows)` "
        "(`K`: the output pixels reading the position; each input element is a row of "
        "that many activations at least), which no correct "
        "layout of dense weights goes below (derivations in `imcc/targets/tiling.py` "
        "and docs/reports.md); auto / bound is how far `auto` is above it;",
        "- search s: CPU seconds of the `auto` mapping search for the whole network "
        "(every pair and layer, cold planner caches), measured in the run that made the "
        "row, on a shared machine;",
        "- paper: Table I of K. E. Jeon, J. Rhe, J. H. Ko, \"Low-Rank Compression for IMC "
        "Arrays\", DATE 2025 (arXiv:2502.07820), SDK + group rows; only the values quoted "
        "in issue 14 could be obtained, the other cells are blank, not guessed. Where the "
        "paper is below the bound, no correct program reaches it (the criterion column "
        "says so and shows the bound);",
        "- criterion: issue 14's `auto <= max(paper, 1.03 x bound)` for the SDK + group "
        "cells (32x32 and 64x64, groups 2/4/8); a cell without a paper value is checked "
        "against `1.03 x bound` alone (`no (paper unknown)` when that fails);",
        "- speedups are against the uncompressed im2col network on the same array "
        "(rank `none`, first row of each table);",
        "- mapping mix: how many crossbar layers (each half of a pair counts as one) the "
        "`auto` run maps with each strategy and parallel window `i x j` (output rows x "
        "columns per window).",
        "",
        "Weights were not quantized for this table (`--no-quantize`): the layout and the "
        "cycles depend only on `--weight-bits` and `--cell-bits`; the script checks that "
        f"a quantized compile ({QUANT_CHECK[0]}x{QUANT_CHECK[0]}, rank {QUANT_CHECK[1]}, "
        f"groups {QUANT_CHECK[2]}) gives the same cycles.",
    ]
    cells: list[tuple[int, int, str]] = []
    for size in ARRAY_SIZES:
        base = results[Job(size, "none", 1, "im2col")].total_cycles
        lines += [
            "",
            f"## {size}x{size} arrays",
            "",
            "| rank | groups | im2col cycles | auto cycles | bound | auto / bound | paper "
            "| criterion | im2col speedup | auto speedup | L alone | search s "
            "| auto mapping mix |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
        ]
        for rank, groups in [("none", 1)] + [(r, g) for r in RANKS for g in GROUPS]:
            im = results[Job(size, rank, groups, "im2col")]
            au = results[Job(size, rank, groups, "auto")]
            shown_groups = "–" if rank == "none" else str(groups)
            paper = PAPER.get((size, rank, groups), "")
            crit = verdict(au.total_cycles, au.lower_bound, paper) \
                if is_checked(size, rank, groups) else ""
            if crit:
                cells.append((au.total_cycles, au.lower_bound, paper))
            lines.append(
                f"| {rank} | {shown_groups} | {im.total_cycles:,} | {au.total_cycles:,} "
                f"| {au.lower_bound:,} | {au.total_cycles / au.lower_bound:.2f} | {paper} "
                f"| {crit} | {base / im.total_cycles:.2f}× | {base / au.total_cycles:.2f}× "
                f"| {au.l_alone} | {au.search_s:.2f} | {format_mix(au.mix)} |")
    lines += ["", "## Issue 14 criterion", "", *summary(cells)]
    return "\n".join(lines) + "\n"


def check(results: dict[Job, Outcome]) -> None:
    for job, res in results.items():
        if job.mapping == "im2col":
            assert set(res.mix) == {"im2col"}, f"{job}: im2col run used {set(res.mix)}"
            assert res.total_cycles == res.im2col_cycles, f"{job}: im2col != its baseline"
        else:
            # The auto report's own im2col baseline must be the im2col run's total.
            im = results[Job(job.size, job.rank, job.groups, "im2col", job.quantize)]
            assert res.im2col_cycles == im.total_cycles, f"{job}: baselines disagree"
            assert res.total_cycles <= im.total_cycles, f"{job}: auto worse than im2col"
        assert res.total_cycles >= res.lower_bound > 0, f"{job}: below the lower bound"
    size, rank, groups = QUANT_CHECK
    for mapping in MAPPINGS:
        q = results[Job(size, rank, groups, mapping, quantize=True)]
        f = results[Job(size, rank, groups, mapping, quantize=False)]
        assert (q.total_cycles, q.mix) == (f.total_cycles, f.mix), \
            f"{mapping}: quantize changes the layout ({q.total_cycles} vs {f.total_cycles})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown file to write.")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="Worker processes (default: one per CPU).")
    args = ap.parse_args(argv)
    # One BLAS thread per worker: the SVDs are small, and several multi-threaded BLAS
    # pools on the same cores spin against each other and run many times slower.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    todo = jobs()
    # The quantized compiles are the slowest (calibration); start them first.
    todo.sort(key=lambda j: not j.quantize)
    with mp.get_context("spawn").Pool(max(1, args.jobs)) as pool:
        outcomes = pool.map(run_job, todo, chunksize=1)
    results = {o.job: o for o in outcomes}
    check(results)
    text = render(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out} ({len(outcomes)} compiles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
