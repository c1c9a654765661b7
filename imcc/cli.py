"""Command-line interface: parses options, calls the library, renders results.

Exit codes: 0 ok; 1 budget exceeded (`imcc check`); 2 usage error; 3 bad or unsupported
model; 4 bad data/budget/tech/program file; 5 cannot write output; 70 internal error.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape as _escape_markup

from imcc import __version__
from imcc.errors import DataError, ImccError, Interrupted, UsageError
from imcc.report.model import Report
from imcc.report.units import safe_text

if TYPE_CHECKING:  # the CLI imports the library lazily, for a fast --help
    from imcc.compiler import CompileOptions

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="imcc: compile ONNX CNNs onto in-memory-computing crossbar arrays, "
                       "report cycles/energy, and simulate the mapped program against "
                       "onnxruntime.")


def _console(width: int | None = None, no_color: bool = False, stderr: bool = False
             ) -> Console:
    """A console for tables (stdout) or messages (stderr). Width: `width` (--width), else
    $COLUMNS, else the terminal's; output that is not a terminal and has no $COLUMNS gets
    160 columns rather than rich's 80, so a captured table is not squeezed. Styles are
    rich's: none when the stream is not a terminal (or NO_COLOR is set); --no-color turns
    every escape sequence off on a terminal too."""
    kw: dict[str, Any] = {"stderr": stderr}
    if no_color:
        kw["color_system"] = None
    c = Console(width=width, **kw)
    if width is None and not c.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        c = Console(width=160, **kw)
    return c


out = _console()
err = _console(stderr=True)
_STATE = {"debug": False}

# ------------------------------------------------------------------ shared option types
TargetOpt = Annotated[str, typer.Option("--target", "-t",
                                        help="Crossbar array size as ROWSxCOLUMNS (cells), "
                                             "e.g. 128x128.")]
WBitsOpt = Annotated[int, typer.Option(help="Weight precision in bits (two's complement).")]
CBitsOpt = Annotated[int, typer.Option(help="Bits stored per cell; a weight takes "
                                            "ceil(weight-bits/cell-bits) columns.")]
ABitsOpt = Annotated[int, typer.Option(help="Activation (input) precision in bits.")]
DacOpt = Annotated[int, typer.Option(help="Input bits applied per read phase (DAC "
                                          "resolution); phases = ceil(act-bits/dac-bits).")]
AdcOpt = Annotated[int, typer.Option(help="ADC resolution in bits (energy model).")]
MappingOpt = Annotated[str, typer.Option("--mapping", "-m",
                                         help="Crossbar mapping: im2col, sdk (square "
                                              "parallel windows), vw-sdk (any window), or "
                                              "auto (cheapest per layer).")]
RankOpt = Annotated[str, typer.Option(help="Group low-rank rank per layer: 'none', 'm/R' "
                                           "(output channels / R) or an absolute integer.")]
GroupsOpt = Annotated[int, typer.Option(help="Input-channel groups for low-rank "
                                             "factorization (>= 1).")]
LayerRankOpt = Annotated[list[str] | None, typer.Option(
    "--layer-rank", help="Per-layer rank override NAME=SPEC (repeatable); SPEC as --rank.")]
PolicyOpt = Annotated[Path | None, typer.Option(help="Low-rank policy file (TOML or JSON): "
                                                     "rank, groups, per-layer entries.")]
FirstLastOpt = Annotated[bool, typer.Option(help="Also factorize the first conv and the last "
                                                 "linear layer (left as is by default).")]
NoQuantOpt = Annotated[bool, typer.Option("--no-quantize", help="Keep float weights and "
                                          "activations (the layout and cycles stay those of "
                                          "--weight-bits).")]
FLBitsOpt = Annotated[int | None, typer.Option(help="Bits for weights and inputs of the first "
                                                    "and last crossbar layers (default: "
                                                    "--weight-bits / --act-bits).")]
CalibOpt = Annotated[Path | None, typer.Option(help="Calibration data (.npz: images [+mean, "
                                                    "std] or x); default: a deterministic "
                                                    "synthetic batch.")]
CalibLimitOpt = Annotated[int, typer.Option(help="Use at most this many calibration "
                                                 "samples (the first ones).")]
TechOpt = Annotated[str, typer.Option(help="Energy tech profile: isaac, neurosim, or a TOML "
                                           "file path.")]
ChipOpt = Annotated[str | None, typer.Option(
    "--chip", help="Place the program on a chip: a preset (isaac, pimcomp-arch-a) or a chip "
    "TOML file. Adds arrays used/available, segments, pipelined throughput (inferences/s), "
    "latency (ns), weight-write energy (pJ per inference) and area (mm2) to the report.")]
ChipArraysOpt = Annotated[int | None, typer.Option(
    "--chip-arrays", help="Number of crossbar arrays of the --chip (overrides the preset's "
    "cores x arrays per core; the area counts the cores they fill).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables (one "
                                                      "envelope: format, format_version, "
                                                      "imcc_version, command, model, then "
                                                      "the result; docs/reports.md).")]
WidthOpt = Annotated[int | None, typer.Option(
    "--width", metavar="COLUMNS", help="Table width in terminal columns (characters); "
    "columns that do not fit are abbreviated or left out, never cut. Default: $COLUMNS, else "
    "the terminal's width, else 160 when the output is not a terminal.")]
NoColorOpt = Annotated[bool, typer.Option(
    "--no-color", help="Plain text, no colours or styles (automatic when the output is "
    "not a terminal, or with NO_COLOR set).")]
FullNamesOpt = Annotated[bool, typer.Option(
    "--full-names", help="Show full ONNX node names (e.g. /layer1/layer1.0/conv1/Conv) "
    "instead of the short ones (layer1.0/conv1).")]
PassesOpt = Annotated[str | None, typer.Option(
    "--passes", "-p", help="An explicit pass pipeline replacing the default, e.g. "
    "'fold-bn,lowrank{rank=m/8,groups=4},quantize{weight_bits=4},map{strategy=vw-sdk}'; "
    "per-layer tables as layer_ranks={NAME=SPEC,...}. report.json's 'pipeline' holds the "
    "pipeline a compile ran in this form. Cannot be combined with --rank/--groups/"
    "--layer-rank/--policy/--no-quantize/--first-last-bits/--mapping/--include-first-last.")]


def _screen(width: int | None, no_color: bool) -> None:
    """Set up stdout/stderr for a command's --width and --no-color."""
    global out, err
    if width is not None and width < 20:
        raise UsageError(f"--width must be at least 20 (columns), got {width}")
    out = _console(width, no_color)
    err = _console(None, no_color, stderr=True)


