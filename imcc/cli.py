"""Command-line interface: parses options, calls the library, renders results.

Exit codes: 0 ok; 1 budget exceeded (`imcc check`); 2 usage error; 3 bad or unsupported
model; 4 bad data/budget/tech/program file; 5 cannot write output; 70 internal error.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from imcc import __version__
from imcc.errors import DataError, ImccError, Interrupted, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="imcc: compile ONNX CNNs onto in-memory-computing crossbar arrays, "
                       "report cycles/energy, and simulate the mapped program against "
                       "onnxruntime.")
out = Console()
if not out.is_terminal:
    out = Console(width=160)  # piped or captured: do not squeeze tables into 80 columns
err = Console(stderr=True)
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
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
PassesOpt = Annotated[str | None, typer.Option(
    "--passes", "-p", help="An explicit pass pipeline replacing the default, e.g. "
    "'fold-bn,lowrank{rank=m/8,groups=4},quantize{weight_bits=4},map{strategy=vw-sdk}'. "
    "Cannot be combined with --rank/--groups/--layer-rank/--policy/--no-quantize/"
    "--first-last-bits/--mapping.")]


def _progress() -> Progress:
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                    transient=True, disable=not err.is_terminal)


def _layer_ranks(items: list[str] | None) -> dict[str, str]:
    res: dict[str, str] = {}
    for it in items or []:
        name, sep, spec = it.rpartition("=")
        if not sep or not name:
            raise UsageError(f"--layer-rank {it!r}: expected NAME=SPEC", hint="e.g. "
                             "--layer-rank /layer1/layer1.0/conv1/Conv=m/4")
        res[name] = spec
    return res


def _options(target: str, weight_bits: int, cell_bits: int, act_bits: int, dac_bits: int,
             adc_bits: int, mapping: str, rank: str, groups: int, layer_rank: list[str] | None,
             policy: Path | None, include_first_last: bool, no_quantize: bool,
             first_last_bits: int | None, calib: Path | None, calib_limit: int, tech: str,
             passes: str | None = None,
             model_input: Callable[[], tuple[str, tuple[int | None, ...]]] | None = None
             ) -> Any:
    from imcc.compiler import CompileOptions
    from imcc.passes.lowrank import LowRankPass
    from imcc.targets.crossbar import CrossbarTarget

    rows, cols = CrossbarTarget.parse_shape(target)
    tgt = CrossbarTarget(rows, cols, weight_bits, cell_bits, act_bits, dac_bits, adc_bits)
    if policy is not None:
        lr = LowRankPass.policy_from_file(policy)
        if rank != "none":
            lr.rank = rank
        if groups != 1:
            lr.groups = groups
        lr.layer_ranks.update(_layer_ranks(layer_rank))
        lr.include_first_last = lr.include_first_last or include_first_last
        lr._validate()
    else:
        lr = LowRankPass(rank=rank, groups=groups, layer_ranks=_layer_ranks(layer_rank),
                         include_first_last=include_first_last)
    if first_last_bits is not None and not 2 <= first_last_bits <= 16:
        raise UsageError(f"--first-last-bits must be in [2, 16], got {first_last_bits}")
    if calib_limit < 1:
        raise UsageError(f"--calib-limit must be >= 1, got {calib_limit}")
    x = None
    if calib is not None and not no_quantize:
        from imcc.dataset import load_npz

        assert model_input is not None
        x = load_npz(calib, *model_input()).take(calib_limit).x
    from imcc.analysis.tech import load_tech

    load_tech(tech)  # fail early on a bad profile, before any work
    pipeline = None
    if passes is not None:
        from imcc.passes.pipeline import parse_pipeline

        clash = [flag for flag, used in (
            ("--rank", rank != "none"), ("--groups", groups != 1), ("--layer-rank", layer_rank),
            ("--policy", policy is not None), ("--no-quantize", no_quantize),
            ("--first-last-bits", first_last_bits is not None), ("--mapping", mapping != "auto"),
            ("--include-first-last", include_first_last)) if used]
        if clash:
            raise UsageError(f"--passes replaces the default pipeline; {', '.join(clash)} "
                             "cannot be combined with it", hint="set them as pass options, "
                             "e.g. lowrank{rank=m/2,groups=4}")
        pipeline = parse_pipeline(passes, tgt)
    return CompileOptions(target=tgt, mapping=mapping, quantize=not no_quantize,
                          first_last_bits=first_last_bits, calib=x, lowrank=lr, tech=tech,
                          pipeline=pipeline)


# The compile options `compile` and `check` share (the parameters of `_options`).
_COMPILE_KEYS = ("target", "weight_bits", "cell_bits", "act_bits", "dac_bits", "adc_bits",
                 "mapping", "rank", "groups", "layer_rank", "policy", "include_first_last",
                 "no_quantize", "first_last_bits", "calib", "calib_limit", "tech", "passes")


def _compile_options(params: dict[str, Any]) -> dict[str, Any]:
    """Pick the shared compile options out of a command's parameters."""
    return {k: params[k] for k in _COMPILE_KEYS if k in params}


