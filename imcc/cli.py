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
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape as _escape_markup

from imcc import __version__
from imcc.errors import ImccError, Interrupted, UsageError
from imcc.report.units import safe_text

# The CLI imports the library lazily (inside the commands), for a fast --help and
# completion. Shell completion: `imcc --install-completion` (bash, zsh, fish, PowerShell).
app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
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
_STATE = {"debug": False, "quiet": False}


def info(text: str) -> None:
    """An informational line on stderr ("wrote ..."), left out with -q/--quiet."""
    if not _STATE["quiet"]:
        err.print(text, highlight=False, soft_wrap=True)


def warn(text: str) -> None:
    """A warning on stderr, one line, printed even with -q/--quiet."""
    err.print(f"[yellow]imcc: warning:[/] {escape(text)}", highlight=False, soft_wrap=True)

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
    "--layer-rank", help="Per-layer rank override NAME=SPEC (repeatable); SPEC as --rank; "
    "NAME as the tables show it (layer1.0/conv1) or the full ONNX name (`imcc layers "
    "MODEL` lists both).")]
PolicyOpt = Annotated[Path | None, typer.Option(help="Low-rank policy file (TOML or JSON): "
                                                     "rank, groups, per-layer entries (layers "
                                                     "named as for --layer-rank).")]
LowRankMethodOpt = Annotated[str, typer.Option(
    help="How low-rank factors are fitted: data (to the float network's outputs on the "
    "--calib images, fed by the already factorized layers), svd (per-group truncated SVD of "
    "the weights), or auto: data with --calib, svd without.")]
FirstLastOpt = Annotated[bool, typer.Option(help="Also factorize the first conv and the last "
                                                 "linear layer (left as is by default).")]
NoQuantOpt = Annotated[bool, typer.Option("--no-quantize", help="Keep float weights and "
                                          "activations (the layout and cycles stay those of "
                                          "--weight-bits).")]
FLBitsOpt = Annotated[int | None, typer.Option(help="Bits for weights and inputs of the first "
                                                    "and last crossbar layers (default: "
                                                    "--weight-bits / --act-bits).")]
CalibOpt = Annotated[Path | None, typer.Option(help="Calibration data (.npz: images [+mean, "
                                                    "std] or x), or 'cifar10' for the bundled "
                                                    "sample, for the activation scales, GPTQ "
                                                    "weights and the data-aware low-rank fit; "
                                                    "default: a deterministic synthetic batch "
                                                    "for the scales, round-to-nearest weights "
                                                    "and plain SVD.")]
CalibLimitOpt = Annotated[int, typer.Option(help="Use at most this many calibration "
                                                 "samples (the first ones).")]
TechOpt = Annotated[str, typer.Option(help="Energy tech profile: isaac, neurosim, or a TOML "
                                           "file path.")]
ChipOpt = Annotated[str | None, typer.Option(
    "--chip", help="Place the program on a chip: a preset (isaac, pimcomp-arch-a) or a chip "
    "TOML file. Adds arrays used/available, utilization, segments, per-layer replicas and "
    "stage time (ns), pipelined throughput (inferences/s), latency (ns, first input to "
    "last output, with inter-core transfers), energy per inference incl. weight writes "
    "(pJ), area (mm2), TOPS, TOPS/W and TOPS/mm2 to the report, and the placement to "
    "program.json.")]
ChipArraysOpt = Annotated[int | None, typer.Option(
    "--chip-arrays", help="Number of crossbar arrays of the --chip (overrides the preset's "
    "cores x arrays per core; the area counts the cores they fill).")]
ChipBatchOpt = Annotated[int | None, typer.Option(
    "--chip-batch", help="Images (inferences) run per weight load on the --chip (default: the "
    "chip file's batch, 1 for the presets). A model that needs more arrays than the chip "
    "has is reprogrammed segment by segment for every batch, so its weight-write energy "
    "(pJ per inference) and time are shared by this many inferences.")]
