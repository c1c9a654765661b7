"""Renderers over the report.json dict ("imcc-report/1"): Markdown (a PR comment), CSV (one
row per crossbar layer) and one self-contained HTML page with inline SVG charts.

All three are pure functions of the dict and deterministic (no timestamps, fixed number
formats), so a rendered report can be diffed and committed. Keys that only exist with an
energy analysis (`total_energy_pj`, `energy_pj`, `energy_breakdown`, ...) are optional;
columns and charts that need them are left out when no layer has them.
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

BREAKDOWN_KEYS: tuple[str, ...] = ("cells", "row_drivers", "adc", "shift_add", "buffer")
_BREAKDOWN_LABELS = {"cells": "cells", "row_drivers": "row drivers", "adc": "ADC",
                     "shift_add": "shift-add", "buffer": "buffer"}

CSV_COLUMNS: tuple[str, ...] = (
    "name", "op", "shape", "conv_groups", "mapping", "pw", "n_parallel", "mapping_note",
    "row_tiles", "col_tiles", "tiles", "windows", "cycles", "im2col_cycles", "utilization",
    "weight_params", "rank", "groups", "rel_error", "pair", "role", "energy_pj", "latency_ns",
    *(f"energy_{k}_pj" for k in BREAKDOWN_KEYS),
)


# ---------------------------------------------------------------- shared helpers

def _layers(report: dict[str, Any]) -> list[dict[str, Any]]:
    return list(report.get("layers") or [])


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _pw(v: Any) -> str:
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return f"{v[0]}x{v[1]}"
    return "-"


def _int(v: Any) -> str:
    n = _num(v)
    return "-" if n is None else f"{n:,.0f}"


def _pct(v: Any) -> str:
    n = _num(v)
    return "-" if n is None else f"{100 * n:.1f}%"


def _ratio(num: Any, den: Any) -> float | None:
    a, b = _num(num), _num(den)
    if a is None or b is None or b == 0:
        return None
    return a / b


def _speedup(report: dict[str, Any]) -> float | None:
    s = _num(report.get("speedup"))
    return s if s is not None else _ratio(report.get("im2col_cycles"),
                                          report.get("total_cycles"))


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


@dataclass(frozen=True)
class _Unit:
    name: str
    per_pj: float  # value in this unit = pJ * per_pj

    def fmt(self, pj: Any) -> str:
        n = _num(pj)
        if n is None:
            return "-"
        v = n * self.per_pj
        # Three significant digits below 1 so small layers do not all read "0.00".
        return f"{v:.3g}" if abs(v) < 1 else f"{v:,.2f}"


def _energy_unit(max_pj: float) -> _Unit:
    """The largest SI unit in which `max_pj` is at least 1, so a column reads naturally."""
    for name, per_pj in (("mJ", 1e-9), ("uJ", 1e-6), ("nJ", 1e-3)):
        if max_pj * per_pj >= 1:
            return _Unit(name, per_pj)
    return _Unit("pJ", 1.0)


def _time(ns: Any) -> str:
    n = _num(ns)
    if n is None:
        return "-"
    for name, per_ns in (("s", 1e-9), ("ms", 1e-6), ("us", 1e-3)):
        if n * per_ns >= 1:
            return f"{n * per_ns:,.2f} {name}"
    return f"{n:,.2f} ns"


def _has_energy(report: dict[str, Any]) -> bool:
    return _num(report.get("total_energy_pj")) is not None or any(
        _num(layer.get("energy_pj")) is not None for layer in _layers(report))


def _has_lowrank(report: dict[str, Any]) -> bool:
    return any(layer.get("rank") is not None for layer in _layers(report))


def _lowrank_text(layer: dict[str, Any]) -> str:
    if layer.get("rank") is None:
        return ""
    # The role (R: grouped KxK half, L: 1x1 half) identifies the half; the source layer
    # name is in the CSV `pair` column, too long for a table cell.
    parts = [str(layer["role"])] if layer.get("role") is not None else []
    parts.append(f"k={layer['rank']}")
    if layer.get("groups") is not None:
        parts.append(f"g={layer['groups']}")
    err = _num(layer.get("rel_error"))
    if err is not None:
        parts.append(f"err {err:.3f}")
    return ", ".join(parts)


def _target_text(report: dict[str, Any]) -> str:
    t = report.get("target") or {}
    if not isinstance(t, dict) or not t:
        return "unknown target"
    parts = []
    if "rows" in t and "cols" in t:
        parts.append(f"{t['rows']}x{t['cols']} arrays")
    if "weight_bits" in t:
        cells = f" on {t['cell_bits']}-bit cells" if "cell_bits" in t else ""
        parts.append(f"{t['weight_bits']}-bit weights{cells}")
    if "act_bits" in t:
        dac = f" ({t['dac_bits']}-bit DAC)" if "dac_bits" in t else ""
        parts.append(f"{t['act_bits']}-bit activations{dac}")
    if "adc_bits" in t:
        parts.append(f"{t['adc_bits']}-bit ADC")
    if t.get("tech"):
        parts.append(f"tech {t['tech']}")
    return ", ".join(parts)


def _total_energy(report: dict[str, Any]) -> float | None:
    e = _num(report.get("total_energy_pj"))
    if e is not None:
        return e
    vals = [_num(layer.get("energy_pj")) for layer in _layers(report)]
    known = [v for v in vals if v is not None]
    return sum(known) if known else None


# ---------------------------------------------------------------- Markdown

def _md(text: Any) -> str:
    """Escape for a GitHub table cell: HTML is live in GitHub Markdown, so a name like
    "<b>" would otherwise render; pipes would split the cell."""
    s = html.escape(str(text), quote=False)
    s = "".join("\\" + ch if ch in "\\`*_[]|#" else ch for ch in s)
    return s.replace("\n", " ")


def _md_name(name: str) -> str:
    # A code span shows ONNX names verbatim (no HTML, no emphasis); names that a code span
    # cannot hold inside a table (backticks, pipes) fall back to escaped text.
    return f"`{name}`" if not any(ch in name for ch in "`|\n") else _md(name)


def to_markdown(report: dict[str, Any]) -> str:
    """A GitHub-flavoured Markdown summary and per-layer table, fit for a PR comment."""
    layers = _layers(report)
    energy = _has_energy(report)
    lowrank = _has_lowrank(report)
    total_e = _total_energy(report)
    unit = _energy_unit(max([total_e or 0.0] + [_num(la.get("energy_pj")) or 0.0
                                                for la in layers]))
    lines = [f"### imcc report: {_md(report.get('model', '?'))}", ""]
    meta = [_md(_target_text(report)), f"mapping {_md(report.get('mapping', '?'))}"]
    if "quantized" in report:
        meta.append("quantized" if report.get("quantized") else "float (unquantized)")
    lines += [" · ".join(meta), ""]
    summary = [f"**Cycles:** {_int(report.get('total_cycles'))}"
               f" (im2col {_int(report.get('im2col_cycles'))},"
               f" speedup **{_x(_speedup(report))}**)"]
    if energy:
        summary.append(f"**Energy:** {unit.fmt(total_e)} {unit.name}")
    if _num(report.get("total_latency_ns")) is not None:
        summary.append(f"**Latency:** {_time(report.get('total_latency_ns'))}")
    if _num(report.get("n_arrays")) is not None:
        summary.append(f"**Arrays:** {_int(report.get('n_arrays'))}")
    lines += [" · ".join(summary), ""]

    header = ["Layer", "Op", "Mapping", "PW", "Tiles", "Windows", "Cycles", "im2col cycles",
              "Speedup", "Util."]
    align = [":--", ":--", ":--", ":-:", "--:", "--:", "--:", "--:", "--:", "--:"]
    if lowrank:
        header.append("Low-rank")
        align.append(":--")
    if energy:
        header.append(f"Energy ({unit.name})")
        align.append("--:")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(align) + "|")
    for la in layers:
        row = [_md_name(str(la.get("name", "?"))),
               _md(la.get("op", "")), _md(la.get("mapping", "")), _pw(la.get("pw")),
               _int(la.get("tiles")), _int(la.get("windows")), _int(la.get("cycles")),
               _int(la.get("im2col_cycles")),
               _x(_ratio(la.get("im2col_cycles"), la.get("cycles"))),
               _pct(la.get("utilization"))]
        if lowrank:
            row.append(_md(_lowrank_text(la)))
        if energy:
            row.append(unit.fmt(la.get("energy_pj")))
        lines.append("| " + " | ".join(row) + " |")
    tiles = [_num(la.get("tiles")) for la in layers]
    total = ["**Total**", "", "", "",
             _int(sum(t for t in tiles if t is not None)) if layers else "-", "",
             f"**{_int(report.get('total_cycles'))}**", _int(report.get("im2col_cycles")),
             f"**{_x(_speedup(report))}**", ""]
    if lowrank:
        total.append("")
    if energy:
        total.append(f"**{unit.fmt(total_e)}**")
    lines.append("| " + " | ".join(total) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- CSV

def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def to_csv(report: dict[str, Any]) -> str:
    """One row per crossbar layer with the columns of `CSV_COLUMNS`, in that order; missing
    values are empty. Energies in pJ, latency in ns, utilization as a fraction."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for la in _layers(report):
        bd = la.get("energy_breakdown") or {}
        row = []
        for col in CSV_COLUMNS:
            if col == "pw":
                row.append(_pw(la.get("pw")) if la.get("pw") is not None else "")
            elif col.startswith("energy_") and col.endswith("_pj") and col != "energy_pj":
                row.append(_csv_value(bd.get(col[len("energy_"):-len("_pj")])))
            else:
                row.append(_csv_value(la.get(col)))
        w.writerow(row)
    return buf.getvalue()


