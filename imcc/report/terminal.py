"""Rich terminal tables for reports, simulations and sweeps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from imcc.ir.names import short_name as short_name  # re-exported (tests use it)
from imcc.ir.names import short_names
from imcc.report.model import LayerReport, Report
from imcc.report.sweep import TERMINAL_DROP, SweepResult, terminal_table
from imcc.report.units import (
    NONE_TEXT,
    compact_count,
    count_text,
    decimal_text,
    energy_text,
    energy_unit,
    mac_share_text,
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


# ------------------------------------------------------------------ width-adaptive tables


@dataclass(frozen=True)
class Column:
    """One column of a width-adaptive table. `short` is an abbreviated form (header, cells,
    footer) used before the column is dropped; `drop` orders the columns that may be left
    out (lowest first; None: always shown). Cells are never cut: a table that does not fit
    loses columns, not digits."""

    header: str
    cells: Sequence[str]
    footer: str = ""
    right: bool = False
    drop: int | None = None
    short: tuple[str, Sequence[str], str] | None = None
    shrink: int | None = None  # when the short form is taken (lowest first; default: drop)

    def abbreviated(self) -> Column:
        assert self.short is not None
        header, cells, footer = self.short
        return replace(self, header=header, cells=cells, footer=footer, short=None)


# A compact box: one space between columns, rules under the header and above the footer
# (rich's SIMPLE without the outer edge); each column adds its width + 3 characters.
_BOX = box.SIMPLE


def _width(cols: Sequence[Column]) -> int:
    """The table's natural width in terminal cells (as rich lays it out: padding 1 on each
    side of a cell, one divider between columns, no outer edge)."""
    widths = [max([cell_len(c.header), cell_len(c.footer), *map(cell_len, c.cells)])
              for c in cols]
    return sum(widths) + 3 * len(cols) - 1


def fit_columns(columns: Sequence[Column], width: int) -> tuple[list[Column], list[str]]:
    """The columns to show in `width` terminal cells, and the headers of those left out:
    first short forms are taken and columns dropped, in the order of their `shrink` /
    `drop` ranks (a short form before a drop of the same rank), until the table fits. When
    even the columns that are never dropped do not fit, they are all returned and the table
    wraps (cells fold; never an ellipsis)."""
    cols: dict[int, Column] = dict(enumerate(columns))
    steps: list[tuple[int, int, int]] = []  # (rank, 0 shorten | 1 drop, column index)
    for i, c in enumerate(columns):
        if c.short is not None:
            # a column never dropped and without a shrink rank is abbreviated last
            rank = c.shrink if c.shrink is not None else c.drop if c.drop is not None else 999
            steps.append((rank, 0, i))
        if c.drop is not None:
            steps.append((c.drop, 1, i))
    dropped: list[str] = []
    for _rank, action, i in sorted(steps):
        if _width(list(cols.values())) <= width:
            break
        if i not in cols:
            continue
        if action == 0:
            cols[i] = cols[i].abbreviated()
        else:
            dropped.append(columns[i].header)
            del cols[i]
    return list(cols.values()), dropped


def fitted_table(title: str, columns: Sequence[Column], width: int, *,
                 footer: bool = True) -> tuple[Table, list[str]]:
    """A rich table of the columns that fit in `width` cells, and the headers left out."""
    cols, dropped = fit_columns(columns, width)
    table = Table(title=plain(title), show_footer=footer, header_style="bold", box=_BOX,
                  show_edge=False)
    for c in cols:
        # fold, never ellipsis: a cell that cannot fit wraps whole digits to the next line
        table.add_column(plain(c.header), footer=plain(c.footer),
                         justify="right" if c.right else "left", overflow="fold")
    for i in range(len(cols[0].cells) if cols else 0):
        table.add_row(*(plain(c.cells[i]) for c in cols))
    return table, dropped


def omitted_line(dropped: Sequence[str], width: int) -> str | None:
    """A note naming the columns left out for the width (None when none was)."""
    if not dropped:
        return None
    return (f"(not shown at {width} columns: {', '.join(dropped)}; widen the terminal, "
            "pass --width, or use --csv / --json for every column)")


_MAPPING_SHORT = {"vw-sdk": "vw", "lowrank-sdk": "lr-sdk"}


def _mapping_text(layer: LayerReport, short: bool) -> str:
    name = _MAPPING_SHORT.get(layer.mapping, layer.mapping) if short else layer.mapping
    m = name + (f" {layer.pw[0]}x{layer.pw[1]}" if layer.pw else "")
    if (layer.group_pack or 1) > 1:
        m += f" {layer.group_pack}g" if short else f" {layer.group_pack}g/array"
    return m


def report_columns(report: Report, full_names: bool = False) -> list[Column]:
    """The per-layer table's columns, most important first in `drop` order: layer name,
    cycles and mapping are always shown; then the im2col baseline, low-rank rank/error,
    tiles, energy, utilization, windows and the op/shape text."""
    layers = report.layers
    energy = report.energy
    names = [la.name for la in layers] if full_names else short_names([la.name
                                                                         for la in layers])
    cols = [
        Column("layer", names, footer="total"),
        Column("op / shape", [f"{la.op} {la.shape}" for la in layers], drop=1),
        Column("mapping", [_mapping_text(la, False) for la in layers],
               short=("mapping", [_mapping_text(la, True) for la in layers], ""), shrink=2),
        Column("tiles (r x c)", [f"{la.tiles} ({la.row_tiles}x{la.col_tiles})"
                                 for la in layers], footer=count_text(report.n_arrays),
               right=True, drop=6, short=("tiles", [str(la.tiles) for la in layers],
                                          count_text(report.n_arrays)), shrink=3),
        Column("windows", [count_text(la.windows) for la in layers], right=True, drop=4),
        Column("cycles", [count_text(la.cycles) for la in layers],
               footer=count_text(report.total_cycles), right=True),
        Column("im2col", [count_text(la.im2col_cycles) for la in layers],
               footer=count_text(report.im2col_cycles), right=True, drop=9),
        Column("util", [pct_text(la.utilization, 0) for la in layers], right=True, drop=5),
    ]
    if report.has_lowrank_layers:
        cols.append(Column("rank/g", [f"{la.rank}/{la.groups}" if la.rank else NONE_TEXT
                                      for la in layers], right=True, drop=8))
        cols.append(Column("rel err", [decimal_text(la.rel_error, 3) for la in layers],
                           right=True, drop=7,
                           short=("err", [decimal_text(la.rel_error, 3) for la in layers], ""),
                           shrink=3))
        if any(la.data_error is not None for la in layers):
            cols.append(Column("data err", [decimal_text(la.data_error, 3) for la in layers],
                               right=True, drop=7,
                               short=("d.err", [decimal_text(la.data_error, 3)
                                                for la in layers], ""), shrink=3))
    if energy is not None:
        unit = energy_unit(max([la.energy.energy_pj for la in layers if la.energy] or [0.0]))
        cols.append(Column(f"energy ({unit.name})",
                           [unit.fmt(None if la.energy is None else la.energy.energy_pj)
                            for la in layers], footer=unit.fmt(energy.total_energy_pj),
                           right=True, drop=6,
                           short=(unit.name, [unit.fmt(None if la.energy is None
                                                       else la.energy.energy_pj)
                                              for la in layers],
                                  unit.fmt(energy.total_energy_pj)), shrink=3))
    chip = report.chip
    if chip is not None:
        lcs = [la.chip for la in layers]
        cols += [
            Column("seg", [NONE_TEXT if c is None else str(c.segment) for c in lcs],
                   right=True, drop=3),
            Column("replicas", [NONE_TEXT if c is None else count_text(c.replicas)
                                for c in lcs], right=True, drop=3,
                   short=("repl", [NONE_TEXT if c is None else count_text(c.replicas)
                                   for c in lcs], ""), shrink=2),
            Column("arrays", [NONE_TEXT if c is None else count_text(c.arrays) for c in lcs],
                   footer=count_text(chip.arrays_used), right=True, drop=3),
            Column("stage", [NONE_TEXT if c is None else time_text(c.stage_ns) for c in lcs],
                   right=True, drop=2)]
    # cycles / the layer's lower bound: the first column a narrow layout leaves out
    cols.append(Column("/bound", [ratio_text(la.bound_ratio) for la in layers],
                       footer=ratio_text(report.bound_ratio), right=True, drop=0))
    return cols


def report_title(report: Report) -> str:
    t = report.target
    return (f"{report.model} on {t.rows}x{t.cols} arrays, W{t.weight_bits}"
            f"/cell {t.cell_bits} bit, "
            f"{'A' + str(t.act_bits) if report.quantized else 'float (--no-quantize)'}, "
            f"mapping {report.mapping}")


def report_table(report: Report, width: int = 160, full_names: bool = False
                 ) -> tuple[Table, list[str]]:
    """The per-layer table fitted to `width` cells, and the headers of columns left out."""
    return fitted_table(report_title(report), report_columns(report, full_names), width)


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


def mac_columns(report: Report, full_names: bool = False) -> list[Column]:
    """The columns of the MAC table: every matrix product in program order, where it runs,
    its MACs per image and its share of the network's."""
    macs = report.macs
    assert macs is not None
    ops = macs.ops
    return [
        Column("layer", [o.name for o in ops] if full_names else
               short_names([o.name for o in ops]),
               footer="total"),
        Column("runs on", [o.unit for o in ops], footer=f"{pct_text(macs.crossbar_share)} "
                                                         "crossbar"),
        Column("op", [o.op for o in ops], drop=1),
        Column("MACs", [count_text(o.macs) for o in ops], footer=count_text(macs.total),
               right=True, short=("MACs", [compact_count(o.macs) for o in ops],
                                  compact_count(macs.total)), shrink=2),
        Column("share", [pct_text(macs.share(o.macs)) for o in ops], right=True, drop=3)]


