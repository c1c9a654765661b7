"""The compile driver: model -> IR -> passes -> program -> report, written atomically.

OUTDIR layout (all deterministic):
  report.json     the `imcc-report/1` summary (cycles, tiles, utilization, energy, ...)
  compiled.onnx   the network exactly as mapped (factorized, QDQ-quantized) for onnxruntime
  float.onnx      the imported float model, the reference for accuracy comparisons
  program.json    the crossbar program (`imcc-program/3`, docs/program-format.md)
  arrays.npz      its row/column maps and cell levels
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import onnx

from imcc.analysis.chip import Chip, load_chip
from imcc.analysis.energy import analyze_energy
from imcc.analysis.place import place
from imcc.analysis.tech import TechProfile, load_tech
from imcc.errors import UsageError
from imcc.fileio import atomic_dir
from imcc.frontend import import_model
from imcc.ir import Graph, verify
from imcc.ir.onnx_export import write_onnx
from imcc.ir.records import CalibrationRecord, LowRankRecord, MappingRecord, Record
from imcc.passes.base import CompileContext, Pass
from imcc.passes.fold_bn import FoldBatchNorm
from imcc.passes.lowrank import LowRankPass
from imcc.passes.map import MapPass
from imcc.passes.pipeline import check_order, parse_pipeline, pipeline_spec
from imcc.passes.quantize import QuantizePass
from imcc.report.build import build_report
from imcc.targets.crossbar import CrossbarTarget
from imcc.targets.emit import emit_program
from imcc.targets.program import Program
from imcc.targets.program_io import write_program
from imcc.threads import single_thread_blas

BUNDLED = {"resnet20": "resnet20.onnx"}


def resolve_model(spec: str) -> Path:
    """A path, or the name of a bundled example (`resnet20`)."""
    p = Path(spec)
    if spec in BUNDLED and not p.exists():
        return Path(str(resources.files("imcc.examples") / BUNDLED[spec]))
    return p


@dataclass
class CompileOptions:
    target: CrossbarTarget = field(default_factory=CrossbarTarget)
    mapping: str = "auto"
    quantize: bool = True
    first_last_bits: int | None = None
    layer_bits: dict[str, int] = field(default_factory=dict)  # quantize: per-layer bits
    calib: np.ndarray | None = None
    lowrank: LowRankPass = field(default_factory=LowRankPass)
    tech: str = "isaac"
    # An explicit pass list (`-p`); None runs `default_pipeline`.
    pipeline: Sequence[Pass] | None = None
    verify_each: bool = False  # run the IR verifier after every pass (tests, --debug)
    chip: Chip | None = None   # place the program on this chip (--chip); None: no placement

    def context(self) -> CompileContext:
        """What the passes read from outside their options."""
        return CompileContext(target=self.target, calib=self.calib)

    def passes(self) -> list[Pass]:
        """The pipeline these options run: the explicit one, else `default_pipeline`."""
        return list(self.pipeline) if self.pipeline is not None else default_pipeline(self)


# float.onnx is kept in memory up to this size, beyond in an anonymous temporary file.
FLOAT_SPOOL_BYTES = 64 << 20


@dataclass
class CompileResult:
    graph: Graph
    # float.onnx (the graph as imported), written before the passes edit the graph: a
    # spooled temporary file, so an ImageNet model's float weights are not held twice
    float_onnx: IO[bytes]
    program: Program
    report: dict[str, Any]  # report["passes"] names the passes run, report["pipeline"] spells them
    records: tuple[Record, ...] = ()  # what every pass decided, in order
    # How the model's input is normalized, for compiled.onnx's metadata: "none" (imcc knows
    # of none: the input is the original model's), or a JSON object (`input_normalization`)
    input_normalization: str = "none"

    @property
    def float_graph_bytes(self) -> bytes:
        self.float_onnx.seek(0)
        return self.float_onnx.read()

    def write_float_onnx(self, f: IO[bytes]) -> None:
        self.float_onnx.seek(0)
        shutil.copyfileobj(self.float_onnx, f, 1 << 20)


def input_normalization(model_path: Path) -> str:
    """The input normalization imcc knows for a model: the bundled ResNet-20 was trained on
    ``(pixels / 255 - mean) / std`` with the bundled CIFAR-10 sample's mean/std (channel
    axis 1), written as a JSON object; any other model "none" (nothing recorded: feed it
    what the original model takes)."""
    bundled = Path(str(resources.files("imcc.examples") / BUNDLED["resnet20"]))
    if model_path.resolve() != bundled.resolve():
        return "none"
    from imcc.dataset import bundled_example_data

    with np.load(bundled_example_data(), allow_pickle=False) as z:
        mean, std = (np.asarray(z[k], dtype=np.float64).round(6).tolist()
                     for k in ("mean", "std"))
    return json.dumps({"input": "pixels / 255 (uint8 0..255 -> 0..1)", "mean": mean,
                       "std": std, "channel_axis": 1, "formula": "(pixels / 255 - mean) / std"})


def compiled_onnx_bytes(res: CompileResult) -> bytes:
    """compiled.onnx's bytes (`write_compiled_onnx`)."""
    buf = io.BytesIO()
    write_compiled_onnx(res, buf)
    return buf.getvalue()


