"""Outputs of a design-space sweep (`imcc sweep`): the row and result types, the CSV, the
terminal table and the self-contained HTML page with the Pareto plot.

Everything here is a pure function of a `SweepResult`, so outputs are byte-stable; number
formats and chart axes come from `imcc.report.units`. The sweep itself (planning, the
compile stages, the process pool) is `imcc.sweep`.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from imcc.errors import UsageError
from imcc.report.model import Precision
from imcc.report.render import BASE_CSS
from imcc.report.units import (
    MS,
    UJ,
    compact_count,
    count_text,
    csv_value,
    decimal_text,
    linear_ticks,
    log_axis,
    pct_text,
    ratio_text,
    safe_text,
    sig_text,
)

TOP1_COLUMN = "top1_compiled_ort"


def _escape(s: object, quote: bool = True) -> str:
    """HTML-escaped text, control characters shown as escapes."""
    return html.escape(safe_text(s), quote)

BASE_COLUMNS: tuple[str, ...] = (
    "target", "rank", "groups", "mapping", "total_cycles", "im2col_cycles", "speedup",
    "speedup_vs_im2col", "energy_pj",
    "latency_ns", "n_arrays", "params", "factorized_layers", "mean_rel_error",
    "lowrank_method", "mean_data_error")
# With `imcc sweep --chips`: the chip a row is placed on and its chip-level figures (the
# report's chip object; `chip_arrays` is its arrays_available, `chip_latency_ns` its
# latency_ns, `chip_energy_pj` its energy_per_inference_pj).
CHIP_COLUMNS: tuple[str, ...] = (
    "chip", "chip_arrays", "arrays_used", "segments", "throughput_ips", "chip_latency_ns",
    "chip_energy_pj", "write_energy_pj", "area_mm2", "tops", "tops_per_w", "tops_per_mm2")


@dataclass(frozen=True)
class SweepSettings(Precision):
    """The settings every configuration of a sweep shares."""

    quantize: bool


@dataclass(frozen=True)
class SweepRow:
    target: str
    rank: str
    groups: int
    mapping: str
    total_cycles: int
    im2col_cycles: int
    speedup: float | None
    energy_pj: float | None
    latency_ns: float | None
    n_arrays: int
    params: int
    factorized_layers: int
    mean_rel_error: float | None  # mean over factorized layers; None when none is factorized
    top1_compiled_ort: float | None = None
    # im2col cycles of the uncompressed network on the same target / cycles (the honest
    # speedup; `speedup` divides im2col of this row's own, possibly factorized, network)
    speedup_vs_im2col: float | None = None
    # how the pairs were fitted ("svd" or "data"; None when none is factorized) and the mean
    # over pairs of the data-weighted relative output error (None without calibration data)
    lowrank_method: str | None = None
    mean_data_error: float | None = None
    # --chips rows only (None otherwise): see CHIP_COLUMNS
    chip: str | None = None
    chip_arrays: int | None = None
    arrays_used: int | None = None
    segments: int | None = None
    throughput_ips: float | None = None
    chip_latency_ns: float | None = None
    chip_energy_pj: float | None = None
    write_energy_pj: float | None = None
    area_mm2: float | None = None
    tops: float | None = None
    tops_per_w: float | None = None
    tops_per_mm2: float | None = None

    def to_dict(self, with_top1: bool, with_chip: bool = False) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if not with_top1:
            del d[TOP1_COLUMN]
        if not with_chip:
            for c in CHIP_COLUMNS:
                del d[c]
        return d


@dataclass(frozen=True)
class SweepResult:
    model: str
    settings: SweepSettings
    rows: list[SweepRow]
    float_top1: float | None  # the imported float model on the same data (reference line)
    eval_source: str | None    # the evaluation data, e.g. "data.npz[0:100]"
    calibration: str | None    # what the quantize pass calibrated on

    @property
    def with_top1(self) -> bool:
        return self.eval_source is not None

    @property
    def with_chip(self) -> bool:
        """The rows were placed on chips (`--chips`)."""
        return any(r.chip is not None for r in self.rows)



# ------------------------------------------------------------------------------- outputs


def csv_columns(with_top1: bool, with_chip: bool = False) -> tuple[str, ...]:
    return (BASE_COLUMNS + ((TOP1_COLUMN,) if with_top1 else ())
            + (CHIP_COLUMNS if with_chip else ()))


def columns(result: SweepResult) -> tuple[str, ...]:
    return csv_columns(result.with_top1, result.with_chip)


def rows_as_dicts(result: SweepResult) -> list[dict[str, Any]]:
    return [row.to_dict(result.with_top1, result.with_chip) for row in result.rows]


def sweep_payload(result: SweepResult) -> dict[str, Any]:
    """`imcc sweep --json`'s payload: the rows (the CSV's columns, base units, full
    precision), the evaluation data and the float model's accuracy on it (None without
    --data)."""
    return {"eval_source": result.eval_source, "calibration": result.calibration,
            "float_top1": result.float_top1, "rows": rows_as_dicts(result)}


def csv_line(values: Sequence[Any]) -> str:
    """One CSV line (newline-terminated) of cells formatted by `csv_value`."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([csv_value(v) for v in values])
    return buf.getvalue()


