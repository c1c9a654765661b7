"""User-controlled strings (model path, node names, budget keys) are never parsed as rich
markup, never carry control characters into a terminal or a CSV, and are XML-safe in JUnit
(issue 13, "Text hygiene")."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import make_model, report_dict
from onnx import helper

from imcc.analysis.budget import budget_from_dict, check_budget, to_junit_xml
from imcc.report.model import Report
from imcc.report.render import to_csv, to_html, to_markdown
from imcc.report.units import safe_text

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
NAMES = ("[/]", "[bold red]X[/bold red]", "\x1b[31mE\x1b[0m")


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imcc.cli", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=600)


def hostile_model(path: Path) -> Path:
    """Three 3x3 convs whose node names are rich markup and an ANSI escape."""
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], {}, "x"
    for i, name in enumerate(NAMES):
        w = f"w{i}"
        inits[w] = rng.normal(size=(4, 4, 3, 3)).astype(np.float32)
        nodes.append(helper.make_node("Conv", [prev, w], [f"y{i}"], name=name, pads=[1] * 4))
        prev = f"y{i}"
    onnx.save(make_model(nodes, [("x", [1, 4, 8, 8])], [prev], inits), path)
    return path


def test_safe_text_escapes_controls_visibly() -> None:
    assert safe_text("a\x1b[31mb") == "a\\x1b[31mb"
    assert safe_text("n\x00l\nx\u202e") == "n\\x00l\\x0ax\\u202e"
    assert safe_text("layer1.0/conv1") == "layer1.0/conv1"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("hostile")
    model = hostile_model(root / "b[red]x.onnx")
    return root, run(root, "compile", str(model), "--no-quantize", "-o", "out")


def test_markup_in_names_is_shown_literally(hostile: tuple[Path, subprocess.CompletedProcess[str]]
                                            ) -> None:
    _root, proc = hostile
    assert proc.returncode == 0, proc.stderr  # was: exit 70 with MarkupError
    assert "[/]" in proc.stdout
    assert "[bold red]X[/bold red]" in proc.stdout
    assert "b[red]x on" in proc.stdout          # the title keeps the whole model name
    assert "\x1b" not in proc.stdout and "\\x1b[31mE" in proc.stdout


def test_report_and_csv_carry_no_control_characters(
        hostile: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, _ = hostile
    proc = run(root, "report", "out")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "[bold red]X[/bold red]" in proc.stdout
    proc = run(root, "report", "out", "--csv")
    assert "\x1b" not in proc.stdout
    names = [row["name"] for row in csv.DictReader(io.StringIO(proc.stdout))]
    assert names == ["[/]", "[bold red]X[/bold red]", "\\x1b[31mE\\x1b[0m"]


def test_renderers_escape_control_characters() -> None:
    raw = report_dict()
    raw["layers"][1]["name"] = "/l\x1b[2J\x00"
    rep = Report.from_json(raw)
    for text in (to_markdown(rep), to_csv(rep), to_html(rep)):
        assert "\x1b" not in text and "\x00" not in text


@pytest.mark.parametrize("bad", ["\x1b[31m", "\x00", "\ufffe"])
def test_junit_is_well_formed_with_control_characters_in_a_budget_key(bad: str) -> None:
    raw = report_dict()
    name = f"/conv{bad}/Conv"
    raw["layers"][0]["name"] = name
    budget = budget_from_dict({"budget": {"layers": {name: {"cycles": 10}}}}, "b")
    xml = to_junit_xml(check_budget(Report.from_json(raw), budget), f"imcc-check m{bad}")
    root = ET.fromstring(xml)  # well-formed
    case = root.find("testsuite/testcase")
    assert case is not None and case.get("name") == f"layer.{safe_text(name)}.cycles"


def test_error_messages_are_not_markup(tmp_path: Path) -> None:
    proc = run(tmp_path, "report", "no[bold]where\x1b[31m")
    assert proc.returncode == 4
    assert "no[bold]where\\x1b[31m" in proc.stderr and "\x1b[31m" not in proc.stderr
    json.dumps(proc.stderr)