def write_compiled_onnx(res: CompileResult, f: IO[bytes]) -> None:
    """compiled.onnx: the mapped graph with ``metadata_props`` saying how to run it --
    ``imcc.input_normalization`` (see `input_normalization`), ``imcc.version``,
    ``imcc.target`` (array size and bit widths) and ``imcc.pipeline`` (the `-p` text) --
    streamed to `f` (`imcc.ir.onnx_export.write_onnx`)."""
    from imcc import __version__

    t = res.report["target"]
    meta = {"imcc.input_normalization": res.input_normalization, "imcc.version": __version__,
            "imcc.target": (f"{t['rows']}x{t['cols']} weight_bits={t['weight_bits']} "
                            f"cell_bits={t['cell_bits']} act_bits={t['act_bits']} "
                            f"dac_bits={t['dac_bits']} adc_bits={t['adc_bits']} "
                            f"tech={t['tech']}"),
            "imcc.pipeline": str(res.report.get("pipeline", ""))}

    def stamp(model: onnx.ModelProto) -> None:
        del model.metadata_props[:]
        for key, value in meta.items():
            model.metadata_props.add(key=key, value=value)

    write_onnx(res.graph, f, stamp)


def default_pipeline(opts: CompileOptions) -> list[Pass]:
    """fold-bn, then lowrank (if a rank is set), quantize (unless --no-quantize), map."""
    pipeline: list[Pass] = [FoldBatchNorm()]
    if opts.lowrank.active:
        pipeline.append(opts.lowrank)
    if opts.quantize:
        pipeline.append(QuantizePass(weight_bits=opts.target.weight_bits,
                                     act_bits=opts.target.act_bits,
                                     first_last_bits=opts.first_last_bits,
                                     layer_bits=dict(opts.layer_bits)))
    pipeline.append(MapPass(strategy=opts.mapping))
    return pipeline


def parse_layer_ranks(items: Sequence[str]) -> dict[str, str]:
    """``--layer-rank NAME=SPEC`` items as a table (the name is everything before the last
    ``=``)."""
    res: dict[str, str] = {}
    for it in items:
        name, sep, spec = it.rpartition("=")
        if not sep or not name:
            raise UsageError(f"--layer-rank {it!r}: expected NAME=SPEC", hint="e.g. "
                             "--layer-rank /layer1/layer1.0/conv1/Conv=m/4")
        res[name] = spec
    return res


