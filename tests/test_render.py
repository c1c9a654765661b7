"""Markdown / CSV / HTML renderers over the report.json dict."""

from __future__ import annotations

import copy
import csv
import io
import re
from typing import Any

import pytest

from imcc.analysis.energy import BREAKDOWN_KEYS as ENERGY_KEYS
from imcc.report.render import BREAKDOWN_KEYS, CSV_COLUMNS, to_csv, to_html, to_markdown


def layer(name: str, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name, "op": "Conv", "shape": "16x32x32 -> 16x32x32, k3x3 s1",
        "mapping": "vw-sdk", "pw": [2, 3], "n_parallel": 6, "row_tiles": 2, "col_tiles": 1,
        "tiles": 2, "windows": 176, "cycles": 352, "im2col_cycles": 1024,
        "utilization": 0.42, "rank": None, "groups": None, "rel_error": None, "pair": None,
        "energy_pj": 1.5e6, "latency_ns": 2.0e5,
        "energy_breakdown": {"cells": 1e5, "row_drivers": 2e5, "adc": 1e6, "shift_add": 5e4,
                             "buffer": 1.5e5},
    }
    base.update(kw)
    return base


def sample() -> dict[str, Any]:
    return {
        "format": "imcc-report/1", "model": "resnet20",
        "target": {"rows": 128, "cols": 128, "weight_bits": 4, "cell_bits": 1, "act_bits": 4,
                   "dac_bits": 1, "adc_bits": 8, "tech": "isaac"},
        "quantized": True, "mapping": "auto", "total_cycles": 1376, "im2col_cycles": 2048,
        "speedup": 2048 / 1376, "total_energy_pj": 3.0e6, "total_latency_ns": 4.0e5,
        "n_arrays": 3,
        "layers": [
            layer("/conv1/Conv", mapping="im2col", pw=None, n_parallel=1, row_tiles=1,
                  tiles=1, windows=1024, cycles=1024),
            layer("/l<b>&|x", rank=8, groups=4, rel_error=0.125, pair="/l", role="R"),
        ],
    }


def no_energy() -> dict[str, Any]:
    rep = sample()
    for k in ("total_energy_pj", "total_latency_ns"):
        del rep[k]
    for la in rep["layers"]:
        for k in ("energy_pj", "latency_ns", "energy_breakdown"):
            del la[k]
    return rep


def table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]


def test_breakdown_keys_agree_with_energy_analysis() -> None:
    assert BREAKDOWN_KEYS == ENERGY_KEYS


def test_markdown_table() -> None:
    md = to_markdown(sample())
    rows = table_rows(md)
    header, sep, body = rows[0], rows[1], rows[2:]
    assert header.startswith("| Layer | Op | Mapping | PW |") and "Energy (uJ)" in header
    assert re.fullmatch(r"\|(:?-+:?\|)+", sep)
    ncols = header.count(" | ") + 1
    assert sep.count("|") - 1 == ncols
    assert len(body) == 2 + 1  # one per layer + totals
    assert body[0].startswith("| `/conv1/Conv` | Conv | im2col | - |")
    assert "2x3" in body[1] and "R, k=8, g=4, err 0.125" in body[1]
    # the name with a pipe and HTML is escaped, not live
    assert "\\|x" in body[1] and "<b>" not in md and "&lt;b&gt;&amp;" in body[1]
    assert body[2].startswith("| **Total** |") and "**1.49x**" in body[2]
    assert "**Energy:** 3.00 uJ" in md and "1.49x" in md
    # every body row has as many cells as the header (escaped pipes do not split cells)
    for row in body:
        assert len(re.split(r"(?<!\\)\|", row)) - 2 == ncols


def test_markdown_without_energy() -> None:
    md = to_markdown(no_energy())
    rows = table_rows(md)
    assert "Energy" not in rows[0] and len(rows) == 2 + 3
    assert "Energy" not in md


def test_csv_parses_with_stable_columns() -> None:
    text = to_csv(sample())
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 3 and all(len(r) == len(CSV_COLUMNS) for r in rows)
    recs = list(csv.DictReader(io.StringIO(text)))
    assert recs[0]["pw"] == "" and recs[1]["pw"] == "2x3"
    assert recs[1]["name"] == "/l<b>&|x"
    assert float(recs[0]["energy_adc_pj"]) == 1e6 and int(recs[0]["cycles"]) == 1024
    assert recs[0]["rank"] == "" and recs[1]["rank"] == "8" and recs[1]["role"] == "R"
    empty = list(csv.DictReader(io.StringIO(to_csv(no_energy()))))
    assert empty[0]["energy_pj"] == "" and empty[0]["energy_cells_pj"] == ""


def test_html_is_self_contained_and_escaped() -> None:
    page = to_html(sample())
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for banned in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert banned not in page
    assert page.count("<svg") == 3  # cycles, energy, utilization
    assert "<b>&" not in page and "&lt;b&gt;&amp;|x" in page
    assert "im2col" in page and "row drivers" in page
    assert to_html(sample()) == page  # deterministic


def test_html_without_energy_and_empty_layers() -> None:
    page = to_html(no_energy())
    assert page.count("<svg") == 2 and "Energy" not in page
    empty = {"model": "m", "layers": []}
    assert "No crossbar layers" in to_html(empty)
    assert table_rows(to_markdown(empty))[2].startswith("| **Total** |")
    assert to_csv(empty).count("\n") == 1


@pytest.mark.parametrize("drop", ["speedup", "target", "n_arrays", "quantized", "im2col_cycles"])
def test_renderers_tolerate_missing_optional_keys(drop: str) -> None:
    rep = copy.deepcopy(sample())
    del rep[drop]
    for la in rep["layers"]:
        la.pop("energy_breakdown", None)
        la.pop("utilization", None)
    assert to_markdown(rep) and to_csv(rep) and "<svg" in to_html(rep)
    if drop == "speedup":
        assert "1.49x" in to_markdown(rep)  # recomputed from the cycle counts
