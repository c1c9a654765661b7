"""Budget files, the budget check and its JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import report_dict, report_layer

from imcc.analysis.budget import CheckResult, check_budget, load_budget, to_junit_xml
from imcc.errors import DataError
from imcc.report.model import Report


def report(energy: bool = True) -> Report:
    rep = report_dict()
    rep.update(model="tiny", total_cycles=10_000, im2col_cycles=20_000, speedup=2.0,
               total_energy_pj=2.0e6, total_latency_ns=3.0e6,  # 2 uJ, 3 ms
               layers=[report_layer("/conv1/Conv", cycles=4_000, energy_pj=0.5e6,
                                    latency_ns=1.0e6),
                       report_layer("/fc/Gemm", cycles=6_000, energy_pj=1.5e6,
                                    latency_ns=2.0e6)])
    if not energy:
        for k in ("total_energy_pj", "total_latency_ns", "energy_breakdown", "adc_bits"):
            del rep[k]
        for la in rep["layers"]:
            for k in ("energy_pj", "latency_ns", "energy_breakdown"):
                del la[k]
    return Report.from_json(rep)


def budget_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "budget.toml"
    p.write_text(text)
    return p


def check(tmp_path: Path, text: str, rep: Report | None = None) -> CheckResult:
    return check_budget(report() if rep is None else rep,
                        load_budget(budget_file(tmp_path, text)))


def test_within_budget_passes(tmp_path: Path) -> None:
    res = check(tmp_path, "[budget]\ncycles = 10000\nenergy_uj = 2.5\nlatency_ms = 3.0\n")
    assert res.passed
    assert [i.name for i in res.items] == ["total.cycles", "total.energy_uj",
                                           "total.latency_ms"]
    energy = res.items[1]
    assert (energy.limit, energy.actual, energy.unit) == (2.5, pytest.approx(2.0), "uJ")
    assert energy.over_by_fraction == pytest.approx(-0.2)
    assert res.items[0].over_by_fraction == 0.0 and res.items[0].passed  # exactly at limit


def test_over_budget_fails(tmp_path: Path) -> None:
    res = check(tmp_path, "[budget]\ncycles = 8000\nenergy_uj = 2.5\n")
    assert not res.passed
    assert [i.name for i in res.failures] == ["total.cycles"]
    assert res.failures[0].over_by_fraction == pytest.approx(0.25)
    d = res.to_dict()
    assert d["passed"] is False and d["items"][0]["actual"] == 10_000


def test_tolerance(tmp_path: Path) -> None:
    assert not check(tmp_path, "[budget]\ncycles = 9600\n").passed
    assert check(tmp_path, "[budget]\ncycles = 9600\ntolerance = 0.05\n").passed  # 4.2 % over
    res = check(tmp_path, "[budget]\ncycles = 9000\ntolerance = 0.05\n")  # 11 % over
    assert not res.passed and res.tolerance == 0.05


def test_per_layer_limits(tmp_path: Path) -> None:
    text = ('[budget]\n[budget.layers."/conv1/Conv"]\ncycles = 5000\nenergy_uj = 0.4\n'
            '[budget.layers."/fc/Gemm"]\nlatency_ms = 2.5\n')
    res = check(tmp_path, text)
    assert [(i.name, i.passed) for i in res.items] == [
        ("layer./conv1/Conv.cycles", True), ("layer./conv1/Conv.energy_uj", False),
        ("layer./fc/Gemm.latency_ms", True)]
    assert res.items[1].actual == pytest.approx(0.5)


def test_budgeted_layer_missing_from_report(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not in the report: no layer named '/conv2/Conv'"):
        check(tmp_path, '[budget.layers."/conv2/Conv"]\ncycles = 5\n')


def test_budgeted_layer_by_short_name(tmp_path: Path) -> None:
    """A layer is budgeted by the name the tables show as well as by its full name."""
    full = check(tmp_path, '[budget.layers."/conv1/Conv"]\ncycles = 5\n')
    short = check(tmp_path, '[budget.layers."conv1"]\ncycles = 5\n')
    assert [i.actual for i in short.items] == [i.actual for i in full.items]
    assert short.passed == full.passed
    with pytest.raises(DataError, match=r"no layer named 'conv9' \(close: 'conv1'"):
        check(tmp_path, '[budget.layers."conv9"]\ncycles = 5\n')


def test_energy_limit_needs_energy_analysis(tmp_path: Path) -> None:
    assert check(tmp_path, "[budget]\ncycles = 20000\n", report(energy=False)).passed
    with pytest.raises(DataError, match="no energy analysis"):
        check(tmp_path, "[budget]\nenergy_uj = 1.0\n", report(energy=False))
    with pytest.raises(DataError, match="no latency analysis"):
        check(tmp_path, '[budget.layers."/fc/Gemm"]\nlatency_ms = 1.0\n', report(energy=False))


@pytest.mark.parametrize(("text", "needle"), [
    ("[budget\ncycles = 1\n", "malformed TOML"),
    ("[budget]\ncycles = 1\nenergy = 2.0\n", "unknown key energy"),
    ("[budget]\ncycles = -5\n", "key cycles must be > 0"),
    ("[budget]\nenergy_uj = 0\n", "key energy_uj must be > 0"),
    ("[budget]\ncycles = 1.5e6\n", "key cycles must be an integer"),
    ("[budget]\nlatency_ms = \"1ms\"\n", "key latency_ms must be a number"),
    ("[budget]\ncycles = 10\ntolerance = -0.1\n", "key budget.tolerance must be >= 0"),
    ("[budget]\ntolerance = 0.1\n", "sets no limit"),
    ("[budget]\n", "sets no limit"),
    ("cycles = 10\n", "unknown top-level key cycles"),
    ("", "missing [budget] table"),
    ('[budget.layers."/fc/Gemm"]\n', "sets no limit"),
    ('[budget.layers."/fc/Gemm"]\nenergy_pj = 3.0\n', "unknown key energy_pj"),
    ("[budget]\nlayers = 3\n", "budget.layers must be a table"),
    ("budget = 3\n", "[budget] must be a table"),
], ids=["malformed", "unknown", "negative", "zero", "float-cycles", "string", "neg-tolerance",
        "only-tolerance", "empty", "top-level", "no-table", "empty-layer", "layer-unknown",
        "layers-not-table", "budget-not-table"])
def test_bad_budget_files(tmp_path: Path, text: str, needle: str) -> None:
    path = budget_file(tmp_path, text)
    with pytest.raises(DataError) as exc:
        load_budget(path)
    assert needle in str(exc.value) and str(path) in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unreadable_budget_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        load_budget(tmp_path / "nope.toml")


def test_junit_xml_counts_and_failures(tmp_path: Path) -> None:
    text = ('[budget]\ncycles = 8000\nenergy_uj = 2.5\n'
            '[budget.layers."/conv1/Conv"]\nenergy_uj = 0.4\n'
            '[budget.layers."/fc/Gemm"]\ncycles = 7000\n')
    res = check(tmp_path, text)
    xml = to_junit_xml(res, "imcc check <tiny>")
    assert xml == to_junit_xml(res, "imcc check <tiny>")  # deterministic
    root = ET.fromstring(xml)
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("name") == "imcc check <tiny>"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "0")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["total.cycles", "total.energy_uj",
                                              "layer./conv1/Conv.energy_uj",
                                              "layer./fc/Gemm.cycles"]
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["total.cycles", "layer./conv1/Conv.energy_uj"]
    msg = cases[0].find("failure").get("message")  # type: ignore[union-attr]
    assert msg == "total.cycles over budget by 25.00%"


def test_junit_xml_all_passing(tmp_path: Path) -> None:
    res = check(tmp_path, "[budget]\ncycles = 20000\n")
    suite = ET.fromstring(to_junit_xml(res, "s")).find("testsuite")
    assert suite is not None and suite.get("failures") == "0" and suite.get("tests") == "1"
    assert suite.find("testcase/failure") is None


def chip_report(throughput: float | None = 5_000.0) -> Report:
    rep = report().to_json()
    rep["chip"] = {"chip": "isaac", "arrays_used": 120, "arrays_available": 16128,
                   "segments": 1, "throughput_ips": throughput, "latency_ns": 1e6,
                   "write_energy_pj": 0.0, "area_mm2": 62.5, "batch": 1,
                   "replication_search": "min-max", "writes_per_cell": 0.0}
    return Report.from_json(rep)


def test_chip_limits(tmp_path: Path) -> None:
    res = check(tmp_path, "[budget]\nthroughput = 4000.0\narea_mm2 = 70\narrays = 120\n",
                chip_report())
    assert res.passed
    assert [(i.name, i.actual, i.unit) for i in res.items] == [
        ("total.throughput", 5000.0, "inferences/s"), ("total.area_mm2", 62.5, "mm2"),
        ("total.arrays", 120.0, "arrays")]
    assert res.items[0].minimum and res.items[0].over_by_fraction == pytest.approx(-0.25)
    # throughput is a minimum: 5000 < 6000 fails (below by 1/6), 10 % tolerance does not save it
    res = check(tmp_path, "[budget]\nthroughput = 6000.0\narrays = 119\ntolerance = 0.1\n",
                chip_report())
    assert [(i.name, i.passed) for i in res.items] == [("total.throughput", False),
                                                       ("total.arrays", True)]
    assert res.items[0].over_by_fraction == pytest.approx(1 / 6)
    assert res.to_dict()["items"][0]["minimum"] is True
    assert "minimum" not in res.to_dict()["items"][1]
    # 5 % below the minimum is within a 5 % tolerance
    assert check(tmp_path, "[budget]\nthroughput = 5250.0\ntolerance = 0.05\n",
                 chip_report()).passed
    xml = to_junit_xml(check(tmp_path, "[budget]\nthroughput = 10000.0\n", chip_report()))
    assert 'message="total.throughput below budget by 50.00%"' in xml
    # a report without crossbar layers has no throughput limit to miss
    assert check(tmp_path, "[budget]\nthroughput = 1e12\n", chip_report(None)).passed


def test_chip_limits_need_a_chip_report(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="the budget limits arrays but the report has no chip"):
        check(tmp_path, "[budget]\narrays = 10\n")
    with pytest.raises(DataError, match="unknown key throughput"):
        load_budget(budget_file(tmp_path, '[budget.layers."/fc/Gemm"]\nthroughput = 1.0\n'))
    with pytest.raises(DataError, match="key arrays must be an integer"):
        load_budget(budget_file(tmp_path, "[budget]\narrays = 1.5\n"))
