"""Every `--json` output shares one envelope (imcc/report/envelope.py): format,
format_version, imcc_version, command and model first, the payload's keys beside them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from test_simulate_gate import compiled, simulate  # noqa: F401  (module fixture)
from typer.testing import CliRunner

from imcc import __version__
from imcc.cli import app
from imcc.report.envelope import ENVELOPE_KEYS, envelope
from imcc.report.model import Report

ASSET = Path(__file__).parent / "assets" / "resnet20_m2g4_report.json"


def head(doc: dict[str, object]) -> dict[str, object]:
    assert list(doc)[:len(ENVELOPE_KEYS)] == list(ENVELOPE_KEYS)
    return {k: doc[k] for k in ENVELOPE_KEYS}


def test_report_json_is_report_json_in_the_envelope(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    shutil.copy(ASSET, tmp_path / "r" / "report.json")
    raw = json.loads(ASSET.read_text())
    res = CliRunner().invoke(app, ["report", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert head(doc) == {"format": "imcc-report", "format_version": 1,
                         "imcc_version": raw["imcc_version"], "command": "report",
                         "model": "resnet20"}
    assert {k: v for k, v in doc.items() if k not in ENVELOPE_KEYS} == {
        k: v for k, v in raw.items() if k not in ENVELOPE_KEYS}
    # a saved `imcc report --json` reads back as the same report
    assert Report.from_json(doc).to_json() == raw


def test_simulate_and_check_json_carry_the_envelope(compiled: tuple[Path, Path],  # noqa: F811
                                                    tmp_path: Path) -> None:
    res = simulate(compiled, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert head(doc) == {"format": "imcc-simulation", "format_version": 1,
                         "imcc_version": __version__, "command": "simulate", "model": "m"}
    assert doc["matches_onnxruntime"] is True
    budget = tmp_path / "b.toml"
    budget.write_text("[budget]\ncycles = 1000000\n")
    res = CliRunner().invoke(app, ["check", str(compiled[0]), "--budget", str(budget),
                                   "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert head(doc) == {"format": "imcc-check", "format_version": 1,
                         "imcc_version": __version__, "command": "check", "model": "m"}
    assert doc["passed"] is True and doc["items"][0]["name"] == "total.cycles"


def test_envelope_refuses_a_payload_with_envelope_keys() -> None:
    try:
        envelope("check", "check", "m", {"model": "x"})
    except AssertionError as exc:
        assert "envelope keys" in str(exc)
    else:
        raise AssertionError("a clashing payload was accepted")
