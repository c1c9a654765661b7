"""JSON and TOML inputs: deep nesting, huge integers and absurd values are one-line data
errors, never RecursionError / OverflowError / Infinity (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imcc.analysis.budget import load_budget
from imcc.analysis.tech import load_tech
from imcc.errors import DataError
from imcc.fileio import parse_json
from imcc.targets.program_io import read_program


def test_deep_json_is_refused() -> None:
    with pytest.raises(DataError, match="nested"):
        parse_json("[" * 100_000 + "]" * 100_000, "x.json")
    with pytest.raises(DataError, match="nested more than"):
        parse_json("[" * 70 + "]" * 70, "x.json")


def test_huge_json_integer_is_refused() -> None:
    with pytest.raises(DataError, match="out of range"):
        parse_json('{"cycles": 1' + "0" * 400 + "}", "r.json")


def test_deep_program_json(tmp_path: Path) -> None:
    (tmp_path / "program.json").write_text("[" * 50_000 + "]" * 50_000)
    (tmp_path / "arrays.npz").write_bytes(b"")
    with pytest.raises(DataError):
        read_program(tmp_path)


def test_deep_toml_and_huge_values(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(DataError):
        load_tech(str(deep))
    big = tmp_path / "budget.toml"
    big.write_text("[budget]\ncycles = " + "9" * 400 + "\n")
    with pytest.raises(DataError, match="out of range|integer"):
        load_budget(big)


def test_tech_values_beyond_physics_are_refused(tmp_path: Path) -> None:
    from importlib import resources

    text = (resources.files("imcc.analysis") / "tech" / "isaac.toml").read_text()
    lines = [("e_adc_8b_pj = 1e308" if line.startswith("e_adc_8b_pj") else line)
             for line in text.splitlines()]
    p = tmp_path / "t.toml"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="at most"):
        load_tech(str(p))