# ---------------------------------------------------------------- HTML + SVG

_E = html.escape
_CHOSEN, _IM2COL, _UTIL = "#2f6db5", "#b9c3cd", "#6f4e9c"
_BREAKDOWN_COLORS = {"cells": "#4e79a7", "row_drivers": "#f28e2b", "adc": "#e15759",
                     "shift_add": "#76b7b2", "buffer": "#59a14f"}
_PLOT_W = 520
_VALUE_W = 110
_LABEL_MAX = 44


def _nice_axis(v: float) -> tuple[float, int]:
    """(axis maximum, tick count): a round 1 / 2 / 2.5 / 5 x 10^k tick step with at most
    five ticks reaching v, so the longest bar fills most of the plot."""
    if v <= 0:
        return 1.0, 4
    rough = v / 5
    exp = 10 ** math.floor(math.log10(rough))
    step = next(m * exp for m in (1, 2, 2.5, 5, 10) if m * exp >= rough * (1 - 1e-12))
    n = max(1, math.ceil(v / step - 1e-9))
    return n * step, n


def _short(name: str) -> str:
    # Keep the tail: ONNX node names share long prefixes and differ at the end.
    return name if len(name) <= _LABEL_MAX else "\u2026" + name[-(_LABEL_MAX - 1):]


