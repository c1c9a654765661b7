"""Markdown / CSV / HTML renderers of a Report (built here from report.json dicts)."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from conftest import report_dict, report_layer

from imcc.report.model import Report
from imcc.report.render import CSV_COLUMNS
from imcc.report.render import to_csv as _to_csv
from imcc.report.render import to_html as _to_html
from imcc.report.render import to_markdown as _to_markdown
from imcc.report.units import BREAKDOWN_KEYS


def to_markdown(raw: dict[str, Any]) -> str:
    return _to_markdown(Report.from_json(raw))


def to_csv(raw: dict[str, Any]) -> str:
    return _to_csv(Report.from_json(raw))


def to_html(raw: dict[str, Any]) -> str:
    return _to_html(Report.from_json(raw))


sample = report_dict


def no_energy() -> dict[str, Any]:
    rep = sample()
    for k in ("total_energy_pj", "total_latency_ns", "energy_breakdown", "adc_bits"):
        del rep[k]
    for la in rep["layers"]:
        for k in ("energy_pj", "latency_ns", "energy_breakdown"):
            del la[k]
    return rep


def table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]


def test_breakdown_keys_are_defined_once() -> None:
    # The energy analysis, the renderers and the CSV columns share one definition.
    from imcc.analysis import energy
    from imcc.report import render

    assert energy.BREAKDOWN_KEYS is BREAKDOWN_KEYS is render.BREAKDOWN_KEYS
    assert CSV_COLUMNS[-len(BREAKDOWN_KEYS):] == tuple(f"energy_{k}_pj" for k in BREAKDOWN_KEYS)


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
    assert page.count("<svg") == 4  # cycles (linear and log scale), energy, utilization
    assert "<b>&" not in page and "&lt;b&gt;&amp;|x" in page
    assert "im2col" in page and "row drivers" in page
    assert to_html(sample()) == page  # deterministic


def empty() -> dict[str, Any]:
    """A model with no crossbar layer (e.g. only Relu): zero cycles, no speedup."""
    rep = sample()
    rep.update(layers=[], total_cycles=0, im2col_cycles=0, speedup=None, n_arrays=0,
               n_crossbar_layers=0, weight_params=0, total_energy_pj=0.0,
               total_latency_ns=0.0,
               energy_breakdown=dict.fromkeys(BREAKDOWN_KEYS, 0.0))
    return rep


def test_html_without_energy_and_empty_layers() -> None:
    page = to_html(no_energy())
    assert page.count("<svg") == 3 and "Energy" not in page  # cycles (2 scales), utilization
    assert "No crossbar layers" in to_html(empty())
    assert table_rows(to_markdown(empty()))[2].startswith("| **Total** |")
    assert to_csv(empty()).count("\n") == 1


def test_no_speedup_renders_a_dash() -> None:
    md = to_markdown(empty())
    assert "speedup **-**" in md and "**Cycles:** 0 (im2col of the uncompressed network 0," in md
    assert "<td class=\"n\">-</td>" in to_html(empty())


def test_report_without_lowrank_has_no_lowrank_column() -> None:
    rep = sample()
    rep["layers"][1].update(rank=None, groups=None, rel_error=None, pair=None, role=None)
    assert "Low-rank" not in to_markdown(rep) and "Low-rank" not in to_html(rep)
    assert "Low-rank" in to_markdown(sample()) and "Low-rank" in to_html(sample())


def test_html_states_the_low_rank_configuration_and_error_and_cycles_per_image() -> None:
    raw = sample()
    raw["lowrank"] = {"rank": "m/2", "groups": 4, "factorized_layers": 1, "skipped": {},
                      "notes": {}}
    raw["layers"].append(report_layer("/l2", rank=8, groups=4, rel_error=0.375, pair="/l2",
                                      role="R"))
    page = to_html(raw)
    assert "<tr><th>Low-rank</th>" in page and "rank m/2, 4 groups, 1 layers factorized" in page
    assert "0.250 (max 0.375)" in page  # the mean over the factorized layers, each once
    assert "Computing cycles per image" in page
    assert '<div class="scroll"><table class="layers">' in page  # wide tables scroll


def test_cycles_over_the_lower_bound_in_every_format() -> None:
    # Layer 2: 352 cycles over a bound of 320 (1.10x); the network: 1376 over 1344 (1.02x).
    from rich.console import Console

    from imcc.report.terminal import report_table, summary_lines

    rows = table_rows(to_markdown(sample()))
    header = rows[0].split(" | ")
    col = header.index("Cycles / bound")
    assert header[col - 1] == "Bound"
    assert rows[3].split(" | ")[col] == "1.10x" and rows[3].split(" | ")[col - 1] == "320"
    assert rows[2].split(" | ")[col] == "1.00x"
    assert rows[4].split(" | ")[col] == "**1.02x**"
    recs = list(csv.DictReader(io.StringIO(to_csv(sample()))))
    assert recs[1]["lower_bound_cycles"] == "320" and float(recs[1]["cycles_per_bound"]) == 1.1
    page = to_html(sample())
    assert "<th>Cycles / bound</th>" in page and '<td class="n">1.10x</td>' in page
    assert '<td class="n">1,344</td>' in page
    buf = io.StringIO()
    console = Console(file=buf, width=250, color_system=None)
    rep = Report.from_json(sample())
    console.print(report_table(rep)[0])  # (table, the columns left out)
    for line in summary_lines(rep):
        console.print(line)
    text = buf.getvalue()
    assert "/bound" in text and "1.10x" in text and "1.02x" in text
    assert "lower bound: 1,344 cycles" in text


def test_report_without_bounds_renders_dashes() -> None:
    raw = sample()
    del raw["lower_bound_cycles"]
    for la in raw["layers"]:
        del la["lower_bound_cycles"]
    rows = table_rows(to_markdown(raw))
    col = rows[0].split(" | ").index("Cycles / bound")
    assert rows[2].split(" | ")[col] == "-" and rows[4].split(" | ")[col] == "**-**"
    assert list(csv.DictReader(io.StringIO(to_csv(raw))))[0]["cycles_per_bound"] == ""
