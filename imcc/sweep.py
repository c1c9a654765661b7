"""Design-space sweep: compile one model for every combination of array size, low-rank rank,
low-rank groups and mapping strategy, and tabulate cycles, energy, latency, reconstruction
error and (optionally) accuracy -- the experiments of the low-rank IMC paper.

Options. Every row is compiled with the `CompileOptions` that `imcc compile` would build
from the same flags (`imcc.compiler.options_from_flags`, the path the CLI takes): the row's
``--target``, ``--rank``, ``--groups`` and ``--mapping`` come from the sweep's lists, every
other compile option (``--layer-rank``, ``--policy``, ``--include-first-last``,
``--no-quantize``, ``--first-last-bits``, ``--calib``, the bit widths, ``--tech``) applies to
all rows. As in `imcc compile`, a rank ``none`` or groups ``1`` leaves a policy file's
values in force, and the row shows the rank and groups that take effect; two rows that come
out the same are a usage error. With ``--policy`` and no ``--ranks``/``--groups`` the sweep
uses the policy's rank and groups. With ``-p/--passes`` the pipeline fixes rank, groups and
mapping, so ``--ranks``, ``--groups`` and ``--mappings`` cannot be given: the sweep varies
only the targets.

How it runs. The model is imported once. Each row's pipeline is split in two stages at its
map pass (`imcc.compiler.split_at_map`):

* the *front* (the passes before map: fold-bn, lowrank, quantize) reads no array size, so
  it runs once per distinct front (rows are grouped by the front's pipeline text) --
  including the quantize pass's calibration, which must be redone for each factorization
  because the factorized layers and their activations differ;
* the *back* (map, then `imcc.compiler.finish`: verify, emit, energy, report) runs once per
  row on a copy of the front's graph.

Both stages are the compiler's own (`imcc.compiler.run_passes` and `finish`), so every row
equals what `imcc compile` reports for the same options (a test compares them). Front tasks
run in a process pool, heaviest first; each finished front fans out into its back tasks.
Rows come back in the order of the option lists (targets, then ranks, groups, mappings),
whatever the number of processes.

Accuracy (`--data`): the network a row maps is the front's graph; the map pass only
chooses layouts, so `compiled.onnx` is the same for every target and mapping of one
(rank, groups). Its top-1 accuracy is measured once per (rank, groups) with onnxruntime
(`top1_compiled_ort`); the functional simulator agrees with onnxruntime on compiled.onnx by
construction (checked by `imcc simulate` and its tests).

Deduplication: a rank that compresses nothing (``none``, with no per-layer rank) leaves
every layer uncompressed, so the groups setting has no effect; it yields one row per
(target, mapping) with groups 1.
"""

from __future__ import annotations

import copy
import csv
import html
import io
import math
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from imcc.analysis.tech import TechProfile, load_tech
from imcc.compiler import (
    CompileOptions,
    finish,
    options_from_flags,
    parse_layer_ranks,
    resolve_model,
    run_passes,
    split_at_map,
)
from imcc.dataset import Dataset, load_npz
from imcc.errors import DataError, UsageError
from imcc.frontend import import_model
from imcc.ir import Graph
from imcc.ir.onnx_export import serialize
from imcc.ir.records import CalibrationRecord, Record
from imcc.passes.base import CompileContext, Pass
from imcc.passes.lowrank import LowRankPass, parse_rank
from imcc.passes.map import MapPass
from imcc.passes.pipeline import pipeline_spec
from imcc.report.render import BASE_CSS
from imcc.targets.cost import MappingRequest
from imcc.targets.crossbar import CrossbarTarget

TOP1_COLUMN = "top1_compiled_ort"
BASE_COLUMNS: tuple[str, ...] = (
    "target", "rank", "groups", "mapping", "cycles", "im2col_cycles", "speedup", "energy_pj",
    "latency_ns", "n_arrays", "params", "factorized_layers", "mean_rel_error")

Progress = Callable[[int, int, str], None]  # (rows done, rows total, what is running)


# ------------------------------------------------------------------------------ the plan


DEFAULT_RANKS = ("none", "m/2", "m/4")
DEFAULT_GROUPS = ("1", "4")
DEFAULT_MAPPINGS = ("im2col", "auto")


