"""The Python API: what `imcc compile`, `imcc simulate` and `imcc check` do, as functions
with typed results (the CLI calls these same functions and only renders what they return).

    import imcc
    result = imcc.compile("resnet20", target="128x128", rank="m/2", groups=4, output="out")
    result.cycles, result.energy_pj, result.outdir, result.report.layers[0].mapping
    sim = imcc.simulate(result, data="cifar10", limit=100)   # or imcc.simulate("out", ...)
    sim.matches_onnxruntime, sim.compiled_top1
    chk = imcc.check(result, budget="budget.toml")          # or a model / output directory
    chk.passed, chk.result.failures

Models may be given as a path or as the name of a bundled example (`resnet20`), data as a
path or a bundled name (`cifar10`); `list_examples()` lists them. Every problem is an
`imcc.errors.ImccError` subclass whose `exit_code` is the CLI's (README table); warnings
(e.g. a rank clamped to what a layer allows) are returned, never printed.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imcc.errors import UsageError
from imcc.ir.names import short_names
from imcc.report.model import Report
from imcc.report.units import conv_text

PathLike = str | Path

@dataclass(frozen=True)
class Example:
    """A bundled input: ``name`` stands for ``path`` wherever a model or data file is read."""

    name: str
    kind: str  # "model" or "data"
    path: Path
    description: str


def list_examples() -> list[Example]:
    """The bundled models and data files, by the names the CLI and API accept."""
    from imcc.compiler import BUNDLED, resolve_model
    from imcc.dataset import BUNDLED_DATA, resolve_data

    about = {"resnet20": "pretrained CIFAR-10 ResNet-20 (TorchScript export, opset 13, "
                         "reported 91.73% top-1 on the CIFAR-10 test set); input 'input' "
                         "Nx3x32x32, normalized",
             "cifar10": "the first 500 CIFAR-10 test images: uint8 images, labels, and the "
                        "mean/std the ResNet-20 expects"}
    return ([Example(n, "model", resolve_model(n), about.get(n, "")) for n in BUNDLED]
            + [Example(n, "data", resolve_data(n), about.get(n, "")) for n in BUNDLED_DATA])


# -------------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class LayerInfo:
    """One crossbar layer of a model as imported (before any pass): the ``name`` the tables
    show (``layer1.0/conv1``), the ``full`` ONNX node name, both accepted wherever a layer
    is named; ``kind`` (Conv or Linear); per-sample ``input`` and ``output`` shapes (batch
    axis left out); the ``weight`` shape; ``detail`` (kernel, stride, pads, dilation,
    groups as the report writes them); ``first_or_last`` when the low-rank policy leaves it
    uncompressed by default (first and last crossbar layers by data flow)."""

    name: str
    full: str
    kind: str
    input: tuple[int | None, ...]
    output: tuple[int | None, ...]
    weight: tuple[int, ...]
    detail: str
    first_or_last: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "full": self.full, "kind": self.kind,
                "input": list(self.input), "output": list(self.output),
                "weight": list(self.weight), "detail": self.detail,
                "first_or_last": self.first_or_last}


def layers(model: PathLike = "resnet20", *,
           input_shapes: Mapping[str, Sequence[int]] | None = None) -> list[LayerInfo]:
    """The crossbar layers of ``model`` (a path or a bundled name), in graph order."""
    from imcc.compiler import resolve_model
    from imcc.frontend import import_model
    from imcc.ir.ops import Conv
    from imcc.ir.topology import first_last_crossbar

    path = resolve_model(str(model))
    graph = import_model(path, name=path.stem, input_shapes=input_shapes)
    first, last = first_last_crossbar(graph)
    edge = {id(n) for n in first + last}
    out: list[LayerInfo] = []
    nodes = list(graph.crossbar_nodes())
    shorts = short_names([n.name for n in nodes])
    for node, short in zip(nodes, shorts, strict=True):
        op = node.op
        w = node.inputs[1].type.shape
        detail = (conv_text(op.kernel, op.stride, op.pads, op.dilation, op.group)
                  if isinstance(op, Conv) else "")
        out.append(LayerInfo(
            name=short, full=node.name, kind=op.kind,
            input=tuple(node.inputs[0].type.shape[1:]), output=tuple(node.output.type.shape[1:]),
            weight=tuple(int(d) for d in w if d is not None), detail=detail,
            first_or_last=id(node) in edge))
    return out


# ------------------------------------------------------------------------------- compile


@dataclass(frozen=True)
class CompiledModel:
    """What `compile` made: the typed ``report`` (`imcc.report.model.Report`, report.json),
    the output directory (None when nothing was written), the model name and the warnings
    (one line each, for stderr)."""

    report: Report
    outdir: Path | None
    model: str
    warnings: tuple[str, ...] = ()

    @property
    def cycles(self) -> int:
        """Computing cycles per image: (window, array tile) activations of the program."""
        return self.report.total_cycles

    @property
    def energy_pj(self) -> float | None:
        """Energy per image in pJ (None without an energy analysis)."""
        return None if self.report.energy is None else self.report.energy.total_energy_pj

    @property
    def latency_ns(self) -> float | None:
        """Latency per image in ns, serial array activations (None without an analysis)."""
        return None if self.report.energy is None else self.report.energy.total_latency_ns

    @property
    def speedup_vs_im2col(self) -> float | None:
        """Against im2col of the uncompressed network on the same target."""
        return self.report.headline_speedup


def parse_layer_ranks(items: Sequence[str]) -> dict[str, str]:
    """``NAME=SPEC`` items (``--layer-rank``) as a table."""
    from imcc.compiler import parse_layer_ranks as parse

    return parse(items)


def parse_input_shapes(items: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """``NAME=1x3x224x224`` items (``--input-shape``) as a table. ``NAME=`` may be left out
    (``1x3x224x224``) for a model with one input: the key is then ``""``."""
    res: dict[str, tuple[int, ...]] = {}
    for it in items:
        name, _, dims = it.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            shape = ()
        if not shape or any(d < 1 for d in shape):
            raise UsageError(f"--input-shape {it!r}: expected NAME=DIMS with positive sizes "
                             "joined by x", hint="e.g. --input-shape input=1x3x224x224")
        if name in res:
            raise UsageError(f"--input-shape: input {name or '(the only one)'!r} is given twice")
        res[name] = shape
    return res


def compile(model: PathLike = "resnet20", *, target: str = "128x128", weight_bits: int = 4,  # noqa: A001 - imcc.compile, as the CLI command
            cell_bits: int = 1, act_bits: int = 4, dac_bits: int = 1, adc_bits: int = 8,
            mapping: str = "auto", rank: str | int = "none", groups: int = 1,
            layer_ranks: Mapping[str, str] | Sequence[str] | None = None,
            policy: PathLike | None = None, include_first_last: bool = False,
            quantize: bool = True, first_last_bits: int | None = None,
            calib: PathLike | np.ndarray | None = None, calib_limit: int = 256,
            tech: str = "isaac", passes: str | None = None, chip: str | None = None,
            chip_arrays: int | None = None, chip_batch: int | None = None,
            lowrank_method: str = "auto",
            input_shapes: Mapping[str, Sequence[int]] | None = None,
            output: PathLike | None = None, write: bool = True, verify_each: bool = False,
            progress: Callable[[str], None] | None = None) -> CompiledModel:
    """Compile ``model`` (an ONNX path or a bundled name) for a crossbar ``target``
    (ROWSxCOLS cells) and write report.json, compiled.onnx, float.onnx, program.json and
    arrays.npz atomically into ``output`` (default ``./<model>.imcc``; ``write=False``
    writes nothing). The options are those of `imcc compile` (see its ``--help``):
    ``layer_ranks`` a table ``{layer: spec}`` or ``NAME=SPEC`` items (a layer named as the
    tables show it or in full), ``calib`` a data path, bundled name or an array of model
    inputs, ``input_shapes`` ``{input: (1, 3, H, W)}`` for dynamic sizes. Every option is
    checked before the model is read."""
    from imcc.compiler import (
        compile_graph,
        default_outdir,
        input_normalization,
        options_from_flags,
        resolve_model,
        write_outputs,
    )
    from imcc.dataset import load_npz
    from imcc.frontend import import_model
    from imcc.passes.lowrank import LowRankPass, policy_bits
    from imcc.targets.crossbar import CrossbarTarget

    rows, cols = CrossbarTarget.parse_shape(target)
    layer_bits: dict[str, int] = {}
    if policy is not None:
        # the policy's bits (e.g. what `imcc tune` verified); --first-last-bits overrides
        pol_fl, layer_bits = policy_bits(policy)
        first_last_bits = pol_fl if first_last_bits is None else first_last_bits
    if quantize:  # the quantize pass's range, narrower than the target's [1, 16]
        from imcc.passes.quantize import check_bit_widths

        check_bit_widths(weight_bits, act_bits, first_last_bits, option=True)
    tgt = CrossbarTarget(rows, cols, weight_bits, cell_bits, act_bits, dac_bits, adc_bits)
    if calib_limit < 1:
        raise UsageError(f"--calib-limit must be >= 1, got {calib_limit}")
    if lowrank_method == "data" and calib is None:
        raise UsageError("--lowrank-method data fits the factors on calibration data",
                         hint="give --calib DATA.npz")
    ranks = (parse_layer_ranks(list(layer_ranks))
             if layer_ranks is not None and not isinstance(layer_ranks, Mapping)
             else dict(layer_ranks or {}))
    opts = options_from_flags(
        target=tgt, mapping=mapping, rank=str(rank), groups=groups, layer_ranks=ranks,
        policy=None if policy is None else LowRankPass.policy_from_file(policy),
        include_first_last=include_first_last, quantize=quantize,
        first_last_bits=first_last_bits, layer_bits=layer_bits, tech=tech, passes=passes,
        verify_each=verify_each, chip=chip, chip_arrays=chip_arrays, chip_batch=chip_batch,
        lowrank_method=lowrank_method)
    path = resolve_model(str(model))
    graph = import_model(path, name=path.stem, input_shapes=input_shapes)
    # --calib feeds quantize and the data-aware low-rank fit (which runs without quantize).
    if calib is not None:
        if isinstance(calib, np.ndarray):
            x = np.asarray(calib, dtype=np.float32)[:calib_limit]
        else:
            v = graph.inputs[0]
            x = load_npz(calib, v.name, v.type.shape).take(calib_limit).x
        opts = dataclasses.replace(opts, calib=x)
    res = compile_graph(graph, opts, path.stem, progress=progress)
    res = dataclasses.replace(res, input_normalization=input_normalization(path))
    dest = None
    if write:
        inputs = [path] + [p for p in (calib, policy) if isinstance(p, (str, Path))]
        dest = write_outputs(res, default_outdir(str(model)) if output is None else output,
                             protect=inputs)
    rep = Report.from_json(res.report)
    return CompiledModel(rep, dest, path.stem, rep.warnings)


# ------------------------------------------------------------------------------ simulate


@dataclass(frozen=True)
class SimulationResult:
    """What `simulate` measured (the fields of ``imcc simulate --json``, whose dictionary
    is `to_json`), and the simulated ``outputs`` by output name.

    ``matches_onnxruntime`` is None when the ADC is lossy (the program then differs from
    compiled.onnx by design); ``mismatch`` says how an exact comparison failed (None when
    it did not fail). Accuracies (fractions) are None without labels."""

    images: int
    adc_bits: int | None
    adc_override: bool
    ort_agreement: float
    max_abs_diff: float
    matches_onnxruntime: bool | None
    mismatch: str | None
    cycles_per_image: int
    report_cycles: int
    float_top1: float | None
    compiled_top1: float | None
    outputs: Mapping[str, np.ndarray] = dataclasses.field(repr=False)
    raw: Mapping[str, Any] = dataclasses.field(repr=False)
    # What `imcc simulate --save-outputs` writes: 'simulated' (the program's outputs),
    # 'onnxruntime' (compiled.onnx's on the same inputs) and 'labels' when the data has them
    saved: Mapping[str, np.ndarray] = dataclasses.field(repr=False, default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.raw)


def simulate(compiled: PathLike | CompiledModel, *, data: Any = None,
             limit: int | None = None, skip: int = 0, adc_bits: int | None = None,
             ideal_adc: bool = False, threads: int | None = None,
             max_memory_mib: int | None = None,
             progress: Callable[[int], None] | None = None,
             total: Callable[[int], None] | None = None) -> SimulationResult:
    """Run the crossbar program of a compiled output (a directory, or `compile`'s result)
    on ``data`` (a path, a bundled name, or an `imcc.dataset.Dataset`; default the bundled
    CIFAR-10 sample) and compare it with onnxruntime on compiled.onnx. ``adc_bits``: an ADC
    width overriding the compiled one; ``ideal_adc``: exact column sums; ``threads``: BLAS
    and onnxruntime threads (0: one per core); ``max_memory_mib``: memory budget of one
    layer's working set (MiB). ``progress(n)`` is called as n more images are simulated,
    ``total(n)`` once the number of images is known. A mismatch is returned
    (``mismatch``), not raised."""
    from imcc.dataset import Dataset, bundled_example_data, load_npz
    from imcc.sim.evaluate import ADC_COMPILED, evaluate
    from imcc.targets.program_io import read_program
    from imcc.threads import limit_threads

    if isinstance(compiled, CompiledModel):
        if compiled.outdir is None:
            raise UsageError("this compile wrote no output (write=False): nothing to simulate")
        outdir = compiled.outdir
    else:
        outdir = Path(compiled)
    if adc_bits is not None and not 1 <= adc_bits <= 24:
        raise UsageError(f"--adc-bits must be in [1, 24], got {adc_bits}")
    if adc_bits is not None and ideal_adc:
        raise UsageError("--adc-bits and --ideal-adc exclude each other")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    if skip < 0:
        raise UsageError(f"--skip must be >= 0, got {skip}")
    if threads is not None and threads < 0:
        raise UsageError(f"--threads must be >= 0, got {threads}")
    if max_memory_mib is not None and max_memory_mib < 1:
        raise UsageError(f"--max-memory must be >= 1 (MiB), got {max_memory_mib}")
    if isinstance(data, Dataset):
        ds = data
    else:
        prog = read_program(outdir)
        name, shape = prog.inputs[0]
        ds = load_npz(bundled_example_data() if data is None else data, name, shape)
    if skip:
        if skip >= len(ds):
            raise UsageError(f"--skip {skip} leaves no inputs of {len(ds)}")
        ds = ds.split(skip)[1]
    if limit is not None:
        ds = ds.take(limit)
    if total is not None:
        total(len(ds))
    adc = None if ideal_adc else ADC_COMPILED if adc_bits is None else adc_bits
    budget = None if max_memory_mib is None else max_memory_mib << 20
    saved: dict[str, np.ndarray] = {}
    with limit_threads(threads):
        res, sim = evaluate(outdir, ds, adc, progress=progress, max_memory=budget,
                            arrays=saved)
    return SimulationResult(
        images=res["images"], adc_bits=res["adc_bits"], adc_override=res["adc_override"],
        ort_agreement=res["ort_agreement"], max_abs_diff=res["max_abs_diff"],
        matches_onnxruntime=res["matches_onnxruntime"], mismatch=res["mismatch"],
        cycles_per_image=res["cycles_per_image"], report_cycles=res["report_cycles"],
        float_top1=res.get("float_top1"), compiled_top1=res.get("compiled_top1"),
        outputs=dict(sim.outputs), raw=res, saved=saved)


# --------------------------------------------------------------------------------- check


@dataclass(frozen=True)
class CheckOutcome:
    """What `check` found: ``result`` (`imcc.analysis.budget.CheckResult`, one item per
    budget limit), the ``report`` checked and where its output is (None: not written)."""

    result: Any  # imcc.analysis.budget.CheckResult (imported lazily)
    report: Report
    outdir: Path | None

    @property
    def passed(self) -> bool:
        return bool(self.result.passed)


def check(model_or_outdir: PathLike | CompiledModel, budget: PathLike, *,
          output: PathLike | None = None, progress: Callable[[str], None] | None = None,
          **compile_options: Any) -> CheckOutcome:
    """Check a compiled result against a budget file (TOML, docs/reports.md). Given a
    directory written by `compile` (or `compile`'s result) it reads its report; given a
    model it compiles it first with ``compile_options`` (those of `compile`), writing the
    output to ``output`` only when one is given (a CI gate leaves no stray directory).
    Compile options with an already compiled input are refused (they would be ignored)."""
    from imcc.analysis.budget import check_budget, load_budget

    unknown = sorted(set(compile_options) - set(COMPILE_OPTIONS))
    if unknown:
        raise UsageError(f"check: unknown option{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)}")
    compiled = isinstance(model_or_outdir, CompiledModel) or Path(model_or_outdir).is_dir()
    if compiled and (compile_options or output is not None):
        given = sorted(compile_options) + (["output"] if output is not None else [])
        what = ("the result" if isinstance(model_or_outdir, CompiledModel)
                else str(model_or_outdir))
        raise UsageError(f"{what} is already compiled: compile options cannot apply to it "
                         f"({', '.join(given)})", hint="check the directory as it is, or "
                         "give the model to compile it with these options")
    b = load_budget(Path(budget))
    chip_limits = [m for m, _ in b.total.items() if m in ("throughput", "area_mm2", "arrays")]
    if chip_limits and not compiled and compile_options.get("chip") is None:
        raise UsageError(f"the budget limits {', '.join(chip_limits)}, which need a chip "
                         "placement", hint="add --chip, e.g. --chip isaac")
    if isinstance(model_or_outdir, CompiledModel):
        rep, dest = model_or_outdir.report, model_or_outdir.outdir
    elif compiled:
        dest = Path(model_or_outdir)
        rep = read_report(dest)[0]
    else:
        res = compile(model_or_outdir, output=output, write=output is not None,
                      progress=progress, **compile_options)
        rep, dest = res.report, res.outdir
    return CheckOutcome(check_budget(rep, b), rep, dest)


def read_report(outdir: PathLike) -> tuple[Report, dict[str, Any]]:
    """The report of a compiled directory, and report.json's dictionary as written."""
    from imcc.errors import DataError
    from imcc.fileio import parse_json

    d = Path(outdir)
    p = d / "report.json"
    if not p.is_file():
        raise DataError(f"{d}: no report.json here", hint="run `imcc compile MODEL -o "
                                                          "DIR` first")
    try:
        raw = parse_json(p.read_text(), str(p))
    except (ValueError, OSError) as exc:
        raise DataError(f"{p}: not valid JSON ({exc})") from exc
    try:
        return Report.from_json(raw), raw  # type: ignore[return-value]
    except DataError as exc:
        raise DataError(f"{p}: {exc}") from exc


# The options of `compile` that shape a compile (what `check` passes on, and refuses for an
# output directory, which is already compiled): its keyword parameters but the output ones.
COMPILE_OPTIONS = tuple(n for n in inspect.signature(compile).parameters
                        if n not in ("model", "output", "write", "verify_each", "progress"))

__all__ = ["COMPILE_OPTIONS", "CheckOutcome", "CompiledModel", "Example", "LayerInfo",
           "SimulationResult", "check", "compile", "layers", "list_examples",
           "parse_input_shapes", "parse_layer_ranks", "read_report", "simulate"]