InputShapeOpt = Annotated[list[str] | None, typer.Option(
    "--input-shape", metavar="NAME=DIMS", help="Fix a dynamic input size, e.g. "
    "input=1x3x224x224 (repeatable; NAME= may be left out for a one-input model). The batch "
    "axis stays dynamic; axes the model fixes must match.")]
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
    "--passes", "-p", metavar="PIPELINE", help="A pass pipeline replacing the default: "
    "passes joined by commas, options in braces, e.g. 'fold-bn, lowrank{rank=m/8}, "
    "quantize, map'. `imcc passes` lists every pass with its options, units and defaults. "
    "report.json's 'pipeline' holds the pipeline a compile ran. Not combined with the "
    "flags that shape the default pipeline (rank, groups, layer rank, policy, mapping, "
    "quantize and first/last flags).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only results, warnings "
                                        "and errors: no progress, no table after a compile, "
                                        "no 'wrote ...' lines.")]
ModelArg = Annotated[str, typer.Argument(
    help="ONNX model path, or the name of a bundled model ('resnet20'; `imcc examples` "
         "lists them).")]


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
    """A rich bar on a terminal, periodic plain lines on stderr otherwise (CI logs);
    nothing with -q/--quiet."""
    from imcc.report.progress import progress

    return progress(err, quiet=bool(_STATE["quiet"]))


def _compile_option_spec(
    target: TargetOpt = "128x128", weight_bits: WBitsOpt = 4, cell_bits: CBitsOpt = 1,
    act_bits: ABitsOpt = 4, dac_bits: DacOpt = 1, adc_bits: AdcOpt = 8,
    mapping: MappingOpt = "auto", rank: RankOpt = "none", groups: GroupsOpt = 1,
    layer_rank: LayerRankOpt = None, policy: PolicyOpt = None,
    include_first_last: FirstLastOpt = False, no_quantize: NoQuantOpt = False,
    first_last_bits: FLBitsOpt = None, calib: CalibOpt = None, calib_limit: CalibLimitOpt = 256,
    tech: TechOpt = "isaac", passes: PassesOpt = None, chip: ChipOpt = None,
    chip_arrays: ChipArraysOpt = None, chip_batch: ChipBatchOpt = None,
    lowrank_method: LowRankMethodOpt = "auto", input_shape: InputShapeOpt = None,
) -> None:
    """The compile options `compile` and `check` share, declared once:
    `_with_compile_options` adds them to a command, `_api_options` turns them into the
    keyword arguments of `imcc.api.compile`."""


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


# CLI option -> (imcc.api.compile keyword, value as the API takes it)
_TO_API: dict[str, Callable[[Any], tuple[str, Any]]] = {
    "layer_rank": lambda v: ("layer_ranks", list(v or [])),
    "no_quantize": lambda v: ("quantize", not v),
    "input_shape": lambda v: ("input_shapes", None if not v else _parse_input_shapes(v)),
}


def _parse_input_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    from imcc.api import parse_input_shapes

    return parse_input_shapes(items)


def _api_options(params: dict[str, Any], only: set[str] | None = None) -> dict[str, Any]:
    """The shared compile options among a command's parameters as `imcc.api.compile`
    keywords (``only``: just these CLI options, e.g. those given on the command line)."""
    res: dict[str, Any] = {}
    for k in _COMPILE_KEYS:
        if k in params and (only is None or k in only):
            key, value = _TO_API.get(k, lambda v, k=k: (k, v))(params[k])
            res[key] = value
    return res


def _given(ctx: typer.Context, names: tuple[str, ...]) -> set[str]:
    """The parameters set on the command line (or by environment), not left at default."""
    # typer may vendor its own click, so the ParameterSource is matched by name
    def source(n: str) -> str:
        return getattr(ctx.get_parameter_source(n), "name", "")

    return {n for n in names if source(n) in ("COMMANDLINE", "ENVIRONMENT")}


def _compile_progress() -> tuple[Any, Callable[[str], None]]:
    prog = _progress()
    task = prog.add_task("compiling", total=None)
    return prog, lambda s: prog.update(task, description=f"pass {s}")


# ---------------------------------------------------------------------------- commands


def _version(value: bool) -> None:
    if value:
        out.print(f"imcc {__version__}", highlight=False, soft_wrap=True)
        raise typer.Exit(0)


