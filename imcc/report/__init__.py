"""The typed compile report (`Report`, report.json) and its renderers: Markdown, CSV and a
self-contained HTML page (`imcc.report.render`), terminal tables (`imcc.report.terminal`),
sweep outputs (`imcc.report.sweep`); number formats in `imcc.report.units`."""

from __future__ import annotations

from imcc.report.model import LayerReport, Report
from imcc.report.render import CSV_COLUMNS, to_csv, to_html, to_markdown

__all__ = ["CSV_COLUMNS", "LayerReport", "Report", "to_csv", "to_html", "to_markdown"]