@dataclass(frozen=True)
class SweepSpec:
    """Everything a sweep needs; list options hold the user's spellings (validated by
    `plan_sweep`). ``ranks``, ``groups`` and ``mappings`` are None when not given: the
    defaults above, or with ``policy`` the policy's rank and groups; with ``passes`` they
    must stay None (see the module docstring). The other fields are the compile options
    of `imcc compile`, applied to every row."""

    model: str
    targets: tuple[str, ...]
    ranks: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None
    mappings: tuple[str, ...] | None = None
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
    layer_rank: tuple[str, ...] = ()   # --layer-rank NAME=SPEC items
    policy: Path | None = None         # --policy file
    passes: str | None = None          # -p/--passes pipeline text
    verify_each: bool = False          # run the IR verifier after every pass (--debug)


@dataclass(frozen=True)
class Config:
    """One row of the sweep: canonical spellings (e.g. rank ``m/2``, target ``64x64``) of
    the rank, groups and mapping that take effect, and the row's compile options (without
    the calibration data, which `run_sweep` loads once)."""

    index: int
    target: CrossbarTarget
    rank: str
    groups: int
    mapping: str
    options: CompileOptions = field(compare=False, repr=False)

    @property
    def label(self) -> tuple[str, str, int, str]:
        return self.target.name, self.rank, self.groups, self.mapping

    @property
    def stages(self) -> tuple[list[Pass], list[Pass]]:
        """The row's pipeline split at its map pass: (front, back)."""
        return split_at_map(self.options.passes())

    @property
    def front_key(self) -> str:
        """Rows with equal front pipelines share one front run."""
        return pipeline_spec(self.stages[0])


@dataclass(frozen=True)
class SweepRow:
    target: str
    rank: str
    groups: int
    mapping: str
    cycles: int
    im2col_cycles: int
    speedup: float | None
    energy_pj: float | None
    latency_ns: float | None
    n_arrays: int
    params: int
    factorized_layers: int
    mean_rel_error: float | None  # mean over factorized layers; None when none is factorized
    top1_compiled_ort: float | None = None

    def to_dict(self, with_top1: bool) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if not with_top1:
            del d[TOP1_COLUMN]
        return d


@dataclass(frozen=True)
class SweepResult:
    model: str
    spec: SweepSpec
    rows: list[SweepRow]
    float_top1: float | None  # the imported float model on the same data (reference line)
    eval_source: str | None    # the evaluation data, e.g. "data.npz[0:100]"
    calibration: str | None    # what the quantize pass calibrated on

    @property
    def with_top1(self) -> bool:
        return self.eval_source is not None


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


def _labels(opts: CompileOptions) -> tuple[str, int, str]:
    """(rank, groups, mapping) that take effect with `opts` (from the pipeline's own passes
    under -p); rank "none" and groups 1 when nothing is factorized."""
    passes = opts.passes()
    lowrank = next((p for p in passes if isinstance(p, LowRankPass) and p.active), None)
    mapper = next(p for p in passes if isinstance(p, MapPass))
    if lowrank is None:
        return "none", 1, mapper.strategy
    return str(parse_rank(lowrank.rank)), lowrank.groups, mapper.strategy