def options_from_flags(*, target: CrossbarTarget, mapping: str = "auto", rank: str = "none",
                       groups: int = 1, layer_ranks: Mapping[str, str] | None = None,
                       policy: LowRankPass | None = None, include_first_last: bool = False,
                       quantize: bool = True, first_last_bits: int | None = None,
                       layer_bits: Mapping[str, int] | None = None,
                       calib: np.ndarray | None = None, tech: str = "isaac",
                       passes: str | None = None, verify_each: bool = False,
                       chip: str | None = None, chip_arrays: int | None = None,
                       chip_batch: int | None = None, lowrank_method: str = "auto",
                       ) -> CompileOptions:
    """The compile options of `imcc compile`, `check` and (per row) `sweep`, from their
    flags. The low-rank settings start from ``policy`` (a loaded policy file) and the flags
    given override it: a rank other than ``none``, groups other than 1, ``--layer-rank``
    entries (added to the policy's, replacing a layer's rank), ``--include-first-last``.
    ``chip`` (a preset name or TOML path) places the program on that chip, with
    ``chip_arrays`` overriding its number of arrays and ``chip_batch`` its images per
    weight load. ``lowrank_method`` (``auto``, ``data``, ``svd``) is the low-rank pass's
    ``method`` (``auto``: ``data`` with calibration data).
    ``passes`` (``-p``) replaces the default pipeline and cannot be combined with the flags
    that shape it. Every value is checked here, before any work."""
    base = policy if policy is not None else LowRankPass()
    changes: dict[str, Any] = {}
    if rank != "none":
        changes["rank"] = rank
    if groups != 1:
        changes["groups"] = groups
    if layer_ranks:
        changes["layer_ranks"] = {**base.layer_ranks, **layer_ranks}
    if include_first_last:
        changes["include_first_last"] = True
    if lowrank_method != "auto":
        changes["method"] = lowrank_method
    lowrank = dataclasses.replace(base, **changes)  # re-validated by __post_init__
    if first_last_bits is not None and not 2 <= first_last_bits <= 16:
        raise UsageError(f"--first-last-bits must be in [2, 16], got {first_last_bits}")
    load_tech(tech)  # fail early on a bad profile, before any work
    pipeline = None
    if passes is not None:
        clash = [flag for flag, used in (
            ("--rank", rank != "none"), ("--groups", groups != 1),
            ("--layer-rank", bool(layer_ranks)), ("--policy", policy is not None),
            ("--no-quantize", not quantize),
            ("--first-last-bits", first_last_bits is not None), ("--mapping", mapping != "auto"),
            ("policy bits", bool(layer_bits)),
            ("--include-first-last", include_first_last),
            ("--lowrank-method", lowrank_method != "auto")) if used]
        if clash:
            raise UsageError(f"--passes replaces the default pipeline; {', '.join(clash)} "
                             "cannot be combined with it", hint="set them as pass options, "
                             "e.g. lowrank{rank=m/2,groups=4}")
        pipeline = parse_pipeline(passes)
    chip_desc = None
    if chip is not None:
        chip_desc = load_chip(chip, chip_arrays, chip_batch)
        chip_desc.check_target(target.rows, target.cols)
    elif chip_arrays is not None:
        raise UsageError("--chip-arrays needs --chip", hint="e.g. --chip isaac --chip-arrays 64")
    elif chip_batch is not None:
        raise UsageError("--chip-batch needs --chip", hint="e.g. --chip isaac --chip-batch 16")
    if layer_bits and quantize:
        QuantizePass(weight_bits=target.weight_bits, act_bits=target.act_bits,
                     layer_bits=dict(layer_bits))  # checks the widths before any work
    opts = CompileOptions(target=target, mapping=mapping, quantize=quantize,
                          first_last_bits=first_last_bits, layer_bits=dict(layer_bits or {}),
                          calib=calib, lowrank=lowrank,
                          tech=tech, pipeline=pipeline, verify_each=verify_each,
                          chip=chip_desc)
    check_pipeline(opts.passes())
    return opts


# ------------------------------------------------------------------------------ the stages


def check_pipeline(passes: Sequence[Pass]) -> None:
    """A pipeline must map the network (it needs the map pass) and respect every pass's
    contract (`imcc.passes.pipeline.check_order`)."""
    if not any(p.name == MapPass.name for p in passes):
        raise UsageError(f"the pipeline {pipeline_spec(passes) or '(empty)'!r} has no "
                         f"{MapPass.name!r} pass, so nothing would be laid out on crossbars",
                         hint="end it with map, e.g. fold-bn,quantize,map")
    check_order(passes)


def split_at_map(passes: Sequence[Pass]) -> tuple[list[Pass], list[Pass]]:
    """(the passes before the first map pass, the map pass and the rest). The first part
    depends on the target's bit widths at most, never on its array size."""
    check_pipeline(passes)
    i = next(i for i, p in enumerate(passes) if p.name == MapPass.name)
    return list(passes[:i]), list(passes[i:])


