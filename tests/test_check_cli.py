"""`imcc check` from the command line: exit codes, messages, JUnit and JSON output, compiling
first, and the README's CI snippet run as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# One BLAS thread per process: the compiles here are many small matrix products, and on a
# small busy machine OpenBLAS's spinning worker threads slow them down several times.
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def imcc(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imcc.cli", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=600)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imcc: error:"), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def compiled(resnet20_float_auto: tuple[Path, Any]) -> tuple[Path, dict[str, Any]]:
    """ResNet-20 compiled once for the session (`imcc compile resnet20 --no-quantize`, in
    process; test_check_compiles_a_model_first checks the CLI's compile agrees).
    Unquantized: cycles, energy and latency depend on the layout only, which is that of
    4-bit weights either way."""
    outdir, _ = resnet20_float_auto
    return outdir, json.loads((outdir / "report.json").read_text())


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_within_budget_exits_0(compiled: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    outdir, rep = compiled
    budget = write(tmp_path / "b.toml", f"[budget]\ncycles = {rep['total_cycles']}\n"
                   f"energy_uj = {rep['total_energy_pj'] * 1e-6 * 1.01}\n"
                   f"latency_ms = {rep['total_latency_ns'] * 1e-6 * 1.01}\n")
    proc = imcc(tmp_path, "check", str(outdir), "--budget", str(budget))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "within budget" in proc.stdout
    assert sum(line.startswith("ok ") for line in proc.stdout.splitlines()) == 3


def test_cycles_over_budget_exits_1_naming_the_item(compiled: tuple[Path, dict[str, Any]],
                                                    tmp_path: Path) -> None:
    outdir, rep = compiled
    limit = rep["total_cycles"] // 2
    budget = write(tmp_path / "b.toml", f"[budget]\ncycles = {limit}\n"
                   f"energy_uj = {rep['total_energy_pj'] * 1e-6 * 2}\n")
    proc = imcc(tmp_path, "check", str(outdir), "--budget", str(budget))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    over = [line for line in proc.stdout.splitlines() if "OVER" in line]
    assert len(over) == 1 and "total.cycles" in over[0] and "over by" in over[0]
    expected = (rep["total_cycles"] - limit) / limit
    assert f"over by {expected:.1%}" in over[0]
    assert "budget exceeded: 1 item(s)" in proc.stdout


def test_layer_over_budget_is_named(compiled: tuple[Path, dict[str, Any]],
                                    tmp_path: Path) -> None:
    outdir, rep = compiled
    first = rep["layers"][0]
    budget = write(tmp_path / "b.toml", f'[budget.layers."{first["name"]}"]\n'
                   f"cycles = {first['cycles'] - 1}\n")
    proc = imcc(tmp_path, "check", str(outdir), "--budget", str(budget))
    assert proc.returncode == 1
    assert f"layer.{first['name']}.cycles" in proc.stdout and "over by" in proc.stdout


def test_malformed_budget_is_a_data_error(compiled: tuple[Path, dict[str, Any]],
                                          tmp_path: Path) -> None:
    outdir, _ = compiled
    budget = write(tmp_path / "b.toml", "[budget\ncycles = 1\n")
    line = assert_one_line_error(imcc(tmp_path, "check", str(outdir), "--budget",
                                      str(budget)), 2)
    assert "malformed TOML" in line and "b.toml" in line


def test_budget_with_a_bad_value_is_a_data_error(compiled: tuple[Path, dict[str, Any]],
                                                 tmp_path: Path) -> None:
    outdir, _ = compiled
    budget = write(tmp_path / "b.toml", '[budget]\ncycles = "many"\n')
    line = assert_one_line_error(imcc(tmp_path, "check", str(outdir), "--budget",
                                      str(budget)), 2)
    assert "cycles" in line


def test_missing_budget_file_is_a_clear_error(compiled: tuple[Path, dict[str, Any]],
                                              tmp_path: Path) -> None:
    outdir, _ = compiled
    proc = imcc(tmp_path, "check", str(outdir), "--budget", "nope.toml")
    assert proc.returncode not in (0, 1)
    line = assert_one_line_error(proc, proc.returncode)
    assert "nope.toml" in line


def test_junit_xml(compiled: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    outdir, rep = compiled
    first = rep["layers"][0]
    budget = write(tmp_path / "b.toml", f"[budget]\ncycles = {rep['total_cycles'] - 1}\n"
                   f"latency_ms = {rep['total_latency_ns'] * 1e-6 * 2}\n"
                   f'[budget.layers."{first["name"]}"]\ncycles = {first["cycles"]}\n')
    proc = imcc(tmp_path, "check", str(outdir), "--budget", str(budget), "--junit",
                "out/check.xml")
    assert proc.returncode == 1
    root = ET.parse(tmp_path / "out" / "check.xml").getroot()
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == ["total.cycles", "total.latency_ms",
                                              f"layer.{first['name']}.cycles"]
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["total.cycles"]
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")
    assert root.get("failures") == "1"


def test_json_output(compiled: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    outdir, rep = compiled
    budget = write(tmp_path / "b.toml", f"[budget]\ncycles = {rep['total_cycles'] - 1}\n")
    proc = imcc(tmp_path, "check", str(outdir), "--budget", str(budget), "--json")
    assert proc.returncode == 1
    res = json.loads(proc.stdout)
    assert res["passed"] is False
    (item,) = res["items"]
    assert (item["name"], item["actual"], item["passed"]) == ("total.cycles",
                                                              rep["total_cycles"], False)
    assert item["over_by_fraction"] == pytest.approx(1 / (rep["total_cycles"] - 1))


@pytest.mark.slow  # compiles ResNet-20 in a subprocess
def test_check_compiles_a_model_first(compiled: tuple[Path, dict[str, Any]],
                                      tmp_path: Path) -> None:
    _, rep = compiled
    budget = write(tmp_path / "b.toml", f"[budget]\ncycles = {rep['total_cycles']}\n")
    proc = imcc(tmp_path, "check", "resnet20", "--no-quantize", "--budget", str(budget),
                "-o", "fresh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fresh = json.loads((tmp_path / "fresh" / "report.json").read_text())
    assert fresh["total_cycles"] == rep["total_cycles"]


def test_check_with_a_bad_compile_option_is_a_usage_error(tmp_path: Path) -> None:
    budget = write(tmp_path / "b.toml", "[budget]\ncycles = 1\n")
    line = assert_one_line_error(imcc(tmp_path, "check", "resnet20", "--target", "64by64",
                                      "--budget", str(budget)), 2)
    assert "64by64" in line
    assert not any(tmp_path.glob("*.imcc"))



def test_chip_limits_need_a_chip(compiled: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    outdir, _ = compiled
    budget = write(tmp_path / "b.toml", "[budget]\nthroughput = 1000.0\narrays = 50\n")
    # compiling first without --chip: refused before any work
    line = assert_one_line_error(imcc(tmp_path, "check", "resnet20", "--budget", str(budget),
                                      "-o", "fresh"), 2)
    assert "throughput, arrays" in line and "--chip" in line
    assert not (tmp_path / "fresh").exists()
    # a saved report compiled without --chip: a data error naming the metric
    line = assert_one_line_error(imcc(tmp_path, "check", str(outdir), "--budget",
                                      str(budget)), 2)  # check: every error exits 2
    assert "no chip placement" in line and "--chip" in line


# ------------------------------------------------------------------ the README snippet

_START, _END = "<!-- ci-snippet:budget -->", "<!-- /ci-snippet -->"


def readme_snippet() -> tuple[str, list[str]]:
    """(budget.toml text, shell commands of the workflow's `run:` steps)."""
    text = (REPO / "README.md").read_text()
    assert text.count(_START) == 1 and text.count(_END) == 1, "snippet markers missing"
    snippet = text[text.index(_START) + len(_START):text.index(_END)]
    blocks = dict((lang, body) for lang, body in
                  re.findall(r"```(\w+)\n(.*?)```", snippet, flags=re.S))
    assert set(blocks) == {"toml", "yaml"}
    try:
        import yaml
    except ImportError:  # PyYAML is optional; the regex below still finds the steps
        yaml = None
    if yaml is not None:
        wf = yaml.safe_load(blocks["yaml"])
        steps = next(iter(wf["jobs"].values()))["steps"]
        runs = [s["run"] for s in steps if "run" in s]
    else:
        runs = re.findall(r"^\s*-?\s*run:\s*(.+?)\s*$", blocks["yaml"], flags=re.M)
    return blocks["toml"], runs


@pytest.mark.slow  # compiles ResNet-20 in a subprocess, as the README's CI workflow does
def test_readme_ci_snippet_runs_as_written(tmp_path: Path) -> None:
    toml_text, runs = readme_snippet()
    (tmp_path / "budget.toml").write_text(toml_text)
    assert runs and runs[0].startswith("pip install"), runs
    commands = [shlex.split(r) for r in runs[1:]]
    assert commands and all(c[0] == "imcc" for c in commands), runs
    # The pip step installs imcc into the CI runner; this test runs in an environment where
    # imcc is already installed, so it runs every other step with this Python's imcc.
    for cmd in commands:
        proc = imcc(tmp_path, *cmd[1:])
        assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}"
        assert "within budget" in proc.stdout
    junit = ET.parse(tmp_path / "imcc-check.xml").getroot()
    assert junit.get("failures") == "0"
    assert len(junit.findall(".//testcase")) == 4  # cycles, energy, latency, one layer


def test_report_json_round_trips_through_the_typed_report(
        compiled: tuple[Path, dict[str, Any]]) -> None:
    from imcc.report.model import Report

    outdir, rep = compiled
    typed = Report.from_json(rep)
    assert typed.to_json() == rep
    assert json.dumps(typed.to_json(), indent=1) + "\n" == (outdir / "report.json").read_text()