@app.callback()
def _main(debug: Annotated[bool, typer.Option(help="Show tracebacks for errors, and run "
                                                    "the IR verifier after every pass.")
                           ] = False,
          quiet: QuietOpt = False,
          version: Annotated[bool, typer.Option("--version", "-V", callback=_version,
                                                is_eager=True,
                                                help="Print the version and exit.")] = False
          ) -> None:
    _STATE["debug"] = debug
    _STATE["quiet"] = quiet
    _screen(None, False)  # each invocation starts from the defaults (tests run several)


@app.command("compile")
@_with_compile_options
def compile_cmd(
    model: ModelArg = "resnet20",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output directory "
                                                "(default: ./<model>.imcc).")] = None,
    json_: JsonOpt = False, quiet: QuietOpt = False, width: WidthOpt = None,
    no_color: NoColorOpt = False, full_names: FullNamesOpt = False, **opts: Any,
) -> None:
    """Compile MODEL for a crossbar target: writes report.json, compiled.onnx, float.onnx,
    program.json and arrays.npz into the output directory and prints the per-layer table.
    Warnings (e.g. a rank clamped to what a layer allows) go to stderr and report.json."""
    _STATE["quiet"] = _STATE["quiet"] or quiet
    _screen(width, no_color)
    from imcc.api import compile as compile_model

    prog, progress = _compile_progress()
    with prog:
        res = compile_model(model, output=output, verify_each=_STATE["debug"],
                            progress=progress, **_api_options(opts))
    for w in res.warnings:
        warn(w)
    if json_:
        from imcc.report.envelope import report_envelope

        out.print_json(json.dumps(report_envelope(res.report.to_json(), "compile")))
    elif not _STATE["quiet"]:
        from imcc.report.terminal import print_report

        print_report(res.report, out, full_names)
    info(f"wrote {escape(str(res.outdir))}/ (report.json, compiled.onnx, float.onnx, "
         "program.json, arrays.npz)")


