"""The chip-level part of a report (with ``--chip``), rendered for the terminal, Markdown and
HTML: one list of (label, value) summary items and one per-layer table, shared by the three
renderers so that they always say the same thing.

Pure functions of `ChipSummary` with the fixed number formats of `imcc.report.units`
(deterministic output). A report written before a figure existed shows it as `-`.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from imcc.report.model import ChipSummary
from imcc.report.units import (
    NONE_TEXT,
    count_text,
    energy_text,
    pct_text,
    safe_text,
    sig_text,
    time_text,
)

LAYER_HEADER: tuple[str, ...] = ("layer", "segment", "replicas", "arrays", "stage")


def _per_s(v: float | None) -> str:
    if v is None:
        return NONE_TEXT
    return f"{count_text(round(v)) if v >= 100 else sig_text(v, 4)} inferences/s"


def summary_items(c: ChipSummary) -> list[tuple[str, str]]:
    """(label, value) pairs, in the order every renderer shows them."""
    util = NONE_TEXT if c.utilization is None else pct_text(c.utilization)
    items = [
        ("chip", safe_text(c.chip)),
        ("arrays used / available",
         f"{count_text(c.arrays_used)} / {count_text(c.arrays_available)} ({util})"),
        ("segments", f"{c.segments}" + ("" if c.segments <= 1 else
                                        f" (weights reloaded every {c.batch} inferences)")),
        ("throughput", _per_s(c.throughput_ips)),
        ("latency (first input to last output)", time_text(c.latency_ns)),
        ("energy per inference", energy_text(c.energy_per_inference_pj)),
        ("  of which weight writes", energy_text(c.write_energy_pj)
         + ("" if c.segments <= 1 else f" (amortized over {c.batch})")),
        ("area", f"{sig_text(c.area_mm2, 4)} mm2"),
        ("ops per inference", count_text(c.ops_per_inference)),
        ("TOPS", sig_text(c.tops, 4)),
        ("TOPS/W", sig_text(c.tops_per_w, 4)),
        ("TOPS/mm2", sig_text(c.tops_per_mm2, 4)),
        ("lifetime (endurance)", "unlimited (weights written once)"
         if c.lifetime_inferences is None else
         f"{sig_text(c.lifetime_inferences, 3)} inferences"),
        ("replication search", safe_text(c.replication_search)),
    ]
    return items


def layer_rows(c: ChipSummary) -> list[tuple[str, str, str, str, str]]:
    """One row per crossbar layer: name, segment, replicas, arrays, stage time."""
    return [(safe_text(la.name), str(la.segment), count_text(la.replicas),
             count_text(la.arrays), time_text(la.stage_ns)) for la in c.layers]


def terminal_lines(c: ChipSummary) -> list[str]:
    """Plain text lines, `label: value` (the caller escapes them for rich markup); the
    per-layer figures are columns of the terminal's layer table."""
    return [f"{k}: {v}" for k, v in summary_items(c)]


def markdown(c: ChipSummary, esc: Callable[[object], str]) -> list[str]:
    """A Markdown section; `esc` escapes text for Markdown (the renderer's own helper)."""
    lines = ["#### Chip", "", "| Chip figure | Value |", "|:--|--:|"]
    lines += [f"| {esc(k.strip())} | {esc(v)} |" for k, v in summary_items(c)]
    if c.layers:
        lines += ["", "| " + " | ".join(h.capitalize() for h in LAYER_HEADER) + " |",
                  "|:--|--:|--:|--:|--:|"]
        lines += ["| `" + r[0].replace("`", "'").replace("|", "/") + "` | "
                  + " | ".join(r[1:]) + " |" for r in layer_rows(c)]
    return lines + [""]


def html_section(c: ChipSummary) -> str:
    """An HTML section (summary table and per-layer table)."""
    def e(s: str) -> str:
        return html.escape(s, quote=True)

    parts = ["<h2>Chip</h2>", '<table class="summary">' + "".join(
        f'<tr><th>{e(k.strip())}</th><td class="n">{e(v)}</td></tr>'
        for k, v in summary_items(c)) + "</table>"]
    if c.layers:
        head = "<tr>" + "".join(f"<th>{e(h)}</th>" for h in LAYER_HEADER) + "</tr>"
        body = "".join(f"<tr><td><code>{e(r[0])}</code></td>"
                       + "".join(f'<td class="n">{e(v)}</td>' for v in r[1:]) + "</tr>"
                       for r in layer_rows(c))
        parts.append(f'<div class="scroll"><table class="layers">{head}{body}</table></div>')
    return "\n".join(parts)


__all__ = ["LAYER_HEADER", "html_section", "layer_rows", "markdown", "summary_items",
           "terminal_lines"]
