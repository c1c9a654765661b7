"""CLI conventions (issue 15): imcc layers/passes/examples, -V, -q, no-args help, short layer
names on --layer-rank, clamped-rank warnings, check's JUnit on every exit and its refusal of
compile options with an OUTDIR, and the README's Python example run as written."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imcc.cli import app
from imcc.errors import UsageError

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_version_and_no_args_help_once() -> None:
    for flag in ("-V", "--version"):
        res = run(flag)
        assert res.exit_code == 0 and res.output.strip().startswith("imcc 0.")
    res = run()
    assert res.output.count("Usage:") == 1
    assert "--install-completion" in res.output


def test_passes_lists_every_option_from_the_pass_classes() -> None:
    import dataclasses

    from imcc.passes import REGISTRY

    res = run("passes", "--json")
    assert res.exit_code == 0
    doc = json.loads(res.output)
    assert (doc["format"], doc["command"]) == ("imcc-passes", "passes")
    listed = {p["name"]: p for p in doc["passes"]}
    assert list(listed) == list(REGISTRY)
    for name, cls in REGISTRY.items():
        fields = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
        assert [o["name"] for o in listed[name]["options"]] == fields
        assert all(o["help"] for o in listed[name]["options"])
    q = {o["name"]: o for o in listed["quantize"]["options"]}
    assert (q["weight_bits"]["default"], q["weight_bits"]["unit"]) == ("4", "bits")
    text = run("passes").output
    assert "weight_bits (int, default 4) [bits]" in text


def test_compile_help_points_to_passes() -> None:
    res = CliRunner().invoke(app, ["compile", "--help"], terminal_width=80)
    assert "imcc passes" in res.output and "…" not in res.output.split("--passes")[1][:1500]


def test_examples_and_layers() -> None:
    ex = json.loads(run("examples", "--json").output)["examples"]
    assert [(e["name"], e["kind"]) for e in ex] == [("resnet20", "model"), ("cifar10", "data")]
    doc = json.loads(run("layers", "resnet20", "--json").output)
    assert (doc["format"], doc["model"]) == ("imcc-layers", "resnet20")
    layers = doc["layers"]
    assert len(layers) == 20
    assert layers[0] == {"name": "conv1", "full": "/conv1/Conv", "kind": "Conv",
                         "input": [3, 32, 32], "output": [16, 32, 32], "weight": [16, 3, 3, 3],
                         "detail": "k3x3 s1 p1", "first_or_last": True}
    assert layers[1]["name"] == "layer1.0/conv1"
    assert "/layer1/layer1.0/conv1/Conv" in run("layers").output


def test_short_layer_names_and_clamp_warning(tmp_path: Path) -> None:
    out = tmp_path / "o"
    res = run("compile", "resnet20", "--no-quantize", "-q", "-o", str(out), "--rank", "1000",
              "--layer-rank", "layer1.0/conv1=2")
    assert res.exit_code == 0, res.output
    assert "imcc: warning: rank 1000 clamped on 17 layers" in res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["warnings"] and "1000 -> 16 on layer1.0/conv2" in rep["warnings"][0]
    ranks = {la["name"]: la["rank"] for la in rep["layers"]}
    assert ranks["/layer1/layer1.0/conv1/Conv.R"] == 2
    assert "┃" not in res.output  # -q: no table
    bad = run("compile", "resnet20", "-o", str(tmp_path / "b"), "--layer-rank",
              "layr1.0/conv1=2")
    assert isinstance(bad.exception, UsageError) and bad.exception.exit_code == 2
    assert "close: 'layer1.0/conv1'" in str(bad.exception)


def test_check_junit_on_input_errors_and_compile_options_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    outdir = tmp_path / "o"
    outdir.mkdir()
    budget = tmp_path / "b.toml"
    budget.write_text("[budget]\ncycles = 1\n")
    junit = tmp_path / "j.xml"
    proc = subprocess.run([sys.executable, "-m", "imcc.cli", "check", str(outdir), "--budget",
                           str(budget), "-t", "64x64", "--junit", str(junit)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--target/-t" in proc.stderr
    assert "Traceback" not in proc.stderr
    root = ET.parse(junit).getroot()
    error = root.find(".//error")
    assert root.get("errors") == "1" and error is not None
    assert "already compiled" in (error.get("message") or "")
    junit.unlink()
    proc = subprocess.run([sys.executable, "-m", "imcc.cli", "check", str(outdir), "--budget",
                           str(tmp_path / "none.toml"), "--junit", str(junit)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and ET.parse(junit).getroot().get("errors") == "1"


_PY = re.compile(r"<!-- api-example -->\s*```python\n(.*?)```", re.S)


def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = _PY.findall((REPO / "README.md").read_text())
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), ns)  # noqa: S102 - the README's own example
    assert ns["result"].cycles > 0 and ns["sim"].images > 0
