"""Design-space sweep: compile one model for every combination of array size, low-rank rank,
low-rank groups and mapping strategy, and tabulate cycles, energy, latency, reconstruction
error and (optionally) accuracy -- the experiments of the low-rank IMC paper.

How it runs. The model is imported once. The pipeline of `imcc.compiler.compile_graph` is
split in two stages:

* the *front* (fold-bn, lowrank, quantize) depends only on the low-rank setting
  (rank, groups) and the bit widths, not on the array size or the mapping, so it runs once
  per (rank, groups) -- including the quantize pass's calibration, which must be redone for
  each factorization because the factorized layers and their activations differ;
* the *back* (map, emit, energy, report) runs once per (target, mapping) on a copy of the
  front's graph.

Both stages use the very pass objects and functions `compile_graph` uses, so every row
equals what `imcc compile` reports for the same options (a test compares them). Front tasks
run in a process pool, heaviest first; each finished front fans out into its back tasks.
Rows come back in the order of the option lists (targets, then ranks, groups, mappings),
whatever the number of processes.

Accuracy (`--data`): the network a row maps is the front's graph; the map pass only
chooses layouts, so `compiled.onnx` is the same for every target and mapping of one
(rank, groups). Its top-1 accuracy is measured once per (rank, groups) with onnxruntime
(`top1_compiled_ort`); the functional simulator agrees with onnxruntime on compiled.onnx by
construction (checked by `imcc simulate` and its tests).

Deduplication: rank ``none`` leaves every layer uncompressed, so the groups setting has no
effect; it yields one row per (target, mapping) with groups 1.

The rows and every output made of them (CSV, terminal table, the Pareto plot page) are in
`imcc.report.sweep`.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imcc.analysis.energy import analyze_energy
from imcc.analysis.tech import TechProfile, load_tech
from imcc.compiler import lowrank_active, lowrank_record, resolve_model
from imcc.dataset import Dataset, load_npz
from imcc.errors import DataError, UsageError
from imcc.frontend import import_model
from imcc.ir import Graph
from imcc.ir.onnx_export import serialize
from imcc.passes.fold_bn import FoldBatchNorm
from imcc.passes.lowrank import LowRankPass, parse_rank
from imcc.passes.map import MapPass
from imcc.passes.quantize import QuantizePass
from imcc.report.build import build_report
from imcc.report.model import Report
from imcc.report.sweep import SweepResult, SweepRow, SweepSettings
from imcc.targets.cost import MappingRequest
from imcc.targets.crossbar import CrossbarTarget
from imcc.targets.emit import emit_program

Progress = Callable[[int, int, str], None]  # (rows done, rows total, what is running)


# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class SweepSpec:
    """Everything a sweep needs; list options hold the user's spellings (validated by
    `plan_sweep`)."""

    model: str
    targets: tuple[str, ...]
    ranks: tuple[str, ...]
    groups: tuple[str, ...]
    mappings: tuple[str, ...]
    weight_bits: int = 4
    cell_bits: int = 1
    act_bits: int = 4
    dac_bits: int = 1
    adc_bits: int = 8
    tech: str = "isaac"
    quantize: bool = True
    first_last_bits: int | None = None
    include_first_last: bool = False
    calib: Path | None = None
    calib_limit: int = 256
    data: Path | None = None
    limit: int | None = None
    skip: int = 0


@dataclass(frozen=True)
class Config:
    """One row of the sweep: canonical spellings (e.g. rank ``m/2``, target ``64x64``)."""

    index: int
    target: CrossbarTarget
    rank: str
    groups: int
    mapping: str

    @property
    def lowrank_key(self) -> tuple[str, int]:
        return self.rank, self.groups


def split_list(text: str, option: str) -> tuple[str, ...]:
    """Split a comma-separated option value; empty items are a usage error."""
    items = tuple(s.strip() for s in text.split(","))
    if not text.strip() or any(not s for s in items):
        raise UsageError(f"{option} {text!r}: expected a comma-separated list with no empty "
                         f"items", hint=f"e.g. {option} {_EXAMPLES.get(option, 'a,b')}")
    return items


_EXAMPLES = {"--targets": "64x64,128x128", "--ranks": "none,m/2,m/4", "--groups": "1,2,4",
             "--mappings": "im2col,auto"}


def _unique(values: Sequence[Any], spellings: Sequence[str], option: str) -> None:
    seen: dict[Any, str] = {}
    for v, s in zip(values, spellings, strict=True):
        if v in seen:
            raise UsageError(f"{option}: {s!r} repeats {seen[v]!r}",
                             hint="list each value once")
        seen[v] = s


def _parse_groups(spec: str) -> int:
    try:
        g = int(spec)
    except ValueError:
        raise UsageError(f"--groups: {spec!r} is not an integer",
                         hint="e.g. --groups 1,2,4") from None
    if g < 1:
        raise UsageError(f"--groups: {g} must be >= 1", hint="e.g. --groups 1,2,4")
    return g


def plan_sweep(spec: SweepSpec) -> list[Config]:
    """Validate every option and return the configurations in row order. Nothing is
    compiled here, so a bad value fails before any work."""
    if not (spec.targets and spec.ranks and spec.groups and spec.mappings):
        raise UsageError("--targets, --ranks, --groups and --mappings each need at least "
                         "one value")
    targets: list[CrossbarTarget] = []
    for t in spec.targets:
        rows, cols = CrossbarTarget.parse_shape(t)
        targets.append(CrossbarTarget(rows, cols, spec.weight_bits, spec.cell_bits,
                                      spec.act_bits, spec.dac_bits, spec.adc_bits))
    _unique([(t.rows, t.cols) for t in targets], spec.targets, "--targets")
    ranks = [str(parse_rank(r)) for r in spec.ranks]
    _unique(ranks, spec.ranks, "--ranks")
    groups = [_parse_groups(g) for g in spec.groups]
    _unique(groups, spec.groups, "--groups")
    mappings = [MappingRequest.parse(m.lower()).value for m in spec.mappings]
    _unique(mappings, spec.mappings, "--mappings")
    for r in ranks:
        for g in groups:
            LowRankPass(rank=r, groups=g, include_first_last=spec.include_first_last)
    if spec.first_last_bits is not None and not 2 <= spec.first_last_bits <= 16:
        raise UsageError(f"--first-last-bits must be in [2, 16], got {spec.first_last_bits}")
    if spec.calib_limit < 1:
        raise UsageError(f"--calib-limit must be >= 1, got {spec.calib_limit}")
    if spec.calib is not None and not spec.quantize:
        raise UsageError("--calib has no effect with --no-quantize",
                         hint="drop one of the two options")
    if spec.limit is not None and spec.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {spec.limit}")
    if spec.skip < 0:
        raise UsageError(f"--skip must be >= 0, got {spec.skip}")
    if spec.data is None and (spec.limit is not None or spec.skip):
        raise UsageError("--limit and --skip select evaluation inputs; they need --data")
    load_tech(spec.tech)

    configs: list[Config] = []
    for tgt in targets:
        for r in ranks:
            # Rank none compresses nothing, so every groups value is the same network.
            for g in ([1] if r == "none" else groups):
                for m in mappings:
                    configs.append(Config(len(configs), tgt, r, g, m))
    return configs


# ---------------------------------------------------------------------- the two stages


@dataclass(frozen=True)
class _FrontJob:
    graph: Graph
    rank: str
    groups: int
    include_first_last: bool
    quantize: bool
    weight_bits: int
    act_bits: int
    first_last_bits: int | None
    calib: np.ndarray | None
    eval_x: np.ndarray | None
    eval_labels: np.ndarray | None


@dataclass(frozen=True)
class _Front:
    """A graph after fold-bn, lowrank and quantize, and what the report needs about them."""

    key: tuple[str, int]
    graph: Graph
    lowrank: LowRankPass | None
    calibration: str | None
    top1: float | None


@dataclass(frozen=True)
class _BackJob:
    front: _Front
    config: Config
    tech: TechProfile
    tech_name: str
    model_name: str


def _run_front(job: _FrontJob) -> _Front:
    # The same passes, in the same order and with the same options, as compile_graph.
    graph = FoldBatchNorm().run(copy.deepcopy(job.graph))
    lowrank = LowRankPass(rank=job.rank, groups=job.groups,
                          include_first_last=job.include_first_last)
    active = lowrank_active(lowrank)
    if active:
        graph = lowrank.run(graph)
    calibration = None
    if job.quantize:
        quant = QuantizePass(weight_bits=job.weight_bits, act_bits=job.act_bits,
                             first_last_bits=job.first_last_bits, calib=job.calib)
        graph = quant.run(graph)
        calibration = quant.calibration
    top1 = None
    if job.eval_x is not None and job.eval_labels is not None:
        top1 = _ort_top1(graph, job.eval_x, job.eval_labels)
    return _Front((job.rank, job.groups), graph, lowrank if active else None, calibration,
                  top1)


def _ort_top1(graph: Graph, x: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of `graph` exported to ONNX (what compiled.onnx holds), run by
    onnxruntime with the session settings `imcc simulate` uses."""
    from imcc.sim.evaluate import ort_run, ort_session

    with tempfile.TemporaryDirectory(prefix="imcc-sweep-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(serialize(graph))
        y = ort_run(ort_session(path), x)
    return float(np.mean(y.reshape(len(y), -1).argmax(1) == labels))


def _run_back(job: _BackJob) -> SweepRow:
    # The back half of compile_graph: map, emit, energy, report -- on a private copy,
    # because the map pass annotates nodes in place and one front feeds several backs.
    cfg, front = job.config, job.front
    graph = MapPass(target=cfg.target, strategy=cfg.mapping).run(copy.deepcopy(front.graph))
    program = emit_program(graph, cfg.target, job.model_name)
    energy = analyze_energy(program, cfg.target, job.tech)
    report = build_report(program, cfg.target, energy, mapping=cfg.mapping,
                          tech=job.tech_name, calibration=front.calibration,
                          lowrank=None if front.lowrank is None
                          else lowrank_record(front.lowrank))
    return row_from_report(report, cfg, front.top1)


def row_from_report(report: Report, cfg: Config, top1: float | None) -> SweepRow:
    """One sweep row from a report. `mean_rel_error` averages the relative reconstruction
    error over factorized layers (each pair once, via its R half)."""
    errors = [float(la.rel_error) for la in report.layers
              if la.role == "R" and la.rel_error is not None]
    energy = report.energy
    return SweepRow(
        target=cfg.target.name, rank=cfg.rank, groups=cfg.groups, mapping=cfg.mapping,
        cycles=report.total_cycles, im2col_cycles=report.im2col_cycles,
        speedup=report.speedup, energy_pj=None if energy is None else energy.total_energy_pj,
        latency_ns=None if energy is None else energy.total_latency_ns,
        n_arrays=report.n_arrays, params=report.weight_params, factorized_layers=len(errors),
        mean_rel_error=sum(errors) / len(errors) if errors else None,
        top1_compiled_ort=top1)


# ---------------------------------------------------------------------------- the driver


def _load_data(spec: SweepSpec, graph: Graph) -> tuple[np.ndarray | None, Dataset | None]:
    name, shape = graph.inputs[0].name, graph.inputs[0].type.shape
    calib = None
    if spec.calib is not None:
        calib = load_npz(spec.calib, name, shape).take(spec.calib_limit).x
    data = None
    if spec.data is not None:
        data = load_npz(spec.data, name, shape)
        if data.labels is None:
            raise DataError(f"{spec.data}: no 'labels' array, so accuracy cannot be measured")
        if spec.skip:
            if spec.skip >= len(data):
                raise UsageError(f"--skip {spec.skip} leaves no inputs of {len(data)}")
            data = data.split(spec.skip)[1]
        if spec.limit is not None:
            data = data.take(spec.limit)
    return calib, data


def default_jobs() -> int:
    return os.cpu_count() or 1


def run_sweep(spec: SweepSpec, jobs: int | None = None,
              progress: Progress | None = None) -> SweepResult:
    """Run every configuration of `spec` on `jobs` processes (default: all cores; 1 runs
    in this process). Rows are in `plan_sweep` order whatever `jobs` is."""
    configs = plan_sweep(spec)
    jobs = default_jobs() if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs!r}")
    tech = load_tech(spec.tech)
    path = resolve_model(spec.model)
    graph = import_model(path, name=path.stem)
    if len(graph.inputs) != 1:
        raise UsageError(f"{path}: imcc sweep supports models with one input, this one has "
                         f"{len(graph.inputs)}")
    calib, data = _load_data(spec, graph)

    # One front per distinct (rank, groups), in first-use order; factorized fronts first
    # because their SVD and larger calibration dominate the run time.
    keys = list(dict.fromkeys(c.lowrank_key for c in configs))
    keys.sort(key=lambda k: k[0] == "none")
    front_jobs = [_FrontJob(graph, r, g, spec.include_first_last, spec.quantize,
                            spec.weight_bits, spec.act_bits, spec.first_last_bits, calib,
                            None if data is None else data.x,
                            None if data is None else data.labels) for r, g in keys]
    by_key: dict[tuple[str, int], list[Config]] = {}
    for c in configs:
        by_key.setdefault(c.lowrank_key, []).append(c)

    total = len(configs)
    rows: dict[int, SweepRow] = {}

    def report(note: str) -> None:
        if progress is not None:
            progress(len(rows), total, note)

    def backs(front: _Front) -> list[_BackJob]:
        return [_BackJob(front, c, tech, spec.tech, path.stem) for c in by_key[front.key]]

    report(f"calibrating {len(keys)} low-rank variant(s)" if spec.quantize
           else f"factorizing {len(keys)} low-rank variant(s)")
    float_top1: float | None = None
    if jobs == 1 or total == 1:
        for fj in front_jobs:
            front = _run_front(fj)
            for bj in backs(front):
                row = rows[bj.config.index] = _run_back(bj)
                report(_describe_row(row))
        if data is not None and data.labels is not None:
            float_top1 = _ort_top1(graph, data.x, data.labels)  # the imported float model
    else:
        float_top1 = _run_pool(front_jobs, backs, rows, min(jobs, total), report,
                               graph if data is not None else None, data)
    settings = SweepSettings(weight_bits=spec.weight_bits, cell_bits=spec.cell_bits,
                             act_bits=spec.act_bits, dac_bits=spec.dac_bits,
                             adc_bits=spec.adc_bits, tech=spec.tech, quantize=spec.quantize)
    return SweepResult(model=path.stem, settings=settings,
                       rows=[rows[c.index] for c in configs],
                       float_top1=float_top1,
                       eval_source=None if data is None else data.source,
                       calibration=_calibration_text(spec, calib))


