"""Renderers of a `Report` ("imcc-report/1"): Markdown (a PR comment), CSV (one row per
crossbar layer) and one self-contained HTML page with inline SVG charts.

All three are pure functions of the report and deterministic (no timestamps, fixed number
formats from `imcc.report.units`), so a rendered report can be diffed and committed.
Columns and charts of the energy analysis are left out when the report has none.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import imcc
from imcc.report.model import LayerReport, Report
from imcc.report.units import (
    BREAKDOWN_KEYS,
    BREAKDOWN_LABELS,
    NONE_TEXT,
    Unit,
    compact_count,
    coord,
    count_text,
    csv_value,
    energy_unit,
    mac_share_text,
    nice_axis,
    pct_text,
    ratio,
    ratio_text,
    safe_text,
    time_text,
)

CSV_COLUMNS: tuple[str, ...] = (
    "name", "op", "shape", "conv_groups", "mapping", "pw", "n_parallel", "mapping_note",
    "row_tiles", "col_tiles", "tiles", "windows", "cycles", "im2col_cycles",
    "lower_bound_cycles", "cycles_per_bound", "utilization",
    "weight_params", "rank", "groups", "rel_error", "pair", "role", "lowrank_method",
    "data_error", "energy_pj", "latency_ns",
    *(f"energy_{k}_pj" for k in BREAKDOWN_KEYS),
)


# ---------------------------------------------------------------- shared helpers

def _pw(v: tuple[int, int] | None) -> str:
    return NONE_TEXT if v is None else f"{v[0]}x{v[1]}"


def _layer_speedup(layer: LayerReport) -> str:
    return ratio_text(ratio(layer.im2col_cycles, layer.cycles))


def _bound_text(layer: LayerReport | Report) -> str:
    """cycles / lower bound, e.g. ``"1.05x"`` (NONE_TEXT for a report without bounds)."""
    return ratio_text(layer.bound_ratio)


def _layer_energy(layer: LayerReport) -> float | None:
    return None if layer.energy is None else layer.energy.energy_pj


def _lowrank_text(layer: LayerReport) -> str:
    if layer.rank is None:
        return ""
    # The role (R: grouped KxK half, L: 1x1 half) identifies the half; the source layer
    # name is in the CSV `pair` column, too long for a table cell.
    parts = [layer.role] if layer.role is not None else []
    parts.append(f"k={layer.rank}")
    if layer.groups is not None:
        parts.append(f"g={layer.groups}")
    if layer.lowrank_method is not None:
        parts.append(layer.lowrank_method)
    if layer.rel_error is not None:
        parts.append(f"err {layer.rel_error:.3f}")
    if layer.data_error is not None:
        parts.append(f"data err {layer.data_error:.3f}")
    return ", ".join(parts)


def _target_text(report: Report) -> str:
    t = report.target
    return ", ".join([f"{t.rows}x{t.cols} arrays", *t.phrases()])


def _meta(report: Report) -> list[str]:
    return [_target_text(report), f"mapping {report.mapping}",
            "quantized" if report.quantized else "float (unquantized)"]


def _total_energy(report: Report) -> float | None:
    return None if report.energy is None else report.energy.total_energy_pj


def _page_unit(report: Report) -> Unit:
    """One energy unit for a whole page: the largest that keeps the total at least 1."""
    return energy_unit(max([_total_energy(report) or 0.0]
                           + [_layer_energy(la) or 0.0 for la in report.layers]))


# ---------------------------------------------------------------- Markdown

def _md(text: Any) -> str:
    """Escape for a GitHub table cell: HTML is live in GitHub Markdown, so a name like
    "<b>" would otherwise render; pipes would split the cell."""
    s = html.escape(safe_text(text), quote=False)
    s = "".join("\\" + ch if ch in "\\`*_[]|#" else ch for ch in s)
    return s.replace("\n", " ")


def _md_name(name: str) -> str:
    # A code span shows ONNX names verbatim (no HTML, no emphasis); names that a code span
    # cannot hold inside a table (backticks, pipes) fall back to escaped text.
    name = safe_text(name)
    return f"`{name}`" if not any(ch in name for ch in "`|") else _md(name)


def to_markdown(report: Report) -> str:
    """A GitHub-flavoured Markdown summary and per-layer table, fit for a PR comment."""
    layers = report.layers
    energy = report.energy
    lowrank = report.has_lowrank_layers
    unit = _page_unit(report)
    lines = [f"### imcc report: {_md(report.model)}", ""]
    lines += [" · ".join([_md(m) for m in _meta(report)]), ""]
    base = report.uncompressed_im2col_cycles
    summary = [f"**Cycles:** {count_text(report.total_cycles)}"
               f" (im2col of the uncompressed network "
               f"{count_text(report.im2col_cycles if base is None else base)},"
               f" speedup **{ratio_text(report.headline_speedup)}**"
               + (f"; {ratio_text(report.speedup)} vs im2col of this factorized network"
                  if lowrank else "") + ")"]
    if energy is not None:
        summary.append(f"**Energy:** {unit.text(energy.total_energy_pj)}")
        summary.append(f"**Latency:** {time_text(energy.total_latency_ns)}")
    summary.append(f"**Arrays:** {count_text(report.n_arrays)}")
    macs = report.macs
    if macs is not None and macs.total:
        summary.append(f"**MACs:** {compact_count(macs.total)} per image, "
                       f"{pct_text(macs.crossbar_share)} on crossbars")
    lines += [" · ".join(summary), ""]

    header = ["Layer", "Op", "Mapping", "PW", "Tiles", "Windows", "Cycles", "im2col cycles",
              "Speedup", "Bound", "Cycles / bound", "Util."]
    align = [":--", ":--", ":--", ":-:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:"]
    if lowrank:
        header.append("Low-rank")
        align.append(":--")
    if energy is not None:
        header.append(f"Energy ({unit.name})")
        align.append("--:")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(align) + "|")
    for la in layers:
        row = [_md_name(la.name), _md(la.op), _md(la.mapping), _pw(la.pw),
               count_text(la.tiles), count_text(la.windows), count_text(la.cycles),
               count_text(la.im2col_cycles), _layer_speedup(la),
               count_text(la.lower_bound_cycles), _bound_text(la), pct_text(la.utilization)]
        if lowrank:
            row.append(_md(_lowrank_text(la)))
        if energy is not None:
            row.append(unit.fmt(_layer_energy(la)))
        lines.append("| " + " | ".join(row) + " |")
    total = ["**Total**", "", "", "",
             count_text(sum(la.tiles for la in layers)) if layers else NONE_TEXT, "",
             f"**{count_text(report.total_cycles)}**", count_text(report.im2col_cycles),
             f"**{ratio_text(report.speedup)}**", count_text(report.lower_bound_cycles),
             f"**{_bound_text(report)}**", ""]
    if lowrank:
        total.append("")
    if energy is not None:
        total.append(f"**{unit.fmt(energy.total_energy_pj)}**")
    lines.append("| " + " | ".join(total) + " |")
    if macs is not None and macs.digital:
        lines += ["", f"**Where the MACs run:** {_md(mac_share_text(macs))}", "",
                  "| Layer | Runs on | Op | MACs | Share |", "|:--|:--|:--|--:|--:|"]
        lines += [f"| {_md_name(o.name)} | {o.unit} | {_md(o.op)} | {count_text(o.macs)} | "
                  f"{pct_text(macs.share(o.macs))} |" for o in macs.ops]
        lines.append(f"| **Total** | {pct_text(macs.crossbar_share)} crossbar | | "
                     f"**{count_text(macs.total)}** | |")
    if report.chip is not None:
        from imcc.report.chip import markdown

        lines += [""] + markdown(report.chip, _md)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- CSV

def _csv_cell(la: LayerReport, col: str) -> str:
    e = la.energy
    if col == "pw":
        return "" if la.pw is None else _pw(la.pw)
    if col == "cycles_per_bound":
        return csv_value(la.bound_ratio)
    if col in ("energy_pj", "latency_ns"):
        return "" if e is None else csv_value(getattr(e, col))
    if col.startswith("energy_") and col.endswith("_pj"):
        return "" if e is None else csv_value(e.breakdown[col[len("energy_"):-len("_pj")]])
    return csv_value(getattr(la, col))


def to_csv(report: Report) -> str:
    """One row per crossbar layer with the columns of `CSV_COLUMNS`, in that order; missing
    values are empty. Energies in pJ, latency in ns, utilization as a fraction."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for la in report.layers:
        w.writerow([_csv_cell(la, col) for col in CSV_COLUMNS])
    return buf.getvalue()


