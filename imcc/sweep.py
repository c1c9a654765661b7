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

Chips (``--chips``, ``--chip-arrays``, ``--chip-batch``). With ``--chips`` every
configuration is also placed on each listed chip (a preset or a chip file), and with
``--chip-arrays N1,N2,...`` on each of those sizes of it (`imcc compile --chip C
--chip-arrays N`); the row carries the report's chip figures (`imcc.report.sweep.CHIP_COLUMNS`).
The chip fixes the array size, so without ``--targets`` the sweep's targets are the chips'
array sizes, and a listed target that a chip does not have is a usage error.

How it runs. The model is imported once. Each row's pipeline is split in two stages at its
map pass (`imcc.compiler.split_at_map`):

* the *front* (the passes before map: fold-bn, lowrank, quantize) reads no array size, so
  it runs once per distinct front (rows are grouped by the front's pipeline text) --
  including the quantize pass's calibration, which must be redone for each factorization
  because the factorized layers and their activations differ;
* the *back* (map, then `imcc.compiler.finish`: verify, emit, energy, placement, report)
  runs once per (target, rank, groups, mapping) on a copy of the front's graph: the map
  pass once, `finish` once per chip variant of it (placement reads the program only).

Both stages are the compiler's own (`imcc.compiler.run_passes` and `finish`), so every row
equals what `imcc compile` reports for the same options (a test compares them). Front tasks
run in a process pool, heaviest first; each finished front fans out into its back tasks.
Rows come back in the order of the option lists (targets, then ranks, groups, mappings,
chips, chip arrays), whatever the number of processes.

Accuracy (`--data`): the network a row maps is the front's graph; the map pass only
chooses layouts, so `compiled.onnx` is the same for every target and mapping of one
(rank, groups). Its top-1 accuracy is measured once per (rank, groups) with onnxruntime
(`top1_compiled_ort`); the functional simulator agrees with onnxruntime on compiled.onnx by
construction (checked by `imcc simulate` and its tests).

Deduplication: a rank that compresses nothing (``none``, with no per-layer rank) leaves
every layer uncompressed, so the groups setting has no effect; it yields one row per
(target, mapping) with groups 1.

The rows and every output made of them (CSV, terminal table, the Pareto plot page) are in
`imcc.report.sweep`.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
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
from imcc.passes.lowrank import LowRankPass, parse_rank, policy_bits
from imcc.passes.map import MapPass
from imcc.passes.pipeline import pipeline_spec
from imcc.report.model import Report
from imcc.report.sweep import SweepResult, SweepRow, SweepSettings
from imcc.sweep_log import Label
from imcc.targets.cost import MappingRequest
from imcc.targets.crossbar import CrossbarTarget
from imcc.threads import limit_threads, pinned_worker_threads

Progress = Callable[[int, int, str], None]  # (rows done, rows total, what is running)


# ------------------------------------------------------------------------------ the plan


DEFAULT_RANKS = ("none", "m/2", "m/4")
DEFAULT_GROUPS = ("1", "4")
DEFAULT_MAPPINGS = ("im2col", "auto")
DEFAULT_TARGETS = ("64x64", "128x128")


@dataclass(frozen=True)
class SweepSpec:
    """Everything a sweep needs; list options hold the user's spellings (validated by
    `plan_sweep`). ``ranks``, ``groups`` and ``mappings`` are None when not given: the
    defaults above, or with ``policy`` the policy's rank and groups; with ``passes`` they
    must stay None (see the module docstring). ``targets`` None: the chips' array sizes
    with ``chips``, else `DEFAULT_TARGETS`. ``chips`` and ``chip_arrays`` (None: no chip;
    the chip's own size) add the chip dimensions. The other fields are the compile options
    of `imcc compile`, applied to every row."""

    model: str
    targets: tuple[str, ...] | None = None
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
    chips: tuple[str, ...] | None = None        # --chips: presets or chip files
    chip_arrays: tuple[str, ...] | None = None  # --chip-arrays: array counts of each chip
    chip_batch: int | None = None               # --chip-batch, for every chip
    lowrank_method: str = "auto"       # --lowrank-method
    # --input-shape: fixed sizes of dynamic input axes, (input name or "", dims) pairs
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class Config:
    """One row of the sweep: canonical spellings (e.g. rank ``m/2``, target ``64x64``) of
    the rank, groups and mapping that take effect, the chip as listed and its arrays
    (None without ``--chips``; the chip's own count without ``--chip-arrays``), and the
    row's compile options (without the calibration data, which `run_sweep` loads once)."""

    index: int
    target: CrossbarTarget
    rank: str
    groups: int
    mapping: str
    options: CompileOptions = field(compare=False, repr=False)
    chip: str | None = None
    chip_arrays: int | None = None

    @property
    def map_label(self) -> tuple[str, str, int, str]:
        """(target, rank, groups, mapping): what the map pass sees."""
        return self.target.name, self.rank, self.groups, self.mapping

    @property
    def label(self) -> Label:
        """The row's key (a resumed sweep matches CSV rows on it): `map_label` and the
        chip with its array count (None, None without ``--chips``)."""
        return (*self.map_label, self.chip, self.chip_arrays)

    @property
    def back_key(self) -> tuple[str, tuple[str, str, int, str]]:
        """Rows that differ only in their chip share one map pass."""
        return self.front_key, self.map_label

    @property
    def stages(self) -> tuple[list[Pass], list[Pass]]:
        """The row's pipeline split at its map pass: (front, back)."""
        return split_at_map(self.options.passes())

    @property
    def front_key(self) -> str:
        """Rows with equal front pipelines share one front run."""
        return pipeline_spec(self.stages[0])


def split_list(text: str, option: str) -> tuple[str, ...]:
    """Split a comma-separated option value; empty items are a usage error."""
    items = tuple(s.strip() for s in text.split(","))
    if not text.strip() or any(not s for s in items):
        raise UsageError(f"{option} {text!r}: expected a comma-separated list with no empty "
                         f"items", hint=f"e.g. {option} {_EXAMPLES.get(option, 'a,b')}")
    return items


_EXAMPLES = {"--targets": "64x64,128x128", "--ranks": "none,m/2,m/4", "--groups": "1,2,4",
             "--mappings": "im2col,auto", "--chips": "isaac,pimcomp-arch-a",
             "--chip-arrays": "100,1000,16128"}


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


def _parse_arrays(spec: str) -> int:
    try:
        n = int(spec)
    except ValueError:
        raise UsageError(f"--chip-arrays: {spec!r} is not an integer",
                         hint=f"e.g. --chip-arrays {_EXAMPLES['--chip-arrays']}") from None
    if n < 1:
        raise UsageError(f"--chip-arrays: {n} must be >= 1",
                         hint=f"e.g. --chip-arrays {_EXAMPLES['--chip-arrays']}")
    return n


def _chip_dims(spec: SweepSpec) -> tuple[list[str | None], list[int | None],
                                         tuple[str, ...] | None]:
    """(chips, chip array counts, the chips' array sizes as targets) of the sweep; [None]
    for a dimension not swept. Chips are loaded here so a bad one fails before any work."""
    from imcc.analysis.chip import load_chip

    if spec.chips is None:
        if spec.chip_arrays is not None or spec.chip_batch is not None:
            flag = "--chip-arrays" if spec.chip_arrays is not None else "--chip-batch"
            raise UsageError(f"{flag} needs --chips", hint="e.g. --chips isaac")
        return [None], [None], None
    _unique(list(spec.chips), spec.chips, "--chips")
    sizes: list[str] = []
    for c in spec.chips:
        chip = load_chip(c, None, spec.chip_batch)
        if f"{chip.rows}x{chip.cols}" not in sizes:
            sizes.append(f"{chip.rows}x{chip.cols}")
    arrays: list[int | None] = [None]
    if spec.chip_arrays is not None:
        arrays = [_parse_arrays(a) for a in spec.chip_arrays]
        _unique(arrays, spec.chip_arrays, "--chip-arrays")
    return list(spec.chips), arrays, tuple(sizes)


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
    chips, chip_arrays, chip_sizes = _chip_dims(spec)
    target_list = spec.targets if spec.targets is not None else (chip_sizes or DEFAULT_TARGETS)
    if not (target_list and rank_list and group_list and mapping_list):
        raise UsageError("--targets, --ranks, --groups and --mappings each need at least "
                         "one value")
    targets: list[CrossbarTarget] = []
    for t in target_list:
        rows, cols = CrossbarTarget.parse_shape(t)
        targets.append(CrossbarTarget(rows, cols, spec.weight_bits, spec.cell_bits,
                                      spec.act_bits, spec.dac_bits, spec.adc_bits))
    _unique([(t.rows, t.cols) for t in targets], target_list, "--targets")
    ranks = [str(parse_rank(r)) for r in rank_list]
    _unique(ranks, rank_list, "--ranks")
    groups = [_parse_groups(g) for g in group_list]
    _unique(groups, group_list, "--groups")
    mappings = [MappingRequest.parse(m.lower()).value for m in mapping_list]
    _unique(mappings, mapping_list, "--mappings")
    if spec.calib_limit < 1:
        raise UsageError(f"--calib-limit must be >= 1, got {spec.calib_limit}")
    if spec.lowrank_method == "data" and spec.calib is None:
        raise UsageError("--lowrank-method data fits the factors on calibration data",
                         hint="give --calib DATA.npz")
    if spec.limit is not None and spec.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {spec.limit}")
    if spec.skip < 0:
        raise UsageError(f"--skip must be >= 0, got {spec.skip}")
    if spec.data is None and (spec.limit is not None or spec.skip):
        raise UsageError("--limit and --skip select evaluation inputs; they need --data")
    # a policy's quantize settings: first/last bits (--first-last-bits overrides) and
    # per-layer bits
    pol_bits = (None, {}) if spec.policy is None else policy_bits(spec.policy)
    shared: dict[str, Any] = dict(
        layer_ranks=parse_layer_ranks(spec.layer_rank),
        policy=None if spec.policy is None else LowRankPass.policy_from_file(spec.policy),
        include_first_last=spec.include_first_last, quantize=spec.quantize,
        first_last_bits=(pol_bits[0] if spec.first_last_bits is None
                         else spec.first_last_bits), layer_bits=pol_bits[1],
        tech=spec.tech, passes=spec.passes,
        verify_each=spec.verify_each, lowrank_method=spec.lowrank_method)

    def options(tgt: CrossbarTarget, rank: str, groups: int, mapping: str,
                chip: str | None = None, arrays: int | None = None) -> CompileOptions:
        kw = dict(shared, chip=chip, chip_arrays=arrays,
                  chip_batch=None if chip is None else spec.chip_batch)
        # -p rows take rank, groups and mapping from the pipeline: pass the flag defaults.
        if spec.passes is not None:
            return options_from_flags(target=tgt, **kw)
        return options_from_flags(target=tgt, rank=rank, groups=groups, mapping=mapping,
                                  **kw)

    configs: list[Config] = []
    seen: dict[tuple[str, str, int, str], tuple[str, int]] = {}
    for tgt in targets:
        for r in ranks:
            # A rank that compresses nothing makes every groups value the same network.
            active = options(tgt, r, 1, mappings[0]).lowrank.active
            for g in (groups if active else [1]):
                for m in mappings:
                    label = _labels(options(tgt, r, g, m))
                    key = (tgt.name, *label)
                    if key in seen:
                        raise UsageError(
                            f"--ranks {seen[key][0]} and {r}, --groups "
                            f"{seen[key][1]} and {g} give the same configuration "
                            f"(rank {label[0]}, groups {label[1]}; a rank none or groups 1 "
                            "keeps the policy's)", hint="list each configuration once")
                    seen[key] = (r, g)
                    for c in chips:
                        for n in chip_arrays:
                            opts = options(tgt, r, g, m, c, n)
                            configs.append(Config(
                                len(configs), tgt, *label, options=opts, chip=c,
                                chip_arrays=None if opts.chip is None else opts.chip.arrays))
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
class _FrontPlan:
    """A front without its data: what is sent per task when the data is shipped once."""

    key: str
    passes: tuple[Pass, ...]
    target: CrossbarTarget

    def job(self, graph: Graph, calib: np.ndarray | None, eval_x: np.ndarray | None,
            labels: np.ndarray | None, verify_each: bool) -> _FrontJob:
        return _FrontJob(self.key, graph, self.passes,
                         CompileContext(target=self.target, calib=calib), verify_each,
                         eval_x, labels)


@dataclass(frozen=True)
class _Front:
    """A graph after the passes before map, and their records."""

    key: str
    graph: Graph
    records: tuple[Record, ...]
    top1: float | None


@dataclass(frozen=True)
class _BackJob:
    """Rows that share a map pass (they differ only in their chip)."""

    front: _Front
    configs: tuple[Config, ...]
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


def _run_back(job: _BackJob) -> list[SweepRow]:
    # The back half of compile_graph: map, then verify, emit, energy, placement and report
    # -- on a private copy, because the map pass annotates nodes in place and one front
    # feeds several backs. The map pass reads only the target from the context; `finish`
    # only reads the mapped graph, so one map serves every chip of the rows.
    first, front = job.configs[0], job.front
    front_passes, back_passes = first.stages
    graph, records = run_passes(copy.deepcopy(front.graph), back_passes,
                                CompileContext(target=first.target), first.options.verify_each)
    rows = []
    for cfg in job.configs:
        _, report = finish(graph, [*front_passes, *back_passes], front.records + records,
                           cfg.target, cfg.options.tech, job.model_name, tech_profile=job.tech,
                           chip=cfg.options.chip)
        rows.append(row_from_report(Report.from_json(report), cfg, front.top1))
    return rows


def row_from_report(report: Report, cfg: Config, top1: float | None) -> SweepRow:
    """One sweep row from a report. `mean_rel_error` averages the relative reconstruction
    error over factorized layers (each pair once, via its R half), `mean_data_error` their
    data-weighted output error (with calibration data)."""
    errors = [float(la.rel_error) for la in report.layers
              if la.role == "R" and la.rel_error is not None]
    data_errors = [float(la.data_error) for la in report.layers
                   if la.role == "R" and la.data_error is not None]
    methods = sorted({la.lowrank_method for la in report.layers
                      if la.role == "R" and la.lowrank_method is not None})
    energy = report.energy
    c = report.chip
    chip: dict[str, Any] = {}
    if c is not None:
        chip = dict(chip=cfg.chip, chip_arrays=c.arrays_available, arrays_used=c.arrays_used,
                    segments=c.segments, throughput_ips=c.throughput_ips,
                    chip_latency_ns=c.latency_ns, chip_energy_pj=c.energy_per_inference_pj,
                    write_energy_pj=c.write_energy_pj, area_mm2=c.area_mm2, tops=c.tops,
                    tops_per_w=c.tops_per_w, tops_per_mm2=c.tops_per_mm2)
    return SweepRow(
        target=cfg.target.name, rank=cfg.rank, groups=cfg.groups, mapping=cfg.mapping,
        total_cycles=report.total_cycles, im2col_cycles=report.im2col_cycles,
        speedup=report.speedup, energy_pj=None if energy is None else energy.total_energy_pj,
        latency_ns=None if energy is None else energy.total_latency_ns,
        n_arrays=report.n_arrays, params=report.weight_params, factorized_layers=len(errors),
        mean_rel_error=sum(errors) / len(errors) if errors else None,
        top1_compiled_ort=top1, speedup_vs_im2col=report.headline_speedup,
        lowrank_method="+".join(methods) or None,
        mean_data_error=sum(data_errors) / len(data_errors) if data_errors else None, **chip)


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
              progress: Progress | None = None, *, scheduler: str | None = None,
              done: Mapping[Label, SweepRow] | None = None,
              on_row: Callable[[SweepRow], None] | None = None) -> SweepResult:
    """Run every configuration of `spec` and return the rows in `plan_sweep` order, whatever
    runs them: `jobs` processes of a local pool (default: all cores; 1 runs in this
    process), or with `scheduler` a dask.distributed cluster (``"local"``: a LocalCluster of
    `jobs` single-threaded worker processes started for this sweep; otherwise the address
    of a running scheduler, e.g. ``tcp://10.0.0.5:8786``). Configurations whose key is in
    `done` (rows of an interrupted sweep, `imcc.sweep_log`) are not run again; `on_row`
    receives each new row as it finishes, in completion order."""
    configs = plan_sweep(spec)
    jobs = check_runner(jobs, scheduler)
    done = dict(done or {})
    tech = load_tech(spec.tech)
    path = resolve_model(spec.model)
    graph = import_model(path, name=path.stem, input_shapes=dict(spec.input_shapes))
    if len(graph.inputs) != 1:
        raise UsageError(f"{path}: imcc sweep supports models with one input, this one has "
                         f"{len(graph.inputs)}")
    calib, data = _load_data(spec, graph)
    todo = [c for c in configs if c.label not in done]

    # One front per distinct front pipeline that still has rows to run, in first-use order;
    # factorized fronts first because their SVD and larger calibration dominate the run
    # time. The front's context holds the first row's target: the passes before map read no
    # array size (the rows share the bit widths).
    by_key: dict[str, list[Config]] = {}
    for c in todo:
        by_key.setdefault(c.front_key, []).append(c)
    by_back: dict[tuple[str, tuple[str, str, int, str]], list[Config]] = {}
    for c in todo:
        by_back.setdefault(c.back_key, []).append(c)
    keys = sorted(by_key, key=lambda k: by_key[k][0].rank == "none")
    plans = [_FrontPlan(k, tuple(by_key[k][0].stages[0]), by_key[k][0].target)
             for k in keys]
    eval_x = None if data is None else data.x
    labels = None if data is None else data.labels

    total = len(configs)
    rows: dict[int, SweepRow] = {c.index: done[c.label] for c in configs if c.label in done}
    fronts: list[_Front] = []

    def report(note: str) -> None:
        if progress is not None:
            progress(len(rows), total, note)

    def finished(row: SweepRow, index: int) -> None:
        rows[index] = row
        if on_row is not None:
            on_row(row)
        report(_describe_row(row))

    def backs_of(key: str) -> list[tuple[Config, ...]]:
        """The rows of front `key`, grouped by the map pass they share."""
        return [tuple(by_back[c.back_key]) for c in by_key[key]
                if by_back[c.back_key][0] is c]

    def backs(front: _Front) -> list[_BackJob]:
        return [_BackJob(front, cfgs, tech, path.stem) for cfgs in backs_of(front.key)]

    report(f"calibrating {len(keys)} low-rank variant(s)" if spec.quantize
           else f"factorizing {len(keys)} low-rank variant(s)")
    float_top1: float | None = None
    want_float = labels is not None
    if scheduler is not None:
        float_top1 = _run_dask(scheduler, jobs, plans, backs_of, graph, calib, eval_x, labels,
                               spec.verify_each, tech, path.stem, finished, fronts)
    elif jobs == 1 or len(todo) <= 1:
        for fp in plans:
            front = _run_front(fp.job(graph, calib, eval_x, labels, spec.verify_each))
            fronts.append(front)
            for bj in backs(front):
                for cfg, row in zip(bj.configs, _run_back(bj), strict=True):
                    finished(row, cfg.index)
        if want_float and eval_x is not None and labels is not None:
            float_top1 = _ort_top1(graph, eval_x, labels)  # the imported float model
    else:
        front_jobs = [fp.job(graph, calib, eval_x, labels, spec.verify_each) for fp in plans]
        float_top1 = _run_pool(front_jobs, backs, finished, min(jobs, len(todo)), report,
                               graph if data is not None else None, data, fronts)
    # A -p pipeline may leave out quantize: the result's settings say what the rows ran.
    # Resumed rows ran the same pipeline (the settings record is checked), so a sweep whose
    # fronts all ran earlier takes the answer from the pipeline itself.
    if fronts:
        calibrated = any(isinstance(r, CalibrationRecord) for f in fronts for r in f.records)
    else:
        calibrated = any(p.name == "quantize" for p in configs[0].stages[0])
    settings = SweepSettings(weight_bits=spec.weight_bits, cell_bits=spec.cell_bits,
                             act_bits=spec.act_bits, dac_bits=spec.dac_bits,
                             adc_bits=spec.adc_bits, tech=spec.tech, quantize=calibrated)
    return SweepResult(model=path.stem, settings=settings,
                       rows=[rows[c.index] for c in configs],
                       float_top1=float_top1,
                       eval_source=None if data is None else data.source,
                       calibration=_calibration_text(spec, calib) if calibrated else None)