def escape(text: object) -> str:
    """User-controlled text (paths, names) for a line of rich markup: never parsed as
    markup, control characters shown as escapes."""
    return _escape_markup(safe_text(text))


def _progress() -> Any:
    """A rich bar on a terminal, periodic plain lines on stderr otherwise (CI logs)."""
    from imcc.report.progress import progress

    return progress(err)


def _options(target: str, weight_bits: int, cell_bits: int, act_bits: int, dac_bits: int,
             adc_bits: int, mapping: str, rank: str, groups: int, layer_rank: list[str] | None,
             policy: Path | None, include_first_last: bool, no_quantize: bool,
             first_last_bits: int | None, calib: Path | None, calib_limit: int, tech: str,
             passes: str | None = None, chip: str | None = None,
             chip_arrays: int | None = None,
             model_input: Callable[[], tuple[str, tuple[int | None, ...]]] | None = None
             ) -> CompileOptions:
    from imcc.compiler import options_from_flags, parse_layer_ranks
    from imcc.passes.lowrank import LowRankPass
    from imcc.targets.crossbar import CrossbarTarget

    rows, cols = CrossbarTarget.parse_shape(target)
    if not no_quantize:  # the quantize pass's range, narrower than the target's [1, 16]
        from imcc.passes.quantize import check_bit_widths

        check_bit_widths(weight_bits, act_bits, first_last_bits, option=True)
    tgt = CrossbarTarget(rows, cols, weight_bits, cell_bits, act_bits, dac_bits, adc_bits)
    if calib_limit < 1:
        raise UsageError(f"--calib-limit must be >= 1, got {calib_limit}")
    kw: dict[str, Any] = dict(
        target=tgt, mapping=mapping, rank=rank, groups=groups,
        layer_ranks=parse_layer_ranks(layer_rank or []),
        policy=None if policy is None else LowRankPass.policy_from_file(policy),
        include_first_last=include_first_last, quantize=not no_quantize,
        first_last_bits=first_last_bits, tech=tech, passes=passes,
        verify_each=_STATE["debug"], chip=chip, chip_arrays=chip_arrays)
    opts = options_from_flags(**kw)  # every option is checked before --calib reads the model
    if calib is not None and not no_quantize:
        import dataclasses

        from imcc.dataset import load_npz

        assert model_input is not None
        opts = dataclasses.replace(opts, calib=load_npz(calib, *model_input())
                                   .take(calib_limit).x)
    return opts