# ---------------------------------------------------------------- HTML + SVG



def _E(s: object) -> str:
    """HTML-escaped text, control characters shown as escapes (XML-safe too)."""
    return html.escape(safe_text(s))

_CHOSEN, _IM2COL, _UTIL = "#2f6db5", "#b9c3cd", "#6f4e9c"
_BREAKDOWN_COLORS = {"cells": "#4e79a7", "row_drivers": "#f28e2b", "adc": "#e15759",
                     "shift_add": "#76b7b2", "buffer": "#59a14f"}
_PLOT_W = 520
_VALUE_W = 110
_LABEL_MAX = 44


def _short(name: str) -> str:
    # Keep the tail: ONNX node names share long prefixes and differ at the end.
    return name if len(name) <= _LABEL_MAX else "\u2026" + name[-(_LABEL_MAX - 1):]


_f = coord  # SVG coordinates


@dataclass(frozen=True)
class _Series:
    name: str
    color: str
    values: Sequence[float | None]


def _svg_bars(title: str, labels: Sequence[str], series: Sequence[_Series], *, stacked: bool,
              fmt: Callable[[float], str], axis_max: float | None = None,
              totals: Sequence[str] | None = None,
              tick_fmt: Callable[[float], str] | None = None, log: bool = False) -> str:
    """A horizontal bar chart: one row per label, bars grouped (side by side) or stacked.
    `fmt` formats bar values (and axis ticks unless `tick_fmt` is given); `totals`
    overrides the bar-end text. `log` (grouped bars only): a log10 axis from 1 to the next
    power of ten, ticks at the powers of ten -- layers whose counts differ by orders of
    magnitude stay readable."""
    assert not (log and stacked), "a stacked bar has no log-scale reading"
    tick_fmt = tick_fmt or fmt
    n = len(labels)
    if n == 0:
        return "<p class=\"empty\">No crossbar layers.</p>"
    label_w = min(_LABEL_MAX, max(len(_short(s)) for s in labels)) * 6.6 + 12
    bar_h = 10.0 if (not stacked and len(series) > 1) else 12.0
    per_row = bar_h * (1 if stacked else len(series))
    row_h = per_row + 8
    legend_h = 22.0
    top = legend_h + 6
    height = top + n * row_h + 24
    width = label_w + _PLOT_W + _VALUE_W

    def val(v: float | None) -> float:
        return v if v is not None and v > 0 else 0.0

    if stacked:
        extent = max(sum(val(s.values[i]) for s in series) for i in range(n))
    else:
        extent = max(val(v) for s in series for v in s.values)
    vmax, ticks = (axis_max, 4) if axis_max is not None else nice_axis(extent)
    scale = _PLOT_W / vmax
    decades = max(1, math.ceil(math.log10(max(extent, 10.0)))) if log else 1
    if log:
        vmax, ticks = 10.0 ** decades, decades

    def bar_w(v: float) -> float:
        if not log:
            return v * scale
        return _PLOT_W * math.log10(v) / decades if v > 1 else 0.0

    out = [f'<svg role="img" width="{_f(width)}" '
           f'height="{_f(height)}" viewBox="0 0 {_f(width)} {_f(height)}" '
           f'font-family="system-ui, sans-serif" font-size="11">',
           f"<title>{_E(title)}</title>"]
    # legend
    x = label_w
    for s in series:
        out.append(f'<rect x="{_f(x)}" y="4" width="12" height="12" fill="{s.color}"/>')
        out.append(f'<text x="{_f(x + 16)}" y="14">{_E(s.name)}</text>')
        x += 16 + 7 * len(s.name) + 18
    # grid and ticks
    axis_y = top + n * row_h
    for k in range(ticks + 1):
        gx = label_w + _PLOT_W * k / ticks
        out.append(f'<line x1="{_f(gx)}" y1="{_f(top - 2)}" x2="{_f(gx)}" y2="{_f(axis_y)}" '
                   f'stroke="#e3e6ea"/>')
        tick = 10.0 ** k if log else vmax * k / ticks
        out.append(f'<text x="{_f(gx)}" y="{_f(axis_y + 14)}" text-anchor="middle" '
                   f'fill="#555">{_E(tick_fmt(tick))}</text>')
    for i, name in enumerate(labels):
        y0 = top + i * row_h + 4
        out.append(f'<text x="{_f(label_w - 6)}" y="{_f(y0 + per_row / 2 + 4)}" '
                   f'text-anchor="end"><title>{_E(name)}</title>{_E(_short(name))}</text>')
        x = label_w
        end_x = label_w
        for j, s in enumerate(series):
            v = val(s.values[i])
            w = bar_w(v)
            y = y0 if stacked else y0 + j * bar_h
            out.append(f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" '
                       f'height="{_f(bar_h - 1)}" fill="{s.color}"><title>'
                       f'{_E(name)}: {_E(s.name)} {_E(fmt(v))}</title></rect>')
            if stacked:
                x += w
                end_x = x
            else:
                end_x = max(end_x, label_w + w)
                if totals is None:
                    out.append(f'<text x="{_f(label_w + w + 4)}" y="{_f(y + bar_h - 2)}" '
                               f'fill="#333">{_E(fmt(v))}</text>')
        if stacked or totals is not None:
            text = totals[i] if totals is not None else fmt(
                sum(val(s.values[i]) for s in series))
            out.append(f'<text x="{_f(end_x + 4)}" y="{_f(y0 + per_row / 2 + 4)}" '
                       f'fill="#333">{_E(text)}</text>')
    out.append("</svg>")
    return "\n".join(out)