def check_runner(jobs: int | None, scheduler: str | None) -> int:
    """The worker count for `jobs` and `scheduler` (see `run_sweep`), or a usage error."""
    if scheduler is not None and not scheduler.strip():
        raise UsageError("--scheduler: empty address",
                         hint="'local', or a scheduler address like tcp://HOST:8786")
    if scheduler is not None and scheduler != "local" and jobs is not None:
        raise UsageError("--jobs sets the local worker count; with --scheduler ADDRESS the "
                         "cluster's workers run the sweep", hint="drop --jobs")
    n = default_jobs() if jobs is None else jobs
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageError(f"--jobs must be >= 1, got {n!r}")
    return n


def sweep_to_csv(spec: SweepSpec, dest: Path, jobs: int | None = None,
                 progress: Progress | None = None, *, scheduler: str | None = None,
                 resume: bool = False) -> SweepResult:
    """`run_sweep`, with each row streamed into the CSV `dest` as it finishes and, at the
    end, the final CSV (rows in configuration order) written atomically in its place; with
    `resume`, the rows an earlier run of the same sweep left in `dest` are kept and not
    run again (the format and checks: `imcc.sweep_log`)."""
    from imcc.report.sweep import csv_columns, to_csv
    from imcc.sweep_log import SweepLog

    configs = plan_sweep(spec)  # every option checked before anything is read or written
    check_runner(jobs, scheduler)
    log, done = SweepLog.open(dest, csv_columns(spec.data is not None, spec.chips is not None),
                              settings_record(spec), [c.label for c in configs], resume)
    try:
        result = run_sweep(spec, jobs, progress, scheduler=scheduler, done=done,
                           on_row=log.append)
    finally:
        log.close()
    log.finish(to_csv(result))
    return result