def to_csv(result: SweepResult) -> str:
    """One row per configuration; energies in pJ, latency in ns, errors and accuracy as
    fractions; an empty cell means "not applicable" (e.g. no factorized layer)."""
    cols = columns(result)
    return csv_line(cols) + "".join(csv_line([d[c] for c in cols])
                                    for d in rows_as_dicts(result))


# The CSV keeps base units (pJ, ns); a terminal table reads better in uJ and ms.
# The values are the CSV's, converted: energies in uJ (CSV: pJ), latency in ms (CSV: ns).
_TERMINAL_HEADERS = {"energy_pj": "energy (uJ)", "latency_ns": "latency (ms)",
                     "total_cycles": "cycles", "n_arrays": "arrays",
                     "factorized_layers": "factorized", "im2col_cycles": "own im2col",
                     "speedup": "x own im2col", "speedup_vs_im2col": "speedup",
                     "chip_arrays": "arrays avail", "arrays_used": "arrays used",
                     "throughput_ips": "inferences/s", "chip_latency_ns": "chip latency (ms)",
                     "chip_energy_pj": "uJ/inference", "write_energy_pj": "writes (uJ)",
                     "tops_per_w": "TOPS/W", "tops_per_mm2": "TOPS/mm2", "tops": "TOPS",
                     "lowrank_method": "method", "mean_data_error": "data err",
                     "mean_rel_error": "rel err", TOP1_COLUMN: "top-1"}

# Which columns a narrow terminal leaves out first (lowest first); the others always show.
TERMINAL_DROP = {"factorized_layers": 1, "params": 2, "n_arrays": 3, "im2col_cycles": 4,
                 "speedup": 5, "latency_ns": 6, "mean_rel_error": 7, "energy_pj": 8,
                 "lowrank_method": 2, "mean_data_error": 7, "write_energy_pj": 1, "tops": 1,
                 "tops_per_mm2": 1, "segments": 3, "chip_latency_ns": 4, "area_mm2": 5}


def _terminal_cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column in ("energy_pj", "chip_energy_pj", "write_energy_pj"):
        return UJ.fixed(value, 3)
    if column in ("latency_ns", "chip_latency_ns"):
        return MS.fixed(value, 3)
    if column == "throughput_ips":
        return count_text(round(value))
    if column in ("area_mm2", "tops", "tops_per_w", "tops_per_mm2"):
        return sig_text(value, 4)
    if column in ("speedup", "speedup_vs_im2col"):
        return ratio_text(value)
    if column in ("mean_rel_error", "mean_data_error"):
        return decimal_text(value, 4)
    if column == TOP1_COLUMN:
        return pct_text(value, 2)
    return count_text(value) if isinstance(value, int) else str(value)


def terminal_table(result: SweepResult) -> tuple[list[str], list[str], list[list[str]]]:
    """(CSV column names, terminal headers, formatted cells) for a terminal table."""
    cols = columns(result)
    return (list(cols), [_TERMINAL_HEADERS.get(c, c) for c in cols],
            [[_terminal_cell(c, d[c]) for c in cols] for d in rows_as_dicts(result)])