def run_passes(graph: Graph, passes: Sequence[Pass], ctx: CompileContext,
               verify_each: bool = False, progress: Callable[[str], None] | None = None,
               ) -> tuple[Graph, tuple[Record, ...]]:
    """Run ``passes`` in order; return the graph and every pass's records, in order."""
    records: list[Record] = []
    for p in passes:
        if progress:
            progress(p.name)
        res = p.run(graph, ctx)
        graph = res.graph
        records.extend(res.records)
        if verify_each:
            verify(graph)
    return graph, tuple(records)


R = TypeVar("R", LowRankRecord, CalibrationRecord, MappingRecord)


def first_record(records: Sequence[Record], kind: type[R]) -> R | None:
    return next((r for r in records if isinstance(r, kind)), None)


def finish(graph: Graph, passes: Sequence[Pass], records: Sequence[Record],
           target: CrossbarTarget, tech: str, model_name: str,
           tech_profile: TechProfile | None = None, chip: Chip | None = None,
           ) -> tuple[Program, dict[str, Any]]:
    """After the passes: verify the graph, emit the program, analyse its energy, place it on
    ``chip`` (when given) and build the report. ``tech_profile`` is ``load_tech(tech)`` when
    the caller already has it."""
    mapped = first_record(records, MappingRecord)
    if mapped is None:
        check_pipeline(passes)  # a UsageError when there is no map pass at all
        raise UsageError("the map pass left no record; was the pipeline run?")
    verify(graph)
    program = emit_program(graph, target, model_name)
    profile = tech_profile or load_tech(tech)
    energy = analyze_energy(program, target, profile)
    plan = None if chip is None else place(program, target, profile, energy, chip)
    if plan is not None:
        program.placement = plan.to_placement()
    calibration = first_record(records, CalibrationRecord)
    lowrank = first_record(records, LowRankRecord)
    report = build_report(program, target, energy, mapping=mapped.strategy, tech=tech,
                          calibration=None if calibration is None else calibration.source,
                          weight_method=None if calibration is None
                          else calibration.weight_method, lowrank=lowrank,
                          passes=[p.name for p in passes],
                          pipeline=pipeline_spec(passes), chip=plan).to_json()
    return program, report


def compile_graph(graph: Graph, opts: CompileOptions, model_name: str,
                  progress: Callable[[str], None] | None = None) -> CompileResult:
    """Run the options' pipeline on ``graph`` (edited in place) and emit the program."""
    pipeline = opts.passes()
    check_pipeline(pipeline)  # before any work
    float_onnx = tempfile.SpooledTemporaryFile(max_size=FLOAT_SPOOL_BYTES)
    write_onnx(graph, float_onnx)
    with single_thread_blas():  # the same numbers on every machine (see its doc)
        graph, records = run_passes(graph, pipeline, opts.context(), opts.verify_each,
                                    progress)
        if progress:
            progress("emit")
        program, report = finish(graph, pipeline, records, opts.target, opts.tech,
                                 model_name, chip=opts.chip)
    return CompileResult(graph, float_onnx, program, report, records)


def compile_model(model: str, opts: CompileOptions,
                  progress: Callable[[str], None] | None = None) -> CompileResult:
    path = resolve_model(model)
    graph = import_model(path, name=path.stem)
    return dataclasses.replace(compile_graph(graph, opts, path.stem, progress),
                               input_normalization=input_normalization(path))


def write_outputs(res: CompileResult, outdir: str | Path,
                  protect: Sequence[str | Path] = ()) -> Path:
    """Write every output into a temporary directory, then move it into place. `protect`:
    the inputs (model, data files) that must survive, refused if they lie inside `outdir`."""
    dest = Path(outdir)
    with atomic_dir(dest, protect) as tmp:
        (tmp / "report.json").write_text(json.dumps(res.report, indent=1) + "\n")
        with open(tmp / "compiled.onnx", "wb") as f:
            write_compiled_onnx(res, f)
        with open(tmp / "float.onnx", "wb") as f:
            res.write_float_onnx(f)
        write_program(res.program, tmp)
    return dest


def default_outdir(model: str) -> Path:
    return Path.cwd() / f"{resolve_model(model).stem}.imcc"
