"""Rich terminal tables for reports, simulations and sweeps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from imcc.report.model import Report
from imcc.report.sweep import SweepResult, terminal_table
from imcc.report.units import (
    NONE_TEXT,
    count_text,
    decimal_text,
    energy_text,
    pct_text,
    ratio_text,
    safe_text,
    sig_text,
    time_text,
)

if TYPE_CHECKING:
    from imcc.analysis.budget import CheckResult


def plain(s: object) -> Text:
    """A user-controlled string as a table cell or title: never parsed as rich markup,
    control characters shown as escapes."""
    return Text(safe_text(s))


def markup_safe(s: object) -> str:
    """A user-controlled string to embed in a line of rich markup."""
    return escape(safe_text(s))


def short_name(name: str) -> str:
    """'/layer1/layer1.0/conv1/Conv' -> 'layer1.0/conv1': exporters repeat scopes and op."""
    parts = [p for p in name.strip("/").split("/") if p]
    if len(parts) > 1 and parts[-1] in ("Conv", "Gemm", "MatMul"):
        parts = parts[:-1]
    if len(parts) > 1 and parts[1].startswith(parts[0] + "."):
        parts = parts[1:]
    return "/".join(parts) or name


def report_table(report: Report) -> Table:
    t = report.target
    lowrank = report.has_lowrank_layers
    energy = report.energy
    title = (f"{report.model} on {t.rows}x{t.cols} arrays, W{t.weight_bits}"
             f"/cell {t.cell_bits} bit, "
             f"{'A' + str(t.act_bits) if report.quantized else 'float (--no-quantize)'}, "
             f"mapping {report.mapping}")
    table = Table(title=plain(title), show_footer=True, header_style="bold")
    table.add_column("layer", footer="total")
    table.add_column("op / shape")
    table.add_column("mapping")
    table.add_column("tiles (r x c)", justify="right", footer=str(report.n_arrays))
    table.add_column("windows", justify="right")
    table.add_column("cycles", justify="right", footer=count_text(report.total_cycles))
    table.add_column("im2col", justify="right", footer=count_text(report.im2col_cycles))
    table.add_column("util", justify="right")
    if lowrank:
        table.add_column("rank/g", justify="right")
        table.add_column("rel err", justify="right")
    if energy is not None:
        table.add_column("energy", justify="right",
                         footer=energy_text(energy.total_energy_pj))
    chip = report.chip
    if chip is not None:
        table.add_column("seg", justify="right")
        table.add_column("replicas", justify="right")
        table.add_column("arrays", justify="right", footer=count_text(chip.arrays_used))
        table.add_column("stage", justify="right")
    # Low priority, last so a narrow layout can drop it first: cycles / lower bound.
    table.add_column("/bound", justify="right", footer=ratio_text(report.bound_ratio))
    for layer in report.layers:
        m = layer.mapping + (f" {layer.pw[0]}x{layer.pw[1]}" if layer.pw else "")
        if (layer.group_pack or 1) > 1:
            m += f" {layer.group_pack}g/array"
        row: list[Text | str] = [plain(short_name(layer.name)),
                                 plain(f"{layer.op} {layer.shape}"), plain(m),
               f"{layer.tiles} ({layer.row_tiles}x{layer.col_tiles})",
               count_text(layer.windows), count_text(layer.cycles),
               count_text(layer.im2col_cycles), pct_text(layer.utilization, 0)]
        if lowrank:
            row.append(f"{layer.rank}/{layer.groups}" if layer.rank else NONE_TEXT)
            row.append(decimal_text(layer.rel_error, 3))
        if energy is not None:
            row.append(energy_text(None if layer.energy is None else layer.energy.energy_pj))
        if chip is not None:
            lc = layer.chip
            row += ([NONE_TEXT] * 4 if lc is None else
                    [str(lc.segment), count_text(lc.replicas), count_text(lc.arrays),
                     time_text(lc.stage_ns)])
        row.append(ratio_text(layer.bound_ratio))
        table.add_row(*row)
    return table


def speedup_text(report: Report) -> str:
    """The speedup headline: against im2col of the uncompressed network (the paper's
    baseline), then, for a factorized network, against im2col of the network as compiled."""
    if report.uncompressed_im2col_cycles is None and report.has_lowrank_layers:
        # A report written before the uncompressed baseline was recorded.
        return (f"im2col of this factorized network {count_text(report.im2col_cycles)} "
                f"(speedup {ratio_text(report.speedup)} vs that; the uncompressed baseline "
                "is not recorded)")
    base = (report.im2col_cycles if report.uncompressed_im2col_cycles is None
            else report.uncompressed_im2col_cycles)
    text = (f"speedup {ratio_text(report.headline_speedup)} vs im2col of the uncompressed "
            f"network ({count_text(base)} cycles)")
    if report.has_lowrank_layers:
        text += (f"; {ratio_text(report.speedup)} vs im2col of this factorized network "
                 f"({count_text(report.im2col_cycles)})")
    return text


def summary_lines(report: Report) -> list[str]:
    """The lines under the table (rich markup; user-controlled text escaped)."""
    lines = [f"total: {count_text(report.total_cycles)} cycles on {report.n_arrays} arrays; "
             + speedup_text(report)]
    if report.lower_bound_cycles:
        lines.append(f"lower bound: {count_text(report.lower_bound_cycles)} cycles (no correct "
                     f"layout goes below it); cycles / bound {ratio_text(report.bound_ratio)}")
    if report.energy is not None:
        lines.append(f"energy {energy_text(report.energy.total_energy_pj)}, latency "
                     f"{time_text(report.energy.total_latency_ns)} per image "
                     f"(tech {report.target.tech}, ADC {report.energy.adc_bits} bit)")
    if report.chip is not None:
        from imcc.report.chip import terminal_lines

        lines += [markup_safe(line) for line in terminal_lines(report.chip)]
    if report.calibration:
        lines.append(f"activation calibration: {markup_safe(report.calibration)}")
    lr = report.lowrank
    if lr:
        lines.append(f"low-rank: rank {markup_safe(lr.rank)}, groups {lr.groups}, "
                     f"{lr.factorized_layers} layers factorized; left as is: "
                     + (", ".join(markup_safe(f"{k} ({v})") for k, v in lr.skipped.items())
                        or "none"))
    return lines


def print_report(report: Report, console: Console) -> None:
    console.print(report_table(report))
    for line in summary_lines(report):
        console.print(line)


def check_lines(result: CheckResult) -> list[str]:
    """`imcc check`'s lines (rich markup): each budget item ok or OVER with its actual value
    and limit, then the verdict."""
    lines = []
    for item in result.items:
        bad, rel, by = ("UNDER", ">=", "below by") if item.minimum else ("OVER", "<=",
                                                                          "over by")
        mark = "[green]ok  [/]" if item.passed else f"[red]{bad}[/]"
        extra = "" if item.passed else f" ({by} {pct_text(item.over_by_fraction)})"
        lines.append(f"{mark} {markup_safe(item.name)}: {item.actual:,.6g} {item.unit} "
                     f"{rel} {item.limit:,.6g}{extra}")
    lines.append("within budget" if result.passed else
                 f"[red]budget exceeded: {len(result.failures)} item(s)[/]")
    return lines


def print_sweep(result: SweepResult, console: Console) -> None:
    """The sweep's rows as a table, and the float model's accuracy when it was measured."""
    headers, cells = terminal_table(result)
    n = len(result.rows)
    table = Table(title=plain(f"imcc sweep: {result.model} ({n} configuration"
                              f"{'' if n == 1 else 's'})"))
    for h in headers:
        left = h in ("target", "rank", "mapping", "chip")
        table.add_column(h, justify="left" if left else "right")
    for line in cells:
        table.add_row(*map(plain, line))
    console.print(table)
    if result.float_top1 is not None:
        console.print(f"float model top-1 on the same data: {pct_text(result.float_top1, 2)}")


def adc_line(result: dict[str, Any]) -> str:
    """How `imcc simulate` read the column sums, and whether it compared exactly."""
    bits, compiled = result["adc_bits"], result["adc_bits_compiled"]
    what = "ideal ADC" if bits is None else f"{bits}-bit ADC"
    source = (f"override; compiled for {compiled} bits" if result["adc_override"]
              else "as compiled")
    if result["compared_exactly"]:
        lossy = "" if bits is None else ", lossless for this program"
        verdict = ("equals onnxruntime" if result["matches_onnxruntime"]
                   else "DIFFERS from onnxruntime")
        return f"{what} ({source}{lossy}): compared exactly, the program {verdict}"
    return (f"{what} ({source}): lossy, so the program differs from compiled.onnx by design; "
            "the difference is reported, not judged")


_SIM_SKIP = ("adc_bits", "adc_bits_compiled", "adc_override", "adc_lossless",
             "compared_exactly", "matches_onnxruntime", "mismatch", "float_rounding_tolerance")


def sim_table(result: dict[str, Any]) -> Table:
    table = Table(title="functional simulation", header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, val in result.items():
        if key in _SIM_SKIP:
            continue  # stated by adc_line
        if isinstance(val, float):
            text = pct_text(val, 4) if key.endswith(("top1", "agreement")) else sig_text(val)
        else:
            text = str(val)
        table.add_row(plain(key), plain(text))
    return table
