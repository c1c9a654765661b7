"""The HTML charts' scales: the report's cycles chart switches to a log10 axis (a CSS-only
toggle, the page runs no script), and the sweep plot encodes the array size as marker
size."""

from __future__ import annotations

import math
import re

from conftest import report_dict
from test_terminal import sweep_result

from imcc.report.model import Report
from imcc.report.render import _Series, _svg_bars, to_html
from imcc.report.sweep import to_html as sweep_html


def _bar_widths(svg: str) -> list[float]:
    return [float(w) for w in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)" '
                                         r'height="[\d.]+" fill="#[0-9a-f]+"><title>', svg)]


def test_log_scale_bars_are_log10_of_the_value() -> None:
    values = [1.0, 10.0, 1000.0, 5000.0]
    svg = _svg_bars("t", ["a", "b", "c", "d"], [_Series("s", "#123456", values)],
                    stacked=False, fmt=str, log=True)
    widths = _bar_widths(svg)
    # 5000 needs 4 decades (1 .. 10^4): each decade is a quarter of the plot width
    full = widths[2] / 0.75
    assert widths[0] == 0.0
    assert math.isclose(widths[1], full / 4, rel_tol=1e-3)
    assert math.isclose(widths[3], full * math.log10(5000) / 4, rel_tol=1e-3)
    assert ">1000.0<" in svg and ">10000.0<" in svg  # ticks at the powers of ten
    linear = _bar_widths(_svg_bars("t", ["a", "b", "c", "d"],
                                   [_Series("s", "#123456", values)], stacked=False, fmt=str))
    assert linear[1] < widths[1]  # small layers are visible only on the log axis


def test_report_page_offers_both_scales() -> None:
    page = to_html(Report.from_json(report_dict()))
    assert '<input type="checkbox" id="cycles-log" class="logscale">' in page
    assert page.count("<title>Computing cycles per image") == 2
    assert ".scaled > .logscale:checked ~ .log { display: block; }" in page


def test_sweep_plot_marker_size_encodes_the_array_size() -> None:
    page = sweep_html(sweep_result())  # rows on 128x128 and 1024x1024 arrays
    assert ">array size</text>" in page
    # 1024x1024 rows are drawn larger than 128x128 rows
    tips = re.findall(r"<g><title>(\d+x\d+),[^<]*</title><(?:circle|rect|polygon)"
                      r'[^>]*?(?:r="([\d.]+)"|width="([\d.]+)"|points="([^"]+)")', page)
    assert {t for t, *_ in tips} == {"128x128", "1024x1024"}

    def extent(r: str, w: str, pts: str) -> float:
        if r:
            return 2 * float(r)
        if w:
            return float(w)
        xs = [float(p.split(",")[0]) for p in pts.split()]
        return max(xs) - min(xs)

    sizes = {t: extent(r, w, p) for t, r, w, p in tips}
    assert sizes["1024x1024"] > sizes["128x128"]