def _f(v: float) -> str:
    """Coordinates with fixed precision, so output is byte-stable."""
    return f"{v:.1f}"


@dataclass(frozen=True)
class _Series:
    name: str
    color: str
    values: Sequence[float | None]


def _svg_bars(title: str, labels: Sequence[str], series: Sequence[_Series], *, stacked: bool,
              fmt: Callable[[float], str], axis_max: float | None = None,
              totals: Sequence[str] | None = None,
              tick_fmt: Callable[[float], str] | None = None) -> str:
    """A horizontal bar chart: one row per label, bars grouped (side by side) or stacked.
    `fmt` formats bar values (and axis ticks unless `tick_fmt` is given); `totals`
    overrides the bar-end text."""
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
    vmax, ticks = (axis_max, 4) if axis_max is not None else _nice_axis(extent)
    scale = _PLOT_W / vmax

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
        out.append(f'<text x="{_f(gx)}" y="{_f(axis_y + 14)}" text-anchor="middle" '
                   f'fill="#555">{_E(tick_fmt(vmax * k / ticks))}</text>')
    for i, name in enumerate(labels):
        y0 = top + i * row_h + 4
        out.append(f'<text x="{_f(label_w - 6)}" y="{_f(y0 + per_row / 2 + 4)}" '
                   f'text-anchor="end"><title>{_E(name)}</title>{_E(_short(name))}</text>')
        x = label_w
        end_x = label_w
        for j, s in enumerate(series):
            v = val(s.values[i])
            w = v * scale
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