@app.command("report")
def report_cmd(
    outdir: Annotated[Path, typer.Argument(help="A directory written by `imcc compile`.")],
    json_: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (for "
                                                              "pull-request comments).")] = False,
    csv: Annotated[bool, typer.Option("--csv", help="Print CSV, one row per layer.")] = False,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML page with "
                                                   "charts to this file.")] = None,
    quiet: QuietOpt = False, width: WidthOpt = None, no_color: NoColorOpt = False,
    full_names: FullNamesOpt = False,
) -> None:
    """Re-render a compiled result (terminal table by default)."""
    _STATE["quiet"] = _STATE["quiet"] or quiet
    _screen(width, no_color)
    from imcc.api import read_report
    from imcc.fileio import atomic_write_bytes
    from imcc.report import render

    rep, raw = read_report(outdir)
    if html is not None:
        atomic_write_bytes(html, render.to_html(rep).encode())
        info(f"wrote {escape(str(html))}")
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
                                                   "labels] or x), or 'cifar10'. Default: the "
                                                   "bundled CIFAR-10 sample.")] = None,
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
    json_: JsonOpt = False, quiet: QuietOpt = False, width: WidthOpt = None,
    no_color: NoColorOpt = False,
) -> None:
    """Execute the crossbar program on data, compare with onnxruntime on compiled.onnx, and
    report accuracy and the executed cycles per image. With an ideal ADC, or one lossless
    for the program (the default 8 bits on 128-row arrays), the program must equal
    onnxruntime: exit 1 when it does not (agreement below 100% or outputs differing beyond
    float rounding), unless --allow-mismatch. A lossy ADC differs by design: reported, not
    judged. Non-finite outputs are an error (exit 4)."""
    _STATE["quiet"] = _STATE["quiet"] or quiet
    _screen(width, no_color)
    from imcc.api import simulate
    from imcc.fileio import atomic_write_bytes, npz_bytes

    with _progress() as p:
        task = p.add_task("simulating", total=None)
        sim = simulate(outdir, data=data, limit=limit, skip=skip, adc_bits=adc_bits,
                       ideal_adc=ideal_adc, threads=threads, max_memory_mib=max_memory,
                       progress=lambda n: p.advance(task, n),
                       total=lambda n: p.update(task, total=n))
    res = sim.to_json()
    if save_outputs is not None:
        atomic_write_bytes(save_outputs, npz_bytes(dict(sim.saved)))
    if json_:
        from imcc.api import read_report
        from imcc.report.envelope import envelope

        model = read_report(outdir)[0].model
        out.print_json(json.dumps(envelope("simulation", "simulate", model, res),
                                  allow_nan=False))
    else:
        from imcc.report.terminal import adc_line, sim_table

        out.print(sim_table(res))
        out.print(adc_line(res), highlight=False, soft_wrap=True)
    if res["mismatch"] and not allow_mismatch:
        err.print(f"[red]imcc: simulate: the program differs from onnxruntime:[/] "
                  f"{escape(res['mismatch'])} (--allow-mismatch accepts it)", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(1)


@app.command("check")
@_with_compile_options
def check_cmd(
    ctx: typer.Context,
    target_or_model: Annotated[str, typer.Argument(
        metavar="OUTDIR|MODEL", help="A compiled output directory, or a model to compile first "
                                     "(path or 'resnet20'); a model is compiled in memory and "
                                     "nothing is written unless -o is given.")],
    budget: Annotated[Path, typer.Option(help="Budget TOML: [budget] cycles, energy_uj "
                                              "(microjoules), latency_ms (milliseconds), "
                                              "tolerance (fraction); chip limits (need a "
                                              "--chip compile) throughput (minimum "
                                              "inferences/s), area_mm2 (mm2), arrays (arrays "
                                              "used); per-layer limits.")],
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML file: one test case "
                                                    "per budget item, or one <error> test "
                                                    "case when the check cannot run "
                                                    "(exit 2).")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Also write the "
                                                "compiled result here when compiling a "
                                                "model.")] = None,
    json_: JsonOpt = False, quiet: QuietOpt = False, width: WidthOpt = None,
    no_color: NoColorOpt = False, **opts: Any,
) -> None:
    """CI gate: exit 0 when the model is within budget, 1 when a budget is exceeded, 2 on any
    usage or input error (bad budget file, bad model, bad options, compile options given
    with an OUTDIR, which is already compiled)."""
    _STATE["quiet"] = _STATE["quiet"] or quiet
    from imcc.analysis.budget import error_junit_xml, to_junit_xml
    from imcc.api import check
    from imcc.fileio import atomic_write_bytes

    # A CI gate's contract (issue #5): 0 within budget, 1 over, 2 for any usage or input
    # error -- whatever the finer-grained exit code elsewhere. The JUnit file is written on
    # every exit, so a CI report always shows why the gate failed.
    try:
        _screen(width, no_color)
        # Only the options given are passed on: check refuses them for an OUTDIR.
        given = _given(ctx, _COMPILE_KEYS)
        if given and Path(target_or_model).is_dir():
            flags = ["/".join(p.opts) for p in ctx.command.params if p.name in given]
            raise UsageError(f"{target_or_model} is an output directory, already compiled: "
                             f"the compile option{'s' if len(flags) > 1 else ''} "
                             f"{', '.join(flags)} cannot apply to it", hint="check it as it "
                             "is, or give the model to compile it with these options")
        prog, progress = _compile_progress()
        with prog:
            res = check(target_or_model, budget, output=output, progress=progress,
                        **_api_options(opts, only=given))
    except ImccError as exc:
        exc.exit_code = 2
        if junit is not None:
            atomic_write_bytes(junit, error_junit_xml(str(exc)).encode())
        raise
    result = res.result
    if junit is not None:
        atomic_write_bytes(junit, to_junit_xml(result, f"imcc-check {res.report.model}")
                           .encode())
    if json_:
        from imcc.report.envelope import envelope

        out.print_json(json.dumps(envelope("check", "check", res.report.model,
                                           result.to_dict())))
    else:
        from imcc.report.terminal import check_lines

        for line in check_lines(result):
            out.print(line)
    raise typer.Exit(0 if result.passed else 1)