def plot_values(result: SweepResult) -> tuple[list[float], bool, str]:
    """(y per row, higher is better, axis title) for the Pareto plot: accuracy when the
    sweep measured it, else the mean reconstruction error (0 for an uncompressed network,
    which reproduces the weights exactly)."""
    if result.with_top1:
        return ([float(r.top1_compiled_ort or 0.0) for r in result.rows], True,
                "top-1 accuracy of compiled.onnx (higher is better)")
    return ([0.0 if r.mean_rel_error is None else r.mean_rel_error for r in result.rows],
            False, "mean relative weight error (lower is better)")


def pareto_front(cycles: Sequence[float], values: Sequence[float],
                 higher_is_better: bool) -> list[bool]:
    """Whether each point is Pareto-optimal: no other point has fewer-or-equal cycles and a
    better-or-equal value with at least one of the two strictly better."""
    sign = -1.0 if higher_is_better else 1.0
    pts = [(float(c), sign * float(v)) for c, v in zip(cycles, values, strict=True)]
    return [not any(c2 <= c and v2 <= v and (c2 < c or v2 < v) for c2, v2 in pts)
            for c, v in pts]


_MARKERS: tuple[tuple[str, str], ...] = (
    ("circle", "#1f77b4"), ("square", "#d62728"), ("triangle", "#2ca02c"),
    ("diamond", "#9467bd"), ("cross", "#ff7f0e"))


def _marker(shape: str, x: float, y: float, r: float, fill: str, extra: str) -> str:
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{fill}" {extra}/>'
    if shape == "square":
        s = r * 0.9
        return (f'<rect x="{x - s:.1f}" y="{y - s:.1f}" width="{2 * s:.1f}" '
                f'height="{2 * s:.1f}" fill="{fill}" {extra}/>')
    if shape == "triangle":
        pts = [(x, y - r * 1.15), (x - r * 1.1, y + r * 0.8), (x + r * 1.1, y + r * 0.8)]
    elif shape == "diamond":
        pts = [(x, y - r * 1.25), (x + r * 1.05, y), (x, y + r * 1.25), (x - r * 1.05, y)]
    else:  # cross: a plus sign drawn as one polygon, so fill and outline work alike
        a, b = r * 0.4, r * 1.1
        pts = [(x - a, y - b), (x + a, y - b), (x + a, y - a), (x + b, y - a), (x + b, y + a),
               (x + a, y + a), (x + a, y + b), (x - a, y + b), (x - a, y + a), (x - b, y + a),
               (x - b, y - a), (x - a, y - a)]
    coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
    return f'<polygon points="{coords}" fill="{fill}" {extra}/>'


def _targets_by_area(rows: Sequence[SweepRow]) -> list[str]:
    """The rows' targets (ROWSxCOLS) ordered by cells per array, smallest first."""
    def area(t: str) -> int:
        r, c = t.split("x")
        return int(r) * int(c)

    return sorted(dict.fromkeys(r.target for r in rows), key=lambda t: (area(t), t))


def _value_text(v: float, accuracy: bool) -> str:
    return pct_text(v) if accuracy else sig_text(v)


def _config_text(row: SweepRow) -> str:
    lr = "uncompressed" if row.rank == "none" else f"rank {row.rank}, {row.groups} groups"
    chip = "" if row.chip is None else f", chip {row.chip} ({count_text(row.chip_arrays)} arrays)"
    return f"{row.target}, {lr}, {row.mapping}{chip}"


_PLOT_CSS = BASE_CSS + """
tr.front td { background: #fff8e1; }
footer { margin-top: 2em; color: #888; font-size: 0.85em; }
"""


def _front_positions(result: SweepResult, ys: list[float], front: list[bool]
                     ) -> dict[int, int]:
    """Row index -> number of its Pareto-optimal position, numbered by increasing cycles.
    Rows at the same (cycles, value) -- e.g. auto choosing exactly what vw-sdk chose --
    share a number, so each plotted position gets one label."""
    positions = sorted({(result.rows[i].total_cycles, ys[i]) for i, f in enumerate(front) if f})
    number = {pos: n for n, pos in enumerate(positions, start=1)}
    return {i: number[(result.rows[i].total_cycles, ys[i])] for i, f in enumerate(front) if f}