def _compile_option_spec(
    target: TargetOpt = "128x128", weight_bits: WBitsOpt = 4, cell_bits: CBitsOpt = 1,
    act_bits: ABitsOpt = 4, dac_bits: DacOpt = 1, adc_bits: AdcOpt = 8,
    mapping: MappingOpt = "auto", rank: RankOpt = "none", groups: GroupsOpt = 1,
    layer_rank: LayerRankOpt = None, policy: PolicyOpt = None,
    include_first_last: FirstLastOpt = False, no_quantize: NoQuantOpt = False,
    first_last_bits: FLBitsOpt = None, calib: CalibOpt = None, calib_limit: CalibLimitOpt = 256,
    tech: TechOpt = "isaac", passes: PassesOpt = None, chip: ChipOpt = None,
    chip_arrays: ChipArraysOpt = None,
) -> None:
    """The compile options `compile` and `check` share (the parameters of `_options`),
    declared once: `_with_compile_options` adds them to a command."""


_COMPILE_KEYS = tuple(inspect.signature(_compile_option_spec).parameters)


def _with_compile_options(fn: Callable[..., None]) -> Callable[..., None]:
    """Give a command whose signature ends in `**opts` the shared compile options, for
    typer to parse (it reads `__signature__` and the annotations); `opts` then holds them."""
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    shared = list(inspect.signature(_compile_option_spec, eval_str=True).parameters.values())
    params = own + shared
    fn.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    fn.__annotations__ = {p.name: p.annotation for p in params}
    return fn


def _compile_options(params: dict[str, Any]) -> dict[str, Any]:
    """Pick the shared compile options out of a command's parameters."""
    return {k: params[k] for k in _COMPILE_KEYS if k in params}


def _compile(model: str, opts_kw: dict[str, Any], outdir: Path | None, quiet: bool
             ) -> tuple[Report, Path]:
    from imcc.compiler import compile_graph, default_outdir, resolve_model, write_outputs
    from imcc.frontend import import_model
    from imcc.ir import Graph

    path = resolve_model(model)
    imported: list[Graph] = []

    def model_input() -> tuple[str, tuple[int | None, ...]]:
        # Only --calib needs the model before compiling (to check the data's shape); the
        # graph imported here is the one compiled, so the model is read once.
        imported.append(import_model(path, name=path.stem))
        v = imported[0].inputs[0]
        return v.name, v.type.shape

    opts = _options(**opts_kw, model_input=model_input)
    graph = imported[0] if imported else import_model(path, name=path.stem)
    with _progress() as prog:
        task = prog.add_task("compiling", total=None)
        res = compile_graph(graph, opts, path.stem,
                            progress=lambda s: prog.update(task, description=f"pass {s}"))
    from dataclasses import replace

    from imcc.compiler import input_normalization

    res = replace(res, input_normalization=input_normalization(path))
    inputs = [path] + [opts_kw[k] for k in ("calib", "policy") if opts_kw.get(k) is not None]
    dest = write_outputs(res, outdir or default_outdir(model), protect=inputs)
    return Report.from_json(res.report), dest


# ---------------------------------------------------------------------------- commands


def _version(value: bool) -> None:
    if value:
        out.print(f"imcc {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(debug: Annotated[bool, typer.Option(help="Show tracebacks for errors, and run "
                                                    "the IR verifier after every pass.")
                           ] = False,
          version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False
          ) -> None:
    _STATE["debug"] = debug
    _screen(None, False)  # each invocation starts from the defaults (tests run several)