@app.command("sweep")
def sweep_cmd(
    model: ModelArg = "resnet20",
    targets: Annotated[str | None, typer.Option(
        help="Comma-separated array sizes ROWSxCOLS, e.g. 32x32,64x64,128x128 (default: "
             "64x64,128x128; with --chips: the chips' array sizes).")] = None,
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
    lowrank_method: LowRankMethodOpt = "auto",
    passes: Annotated[str | None, typer.Option(
        "--passes", "-p", help="An explicit pass pipeline for every row (as `imcc compile "
        "-p`); the sweep then varies only --targets, so --ranks/--groups/--mappings cannot be "
        "given, nor the flags -p excludes in `imcc compile`.")] = None,
    data: Annotated[Path | None, typer.Option(help="Labelled data (.npz: images [+mean, std] "
                                                   "+ labels, or 'cifar10') for the top-1 "
                                                   "accuracy of each compiled model "
                                                   "(onnxruntime).")] = None,
    input_shape: InputShapeOpt = None,
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
                         "the others (rows are matched on target, rank, groups, mapping "
                         "and, with --chips, the chip and its arrays; "
                         "the CSV's header and its settings record, <csv>.settings.json, "
                         "must match this sweep's options).")] = False,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="CSV file to write "
                                                "(default: ./<model>.sweep.csv).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write a self-contained HTML page "
                                                   "with the Pareto plot (accuracy or "
                                                   "reconstruction error vs cycles).")] = None,
    chips: Annotated[str | None, typer.Option(
        help="Comma-separated chips (presets isaac, pimcomp-arch-a, or chip TOML files): "
             "every configuration is also placed on each, adding the chip columns (arrays "
             "used/available, segments, inferences/s, latency ns, energy pJ per inference, "
             "write energy pJ, area mm2, TOPS, TOPS/W, TOPS/mm2).")] = None,
    chip_arrays: Annotated[str | None, typer.Option(
        "--chip-arrays", help="Comma-separated numbers of arrays of every --chips chip, e.g. "
        "100,1000,16128 (default: each chip's own).")] = None,
    chip_batch: ChipBatchOpt = None,
    json_: JsonOpt = False, quiet: QuietOpt = False, width: WidthOpt = None,
    no_color: NoColorOpt = False,
) -> None:
    """Design-space sweep: compile MODEL for every target x rank x groups x mapping (x chip
    x chip arrays with --chips), write one CSV row per configuration (cycles, energy,
    latency, error, accuracy with --data, chip figures with --chips). Every other compile
    option of `imcc compile` applies to all rows."""
    _STATE["quiet"] = _STATE["quiet"] or quiet
    from imcc.fileio import atomic_write_bytes
    from imcc.report.sweep import sweep_payload
    from imcc.sweep import SweepSpec, check_runner, plan_sweep, split_list, sweep_to_csv

    _screen(width, no_color)

    def listed(text: str | None, option: str) -> tuple[str, ...] | None:
        return None if text is None else split_list(text, option)

    spec = SweepSpec(
        model=model, targets=listed(targets, "--targets"),
        ranks=listed(ranks, "--ranks"), groups=listed(groups, "--groups"),
        mappings=listed(mappings, "--mappings"), weight_bits=weight_bits,
        cell_bits=cell_bits, act_bits=act_bits, dac_bits=dac_bits, adc_bits=adc_bits,
        tech=tech, quantize=not no_quantize, first_last_bits=first_last_bits,
        include_first_last=include_first_last, calib=calib, calib_limit=calib_limit,
        data=data, limit=limit, skip=skip, layer_rank=tuple(layer_rank or ()), policy=policy,
        passes=passes, verify_each=_STATE["debug"], chips=listed(chips, "--chips"),
        chip_arrays=listed(chip_arrays, "--chip-arrays"), chip_batch=chip_batch,
        lowrank_method=lowrank_method,
        input_shapes=tuple(_parse_input_shapes(input_shape or []).items()))
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

        out.print_json(json.dumps(envelope("sweep", "sweep", result.model,
                                           sweep_payload(result))))
    else:
        from imcc.report.terminal import print_sweep

        print_sweep(result, out)
    info(escape(f"wrote {dest}" + (f" and {plot}" if plot is not None else "")))