def plan_sweep(spec: SweepSpec) -> list[Config]:
    """Validate every option and return the configurations in row order. Nothing is
    compiled here, so a bad value fails before any work."""
    if spec.passes is not None:
        given = [flag for flag, v in (("--ranks", spec.ranks), ("--groups", spec.groups),
                                      ("--mappings", spec.mappings)) if v is not None]
        if given:
            raise UsageError(f"--passes fixes the rank, groups and mapping of every row; "
                             f"{', '.join(given)} cannot be combined with it (the sweep then "
                             "varies only --targets)",
                             hint="set them in the pipeline, e.g. lowrank{rank=m/2,groups=4}")
    with_policy = spec.policy is not None
    rank_list = spec.ranks if spec.ranks is not None else \
        (("none",) if with_policy or spec.passes is not None else DEFAULT_RANKS)
    group_list = spec.groups if spec.groups is not None else \
        (("1",) if with_policy or spec.passes is not None else DEFAULT_GROUPS)
    mapping_list = spec.mappings if spec.mappings is not None else \
        (("auto",) if spec.passes is not None else DEFAULT_MAPPINGS)
    if not (spec.targets and rank_list and group_list and mapping_list):
        raise UsageError("--targets, --ranks, --groups and --mappings each need at least "
                         "one value")
    targets: list[CrossbarTarget] = []
    for t in spec.targets:
        rows, cols = CrossbarTarget.parse_shape(t)
        targets.append(CrossbarTarget(rows, cols, spec.weight_bits, spec.cell_bits,
                                      spec.act_bits, spec.dac_bits, spec.adc_bits))
    _unique([(t.rows, t.cols) for t in targets], spec.targets, "--targets")
    ranks = [str(parse_rank(r)) for r in rank_list]
    _unique(ranks, rank_list, "--ranks")
    groups = [_parse_groups(g) for g in group_list]
    _unique(groups, group_list, "--groups")
    mappings = [MappingRequest.parse(m.lower()).value for m in mapping_list]
    _unique(mappings, mapping_list, "--mappings")
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
    shared: dict[str, Any] = dict(
        layer_ranks=parse_layer_ranks(spec.layer_rank),
        policy=None if spec.policy is None else LowRankPass.policy_from_file(spec.policy),
        include_first_last=spec.include_first_last, quantize=spec.quantize,
        first_last_bits=spec.first_last_bits, tech=spec.tech, passes=spec.passes,
        verify_each=spec.verify_each)

    def options(tgt: CrossbarTarget, rank: str, groups: int, mapping: str) -> CompileOptions:
        # -p rows take rank, groups and mapping from the pipeline: pass the flag defaults.
        if spec.passes is not None:
            return options_from_flags(target=tgt, **shared)
        return options_from_flags(target=tgt, rank=rank, groups=groups, mapping=mapping,
                                  **shared)

    configs: list[Config] = []
    seen: dict[tuple[str, str, int, str], tuple[str, int]] = {}
    for tgt in targets:
        for r in ranks:
            # A rank that compresses nothing makes every groups value the same network.
            active = options(tgt, r, 1, mappings[0]).lowrank.active
            for g in (groups if active else [1]):
                for m in mappings:
                    opts = options(tgt, r, g, m)
                    cfg = Config(len(configs), tgt, *_labels(opts), options=opts)
                    if cfg.label in seen:
                        raise UsageError(
                            f"--ranks {seen[cfg.label][0]} and {r}, --groups "
                            f"{seen[cfg.label][1]} and {g} give the same configuration "
                            f"(rank {cfg.rank}, groups {cfg.groups}; a rank none or groups 1 "
                            "keeps the policy's)", hint="list each configuration once")
                    seen[cfg.label] = (r, g)
                    configs.append(cfg)
    return configs


# ---------------------------------------------------------------------- the two stages


@dataclass(frozen=True)
class _FrontJob:
    key: str
    graph: Graph
    passes: tuple[Pass, ...]
    ctx: CompileContext
    verify_each: bool
    eval_x: np.ndarray | None
    eval_labels: np.ndarray | None


@dataclass(frozen=True)
class _Front:
    """A graph after the passes before map, and their records."""

    key: str
    graph: Graph
    records: tuple[Record, ...]
    top1: float | None


@dataclass(frozen=True)
class _BackJob:
    front: _Front
    config: Config
    tech: TechProfile
    model_name: str


def _run_front(job: _FrontJob) -> _Front:
    # The compiler's own pass runner, on a private copy of the imported graph.
    graph, records = run_passes(copy.deepcopy(job.graph), job.passes, job.ctx,
                                job.verify_each)
    top1 = None
    if job.eval_x is not None and job.eval_labels is not None:
        top1 = _ort_top1(graph, job.eval_x, job.eval_labels)
    return _Front(job.key, graph, records, top1)


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
    # The back half of compile_graph: map, then verify, emit, energy and report -- on a
    # private copy, because the map pass annotates nodes in place and one front feeds
    # several backs. The map pass reads only the target from the context.
    cfg, front = job.config, job.front
    opts = cfg.options
    front_passes, back_passes = cfg.stages
    graph, records = run_passes(copy.deepcopy(front.graph), back_passes,
                                CompileContext(target=cfg.target), opts.verify_each)
    _, report = finish(graph, [*front_passes, *back_passes], front.records + records,
                       cfg.target, opts.tech, job.model_name, tech_profile=job.tech)
    return row_from_report(report, cfg, front.top1)