@app.command("compile")
@_with_compile_options
def compile_cmd(
    model: Annotated[str, typer.Argument(help="ONNX model path, or 'resnet20' for the bundled "
                                              "pretrained CIFAR-10 ResNet-20.")] = "resnet20",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output directory "
                                                "(default: ./<model>.imcc).")] = None,
    json_: JsonOpt = False, width: WidthOpt = None, no_color: NoColorOpt = False,
    full_names: FullNamesOpt = False, **opts: Any,
) -> None:
    """Compile MODEL for a crossbar target: writes report.json, compiled.onnx, float.onnx,
    program.json and arrays.npz into the output directory and prints the per-layer table."""
    _screen(width, no_color)
    report, dest = _compile(model, _compile_options(opts), output, json_)
    if json_:
        from imcc.report.envelope import report_envelope

        out.print_json(json.dumps(report_envelope(report.to_json(), "compile")))
        return
    from imcc.report.terminal import print_report

    print_report(report, out, full_names)
    out.print(f"wrote {escape(str(dest))}/ (report.json, compiled.onnx, program.json, "
              "arrays.npz)")


def _read_report(outdir: Path) -> tuple[Report, dict[str, Any]]:
    """The report of a compiled directory, and report.json's dictionary as written."""
    from imcc.fileio import parse_json

    p = outdir / "report.json"
    if not p.is_file():
        raise DataError(f"{outdir}: no report.json here", hint="run `imcc compile MODEL -o "
                                                               "DIR` first")
    try:
        raw = parse_json(p.read_text(), str(p))
    except (ValueError, OSError) as exc:
        raise DataError(f"{p}: not valid JSON ({exc})") from exc
    try:
        return Report.from_json(raw), raw  # type: ignore[return-value]
    except DataError as exc:
        raise DataError(f"{p}: {exc}") from exc


@app.command("report")
def report_cmd(
    outdir: Annotated[Path, typer.Argument(help="A directory written by `imcc compile`.")],
    json_: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (for "
                                                              "pull-request comments).")] = False,
    csv: Annotated[bool, typer.Option("--csv", help="Print CSV, one row per layer.")] = False,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML page with "
                                                   "charts to this file.")] = None,
    width: WidthOpt = None, no_color: NoColorOpt = False, full_names: FullNamesOpt = False,
) -> None:
    """Re-render a compiled result (terminal table by default)."""
    _screen(width, no_color)
    from imcc.fileio import atomic_write_bytes
    from imcc.report import render

    rep, raw = _read_report(outdir)
    if html is not None:
        atomic_write_bytes(html, render.to_html(rep).encode())
        err.print(f"wrote {escape(str(html))}")
    if json_:
        from imcc.report.envelope import report_envelope

        # report.json's keys as written, in the envelope every --json output shares
        out.print_json(json.dumps(report_envelope(raw, "report")))
    elif markdown:
        sys.stdout.write(render.to_markdown(rep))
    elif csv:
        sys.stdout.write(render.to_csv(rep))
    elif html is None:
        from imcc.report.terminal import print_report

        print_report(rep, out, full_names)