@app.command("tune")
def tune_cmd(
    model: ModelArg = "resnet20",
    calib: Annotated[Path | None, typer.Option(
        help="Calibration data (.npz, or 'cifar10' for the bundled sample); required. The "
             "first half calibrates (data fit, GPTQ, activation scales), the second half is "
             "held out to measure the accuracy loss.")] = None,
    calib_limit: Annotated[int, typer.Option(
        help="Use at most this many calibration samples (the first ones; >= 2).")] = 256,
    target: TargetOpt = "128x128",
    max_drop: Annotated[float, typer.Option(
        help="Accuracy the tuned network may lose against the float model on the held-out "
             "half, in percentage points (0-100).")] = 1.0,
    metric: Annotated[str | None, typer.Option(
        help="top1 (needs labels) or agreement (with the float model's argmax). Default: "
             "top1 when the data has labels.")] = None,
    budget: Annotated[str, typer.Option(
        help="What to minimize: cycles (computing cycles per image) or energy (pJ per "
             "image).")] = "cycles",
    folds: Annotated[int, typer.Option(
        help="2: calibrate on each half and score on the other (every sample is scored once, "
             "by a compile that did not see it); 1: calibrate on the first half, score the "
             "second.")] = 2,
    allow_8bit: Annotated[bool, typer.Option(
        "--allow-8bit", help="Let layers keep 8-bit weights and inputs when the "
        "uncompressed 4-bit network misses the budget.")] = False,
    first_last_bits: Annotated[int, typer.Option(
        help="Bits for weights and inputs of the first and last crossbar layers "
             "(bits; written into the policy).")] = 8,
    weight_bits: WBitsOpt = 4, act_bits: ABitsOpt = 4, tech: TechOpt = "isaac",
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", help="Worker processes for the per-layer measurements and the "
        "verification compiles (one BLAS thread each).")] = 1,
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Policy file to write (TOML), for `imcc compile --policy`.")
    ] = Path("policy.toml"),
    json_: JsonOpt = False, quiet: QuietOpt = False, width: WidthOpt = None,
    no_color: NoColorOpt = False, full_names: FullNamesOpt = False,
) -> None:
    """Search per-layer low-rank settings (rank none or m/2..m/16, groups 1, 2, 4, 8; with
    --allow-8bit, 8-bit layers) minimizing cycles (or energy) while the compiled network
    loses at most --max-drop points on the held-out half of --calib, checked by real
    compiles. Writes the policy file (atomically) and prints the chosen setting per layer.
    Exit 1 when no policy meets the budget."""
    _STATE["quiet"] = _STATE["quiet"] or quiet
    _screen(width, no_color)
    from imcc.report.terminal import tune_summary, tune_table
    from imcc.tune import tune, write_policy

    if calib is None:
        raise UsageError("tune needs --calib: half of the data calibrates, half is held out "
                         "to measure the accuracy loss", hint="e.g. --calib cifar10")
    if output.suffix.lower() != ".toml":
        raise UsageError(f"-o {output}: the policy is written as TOML; name it *.toml")
    with _progress() as p:
        task = p.add_task("tuning", total=None)

        def step(phase: str, done: int, total: int) -> None:
            p.update(task, description=phase, completed=done, total=total)

        res = tune(model, calib, calib_limit=calib_limit, target=target, max_drop=max_drop,
                   metric=metric, budget=budget, jobs=jobs, folds=folds,
                   allow_8bit=allow_8bit,
                   first_last_bits=first_last_bits, weight_bits=weight_bits,
                   act_bits=act_bits, tech=tech, progress=step)
    write_policy(res, output)
    payload = res.to_json()
    if json_:
        from imcc.report.envelope import envelope

        out.print_json(json.dumps(envelope("tune", "tune", res.model, payload),
                                  allow_nan=False))
    else:
        out.print(tune_table(payload, full_names))
        out.print(tune_summary(payload), highlight=False, soft_wrap=True)
    info(f"wrote {escape(str(output))}")