def _run_pool(front_jobs: list[_FrontJob], backs: Callable[[_Front], list[_BackJob]],
              rows: dict[int, SweepRow], workers: int, report: Callable[[str], None],
              float_graph: Graph | None, data: Dataset | None) -> float | None:
    # "spawn": workers start from a clean interpreter, so no lock held by a thread of this
    # process (the progress bar's refresh thread, logging) can be inherited mid-acquire.
    ctx = multiprocessing.get_context("spawn")
    float_top1: float | None = None
    # future -> ("front", -1) | ("back", config index) | ("float", -1)
    pending: dict[Future[Any], tuple[str, int]] = {}
    with _single_threaded_math(), ProcessPoolExecutor(max_workers=workers,
                                                      mp_context=ctx) as pool:
        try:
            for fj in front_jobs:
                pending[pool.submit(_run_front, fj)] = ("front", -1)
            if float_graph is not None and data is not None and data.labels is not None:
                # The imported float model: the reference line of the plot.
                pending[pool.submit(_ort_top1, float_graph, data.x, data.labels)] = \
                    ("float", -1)
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                # Handle completions in submission order so progress notes are stable.
                order = list(pending)
                for fut in sorted(done, key=order.index):
                    kind, index = pending.pop(fut)
                    result = fut.result()
                    if kind == "front":
                        for bj in backs(result):
                            pending[pool.submit(_run_back, bj)] = ("back", bj.config.index)
                    elif kind == "back":
                        rows[index] = result
                        report(_describe_row(result))
                    else:
                        float_top1 = result
        except BaseException:
            # A failed configuration (or Ctrl-C) stops the sweep: drop what has not started.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return float_top1


@contextmanager
def _single_threaded_math() -> Iterator[None]:
    """Start worker processes with one BLAS/OpenMP thread each. The pool already uses
    every core; on top of it, each worker's BLAS threads busy-wait between the many small
    matrix products of calibration and steal the cores the other workers need (measured
    on a busy 2-core machine: a 20-configuration ResNet-20 sweep took 36 s, not 4-10 s).
    The variables are read when a worker starts, so they are set for the pool's lifetime
    and restored afterwards; a value the user set is kept."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    for k in _THREAD_VARS:
        os.environ.setdefault(k, "1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _describe_row(row: SweepRow) -> str:
    return f"{row.target} rank {row.rank} g{row.groups} {row.mapping}"


def _calibration_text(spec: SweepSpec, calib: np.ndarray | None) -> str | None:
    if not spec.quantize:
        return None
    if calib is None:
        return "synthetic (deterministic noise batch)"
    return f"{spec.calib} ({len(calib)} samples)"


__all__ = ["Config", "SweepSpec", "default_jobs", "plan_sweep", "row_from_report",
           "run_sweep", "split_list"]