def settings_record(spec: SweepSpec) -> dict[str, Any]:
    """What every row of `spec` shares, for the resume check (`imcc.sweep_log`): the
    options other than the configuration axes, and the sha256 of each input file (a file
    changed since is a different sweep)."""
    from imcc import __version__
    from imcc.sweep_log import file_digest

    def digest(p: Path | None) -> str | None:
        return None if p is None else file_digest(p)

    skip = {"model", "targets", "ranks", "groups", "mappings", "calib", "data", "policy",
            "verify_each", "chips", "chip_arrays"}
    record: dict[str, Any] = {f.name: getattr(spec, f.name) for f in fields(spec)
                              if f.name not in skip}
    record["layer_rank"] = list(spec.layer_rank)
    # as JSON reads it back: lists, not tuples
    record["input_shapes"] = [[name, list(dims)] for name, dims in spec.input_shapes]
    record.update(imcc_version=__version__,
                  model_sha256=file_digest(resolve_model(spec.model)),
                  calib_sha256=digest(spec.calib), data_sha256=digest(spec.data),
                  policy_sha256=digest(spec.policy),
                  # chips are an axis (in each row's key); a chip file's content is not
                  chip_sha256={c: file_digest(Path(c)) for c in spec.chips or ()
                               if Path(c).is_file()})
    return record