def mac_table(report: Report, width: int = 160, full_names: bool = False
              ) -> tuple[Table, list[str]]:
    """Where the network's MACs run (crossbar layers and digital products), fitted to
    `width` cells, and the headers of columns left out."""
    return fitted_table(f"{report.model}: multiply-accumulates per image",
                        mac_columns(report, full_names), width)


def summary_lines(report: Report) -> list[str]:
    """The lines under the table (rich markup; user-controlled text escaped)."""
    lines = [f"total: {count_text(report.total_cycles)} cycles on {report.n_arrays} arrays; "
             + speedup_text(report)]
    if report.macs is not None and report.macs.total:
        lines.append(mac_share_text(report.macs))
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
        how = {"rtn": "; weights rounded to nearest",
               "gptq": "; weights by GPTQ on the calibration data"}.get(
                   report.weight_method or "", "")
        lines.append(f"activation calibration: {markup_safe(report.calibration)}{how}")
    lr = report.lowrank
    if lr:
        how = {"svd": ", per-group SVD of the weights",
               "data": ", fitted on the calibration data"}.get(lr.method or "", "")
        lines.append(f"low-rank: rank {markup_safe(lr.rank)}, groups {lr.groups}{how}, "
                     f"{lr.factorized_layers} layers factorized; left as is: "
                     + (", ".join(markup_safe(f"{k} ({v})") for k, v in lr.skipped.items())
                        or "none"))
    return lines