def row_from_report(report: dict[str, Any], cfg: Config, top1: float | None) -> SweepRow:
    """One sweep row from a report.json dict. `mean_rel_error` averages the relative
    reconstruction error over factorized layers (each pair once, via its R half)."""
    errors = [float(la["rel_error"]) for la in report["layers"]
              if la.get("role") == "R" and la.get("rel_error") is not None]
    return SweepRow(
        target=cfg.target.name, rank=cfg.rank, groups=cfg.groups, mapping=cfg.mapping,
        cycles=int(report["total_cycles"]), im2col_cycles=int(report["im2col_cycles"]),
        speedup=report.get("speedup"), energy_pj=report.get("total_energy_pj"),
        latency_ns=report.get("total_latency_ns"), n_arrays=int(report["n_arrays"]),
        params=int(report["weight_params"]), factorized_layers=len(errors),
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

    # One front per distinct front pipeline, in first-use order; factorized fronts first
    # because their SVD and larger calibration dominate the run time. The front's context
    # holds the first row's target: the passes before map read no array size (the rows
    # share the bit widths).
    by_key: dict[str, list[Config]] = {}
    for c in configs:
        by_key.setdefault(c.front_key, []).append(c)
    keys = sorted(by_key, key=lambda k: by_key[k][0].rank == "none")
    front_jobs = [_FrontJob(k, graph, tuple(by_key[k][0].stages[0]),
                            CompileContext(target=by_key[k][0].target, calib=calib),
                            spec.verify_each,
                            None if data is None else data.x,
                            None if data is None else data.labels) for k in keys]

    total = len(configs)
    rows: dict[int, SweepRow] = {}

    def report(note: str) -> None:
        if progress is not None:
            progress(len(rows), total, note)

    def backs(front: _Front) -> list[_BackJob]:
        return [_BackJob(front, c, tech, path.stem) for c in by_key[front.key]]

    report(f"calibrating {len(keys)} low-rank variant(s)" if spec.quantize
           else f"factorizing {len(keys)} low-rank variant(s)")
    float_top1: float | None = None
    fronts: list[_Front] = []
    if jobs == 1 or total == 1:
        for fj in front_jobs:
            front = _run_front(fj)
            fronts.append(front)
            for bj in backs(front):
                row = rows[bj.config.index] = _run_back(bj)
                report(_describe_row(row))
        if data is not None and data.labels is not None:
            float_top1 = _ort_top1(graph, data.x, data.labels)  # the imported float model
    else:
        float_top1 = _run_pool(front_jobs, backs, rows, min(jobs, total), report,
                               graph if data is not None else None, data, fronts)
    calibrated = any(isinstance(r, CalibrationRecord) for f in fronts for r in f.records)
    # A -p pipeline may leave out quantize: the result's spec says what the rows ran.
    ran = spec if calibrated == spec.quantize else replace(spec, quantize=calibrated)
    return SweepResult(model=path.stem, spec=ran, rows=[rows[c.index] for c in configs],
                       float_top1=float_top1,
                       eval_source=None if data is None else data.source,
                       calibration=_calibration_text(spec, calib) if calibrated else None)


def _run_pool(front_jobs: list[_FrontJob], backs: Callable[[_Front], list[_BackJob]],
              rows: dict[int, SweepRow], workers: int, report: Callable[[str], None],
              float_graph: Graph | None, data: Dataset | None,
              fronts: list[_Front]) -> float | None:
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
                        fronts.append(result)
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


def _calibration_text(spec: SweepSpec, calib: np.ndarray | None) -> str:
    if calib is None:
        return "synthetic (deterministic noise batch)"
    return f"{spec.calib} ({len(calib)} samples)"


# ------------------------------------------------------------------------------- outputs


def columns(result: SweepResult) -> tuple[str, ...]:
    return BASE_COLUMNS + ((TOP1_COLUMN,) if result.with_top1 else ())


def rows_as_dicts(result: SweepResult) -> list[dict[str, Any]]:
    return [row.to_dict(result.with_top1) for row in result.rows]


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)  # shortest round-tripping form: exact and byte-stable
    return str(v)


