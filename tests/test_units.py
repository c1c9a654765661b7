"""imcc.report.units: the one place numbers, units and chart ticks are formatted."""

from __future__ import annotations

import numpy as np
import pytest

from imcc.report import units as u


@pytest.mark.parametrize(("pj", "text"), [
    (None, "-"), (0.0, "0 pJ"), (0.25, "0.25 pJ"), (419.42, "419.42 pJ"),
    (1e3, "1.00 nJ"), (1.5e6, "1.50 uJ"), (20.2083e6, "20.21 uJ"), (2e9, "2.00 mJ"),
    (1.234e13, "12,340.00 mJ"),
])
def test_energy_text(pj: float | None, text: str) -> None:
    assert u.energy_text(pj) == text


@pytest.mark.parametrize(("ns", "text"), [
    (None, "-"), (0.0, "0 ns"), (0.5, "0.5 ns"), (100.0, "100.00 ns"), (1e3, "1.00 us"),
    (7.1684e6, "7.17 ms"), (3e9, "3.00 s"), (4.5e12, "4,500.00 s"),
])
def test_time_text(ns: float | None, text: str) -> None:
    assert u.time_text(ns) == text


def test_one_unit_for_a_column() -> None:
    unit = u.energy_unit(3.0e6)  # the largest value of the column
    assert unit is u.UJ
    assert [unit.fmt(v) for v in (3.0e6, 1.5e3, 0.0, None)] == ["3.00", "0.0015", "0", "-"]
    assert unit.text(1.5e6) == "1.50 uJ"
    assert u.energy_unit(0.0) is u.PJ and u.energy_unit(999.0) is u.PJ
    assert u.time_unit(2e6) is u.MS
    assert u.UJ.fixed(1234567.0, 3) == "1.235" and u.MS.fixed(None, 3) == "-"
    assert u.UJ.fixed(2.5e12, 3) == "2,500,000.000"


def test_counts_ratios_percentages() -> None:
    assert u.count_text(21249) == "21,249" and u.count_text(0) == "0"
    assert u.count_text(1234.6) == "1,235" and u.count_text(None) == "-"
    assert u.ratio_text(21249 / 14593) == "1.46x" and u.ratio_text(None) == "-"
    assert u.ratio(3, 0) is None and u.ratio(None, 2) is None and u.ratio(3, 2) == 1.5
    assert u.pct_text(0.425) == "42.5%" and u.pct_text(1 / 3, 0) == "33%"
    assert u.pct_text(0.8775, 2) == f"{0.8775:.2%}" and u.pct_text(None) == "-"
    assert u.pct_text(-0.2) == "-20.0%"
    assert u.decimal_text(0.12345, 3) == "0.123" and u.decimal_text(None, 4) == "-"
    assert u.sig_text(0.000123456) == "0.000123" and u.sig_text(None) == "-"


def test_plain_numbers_and_csv_cells() -> None:
    assert u.plain_number(15000.0) == "15000" and u.plain_number(18) == "18"
    assert u.plain_number(20.2083456) == "20.2083" and u.plain_number(1e20) == "1e+20"
    assert u.csv_value(None) == "" and u.csv_value(True) == "true"
    assert u.csv_value(0.1) == "0.1" and u.csv_value(np.float64(0.1)) == "0.1"
    assert u.csv_value(7) == "7" and u.csv_value("a,b") == "a,b"
    # 6 significant digits, plain notation, never fewer than the integer digits
    assert u.csv_value(20212345.678) == "20212346" and u.csv_value(0.1 + 0.2) == "0.3"
    assert u.csv_value(0.24512345) == "0.245123" and u.csv_value(1e6) == "1000000"
    assert u.csv_value(1.5e-7) == "0.00000015" and u.csv_value(0.0) == "0"
    assert u.csv_value(2 / 3) == "0.666667" and u.csv_value(-1234.5678) == "-1234.57"


@pytest.mark.parametrize(("v", "full_below", "text"), [
    (0, 1e4, "0"), (1024, 1e4, "1,024"), (9999, 1e4, "9,999"), (14593, 1e4, "14.6k"),
    (2.5e6, 1e4, "2.5M"), (3e9, 1e4, "3G"), (5000, 1e3, "5k"), (500, 1e3, "500"),
])
def test_compact_count(v: float, full_below: float, text: str) -> None:
    assert u.compact_count(v, full_below) == text


def test_nice_axes() -> None:
    assert u.nice_axis(0) == (1.0, 4) and u.nice_axis(-3) == (1.0, 4)
    assert u.nice_axis(1000) == (1000.0, 5)
    assert u.nice_axis(1024) == (1250.0, 5)  # step 250
    assert u.nice_axis(0.42) == (0.5, 5)
    assert u.nice_step(7, 6) == 2.0 and u.nice_step(1, 4) == 0.25
    assert u.linear_ticks(0, 1) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert u.linear_ticks(0.81, 0.93) == [0.82, 0.84, 0.86, 0.88, 0.9, 0.92]
    ticks, lo, hi = u.log_axis(11_745, 57_857)
    assert lo <= 11_745 and 57_857 <= hi and 3 <= len(ticks) <= 8


def test_breakdown_labels_cover_the_keys() -> None:
    assert list(u.BREAKDOWN_LABELS) == list(u.BREAKDOWN_KEYS)