def print_report(report: Report, console: Console, full_names: bool = False) -> None:
    """The per-layer table, one line per layer when the console is wide enough for the
    columns that are never dropped, then the summary lines."""
    table, dropped = report_table(report, console.width, full_names)
    console.print(table)
    note = omitted_line(dropped, console.width)
    if note is not None:
        console.print(note, highlight=False, style="dim")
    if report.macs is not None and report.macs.digital:
        # Some products run digitally (attention): list every product and where it runs.
        table, dropped = mac_table(report, console.width, full_names)
        console.print(table)
        note = omitted_line(dropped, console.width)
        if note is not None:
            console.print(note, highlight=False, style="dim")
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
    names, headers, cells = terminal_table(result)
    n = len(result.rows)
    cols = [Column(h, [line[j] for line in cells],
                   right=name not in ("target", "rank", "mapping", "chip"),
                   drop=TERMINAL_DROP.get(name))
            for j, (name, h) in enumerate(zip(names, headers, strict=True))]
    table, dropped = fitted_table(f"imcc sweep: {result.model} ({n} configuration"
                                  f"{'' if n == 1 else 's'})", cols, console.width,
                                  footer=False)
    console.print(table)
    note = omitted_line(dropped, console.width)
    if note is not None:
        console.print(note, highlight=False, style="dim")
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


def tune_table(result: dict[str, Any], full_names: bool = False) -> Table:
    """`imcc tune`'s table from its JSON payload (`imcc.tune.TuneResult.to_json`): per
    layer the chosen setting, its cycles beside the uncompressed layer's, and its accuracy
    effect measured with that layer alone changed (float elsewhere, held-out half)."""
    metric = result["metric"]
    table = Table(title=f"tuned policy: {result['target']}, at most {result['max_drop']:g} "
                        f"points of {metric} lost", header_style="bold")
    for head, just in (("layer", "left"), ("setting", "left"), ("bits", "right"),
                       ("cycles", "right"), ("uncompressed", "right"), ("saved", "right"),
                       ("alone: KL (nats)", "right"), (f"alone: {metric} drop (pts)", "right")):
        table.add_column(head, justify=just)  # type: ignore[arg-type]
    for la in result["layers"]:
        saved = la["baseline_cycles"] - la["cycles"]
        table.add_row(plain(la["full"] if full_names else la["name"]), plain(la["setting"]),
                      "8" if la["bits"] else "", f"{la['cycles']:,}",
                      f"{la['baseline_cycles']:,}", f"{saved:,}" if saved else "",
                      "" if la["setting"] == "none" else f"{la['kl']:.4f}",
                      "" if la["setting"] == "none" else f"{la['drop']:+.1f}")
    return table


def tune_summary(result: dict[str, Any]) -> str:
    """The verified outcome of `imcc tune`, one line."""
    drop, ref = result["drop"], result["reference"]
    taken = result["moves_taken"]
    eight = result["eight_bit"]
    split = (f"2 folds of {result['calib_images']}, each calibrating while the other is "
             f"scored" if result.get("folds") == 2 else
             f"calibrated on the other {result['calib_images']}")
    return (f"verified on {result['eval_images']} held-out images ({split}): "
            f"{result['metric']} {result['accuracy']:.2%} vs float "
            f"{ref:.2%} (drop {drop:.2f} points, budget {result['max_drop']:g}); "
            f"{result['total_cycles']:,} cycles per image vs {result['baseline_cycles']:,} "
            f"uncompressed ({result['baseline_cycles'] / max(result['total_cycles'], 1):.2f}x); "
            f"{taken} of {result['moves']} moves; "
            f"{'8-bit: ' + ', '.join(eight) if eight else 'no 8-bit layers'}; "
            f"{len(result['verifications'])} verifications, {result['seconds']:.0f} s")