def _cycles_fmt(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.3g}M"
    if v >= 1e4:
        return f"{v / 1e3:.3g}k"
    return f"{v:,.0f}"


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
.scroll { overflow-x: auto; }
table.layers td, table.layers th { white-space: nowrap; }
tr.total td { font-weight: 600; background: #f8f9fa; }
code { font-size: 0.95em; }
.chart { overflow-x: auto; }
footer { margin-top: 2em; color: #888; font-size: 0.85em; }
"""


def _td(text: str, numeric: bool = False) -> str:
    return f'<td class="n">{_E(text)}</td>' if numeric else f"<td>{_E(text)}</td>"


def _mapping_td(layer: dict[str, Any]) -> str:
    # A fallback reason (e.g. why a requested SDK mapping became im2col) as a tooltip.
    note = layer.get("mapping_note")
    text = _E(str(layer.get("mapping", "")))
    return f'<td title="{_E(str(note))}">{text}*</td>' if note else f"<td>{text}</td>"


def to_html(report: dict[str, Any]) -> str:
    """One self-contained HTML page (inline CSS and SVG only; no scripts, fonts or links):
    a summary, bar charts of per-layer cycles (chosen mapping beside im2col), energy (stacked
    by component when the breakdown is present) and utilization, and the per-layer table."""
    layers = _layers(report)
    names = [str(la.get("name", "?")) for la in layers]
    energy = _has_energy(report)
    lowrank = _has_lowrank(report)
    total_e = _total_energy(report)
    unit = _energy_unit(max([total_e or 0.0] + [_num(la.get("energy_pj")) or 0.0
                                                for la in layers]))
    model = str(report.get("model", "?"))
    speed = _speedup(report)

    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>imcc report: {_E(model)}</title>", f"<style>{_CSS}</style>", "</head>",
             "<body>", f"<h1>imcc report: {_E(model)}</h1>"]
    meta = [_target_text(report), f"mapping {report.get('mapping', '?')}"]
    if "quantized" in report:
        meta.append("quantized" if report.get("quantized") else "float (unquantized)")
    parts.append(f'<p class="meta">{_E(" · ".join(meta))}</p>')

    summary: list[tuple[str, str]] = [
        ("Computing cycles", _int(report.get("total_cycles"))),
        ("im2col baseline cycles", _int(report.get("im2col_cycles"))),
        ("Speedup vs im2col", _x(speed)),
    ]
    if _num(report.get("n_arrays")) is not None:
        summary.append(("Arrays", _int(report.get("n_arrays"))))
    summary.append(("Crossbar layers", str(len(layers))))
    if energy:
        summary.append(("Energy", f"{unit.fmt(total_e)} {unit.name}"))
    bd = report.get("energy_breakdown")
    if energy and isinstance(bd, dict) and total_e:
        for k in BREAKDOWN_KEYS:
            v = _num(bd.get(k))
            if v is not None:
                summary.append((f"\u2003{_BREAKDOWN_LABELS[k]}",
                                f"{unit.fmt(v)} {unit.name} ({100 * v / total_e:.1f}%)"))
    if _num(report.get("total_latency_ns")) is not None:
        summary.append(("Latency (serial)", _time(report.get("total_latency_ns"))))
    parts.append("<h2>Summary</h2>")
    parts.append('<table class="summary">' + "".join(
        f"<tr><th>{_E(k)}</th>{_td(v, True)}</tr>" for k, v in summary) + "</table>")

    parts.append("<h2>Computing cycles per layer</h2>")
    cyc = [_num(la.get("cycles")) for la in layers]
    base = [_num(la.get("im2col_cycles")) for la in layers]
    series = [_Series(f"chosen ({report.get('mapping', 'mapping')})", _CHOSEN, cyc)]
    if any(b is not None for b in base):
        series.append(_Series("im2col", _IM2COL, base))
    parts.append('<div class="chart">' + _svg_bars(
        "Computing cycles per layer", names, series, stacked=False, fmt=_cycles_fmt) + "</div>")

    if energy:
        parts.append(f"<h2>Energy per layer ({_E(unit.name)})</h2>")
        has_bd = any(isinstance(la.get("energy_breakdown"), dict) for la in layers)
        if has_bd:
            e_series = [_Series(_BREAKDOWN_LABELS[k], _BREAKDOWN_COLORS[k],
                                [_num((la.get("energy_breakdown") or {}).get(k)) for la in
                                 layers]) for k in BREAKDOWN_KEYS]
        else:
            e_series = [_Series("energy", _CHOSEN, [_num(la.get("energy_pj"))
                                                    for la in layers])]
        # Values are handed over in pJ; format ticks in the page's unit.
        parts.append('<div class="chart">' + _svg_bars(
            "Energy per layer", names, e_series, stacked=True,
            fmt=unit.fmt, tick_fmt=lambda v: f"{v * unit.per_pj:.4g}") + "</div>")

    parts.append("<h2>Array utilization per layer</h2>")
    util = [_num(la.get("utilization")) for la in layers]
    parts.append('<div class="chart">' + _svg_bars(
        "Array utilization per layer", names, [_Series("used cells / array cells", _UTIL,
                                                       util)],
        stacked=False, fmt=lambda v: f"{100 * v:.3g}%", axis_max=1.0,
        totals=[_pct(u) for u in util]) + "</div>")

    parts.append("<h2>Layers</h2>")
    head = ["Layer", "Op", "Shape", "Mapping", "PW", "Tiles (rows x cols)", "Windows",
            "Cycles", "im2col cycles", "Speedup", "Utilization"]
    if lowrank:
        head.append("Low-rank")
    if energy:
        head += [f"Energy ({unit.name})", "Latency"]
    rows = ["<tr>" + "".join(f"<th>{_E(h)}</th>" for h in head) + "</tr>"]
    for la in layers:
        tiles = _int(la.get("tiles"))
        if la.get("row_tiles") is not None and la.get("col_tiles") is not None:
            tiles += f" ({la['row_tiles']} x {la['col_tiles']})"
        cells = [f"<td><code>{_E(str(la.get('name', '?')))}</code></td>",
                 _td(str(la.get("op", ""))), _td(str(la.get("shape", "") or "")),
                 _mapping_td(la), _td(_pw(la.get("pw"))), _td(tiles, True),
                 _td(_int(la.get("windows")), True), _td(_int(la.get("cycles")), True),
                 _td(_int(la.get("im2col_cycles")), True),
                 _td(_x(_ratio(la.get("im2col_cycles"), la.get("cycles"))), True),
                 _td(_pct(la.get("utilization")), True)]
        if lowrank:
            cells.append(_td(_lowrank_text(la)))
        if energy:
            cells += [_td(unit.fmt(la.get("energy_pj")), True),
                      _td(_time(la.get("latency_ns")), True)]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    total = [_td("Total"), _td(""), _td(""), _td(""), _td(""),
             _td(_int(sum(t for la in layers if (t := _num(la.get("tiles"))) is not None)),
                 True), _td(""),
             _td(_int(report.get("total_cycles")), True),
             _td(_int(report.get("im2col_cycles")), True), _td(_x(speed), True), _td("")]
    if lowrank:
        total.append(_td(""))
    if energy:
        total += [_td(unit.fmt(total_e), True), _td(_time(report.get("total_latency_ns")),
                                                    True)]
    rows.append('<tr class="total">' + "".join(total) + "</tr>")
    parts.append('<div class="scroll"><table class="layers">' + "\n".join(rows)
                 + "</table></div>")
    fmt_name = str(report.get("format", "imcc-report/1"))
    parts.append(f"<footer>Generated by imcc {_E(imcc.__version__)} from a "
                 f"{_E(fmt_name)} report.</footer>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