@app.command("simulate")
def simulate_cmd(
    outdir: Annotated[Path, typer.Argument(help="A directory written by `imcc compile`.")],
    data: Annotated[Path | None, typer.Option(help="Input data (.npz: images [+mean, std, "
                                                   "labels] or x). Default: the bundled "
                                                   "CIFAR-10 sample.")] = None,
    limit: Annotated[int | None, typer.Option(help="Simulate only the first N inputs.")] = None,
    skip: Annotated[int, typer.Option(help="Skip the first N inputs (e.g. those used for "
                                           "calibration).")] = 0,
    adc_bits: Annotated[int | None, typer.Option(
        help="Model an ADC of this many bits per input phase (default: the width the "
             "program was compiled for, report.json's target.adc_bits; another width is an "
             "override and is shown as one).")] = None,
    ideal_adc: Annotated[bool, typer.Option("--ideal-adc", help="Read exact column sums "
                                            "(no ADC model).")] = False,
    allow_mismatch: Annotated[bool, typer.Option(
        "--allow-mismatch", help="Exit 0 even when an exact comparison (ideal or lossless "
        "ADC) finds the program differing from onnxruntime on compiled.onnx.")] = False,
    save_outputs: Annotated[Path | None, typer.Option(
        help="Save the outputs to this .npz (written atomically): 'simulated' (the "
             "program's), 'onnxruntime' (compiled.onnx's on the same inputs), and 'labels' "
             "when the data has labels; one row per image.")] = None,
    threads: Annotated[int | None, typer.Option(help="Threads for numpy's BLAS and "
                                                     "onnxruntime (0: one per core). Default: "
                                                     "OPENBLAS_NUM_THREADS / OMP_NUM_THREADS if "
                                                     "set, else 1.")] = None,
    max_memory: Annotated[int | None, typer.Option(
        "--max-memory", metavar="MIB", help="Memory budget in MiB (2^20 bytes) for one "
                                            "layer's working set (padded input, unrolled "
                                            "windows, outputs); the images are simulated in "
                                            "chunks that fit it. Default: a quarter of the "
                                            "machine's RAM.")] = None,
    json_: JsonOpt = False, width: WidthOpt = None, no_color: NoColorOpt = False,
) -> None:
    """Execute the crossbar program on data, compare with onnxruntime on compiled.onnx, and
    report accuracy and the executed cycles per image. With an ideal ADC, or one lossless
    for the program (the default 8 bits on 128-row arrays), the program must equal
    onnxruntime: exit 1 when it does not (agreement below 100% or outputs differing beyond
    float rounding), unless --allow-mismatch. A lossy ADC differs by design: reported, not
    judged. Non-finite outputs are an error (exit 4)."""
    _screen(width, no_color)
    from imcc.dataset import bundled_example_data, load_npz
    from imcc.fileio import atomic_write_bytes, npz_bytes
    from imcc.sim.evaluate import ADC_COMPILED, evaluate
    from imcc.targets.program_io import read_program

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
    if max_memory is not None and max_memory < 1:
        raise UsageError(f"--max-memory must be >= 1 (MiB), got {max_memory}")
    prog = read_program(outdir)
    name, shape = prog.inputs[0]
    ds = load_npz(data or bundled_example_data(), name, shape)
    if skip:
        if skip >= len(ds):
            raise UsageError(f"--skip {skip} leaves no inputs of {len(ds)}")
        ds = ds.split(skip)[1]
    if limit is not None:
        ds = ds.take(limit)
    adc = None if ideal_adc else ADC_COMPILED if adc_bits is None else adc_bits
    from imcc.threads import limit_threads

    budget = None if max_memory is None else max_memory << 20
    with limit_threads(threads), _progress() as p:
        task = p.add_task("simulating", total=len(ds))
        arrays: dict[str, Any] = {}
        res, _sim = evaluate(outdir, ds, adc, progress=lambda n: p.advance(task, n),
                             max_memory=budget, arrays=arrays)
    if save_outputs is not None:
        atomic_write_bytes(save_outputs, npz_bytes(arrays))
    if json_:
        from imcc.report.envelope import envelope

        out.print_json(json.dumps(envelope("simulation", "simulate", prog.model, res),
                                  allow_nan=False))
    else:
        from imcc.report.terminal import adc_line, sim_table

        out.print(sim_table(res))
        out.print(adc_line(res), highlight=False)
    if res["mismatch"] and not allow_mismatch:
        err.print(f"[red]imcc: simulate: the program differs from onnxruntime:[/] "
                  f"{escape(res['mismatch'])} (--allow-mismatch accepts it)", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(1)


@app.command("check")
@_with_compile_options
def check_cmd(
    target_or_model: Annotated[str, typer.Argument(
        metavar="OUTDIR|MODEL", help="A compiled output directory, or a model to compile first "
                                     "(path or 'resnet20').")],
    budget: Annotated[Path, typer.Option(help="Budget TOML: [budget] cycles, energy_uj, "
                                              "latency_ms, tolerance, per-layer limits.")],
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML file (one test case "
                                                    "per budget item).")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write the "
                                                "compiled result when compiling a model.")] = None,
    json_: JsonOpt = False, width: WidthOpt = None, no_color: NoColorOpt = False,
    **opts: Any,
) -> None:
    """CI gate: exit 0 when the model is within budget, 1 when a budget is exceeded, 2 on any
    usage or input error (bad budget file, bad model, bad options)."""
    from imcc.analysis.budget import check_budget, load_budget, to_junit_xml
    from imcc.fileio import atomic_write_bytes

    # A CI gate's contract (issue #5): 0 within budget, 1 over, 2 for any usage or input
    # error -- whatever the finer-grained exit code elsewhere.
    try:
        _screen(width, no_color)
        b = load_budget(budget)
        p = Path(target_or_model)
        if p.is_dir():
            rep = _read_report(p)[0]
        else:
            rep, _ = _compile(target_or_model, _compile_options(opts), output, True)
        result = check_budget(rep, b)
    except ImccError as exc:
        exc.exit_code = 2
        raise
    if junit is not None:
        atomic_write_bytes(junit, to_junit_xml(result, f"imcc-check {rep.model}").encode())
    if json_:
        from imcc.report.envelope import envelope

        out.print_json(json.dumps(envelope("check", "check", rep.model, result.to_dict())))
    else:
        from imcc.report.terminal import check_lines

        for line in check_lines(result):
            out.print(line)
    raise typer.Exit(0 if result.passed else 1)