def to_csv(result: SweepResult) -> str:
    """One row per configuration; energies in pJ, latency in ns, errors and accuracy as
    fractions; an empty cell means "not applicable" (e.g. no factorized layer)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = columns(result)
    w.writerow(cols)
    for d in rows_as_dicts(result):
        w.writerow([_csv_value(d[c]) for c in cols])
    return buf.getvalue()


# The CSV keeps base units (pJ, ns); a terminal table reads better in uJ and ms.
_TERMINAL_HEADERS = {"energy_pj": "energy_uJ", "latency_ns": "latency_ms",
                     "factorized_layers": "factorized", "im2col_cycles": "im2col"}


def _terminal_cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column in ("energy_pj", "latency_ns"):
        return f"{value * 1e-6:,.3f}"
    if column == "speedup":
        return f"{value:.2f}x"
    if column == "mean_rel_error":
        return f"{value:.4f}"
    if column == TOP1_COLUMN:
        return f"{value:.2%}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def terminal_table(result: SweepResult) -> tuple[list[str], list[list[str]]]:
    """(headers, formatted cells) for a terminal table of the rows."""
    cols = columns(result)
    return ([_TERMINAL_HEADERS.get(c, c) for c in cols],
            [[_terminal_cell(c, d[c]) for c in cols] for d in rows_as_dicts(result)])


def plot_values(result: SweepResult) -> tuple[list[float], bool, str]:
    """(y per row, higher is better, axis title) for the Pareto plot: accuracy when the
    sweep measured it, else the mean reconstruction error (0 for an uncompressed network,
    which reproduces the weights exactly)."""
    if result.with_top1:
        return ([float(r.top1_compiled_ort or 0.0) for r in result.rows], True,
                "top-1 accuracy of compiled.onnx (higher is better)")
    return ([0.0 if r.mean_rel_error is None else r.mean_rel_error for r in result.rows],
            False, "mean relative weight error (lower is better)")


def pareto_front(cycles: Sequence[float], values: Sequence[float],
                 higher_is_better: bool) -> list[bool]:
    """Whether each point is Pareto-optimal: no other point has fewer-or-equal cycles and a
    better-or-equal value with at least one of the two strictly better."""
    sign = -1.0 if higher_is_better else 1.0
    pts = [(float(c), sign * float(v)) for c, v in zip(cycles, values, strict=True)]
    return [not any(c2 <= c and v2 <= v and (c2 < c or v2 < v) for c2, v2 in pts)
            for c, v in pts]


_MARKERS: tuple[tuple[str, str], ...] = (
    ("circle", "#1f77b4"), ("square", "#d62728"), ("triangle", "#2ca02c"),
    ("diamond", "#9467bd"), ("cross", "#ff7f0e"))


def _marker(shape: str, x: float, y: float, r: float, fill: str, extra: str) -> str:
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{fill}" {extra}/>'
    if shape == "square":
        s = r * 0.9
        return (f'<rect x="{x - s:.1f}" y="{y - s:.1f}" width="{2 * s:.1f}" '
                f'height="{2 * s:.1f}" fill="{fill}" {extra}/>')
    if shape == "triangle":
        pts = [(x, y - r * 1.15), (x - r * 1.1, y + r * 0.8), (x + r * 1.1, y + r * 0.8)]
    elif shape == "diamond":
        pts = [(x, y - r * 1.25), (x + r * 1.05, y), (x, y + r * 1.25), (x - r * 1.05, y)]
    else:  # cross: a plus sign drawn as one polygon, so fill and outline work alike
        a, b = r * 0.4, r * 1.1
        pts = [(x - a, y - b), (x + a, y - b), (x + a, y - a), (x + b, y - a), (x + b, y + a),
               (x + a, y + a), (x + a, y + b), (x - a, y + b), (x - a, y + a), (x - b, y + a),
               (x - b, y - a), (x - a, y - a)]
    coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
    return f'<polygon points="{coords}" fill="{fill}" {extra}/>'


def _nice_step(span: float, max_ticks: int) -> float:
    rough = span / max_ticks
    exp = 10.0 ** math.floor(math.log10(rough))
    return next(m * exp for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * exp >= rough * (1 - 1e-9))


def _linear_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    step = _nice_step(hi - lo, max_ticks)
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    k = first
    while k * step <= hi * (1 + 1e-12) + 1e-12:
        ticks.append(round(k * step, 12))
        k += 1
    return ticks


def _log_axis(a: float, b: float) -> tuple[list[float], float, float]:
    """Ticks (values, not logs) and the axis range for data in [a, b] on a log axis. The
    range is widened to the nearest ticks outside the data, so every point sits between
    labelled ticks; of the tick sets 10^k, {1,2,5}x10^k and {1..9}x10^k giving 3 to 8
    ticks, the one with the tightest range wins (the coarser one on a tie). A range too
    narrow for any gets linear ticks."""
    best: tuple[float, int, list[float]] | None = None
    for mantissas in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        grid = [m * 10.0 ** k for k in range(math.floor(math.log10(a)) - 1,
                                             math.ceil(math.log10(b)) + 2) for m in mantissas]
        lo = max(v for v in grid if v <= a * (1 + 1e-12))
        hi = min(v for v in grid if v >= b * (1 - 1e-12))
        ticks = [v for v in grid if lo <= v <= hi]
        if 3 <= len(ticks) <= 8:
            cand = (math.log10(hi / lo), len(ticks), ticks)
            if best is None or cand[:2] < best[:2]:
                best = cand
    if best is not None:
        return best[2], best[2][0], best[2][-1]
    decades = [10.0 ** k for k in range(math.floor(math.log10(a)), math.ceil(math.log10(b)) + 1)]
    if len(decades) > 8:  # many decades: every n-th one
        step = math.ceil((len(decades) - 1) / 7)
        ticks = decades[::step]
        return ticks, ticks[0], max(ticks[-1], b)
    lo, hi = (a * 0.97, b * 1.03) if b > a else (a * 0.9, a * 1.1)
    return [t for t in _linear_ticks(lo, hi, 5) if lo <= t <= hi and t > 0], lo, hi


def _cycles_text(v: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def _value_text(v: float, accuracy: bool) -> str:
    return f"{100 * v:.1f}%" if accuracy else f"{v:.3g}"


def _config_text(row: SweepRow) -> str:
    lr = "uncompressed" if row.rank == "none" else f"rank {row.rank}, {row.groups} groups"
    return f"{row.target}, {lr}, {row.mapping}"


_PLOT_CSS = BASE_CSS + """
tr.front td { background: #fff8e1; }
footer { margin-top: 2em; color: #888; font-size: 0.85em; }
"""


def _front_positions(result: SweepResult, ys: list[float], front: list[bool]
                     ) -> dict[int, int]:
    """Row index -> number of its Pareto-optimal position, numbered by increasing cycles.
    Rows at the same (cycles, value) -- e.g. auto choosing exactly what vw-sdk chose --
    share a number, so each plotted position gets one label."""
    positions = sorted({(result.rows[i].cycles, ys[i]) for i, f in enumerate(front) if f})
    number = {pos: n for n, pos in enumerate(positions, start=1)}
    return {i: number[(result.rows[i].cycles, ys[i])] for i, f in enumerate(front) if f}


def _svg_scatter(result: SweepResult, ys: list[float], higher: bool, y_title: str,
                 numbers: dict[int, int]) -> str:
    rows = result.rows
    accuracy = result.with_top1
    width, height = 980.0, 560.0
    left, right, top, bottom = 86.0, 740.0, 24.0, 490.0  # plot area; legend right of it
    xs = [math.log10(max(r.cycles, 1)) for r in rows]
    x_ticks, t_lo, t_hi = _log_axis(10 ** min(xs), 10 ** max(xs))
    margin = 0.03 * max(math.log10(t_hi / t_lo), 0.01)  # keep edge markers off the frame
    x_lo, x_hi = math.log10(t_lo) - margin, math.log10(t_hi) + margin
    y_all = ys + ([result.float_top1] if result.float_top1 is not None else [])
    y_lo, y_hi = min(y_all), max(y_all)
    y_pad = max(0.06 * (y_hi - y_lo), 0.01 if accuracy else 0.005)
    # Errors and accuracies are never negative (nor accuracies above 1): the padding keeps
    # points off the frame without inventing ticks outside the possible range.
    y_lo, y_hi = y_lo - y_pad, y_hi + y_pad
    if accuracy:
        y_hi = min(y_hi, 1.0 + 0.04 * (y_hi - y_lo))
    if y_lo < 0:
        y_lo = -0.04 * (y_hi - max(y_lo, 0.0))

    def px(lx: float) -> float:
        return left + (lx - x_lo) / (x_hi - x_lo) * (right - left)

    def py(v: float) -> float:
        return bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - top)

    e = html.escape
    out = [f'<svg role="img" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="system-ui, sans-serif" '
           f'font-size="12">',
           f"<title>{e(result.model)}: {e(y_title)} vs computing cycles</title>",
           f'<rect x="{left:.1f}" y="{top:.1f}" width="{right - left:.1f}" '
           f'height="{bottom - top:.1f}" fill="#fcfcfd" stroke="#c9ced4"/>']
    for t in x_ticks:
        x = px(math.log10(t))
        out.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" '
                   f'stroke="#e6e9ed"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 18:.1f}" text-anchor="middle" '
                   f'fill="#444">{e(_cycles_text(t))}</text>')
    for t in _linear_ticks(y_lo, y_hi):
        if not (y_lo <= t <= y_hi and t >= 0 and (t <= 1 or not accuracy)):
            continue
        y = py(t)
        out.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" '
                   f'stroke="#e6e9ed"/>')
        out.append(f'<text x="{left - 8:.1f}" y="{y + 4:.1f}" text-anchor="end" '
                   f'fill="#444">{e(_value_text(t, accuracy))}</text>')
    out.append(f'<text x="{(left + right) / 2:.1f}" y="{bottom + 42:.1f}" '
               f'text-anchor="middle" fill="#222">computing cycles (log scale, lower is '
               f'better)</text>')
    out.append(f'<text transform="translate({left - 58:.1f} {(top + bottom) / 2:.1f}) '
               f'rotate(-90)" text-anchor="middle" fill="#222">{e(y_title)}</text>')

    if result.float_top1 is not None:
        y = py(result.float_top1)
        out.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" '
                   f'stroke="#888" stroke-dasharray="2 3"/>')

    # One entry per numbered position, by increasing cycles.
    spots = sorted({(n, rows[i].cycles, ys[i]) for i, n in numbers.items()})
    # The front as a staircase: past an optimal point the best reachable value stays that
    # of the cheaper point until the next optimal point's cycle count.
    if len(spots) > 1:
        pts: list[str] = []
        for k, (_n, c, v) in enumerate(spots):
            x = px(math.log10(max(c, 1)))
            if k:
                pts.append(f"{x:.1f},{py(spots[k - 1][2]):.1f}")
            pts.append(f"{x:.1f},{py(v):.1f}")
        out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="#333" '
                   f'stroke-width="1.2" stroke-dasharray="5 3"/>')
    for _n, c, v in spots:  # halos under the optimal markers
        out.append(f'<circle cx="{px(math.log10(max(c, 1))):.1f}" cy="{py(v):.1f}" r="11" '
                   f'fill="#ffc107" fill-opacity="0.45"/>')

    # Hollow markers: configurations at the same position (e.g. vw-sdk and auto choosing
    # the same windows) stay visible as overlapping outlines of different shapes.
    mappings = list(dict.fromkeys(r.mapping for r in rows))
    style = {m: _MARKERS[k % len(_MARKERS)] for k, m in enumerate(mappings)}
    for i, r in enumerate(rows):
        shape, color = style[r.mapping]
        width_ = "2.2" if i in numbers else "1.4"
        extra = f'fill-opacity="0" stroke="{color}" stroke-width="{width_}"'
        tip = f"{_config_text(r)}: {r.cycles:,} cycles, {_value_text(ys[i], accuracy)}"
        mark = _marker(shape, px(xs[i]), py(ys[i]), 5.0, "#fff", extra)
        out.append(f"<g><title>{e(tip)}</title>{mark}</g>")
    # Labels away from the staircase's next point: it lies up-right for accuracy
    # (label below) and down-right for error (label above).
    dy = 17.0 if higher else -9.0
    for n, c, v in spots:
        out.append(f'<text x="{px(math.log10(max(c, 1))) + 9:.1f}" y="{py(v) + dy:.1f}" '
                   f'font-size="11" font-weight="600" fill="#111" stroke="#fff" '
                   f'stroke-width="3" paint-order="stroke">{n}</text>')

    # legend
    lx, ly = right + 22, top + 10
    out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-weight="600">mapping</text>')
    for m in mappings:
        ly += 22
        shape, color = style[m]
        out.append(_marker(shape, lx + 7, ly - 4, 5.0, "#fff",
                           f'fill-opacity="0" stroke="{color}" stroke-width="1.8"'))
        out.append(f'<text x="{lx + 20:.1f}" y="{ly:.1f}">{e(m)}</text>')
    ly += 30
    out.append(f'<circle cx="{lx + 7:.1f}" cy="{ly - 4:.1f}" r="10" fill="#ffc107" '
               f'fill-opacity="0.45"/>')
    out.append(f'<text x="{lx + 24:.1f}" y="{ly:.1f}">Pareto-optimal (numbered)</text>')
    ly += 24
    out.append(f'<line x1="{lx:.1f}" y1="{ly - 4:.1f}" x2="{lx + 14:.1f}" y2="{ly - 4:.1f}" '
               f'stroke="#333" stroke-width="1.2" stroke-dasharray="5 3"/>')
    out.append(f'<text x="{lx + 24:.1f}" y="{ly:.1f}">Pareto front</text>')
    if result.float_top1 is not None:
        ly += 22
        out.append(f'<line x1="{lx:.1f}" y1="{ly - 4:.1f}" x2="{lx + 14:.1f}" '
                   f'y2="{ly - 4:.1f}" stroke="#888" stroke-dasharray="2 3"/>')
        out.append(f'<text x="{lx + 24:.1f}" y="{ly:.1f}">float model '
                   f'{e(_value_text(result.float_top1, True))}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _table(result: SweepResult, order: Sequence[int], numbers: dict[int, int]) -> str:
    e = html.escape
    head = ["#", "target", "rank", "groups", "mapping", "cycles", "im2col cycles", "speedup",
            "energy (uJ)", "latency (ms)", "arrays", "params", "mean rel. error"]
    if result.with_top1:
        head.append("top-1 (compiled, ORT)")
    lines = ["<table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"]
    for i in order:
        r = result.rows[i]

        def num(text: str) -> str:
            return f'<td class="n">{e(text)}</td>'

        cells = [num(str(numbers[i]) if i in numbers else ""), f"<td>{e(r.target)}</td>",
                 f"<td>{e(r.rank)}</td>", num(str(r.groups)), f"<td>{e(r.mapping)}</td>",
                 num(f"{r.cycles:,}"), num(f"{r.im2col_cycles:,}"),
                 num("-" if r.speedup is None else f"{r.speedup:.2f}x"),
                 num("-" if r.energy_pj is None else f"{r.energy_pj * 1e-6:,.3f}"),
                 num("-" if r.latency_ns is None else f"{r.latency_ns * 1e-6:,.3f}"),
                 num(f"{r.n_arrays:,}"), num(f"{r.params:,}"),
                 num("-" if r.mean_rel_error is None else f"{r.mean_rel_error:.4f}")]
        if result.with_top1:
            cells.append(num("-" if r.top1_compiled_ort is None
                             else f"{100 * r.top1_compiled_ort:.1f}%"))
        cls = ' class="front"' if i in numbers else ""
        lines.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _y_note(higher: bool) -> str:
    if higher:
        return ("Accuracy is top-1 of compiled.onnx (factorized, quantized as mapped) run "
                "by onnxruntime; the dotted line is the float model on the same data.")
    return ("The error is the mean over factorized layers of ||W - W_hat|| / ||W|| "
            "(Frobenius); uncompressed configurations plot at 0.")


def to_html(result: SweepResult) -> str:
    """A self-contained page (inline CSS and SVG; no scripts, fonts or links): the scatter
    plot of accuracy (or reconstruction error) against cycles with the Pareto front, the
    optimal configurations, and every row."""
    from imcc import __version__

    if not result.rows:
        raise UsageError("the sweep has no rows to plot")
    e = html.escape
    ys, higher, y_title = plot_values(result)
    front = pareto_front([r.cycles for r in result.rows], ys, higher)
    numbers = _front_positions(result, ys, front)
    idx = sorted(numbers, key=lambda i: (numbers[i], i))
    s = result.spec
    meta = [f"{s.weight_bits}-bit weights on {s.cell_bits}-bit cells",
            f"{s.act_bits}-bit activations ({s.dac_bits}-bit DAC)", f"{s.adc_bits}-bit ADC",
            f"tech {s.tech}",
            f"quantized, calibration {result.calibration}" if s.quantize
            else "float (unquantized)"]
    if result.with_top1:
        meta.append(f"accuracy on {result.eval_source}")
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>imcc sweep: {e(result.model)}</title>", f"<style>{_PLOT_CSS}</style>",
             "</head>", "<body>", f"<h1>imcc sweep: {e(result.model)}</h1>",
             f'<p class="meta">{e(" · ".join(meta))}</p>',
             f"<p>{len(result.rows)} configurations. Marker shape and colour give the "
             f"mapping; highlighted, numbered positions are Pareto-optimal: no other "
             f"configuration has fewer or equal cycles and a better or equal "
             f"{'accuracy' if higher else 'error'}. {_y_note(higher)} Hover a marker for "
             f"its configuration.</p>",
             _svg_scatter(result, ys, higher, y_title, numbers),
             "<h2>Pareto-optimal configurations</h2>", _table(result, idx, numbers),
             "<h2>All configurations</h2>",
             _table(result, range(len(result.rows)), numbers),
             f"<footer>Generated by imcc {e(__version__)} (imcc sweep).</footer>",
             "</body>", "</html>"]
    return "\n".join(parts) + "\n"


__all__ = ["BASE_COLUMNS", "TOP1_COLUMN", "Config", "SweepResult", "SweepRow", "SweepSpec",
           "columns", "default_jobs", "pareto_front", "plan_sweep", "plot_values",
           "row_from_report", "rows_as_dicts", "run_sweep", "split_list", "terminal_table",
           "to_csv", "to_html"]