def _svg_scatter(result: SweepResult, ys: list[float], higher: bool, y_title: str,
                 numbers: dict[int, int]) -> str:
    rows = result.rows
    accuracy = result.with_top1
    width, height = 980.0, 560.0
    left, right, top, bottom = 86.0, 740.0, 24.0, 490.0  # plot area; legend right of it
    xs = [math.log10(max(r.total_cycles, 1)) for r in rows]
    x_ticks, t_lo, t_hi = log_axis(10 ** min(xs), 10 ** max(xs))
    margin = 0.03 * max(math.log10(t_hi / t_lo), 0.01)  # keep edge markers off the frame
    x_lo, x_hi = math.log10(t_lo) - margin, math.log10(t_hi) + margin
    y_all = ys + ([result.float_top1] if result.float_top1 is not None else [])
    y_lo, y_hi = min(y_all), max(y_all)
    y_pad = max(0.06 * (y_hi - y_lo), 0.01 if accuracy else 0.005)
    # Errors and accuracies are never negative (nor accuracies above 1): the padding keeps
    # points off the frame without inventing ticks outside the possible range.
    y_lo, y_hi = y_lo - y_pad, y_hi + y_pad
    if accuracy:
        y_hi = min(y_hi, 1.0 + 0.04 * (y_hi - y_lo))
    if y_lo < 0:
        y_lo = -0.04 * (y_hi - max(y_lo, 0.0))

    def px(lx: float) -> float:
        return left + (lx - x_lo) / (x_hi - x_lo) * (right - left)

    def py(v: float) -> float:
        return bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - top)

    e = _escape
    out = [f'<svg role="img" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="system-ui, sans-serif" '
           f'font-size="12">',
           f"<title>{e(result.model)}: {e(y_title)} vs computing cycles</title>",
           f'<rect x="{left:.1f}" y="{top:.1f}" width="{right - left:.1f}" '
           f'height="{bottom - top:.1f}" fill="#fcfcfd" stroke="#c9ced4"/>']
    for t in x_ticks:
        x = px(math.log10(t))
        out.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" '
                   f'stroke="#e6e9ed"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 18:.1f}" text-anchor="middle" '
                   f'fill="#444">{e(compact_count(t, full_below=1e3))}</text>')
    for t in linear_ticks(y_lo, y_hi):
        if not (y_lo <= t <= y_hi and t >= 0 and (t <= 1 or not accuracy)):
            continue
        y = py(t)
        out.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" '
                   f'stroke="#e6e9ed"/>')
        out.append(f'<text x="{left - 8:.1f}" y="{y + 4:.1f}" text-anchor="end" '
                   f'fill="#444">{e(_value_text(t, accuracy))}</text>')
    out.append(f'<text x="{(left + right) / 2:.1f}" y="{bottom + 42:.1f}" '
               f'text-anchor="middle" fill="#222">computing cycles (log scale, lower is '
               f'better)</text>')
    out.append(f'<text transform="translate({left - 58:.1f} {(top + bottom) / 2:.1f}) '
               f'rotate(-90)" text-anchor="middle" fill="#222">{e(y_title)}</text>')

    if result.float_top1 is not None:
        y = py(result.float_top1)
        out.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" '
                   f'stroke="#888" stroke-dasharray="2 3"/>')

    # One entry per numbered position, by increasing cycles.
    spots = sorted({(n, rows[i].total_cycles, ys[i]) for i, n in numbers.items()})
    # The front as a staircase: past an optimal point the best reachable value stays that
    # of the cheaper point until the next optimal point's cycle count.
    if len(spots) > 1:
        pts: list[str] = []
        for k, (_n, c, v) in enumerate(spots):
            x = px(math.log10(max(c, 1)))
            if k:
                pts.append(f"{x:.1f},{py(spots[k - 1][2]):.1f}")
            pts.append(f"{x:.1f},{py(v):.1f}")
        out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="#333" '
                   f'stroke-width="1.2" stroke-dasharray="5 3"/>')
    for _n, c, v in spots:  # halos under the optimal markers
        out.append(f'<circle cx="{px(math.log10(max(c, 1))):.1f}" cy="{py(v):.1f}" r="11" '
                   f'fill="#ffc107" fill-opacity="0.45"/>')

    # Hollow markers: configurations at the same position (e.g. vw-sdk and auto choosing
    # the same windows) stay visible as overlapping outlines of different shapes.
    mappings = list(dict.fromkeys(r.mapping for r in rows))
    style = {m: _MARKERS[k % len(_MARKERS)] for k, m in enumerate(mappings)}
    # The marker's size encodes the array size: larger arrays, larger markers.
    size = {t: 4.0 + 2.0 * k for k, t in enumerate(_targets_by_area(rows))}
    for i, r in enumerate(rows):
        shape, color = style[r.mapping]
        width_ = "2.2" if i in numbers else "1.4"
        extra = f'fill-opacity="0" stroke="{color}" stroke-width="{width_}"'
        tip = (f"{_config_text(r)}: {count_text(r.total_cycles)} cycles, "
               f"{_value_text(ys[i], accuracy)}")
        mark = _marker(shape, px(xs[i]), py(ys[i]), size[r.target], "#fff", extra)
        out.append(f"<g><title>{e(tip)}</title>{mark}</g>")
    # Labels away from the staircase's next point: it lies up-right for accuracy
    # (label below) and down-right for error (label above).
    dy = 17.0 if higher else -9.0
    for n, c, v in spots:
        out.append(f'<text x="{px(math.log10(max(c, 1))) + 9:.1f}" y="{py(v) + dy:.1f}" '
                   f'font-size="11" font-weight="600" fill="#111" stroke="#fff" '
                   f'stroke-width="3" paint-order="stroke">{n}</text>')

    # legend
    lx, ly = right + 22, top + 10
    out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-weight="600">mapping</text>')
    for m in mappings:
        ly += 22
        shape, color = style[m]
        out.append(_marker(shape, lx + 7, ly - 4, 5.0, "#fff",
                           f'fill-opacity="0" stroke="{color}" stroke-width="1.8"'))
        out.append(f'<text x="{lx + 20:.1f}" y="{ly:.1f}">{e(m)}</text>')
    if len(size) > 1:
        ly += 30
        out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-weight="600">array size</text>')
        for tgt, rad in size.items():
            ly += 2 * rad + 8
            out.append(_marker("circle", lx + 7, ly - 4, rad, "#fff",
                               'fill-opacity="0" stroke="#555" stroke-width="1.4"'))
            out.append(f'<text x="{lx + 24:.1f}" y="{ly:.1f}">{e(tgt)}</text>')
    ly += 30
    out.append(f'<circle cx="{lx + 7:.1f}" cy="{ly - 4:.1f}" r="10" fill="#ffc107" '
               f'fill-opacity="0.45"/>')
    out.append(f'<text x="{lx + 24:.1f}" y="{ly:.1f}">Pareto-optimal (numbered)</text>')
    ly += 24
    out.append(f'<line x1="{lx:.1f}" y1="{ly - 4:.1f}" x2="{lx + 14:.1f}" y2="{ly - 4:.1f}" '
               f'stroke="#333" stroke-width="1.2" stroke-dasharray="5 3"/>')
    out.append(f'<text x="{lx + 24:.1f}" y="{ly:.1f}">Pareto front</text>')
    if result.float_top1 is not None:
        ly += 22
        out.append(f'<line x1="{lx:.1f}" y1="{ly - 4:.1f}" x2="{lx + 14:.1f}" '
                   f'y2="{ly - 4:.1f}" stroke="#888" stroke-dasharray="2 3"/>')
        out.append(f'<text x="{lx + 24:.1f}" y="{ly:.1f}">float model '
                   f'{e(_value_text(result.float_top1, True))}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _table(result: SweepResult, order: Sequence[int], numbers: dict[int, int]) -> str:
    e = _escape
    head = ["#", "target", "rank", "groups", "mapping", "cycles",
            "im2col cycles (own network)",
            "speedup vs own im2col", "speedup vs uncompressed im2col",
            "energy (uJ)", "latency (ms)", "arrays", "params", "mean rel. error",
            "low-rank method", "mean data error"]
    if result.with_top1:
        head.append("top-1 (compiled, ORT)")
    if result.with_chip:
        head += ["chip", "chip arrays (used / available)", "segments", "inferences/s",
                 "chip latency (ms)", "energy per inference (uJ)", "area (mm2)", "TOPS/W"]
    lines = ["<table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"]
    for i in order:
        r = result.rows[i]

        def num(text: str) -> str:
            return f'<td class="n">{e(text)}</td>'

        cells = [num(str(numbers[i]) if i in numbers else ""), f"<td>{e(r.target)}</td>",
                 f"<td>{e(r.rank)}</td>", num(str(r.groups)), f"<td>{e(r.mapping)}</td>",
                 num(count_text(r.total_cycles)), num(count_text(r.im2col_cycles)),
                 num(ratio_text(r.speedup)), num(ratio_text(r.speedup_vs_im2col)),
                 num(UJ.fixed(r.energy_pj, 3)),
                 num(MS.fixed(r.latency_ns, 3)), num(count_text(r.n_arrays)),
                 num(count_text(r.params)), num(decimal_text(r.mean_rel_error, 4)),
                 f"<td>{e(r.lowrank_method or '-')}</td>",
                 num(decimal_text(r.mean_data_error, 4))]
        if result.with_top1:
            cells.append(num(pct_text(r.top1_compiled_ort)))
        if result.with_chip:
            cells += [f"<td>{e(r.chip or '')}</td>",
                      num(f"{count_text(r.arrays_used)} / {count_text(r.chip_arrays)}"),
                      num(count_text(r.segments)),
                      num(_terminal_cell("throughput_ips", r.throughput_ips)),
                      num(MS.fixed(r.chip_latency_ns, 3)), num(UJ.fixed(r.chip_energy_pj, 3)),
                      num(sig_text(r.area_mm2, 4)), num(sig_text(r.tops_per_w, 4))]
        cls = ' class="front"' if i in numbers else ""
        lines.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _y_note(higher: bool) -> str:
    if higher:
        return ("Accuracy is top-1 of compiled.onnx (factorized, quantized as mapped) run "
                "by onnxruntime; the dotted line is the float model on the same data.")
    return ("The error is the mean over factorized layers of ||W - W_hat|| / ||W|| "
            "(Frobenius); uncompressed configurations plot at 0.")


def to_html(result: SweepResult) -> str:
    """A self-contained page (inline CSS and SVG; no scripts, fonts or links): the scatter
    plot of accuracy (or reconstruction error) against cycles with the Pareto front, the
    optimal configurations, and every row."""
    from imcc import __version__

    if not result.rows:
        raise UsageError("the sweep has no rows to plot")
    e = _escape
    ys, higher, y_title = plot_values(result)
    front = pareto_front([r.total_cycles for r in result.rows], ys, higher)
    numbers = _front_positions(result, ys, front)
    idx = sorted(numbers, key=lambda i: (numbers[i], i))
    s = result.settings
    meta = [*s.phrases(), f"quantized, calibration {result.calibration}" if s.quantize
            else "float (unquantized)"]
    if result.with_top1:
        meta.append(f"accuracy on {result.eval_source}")
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>imcc sweep: {e(result.model)}</title>", f"<style>{_PLOT_CSS}</style>",
             "</head>", "<body>", f"<h1>imcc sweep: {e(result.model)}</h1>",
             f'<p class="meta">{e(" · ".join(meta))}</p>',
             f"<p>{len(result.rows)} configurations. Marker shape and colour give the "
             f"mapping; highlighted, numbered positions are Pareto-optimal: no other "
             f"configuration has fewer or equal cycles and a better or equal "
             f"{'accuracy' if higher else 'error'}. {_y_note(higher)} Hover a marker for "
             f"its configuration.</p>",
             _svg_scatter(result, ys, higher, y_title, numbers),
             "<h2>Pareto-optimal configurations</h2>", _table(result, idx, numbers),
             "<h2>All configurations</h2>",
             _table(result, range(len(result.rows)), numbers),
             f"<footer>Generated by imcc {e(__version__)} (imcc sweep).</footer>",
             "</body>", "</html>"]
    return "\n".join(parts) + "\n"



__all__ = ["BASE_COLUMNS", "CHIP_COLUMNS", "TOP1_COLUMN", "SweepResult", "SweepRow",
           "SweepSettings", "columns", "pareto_front", "plot_values", "rows_as_dicts",
           "sweep_payload",
           "terminal_table", "to_csv", "to_html"]