# Page style shared by imcc's HTML outputs (the report here, the sweep plot in imcc.sweep).
BASE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #d5d9de; padding: 0.25em 0.6em; }
th { background: #f3f5f7; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
"""

_CSS = BASE_CSS + """
.scaled > .log { display: none; }
.scaled > .logscale:checked ~ .log { display: block; }
.scaled > .logscale:checked ~ .linear { display: none; }
.scroll { overflow-x: auto; }
table.layers td, table.layers th { white-space: nowrap; }
tr.total td { font-weight: 600; background: #f8f9fa; }
code { font-size: 0.95em; }
.chart { overflow-x: auto; }
footer { margin-top: 2em; color: #888; font-size: 0.85em; }
"""


def _td(text: str, numeric: bool = False) -> str:
    return f'<td class="n">{_E(text)}</td>' if numeric else f"<td>{_E(text)}</td>"


def _mapping_td(layer: LayerReport) -> str:
    # A fallback reason (e.g. why a requested SDK mapping became im2col) as a tooltip.
    note = layer.mapping_note
    text = _E(layer.mapping)
    return f'<td title="{_E(note)}">{text}*</td>' if note else f"<td>{text}</td>"


def to_html(report: Report) -> str:
    """One self-contained HTML page (inline CSS and SVG only; no scripts, fonts or links):
    a summary, bar charts of per-layer cycles (chosen mapping beside im2col), energy (stacked
    by component when the breakdown is present) and utilization, and the per-layer table."""
    layers = report.layers
    names = [la.name for la in layers]
    energy = report.energy
    lowrank = report.has_lowrank_layers
    unit = _page_unit(report)
    model = report.model
    speed = report.speedup

    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>imcc report: {_E(model)}</title>", f"<style>{_CSS}</style>", "</head>",
             "<body>", f"<h1>imcc report: {_E(model)}</h1>"]
    parts.append(f'<p class="meta">{_E(" · ".join(_meta(report)))}</p>')

    summary: list[tuple[str, str]] = [
        ("Computing cycles", count_text(report.total_cycles)),
        ("im2col cycles, uncompressed network",
         count_text(report.uncompressed_im2col_cycles if report.uncompressed_im2col_cycles
                    is not None else None if lowrank else report.im2col_cycles)),
        ("Speedup vs im2col (uncompressed)", ratio_text(report.headline_speedup)),
        *([("im2col cycles, this factorized network", count_text(report.im2col_cycles)),
           ("Speedup vs its own im2col", ratio_text(speed))] if lowrank else []),
        ("Lower bound (cycles)", count_text(report.lower_bound_cycles)),
        ("Cycles / lower bound", _bound_text(report)),
        ("Arrays", count_text(report.n_arrays)),
        ("Crossbar layers", str(len(layers))),
    ]
    macs = report.macs
    if macs is not None and macs.total:
        summary += [("MACs per image", count_text(macs.total)),
                    ("\u2003on crossbars", f"{count_text(macs.crossbar)} "
                                           f"({pct_text(macs.crossbar_share)})"),
                    ("\u2003digital (products of two activations)",
                     f"{count_text(macs.digital)} ({pct_text(macs.share(macs.digital))})")]
    lr = report.lowrank
    if lr is not None:
        summary.append(("Low-rank", f"rank {lr.rank}, {lr.groups} groups, "
                                    f"{lr.factorized_layers} layers factorized"))
        # each factorized layer once (its R and L halves carry the same error)
        errors = {la.pair or la.name: la.rel_error for la in layers if la.rel_error is not None}
        if errors:
            summary.append(("Mean relative weight error ‖W−Ŵ‖/‖W‖",
                            f"{sum(errors.values()) / len(errors):.3f} (max "
                            f"{max(errors.values()):.3f})"))
    if energy is not None:
        total_e = energy.total_energy_pj
        summary.append(("Energy", unit.text(total_e)))
        if total_e:
            for k in BREAKDOWN_KEYS:
                v = energy.breakdown[k]
                summary.append((f"\u2003{BREAKDOWN_LABELS[k]}",
                                f"{unit.text(v)} ({pct_text(v / total_e)})"))
        summary.append(("Latency (serial)", time_text(energy.total_latency_ns)))
    parts.append("<h2>Summary</h2>")
    parts.append('<table class="summary">' + "".join(
        f"<tr><th>{_E(k)}</th>{_td(v, True)}</tr>" for k, v in summary) + "</table>")

    parts.append("<h2>Computing cycles per image, per layer</h2>")
    series = [_Series(f"chosen ({report.mapping})", _CHOSEN, [la.cycles for la in layers]),
              _Series("im2col", _IM2COL, [la.im2col_cycles for la in layers])]
    # Linear and log10 axes, switched by a checkbox in CSS (the page runs no script).
    parts.append(
        '<div class="scaled"><input type="checkbox" id="cycles-log" class="logscale">'
        '<label for="cycles-log">log scale</label>'
        '<div class="chart linear">' + _svg_bars(
            "Computing cycles per image", names, series, stacked=False, fmt=compact_count)
        + '</div><div class="chart log">' + _svg_bars(
            "Computing cycles per image (log scale)", names, series, stacked=False,
            fmt=compact_count, log=True) + "</div></div>")

    if energy is not None:
        parts.append(f"<h2>Energy per layer ({_E(unit.name)})</h2>")
        e_series = [_Series(BREAKDOWN_LABELS[k], _BREAKDOWN_COLORS[k],
                            [None if la.energy is None else la.energy.breakdown[k]
                             for la in layers]) for k in BREAKDOWN_KEYS]
        # Values are handed over in pJ; format ticks in the page's unit.
        parts.append('<div class="chart">' + _svg_bars(
            "Energy per layer", names, e_series, stacked=True,
            fmt=unit.fmt, tick_fmt=lambda v: f"{v * unit.per_base:.4g}") + "</div>")

    parts.append("<h2>Array utilization per layer</h2>")
    util = [la.utilization for la in layers]
    parts.append('<div class="chart">' + _svg_bars(
        "Array utilization per layer", names, [_Series("used cells / array cells", _UTIL,
                                                       util)],
        stacked=False, fmt=lambda v: f"{100 * v:.3g}%", axis_max=1.0,
        totals=[pct_text(u) for u in util]) + "</div>")

    parts.append("<h2>Layers</h2>")
    head = ["Layer", "Op", "Shape", "Mapping", "PW", "Tiles (rows x cols)", "Windows",
            "Cycles", "im2col cycles", "Speedup", "Lower bound", "Cycles / bound",
            "Utilization"]
    if lowrank:
        head.append("Low-rank")
    if energy is not None:
        head += [f"Energy ({unit.name})", "Latency"]
    rows = ["<tr>" + "".join(f"<th>{_E(h)}</th>" for h in head) + "</tr>"]
    for la in layers:
        tiles = f"{count_text(la.tiles)} ({la.row_tiles} x {la.col_tiles})"
        cells = [f"<td><code>{_E(la.name)}</code></td>", _td(la.op), _td(la.shape),
                 _mapping_td(la), _td(_pw(la.pw)), _td(tiles, True),
                 _td(count_text(la.windows), True), _td(count_text(la.cycles), True),
                 _td(count_text(la.im2col_cycles), True), _td(_layer_speedup(la), True),
                 _td(count_text(la.lower_bound_cycles), True), _td(_bound_text(la), True),
                 _td(pct_text(la.utilization), True)]
        if lowrank:
            cells.append(_td(_lowrank_text(la)))
        if energy is not None:
            cells += [_td(unit.fmt(_layer_energy(la)), True),
                      _td(time_text(None if la.energy is None else la.energy.latency_ns),
                          True)]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    total = [_td("Total"), _td(""), _td(""), _td(""), _td(""),
             _td(count_text(sum(la.tiles for la in layers)), True), _td(""),
             _td(count_text(report.total_cycles), True),
             _td(count_text(report.im2col_cycles), True), _td(ratio_text(speed), True),
             _td(count_text(report.lower_bound_cycles), True), _td(_bound_text(report), True),
             _td("")]
    if lowrank:
        total.append(_td(""))
    if energy is not None:
        total += [_td(unit.fmt(energy.total_energy_pj), True),
                  _td(time_text(energy.total_latency_ns), True)]
    rows.append('<tr class="total">' + "".join(total) + "</tr>")
    parts.append('<div class="scroll"><table class="layers">' + "\n".join(rows)
                 + "</table></div>")
    if macs is not None and macs.digital:
        parts.append("<h2>Where the MACs run</h2>")
        parts.append(f"<p>{_E(mac_share_text(macs))}</p>")
        mrows = ["<tr>" + "".join(f"<th>{h}</th>" for h in
                                  ("Layer", "Runs on", "Op", "MACs", "Share")) + "</tr>"]
        mrows += ["<tr>" + "".join([f"<td><code>{_E(o.name)}</code></td>", _td(o.unit),
                                    _td(o.op), _td(count_text(o.macs), True),
                                    _td(pct_text(macs.share(o.macs)), True)]) + "</tr>"
                  for o in macs.ops]
        mrows.append('<tr class="total">' + "".join(
            [_td("Total"), _td(f"{pct_text(macs.crossbar_share)} crossbar"), _td(""),
             _td(count_text(macs.total), True), _td("")]) + "</tr>")
        parts.append('<div class="scroll"><table class="layers">' + "\n".join(mrows)
                     + "</table></div>")
    if report.chip is not None:
        from imcc.report.chip import html_section

        parts.append(html_section(report.chip))
    parts.append(f"<footer>Generated by imcc {_E(imcc.__version__)} from a "
                 f"{_E(report.format)} report.</footer>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