@app.command("sweep")
def sweep_cmd(
    model: Annotated[str, typer.Argument(help="ONNX model path, or 'resnet20' for the bundled "
                                              "pretrained CIFAR-10 ResNet-20.")] = "resnet20",
    targets: Annotated[str, typer.Option(help="Comma-separated array sizes ROWSxCOLS, e.g. "
                                              "32x32,64x64,128x128.")] = "64x64,128x128",
    ranks: Annotated[str | None, typer.Option(
        help="Comma-separated low-rank ranks: none, m/R or an integer (default: "
             "none,m/2,m/4; with --policy: the policy's rank).")] = None,
    groups: Annotated[str | None, typer.Option(
        help="Comma-separated low-rank group counts; a rank that compresses nothing is swept "
             "once, as groups 1 (default: 1,4; with --policy: the policy's groups).")] = None,
    mappings: Annotated[str | None, typer.Option(
        help="Comma-separated mappings: im2col, sdk, vw-sdk, auto (default: "
             "im2col,auto).")] = None,
    weight_bits: WBitsOpt = 4, cell_bits: CBitsOpt = 1, act_bits: ABitsOpt = 4,
    dac_bits: DacOpt = 1, adc_bits: AdcOpt = 8, tech: TechOpt = "isaac",
    layer_rank: LayerRankOpt = None, policy: PolicyOpt = None,
    include_first_last: FirstLastOpt = False, no_quantize: NoQuantOpt = False,
    first_last_bits: FLBitsOpt = None, calib: CalibOpt = None, calib_limit: CalibLimitOpt = 256,
    passes: Annotated[str | None, typer.Option(
        "--passes", "-p", help="An explicit pass pipeline for every row (as `imcc compile "
        "-p`); the sweep then varies only --targets, so --ranks/--groups/--mappings cannot be "
        "given, nor the flags -p excludes in `imcc compile`.")] = None,
    data: Annotated[Path | None, typer.Option(help="Labelled data (.npz: images [+mean, std] "
                                                   "+ labels) for the top-1 accuracy of each "
                                                   "compiled model (onnxruntime).")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N inputs of "
                                                   "--data.")] = None,
    skip: Annotated[int, typer.Option(help="Skip the first N inputs of --data (e.g. those "
                                           "used for --calib).")] = 0,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Worker processes "
                                             "(default: all cores; 1 runs in-process; with "
                                             "--scheduler local, the cluster's "
                                             "workers).")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="Run the configurations as dask.distributed tasks: the address of a running "
             "scheduler (e.g. tcp://HOST:8786), or 'local' for a LocalCluster of --jobs "
             "single-threaded worker processes. The model and calibration data are shipped "
             "once per worker. Needs the optional extra: pip install 'imcc[distributed]'. "
             "Default: the local process pool.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Keep the rows an interrupted sweep left in the -o CSV and run only "
                         "the others (rows are matched on target, rank, groups and mapping; "
                         "the CSV's header and its settings record, <csv>.settings.json, "
                         "must match this sweep's options).")] = False,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="CSV file to write "
                                                "(default: ./<model>.sweep.csv).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write a self-contained HTML page "
                                                   "with the Pareto plot (accuracy or "
                                                   "reconstruction error vs cycles).")] = None,
    json_: JsonOpt = False, width: WidthOpt = None, no_color: NoColorOpt = False,
) -> None:
    """Design-space sweep: compile MODEL for every target x rank x groups x mapping, write
    one CSV row per configuration (cycles, energy, latency, error, accuracy with --data).
    Every other compile option of `imcc compile` applies to all rows."""
    from imcc.fileio import atomic_write_bytes
    from imcc.report.sweep import sweep_payload
    from imcc.sweep import SweepSpec, check_runner, plan_sweep, split_list, sweep_to_csv

    _screen(width, no_color)

    def listed(text: str | None, option: str) -> tuple[str, ...] | None:
        return None if text is None else split_list(text, option)

    spec = SweepSpec(
        model=model, targets=split_list(targets, "--targets"),
        ranks=listed(ranks, "--ranks"), groups=listed(groups, "--groups"),
        mappings=listed(mappings, "--mappings"), weight_bits=weight_bits,
        cell_bits=cell_bits, act_bits=act_bits, dac_bits=dac_bits, adc_bits=adc_bits,
        tech=tech, quantize=not no_quantize, first_last_bits=first_last_bits,
        include_first_last=include_first_last, calib=calib, calib_limit=calib_limit,
        data=data, limit=limit, skip=skip, layer_rank=tuple(layer_rank or ()), policy=policy,
        passes=passes, verify_each=_STATE["debug"])
    configs = plan_sweep(spec)  # every option checked before any compile
    check_runner(jobs, scheduler)
    from imcc.compiler import resolve_model

    dest = output or Path.cwd() / f"{resolve_model(model).stem}.sweep.csv"
    with _progress() as prog:
        task = prog.add_task("sweep", total=len(configs))
        result = sweep_to_csv(spec, dest, jobs, scheduler=scheduler, resume=resume,
                              progress=lambda done, _total, note: prog.update(
                                  task, completed=done, description=escape(note)))
    if plot is not None:
        from imcc.report.sweep import to_html

        atomic_write_bytes(plot, to_html(result).encode())
    if json_:
        from imcc.report.envelope import envelope

        out.print_json(json.dumps(envelope("sweep", "sweep", result.model, sweep_payload(result))))
    else:
        from imcc.report.terminal import print_sweep

        print_sweep(result, out)
    err.print(escape(f"wrote {dest}" + (f" and {plot}" if plot is not None else "")))