def _run_pool(front_jobs: list[_FrontJob], backs: Callable[[_Front], list[_BackJob]],
              finished: Callable[[SweepRow, int], None], workers: int,
              report: Callable[[str], None],
              float_graph: Graph | None, data: Dataset | None,
              fronts: list[_Front]) -> float | None:
    # "spawn": workers start from a clean interpreter, so no lock held by a thread of this
    # process (the progress bar's refresh thread, logging) can be inherited mid-acquire.
    ctx = multiprocessing.get_context("spawn")
    float_top1: float | None = None
    # future -> ("front", None) | ("back", its configs) | ("float", None)
    pending: dict[Future[Any], tuple[str, tuple[Config, ...] | None]] = {}
    with pinned_worker_threads(), ProcessPoolExecutor(max_workers=workers,
                                                      mp_context=ctx) as pool:
        try:
            for fj in front_jobs:
                pending[pool.submit(_run_front, fj)] = ("front", None)
            if float_graph is not None and data is not None and data.labels is not None:
                # The imported float model: the reference line of the plot.
                pending[pool.submit(_ort_top1, float_graph, data.x, data.labels)] = \
                    ("float", None)
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                # Handle completions in submission order so progress notes are stable.
                order = list(pending)
                for fut in sorted(done, key=order.index):
                    kind, cfgs = pending.pop(fut)
                    result = fut.result()
                    if kind == "front":
                        fronts.append(result)
                        for bj in backs(result):
                            pending[pool.submit(_run_back, bj)] = ("back", bj.configs)
                    elif kind == "back":
                        assert cfgs is not None
                        for cfg, row in zip(cfgs, result, strict=True):
                            finished(row, cfg.index)
                    else:
                        float_top1 = result
        except BaseException:
            # A failed configuration, Ctrl-C or a termination signal stops the sweep: drop
            # what has not started and end the workers now, so none outlives the sweep.
            procs = list(getattr(pool, "_processes", {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.join(timeout=10)
            raise
    return float_top1


# ------------------------------------------------------------------ dask.distributed


def _dask_front(plan: _FrontPlan, graph: Graph, calib: np.ndarray | None,
                eval_x: np.ndarray | None, labels: np.ndarray | None,
                verify_each: bool) -> _Front:
    with limit_threads(1):
        return _run_front(plan.job(graph, calib, eval_x, labels, verify_each))


def _dask_back(front: _Front, configs: tuple[Config, ...], tech: TechProfile,
               model_name: str) -> list[tuple[int, SweepRow]]:
    with limit_threads(1):
        rows = _run_back(_BackJob(front, configs, tech, model_name))
    return [(cfg.index, row) for cfg, row in zip(configs, rows, strict=True)]


def _dask_float(graph: Graph, eval_x: np.ndarray, labels: np.ndarray) -> float:
    with limit_threads(1):
        return _ort_top1(graph, eval_x, labels)


def _run_dask(scheduler: str, jobs: int, plans: list[_FrontPlan],
              backs_of: Callable[[str], list[tuple[Config, ...]]], graph: Graph,
              calib: np.ndarray | None,
              eval_x: np.ndarray | None, labels: np.ndarray | None, verify_each: bool,
              tech: TechProfile, model_name: str,
              finished: Callable[[SweepRow, int], None], fronts: list[_Front]) -> float | None:
    """The sweep as dask tasks: the imported graph, the calibration batch and the
    evaluation data are scattered once to every worker (broadcast), each front is one task
    and each row one task depending on its front (the front's graph moves between workers
    only when the scheduler places a row elsewhere); rows are handed to `finished` as they
    complete. One BLAS thread per task: a worker runs one task per thread already."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise UsageError("--scheduler needs dask.distributed, which is not installed",
                         hint="pip install 'imcc[distributed]'") from None
    import logging

    with ExitStack() as stack:
        if scheduler == "local":
            stack.enter_context(pinned_worker_threads())
            cluster = stack.enter_context(LocalCluster(
                n_workers=jobs, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=logging.ERROR))
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout="20s"))
            except (OSError, TimeoutError, ValueError) as exc:
                raise UsageError(f"--scheduler {scheduler}: cannot connect ({exc})",
                                 hint="start one with `dask scheduler` and `dask worker "
                                      "ADDRESS`, or use --scheduler local") from None
        shipped = [graph, calib, eval_x, labels]
        g, c, x, y = (None if v is None else client.scatter(v, broadcast=True, hash=False)
                      for v in shipped)
        front_futs = {p.key: client.submit(_dask_front, p, g, c, x, y, verify_each,
                                           key=f"imcc-front-{n}", pure=False)
                      for n, p in enumerate(plans)}
        futs = [client.submit(_dask_back, front_futs[p.key], cfgs, tech, model_name,
                              key=f"imcc-row-{cfgs[0].index}", pure=False)
                for p in plans for cfgs in backs_of(p.key)]
        float_fut = None if y is None else client.submit(_dask_float, g, x, y,
                                                          key="imcc-float", pure=False)
        try:
            for fut in as_completed(futs):
                for index, row in fut.result():
                    finished(row, index)
            fronts.extend(f.result() for f in front_futs.values())
            return None if float_fut is None else float(float_fut.result())
        except BaseException:
            client.cancel([*futs, *front_futs.values(), *([float_fut] if float_fut else [])])
            raise
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns




def _describe_row(row: SweepRow) -> str:
    chip = "" if row.chip is None else f" on {row.chip} ({row.chip_arrays} arrays)"
    return f"{row.target} rank {row.rank} g{row.groups} {row.mapping}{chip}"


def _calibration_text(spec: SweepSpec, calib: np.ndarray | None) -> str:
    if calib is None:
        return "synthetic (deterministic noise batch)"
    return f"{spec.calib} ({len(calib)} samples)"


__all__ = ["Config", "SweepSpec", "default_jobs", "plan_sweep", "row_from_report",
           "run_sweep", "settings_record", "split_list", "sweep_to_csv"]
