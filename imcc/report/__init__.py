"""Renderers of the report.json dict: Markdown, CSV and a self-contained HTML page."""

from __future__ import annotations

from imcc.report.render import CSV_COLUMNS, to_csv, to_html, to_markdown

__all__ = ["CSV_COLUMNS", "to_csv", "to_html", "to_markdown"]