def _click_error(exc: Exception, names: set[str]) -> None:
    """Option-parsing errors from click (typer may vendor its own copy, so they are matched
    by class name): one line and exit 2, like every other usage error."""
    ctx = getattr(exc, "ctx", None)
    if "NoArgsIsHelpError" in names and ctx is not None:
        out.print(ctx.get_help(), highlight=False)
        sys.exit(0)
    if "Abort" in names:
        err.print("imcc: aborted")
        sys.exit(130)
    where = ctx.command_path if ctx is not None else "imcc"
    msg = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    err.print(f"[red]imcc: error:[/] {escape(msg)} (see `{where} --help`)", highlight=False,
              soft_wrap=True)
    sys.exit(2 if "UsageError" in names else int(getattr(exc, "exit_code", 2)))


def _on_signal(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def main() -> None:
    """Console entry point: turns ImccError into a one-line message and an exit code, and a
    termination signal into clean-up (no temporary output left behind), one line and exit
    128 + signal."""
    debug = "--debug" in sys.argv
    from imcc.threads import pin_default_threads

    pin_default_threads()  # before numpy loads: BLAS threads wait on busy cores otherwise
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    try:
        code = app(prog_name="imcc", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except ImccError as exc:
        if debug:
            raise
        err.print(f"[red]imcc: error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        err.print(f"imcc: interrupted by {signal.Signals(exc.signum).name}; nothing was "
                  "left half-written", highlight=False)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        err.print("imcc: interrupted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last line of defence: never a bare traceback
        names = {c.__name__ for c in type(exc).__mro__}
        if "ClickException" in names or "Abort" in names:
            _click_error(exc, names)
        if debug:
            raise
        err.print(f"[red]imcc: internal error:[/] {type(exc).__name__}: {escape(str(exc))} "
                  "(rerun with --debug for a traceback, and please report it)",
                  highlight=False, soft_wrap=True)
        sys.exit(70)


if __name__ == "__main__":
    main()
