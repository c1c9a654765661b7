"""The issue-14 criterion the cycle-table generators print (scripts/paper_table1.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from paper_table1 import is_checked, paper_cycles, summary, verdict  # noqa: E402


def test_paper_values_parse_as_thousands() -> None:
    assert paper_cycles("72k") == 72_000 and paper_cycles("") is None


def test_criterion_is_the_larger_of_paper_and_slack_over_bound() -> None:
    # 1.03 x 1000 = 1030: at the limit passes, one above fails.
    assert verdict(1030, 1000, "") == "yes"
    assert verdict(1031, 1000, "") == "no (paper unknown)"
    # A paper value above 1.03 x bound raises the limit to it.
    assert verdict(1900, 1000, "2k") == "yes" and verdict(2001, 1000, "2k") == "no"
    # A paper value below the bound is flagged: no correct program reaches it.
    assert verdict(1600, 1500, "1k") == "no; paper below bound 1,500"
    assert verdict(1545, 1500, "1k") == "yes; paper below bound 1,500"


def test_only_sdk_group_cells_are_checked() -> None:
    assert is_checked(32, "m/8", 8) and is_checked(64, "m/2", 2)
    assert not is_checked(128, "m/8", 8) and not is_checked(32, "m/8", 1)
    assert not is_checked(32, "none", 1)


def test_summary_counts_met_cells_and_the_worst_ratio() -> None:
    (line,) = summary([(1000, 1000, ""), (1100, 1000, ""), (1050, 1000, "2k")])
    assert "**2 of 3 met**" in line and "worst auto / bound 1.100" in line