def _compile(model: str, opts_kw: dict[str, Any], outdir: Path | None, quiet: bool
             ) -> tuple[dict[str, Any], Path]:
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
    inputs = [path] + [opts_kw[k] for k in ("calib", "policy") if opts_kw.get(k) is not None]
    dest = write_outputs(res, outdir or default_outdir(model), protect=inputs)
    return res.report, dest


# ---------------------------------------------------------------------------- commands


def _version(value: bool) -> None:
    if value:
        out.print(f"imcc {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(debug: Annotated[bool, typer.Option(help="Show tracebacks for errors.")] = False,
          version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False
          ) -> None:
    _STATE["debug"] = debug


@app.command("compile")
def compile_cmd(
    model: Annotated[str, typer.Argument(help="ONNX model path, or 'resnet20' for the bundled "
                                              "pretrained CIFAR-10 ResNet-20.")] = "resnet20",
    target: TargetOpt = "128x128", weight_bits: WBitsOpt = 4, cell_bits: CBitsOpt = 1,
    act_bits: ABitsOpt = 4, dac_bits: DacOpt = 1, adc_bits: AdcOpt = 8,
    mapping: MappingOpt = "auto", rank: RankOpt = "none", groups: GroupsOpt = 1,
    layer_rank: LayerRankOpt = None, policy: PolicyOpt = None,
    include_first_last: FirstLastOpt = False, no_quantize: NoQuantOpt = False,
    first_last_bits: FLBitsOpt = None, calib: CalibOpt = None, calib_limit: CalibLimitOpt = 256,
    tech: TechOpt = "isaac", passes: PassesOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output directory "
                                                "(default: ./<model>.imcc).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Compile MODEL for a crossbar target: writes report.json, compiled.onnx, float.onnx,
    program.json and arrays.npz into the output directory and prints the per-layer table."""
    report, dest = _compile(model, _compile_options(locals()), output, json_)
    if json_:
        out.print_json(json.dumps(report))
        return
    from imcc.report.terminal import print_report

    print_report(report, out)
    out.print(f"wrote {escape(str(dest))}/ (report.json, compiled.onnx, program.json, "
              "arrays.npz)")


def _load_report(outdir: Path) -> dict[str, Any]:
    p = outdir / "report.json"
    if not p.is_file():
        raise DataError(f"{outdir}: no report.json here", hint="run `imcc compile MODEL -o "
                                                               "DIR` first")
    try:
        rep = json.loads(p.read_text())
    except (ValueError, OSError) as exc:
        raise DataError(f"{p}: not valid JSON ({exc})") from exc
    if not isinstance(rep, dict) or rep.get("format") != "imcc-report/1":
        raise DataError(f"{p}: not an imcc-report/1 file")
    return rep


@app.command("report")
def report_cmd(
    outdir: Annotated[Path, typer.Argument(help="A directory written by `imcc compile`.")],
    json_: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (for "
                                                              "pull-request comments).")] = False,
    csv: Annotated[bool, typer.Option("--csv", help="Print CSV, one row per layer.")] = False,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML page with "
                                                   "charts to this file.")] = None,
) -> None:
    """Re-render a compiled result (terminal table by default)."""
    from imcc.fileio import atomic_write_bytes
    from imcc.report import render

    rep = _load_report(outdir)
    if html is not None:
        atomic_write_bytes(html, render.to_html(rep).encode())
        err.print(f"wrote {escape(str(html))}")
    if json_:
        out.print_json(json.dumps(rep))
    elif markdown:
        sys.stdout.write(render.to_markdown(rep))
    elif csv:
        sys.stdout.write(render.to_csv(rep))
    elif html is None:
        from imcc.report.terminal import print_report

        print_report(rep, out)


@app.command("simulate")
def simulate_cmd(
    outdir: Annotated[Path, typer.Argument(help="A directory written by `imcc compile`.")],
    data: Annotated[Path | None, typer.Option(help="Input data (.npz: images [+mean, std, "
                                                   "labels] or x). Default: the bundled "
                                                   "CIFAR-10 sample.")] = None,
    limit: Annotated[int | None, typer.Option(help="Simulate only the first N inputs.")] = None,
    skip: Annotated[int, typer.Option(help="Skip the first N inputs (e.g. those used for "
                                           "calibration).")] = 0,
    adc_bits: Annotated[int | None, typer.Option(help="Model an ADC of this many bits per "
                                                      "input phase (default: ideal).")] = None,
    save_outputs: Annotated[Path | None, typer.Option(help="Save simulated and onnxruntime "
                                                           "outputs to this .npz.")] = None,
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
    json_: JsonOpt = False,
) -> None:
    """Execute the crossbar program on data, compare with onnxruntime on compiled.onnx, and
    report accuracy and the executed cycles per image."""
    from imcc.dataset import bundled_example_data, load_npz
    from imcc.fileio import atomic_write_bytes, npz_bytes
    from imcc.sim.evaluate import evaluate
    from imcc.targets.program_io import read_program

    if adc_bits is not None and not 1 <= adc_bits <= 24:
        raise UsageError(f"--adc-bits must be in [1, 24], got {adc_bits}")
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
    from imcc.threads import limit_threads

    budget = None if max_memory is None else max_memory << 20
    with limit_threads(threads), _progress() as p:
        task = p.add_task("simulating", total=len(ds))
        res, sim = evaluate(outdir, ds, adc_bits, progress=lambda n: p.advance(task, n),
                            max_memory=budget)
    if save_outputs is not None:
        atomic_write_bytes(save_outputs, npz_bytes({k: v for k, v in sim.outputs.items()}))
    if json_:
        out.print_json(json.dumps(res))
    else:
        from imcc.report.terminal import sim_table

        out.print(sim_table(res))


@app.command("check")
def check_cmd(
    target_or_model: Annotated[str, typer.Argument(
        metavar="OUTDIR|MODEL", help="A compiled output directory, or a model to compile first "
                                     "(path or 'resnet20').")],
    budget: Annotated[Path, typer.Option(help="Budget TOML: [budget] cycles, energy_uj, "
                                              "latency_ms, tolerance, per-layer limits.")],
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML file (one test case "
                                                    "per budget item).")] = None,
    target: TargetOpt = "128x128", weight_bits: WBitsOpt = 4, cell_bits: CBitsOpt = 1,
    act_bits: ABitsOpt = 4, dac_bits: DacOpt = 1, adc_bits: AdcOpt = 8,
    mapping: MappingOpt = "auto", rank: RankOpt = "none", groups: GroupsOpt = 1,
    layer_rank: LayerRankOpt = None, policy: PolicyOpt = None,
    include_first_last: FirstLastOpt = False, no_quantize: NoQuantOpt = False,
    first_last_bits: FLBitsOpt = None, calib: CalibOpt = None, calib_limit: CalibLimitOpt = 256,
    tech: TechOpt = "isaac", passes: PassesOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write the "
                                                "compiled result when compiling a model.")] = None,
    json_: JsonOpt = False,
) -> None:
    """CI gate: exit 0 when the model is within budget, 1 when a budget is exceeded, 2 on any
    usage or input error (bad budget file, bad model, bad options)."""
    from imcc.analysis.budget import check_budget, load_budget, to_junit_xml
    from imcc.fileio import atomic_write_bytes

    # A CI gate's contract (issue #5): 0 within budget, 1 over, 2 for any usage or input
    # error -- whatever the finer-grained exit code elsewhere.
    try:
        b = load_budget(budget)
        p = Path(target_or_model)
        if p.is_dir():
            rep = _load_report(p)
        else:
            rep, _ = _compile(target_or_model, _compile_options(locals()), output, True)
        result = check_budget(rep, b)
    except ImccError as exc:
        exc.exit_code = 2
        raise
    if junit is not None:
        atomic_write_bytes(junit, to_junit_xml(result, f"imcc-check {rep['model']}").encode())
    if json_:
        out.print_json(json.dumps(result.to_dict()))
    else:
        for item in result.items:
            mark = "[green]ok  [/]" if item.passed else "[red]OVER[/]"
            extra = "" if item.passed else f" (over by {item.over_by_fraction:.1%})"
            out.print(f"{mark} {escape(item.name)}: {item.actual:,.6g} {item.unit} "
                      f"<= {item.limit:,.6g}{extra}")
        out.print("within budget" if result.passed else
                  f"[red]budget exceeded: {len(result.failures)} item(s)[/]")
    raise typer.Exit(0 if result.passed else 1)


@app.command("sweep")
def sweep_cmd(
    model: Annotated[str, typer.Argument(help="ONNX model path, or 'resnet20' for the bundled "
                                              "pretrained CIFAR-10 ResNet-20.")] = "resnet20",
    targets: Annotated[str, typer.Option(help="Comma-separated array sizes ROWSxCOLS, e.g. "
                                              "32x32,64x64,128x128.")] = "64x64,128x128",
    ranks: Annotated[str, typer.Option(help="Comma-separated low-rank ranks: none, m/R or an "
                                            "integer.")] = "none,m/2,m/4",
    groups: Annotated[str, typer.Option(help="Comma-separated low-rank group counts (rank "
                                             "'none' is swept once, as groups 1).")] = "1,4",
    mappings: Annotated[str, typer.Option(help="Comma-separated mappings: im2col, sdk, "
                                               "vw-sdk, auto.")] = "im2col,auto",
    weight_bits: WBitsOpt = 4, cell_bits: CBitsOpt = 1, act_bits: ABitsOpt = 4,
    dac_bits: DacOpt = 1, adc_bits: AdcOpt = 8, tech: TechOpt = "isaac",
    include_first_last: FirstLastOpt = False, no_quantize: NoQuantOpt = False,
    first_last_bits: FLBitsOpt = None, calib: CalibOpt = None, calib_limit: CalibLimitOpt = 256,
    data: Annotated[Path | None, typer.Option(help="Labelled data (.npz: images [+mean, std] "
                                                   "+ labels) for the top-1 accuracy of each "
                                                   "compiled model (onnxruntime).")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N inputs of "
                                                   "--data.")] = None,
    skip: Annotated[int, typer.Option(help="Skip the first N inputs of --data (e.g. those "
                                           "used for --calib).")] = 0,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Worker processes "
                                             "(default: all cores; 1 runs in-process).")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="CSV file to write "
                                                "(default: ./<model>.sweep.csv).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write a self-contained HTML page "
                                                   "with the Pareto plot (accuracy or "
                                                   "reconstruction error vs cycles).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Design-space sweep: compile MODEL for every target x rank x groups x mapping, write
    one CSV row per configuration (cycles, energy, latency, error, accuracy with --data)."""
    from imcc.fileio import atomic_write_bytes
    from imcc.sweep import SweepSpec, plan_sweep, rows_as_dicts, run_sweep, split_list, to_csv

    spec = SweepSpec(
        model=model, targets=split_list(targets, "--targets"),
        ranks=split_list(ranks, "--ranks"), groups=split_list(groups, "--groups"),
        mappings=split_list(mappings, "--mappings"), weight_bits=weight_bits,
        cell_bits=cell_bits, act_bits=act_bits, dac_bits=dac_bits, adc_bits=adc_bits,
        tech=tech, quantize=not no_quantize, first_last_bits=first_last_bits,
        include_first_last=include_first_last, calib=calib, calib_limit=calib_limit,
        data=data, limit=limit, skip=skip)
    configs = plan_sweep(spec)  # every option checked before any compile
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs}")
    with _progress() as prog:
        task = prog.add_task("sweep", total=len(configs))
        result = run_sweep(spec, jobs, progress=lambda done, _total, note: prog.update(
            task, completed=done, description=note))
    from imcc.compiler import resolve_model

    dest = output or Path.cwd() / f"{resolve_model(model).stem}.sweep.csv"
    atomic_write_bytes(dest, to_csv(result).encode())
    if plot is not None:
        from imcc.sweep import to_html

        atomic_write_bytes(plot, to_html(result).encode())
    if json_:
        out.print_json(json.dumps(rows_as_dicts(result)))
    else:
        from rich.table import Table

        from imcc.sweep import terminal_table

        headers, cells = terminal_table(result)
        n = len(result.rows)
        table = Table(title=f"imcc sweep: {result.model} ({n} configuration"
                            f"{'' if n == 1 else 's'})")
        for h in headers:
            table.add_column(h, justify="left" if h in ("target", "rank", "mapping") else
                             "right")
        for line in cells:
            table.add_row(*line)
        out.print(table)
        if result.float_top1 is not None:
            out.print(f"float model top-1 on the same data: {result.float_top1:.2%}")
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