@app.command("layers")
def layers_cmd(
    model: ModelArg = "resnet20", input_shape: InputShapeOpt = None, json_: JsonOpt = False,
) -> None:
    """List MODEL's crossbar layers (Conv, Linear) as imported: the name the tables show,
    the full ONNX node name (either is accepted by --layer-rank, policy and budget files),
    kind, per-sample input -> output shape (channels x height x width), kernel/stride/
    pads/groups and weight shape. '*': first or last crossbar layer, which the low-rank
    pass leaves uncompressed unless --include-first-last."""
    from imcc.api import layers

    found = layers(model, input_shapes=None if not input_shape
                   else _parse_input_shapes(input_shape))
    if json_:
        from imcc.report.envelope import envelope

        out.print_json(json.dumps(envelope("layers", "layers", model,
                                           {"layers": [la.to_json() for la in found]})))
        return
    from rich.table import Table

    def dims(shape: tuple[int | None, ...]) -> str:
        return "x".join("?" if d is None else str(d) for d in shape)

    table = Table(header_style="bold", box=None)
    for col in ("layer", "full name", "kind", "shape", "kernel", "weight"):
        table.add_column(col, overflow="fold")
    for la in found:
        table.add_row(escape(la.name + (" *" if la.first_or_last else "")), escape(la.full),
                      la.kind, f"{dims(la.input)} -> {dims(la.output)}", la.detail,
                      dims(la.weight))
    out.print(table)
    if not _STATE["quiet"]:
        out.print(f"{len(found)} crossbar layers; * first/last (not factorized by default)",
                  highlight=False, soft_wrap=True)


@app.command("passes")
def passes_cmd(json_: JsonOpt = False) -> None:
    """List every compiler pass, in the only legal order, with its options (type, default,
    unit), as `-p/--passes` takes them: name{option=value, ...}. Options with no unit are
    counts or choices."""
    from imcc.passes import REGISTRY
    from imcc.passes.base import describe_pass

    infos = [describe_pass(cls) for cls in REGISTRY.values()]
    if json_:
        from imcc.report.envelope import envelope

        out.print_json(json.dumps(envelope("passes", "passes", None,
                                           {"passes": [i.to_json() for i in infos]})))
        return
    for i in infos:
        out.print(f"[bold]{escape(i.name)}[/]: {escape(i.summary)}", highlight=False,
                  soft_wrap=True)
        out.print(f"  order: {escape(i.order)}", highlight=False, soft_wrap=True)
        for o in i.options:
            unit = f" [{o.unit}]" if o.unit else ""
            out.print(f"  {escape(o.name)} ({escape(o.type)}, default {escape(o.default)})"
                      f"{escape(unit)}: {escape(o.help)}", highlight=False, soft_wrap=True)
    out.print("Example: imcc compile resnet20 -p 'fold-bn, lowrank{rank=m/8, groups=4}, "
              "quantize{weight_bits=4}, map{strategy=vw-sdk}'", highlight=False,
              markup=False)


@app.command("examples")
def examples_cmd(json_: JsonOpt = False) -> None:
    """List the bundled inputs: a model name is accepted wherever a model path is (compile,
    check, sweep, layers), a data name wherever --calib or --data takes a file."""
    from imcc.api import list_examples

    found = list_examples()
    if json_:
        from imcc.report.envelope import envelope

        out.print_json(json.dumps(envelope("examples", "examples", None, {"examples": [
            {"name": e.name, "kind": e.kind, "path": str(e.path),
             "description": e.description} for e in found]})))
        return
    for e in found:
        out.print(f"[bold]{escape(e.name)}[/] ({e.kind}): {escape(e.description)}",
                  highlight=False, soft_wrap=True)
        out.print(f"  {escape(str(e.path))}", highlight=False, soft_wrap=True)
    out.print("e.g. imcc compile resnet20 --calib cifar10; imcc simulate resnet20.imcc "
              "--data cifar10", highlight=False, markup=False)


def _click_error(exc: Exception, names: set[str]) -> None:
    """Option-parsing errors from click (typer may vendor its own copy, so they are matched
    by class name): one line and exit 2, like every other usage error."""
    ctx = getattr(exc, "ctx", None)
    if "NoArgsIsHelpError" in names:
        sys.exit(0)  # typer has printed the help already (once)
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
                  "left half-written", highlight=False, soft_wrap=True)
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
