"""The typed report (imcc.report.model): report.json round trips, reading older files,
malformed files, and a model without any crossbar layer through compile / report / check."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import make_model, report_dict
from onnx import helper

from imcc.compiler import CompileOptions, compile_graph, write_outputs
from imcc.errors import DataError
from imcc.frontend import import_model
from imcc.report.model import Report

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def imcc(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imcc.cli", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=600)


def tiny_conv() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((10, 8 * 6 * 6)).astype(np.float32)
    return make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3]),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("Flatten", ["r"], ["f"], name="flat"),
         helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc", transB=1)],
        [("x", [1, 4, 8, 8])], ["y"], {"w": w, "fc": fc})


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    path = root / "tiny.onnx"
    onnx.save(tiny_conv(), path)
    graph = import_model(path, name="tiny")
    res = compile_graph(graph, CompileOptions(), "tiny")
    return write_outputs(res, root / "out")


def test_round_trip_of_a_compiled_report_is_exact(tiny_dir: Path) -> None:
    text = (tiny_dir / "report.json").read_text()
    raw = json.loads(text)
    rep = Report.from_json(raw)
    assert rep.to_json() == raw
    # Same keys in the same order: the file written from the typed report is byte-identical.
    assert json.dumps(rep.to_json(), indent=1) + "\n" == text
    assert Report.from_json(rep.to_json()) == rep
    assert rep.n_crossbar_layers == len(rep.layers) == 2 and rep.energy is not None
    assert rep.passes == ("fold-bn", "quantize", "map") and rep.lowrank is None


def test_round_trip_with_lowrank_and_without_energy() -> None:
    raw: dict[str, Any] = {}
    for k, v in report_dict().items():
        if k == "total_energy_pj":  # report.json's place of the low-rank summary
            raw["lowrank"] = {"rank": "m/2", "groups": 4, "factorized_layers": 1,
                              "skipped": {"/conv1/Conv": "first conv"}, "notes": {}}
        raw[k] = v
    assert Report.from_json(raw).to_json() == raw
    assert list(Report.from_json(raw).to_json()) == list(raw)
    for k in ("total_energy_pj", "total_latency_ns", "energy_breakdown", "adc_bits"):
        del raw[k]
    for la in raw["layers"]:
        for k in ("energy_pj", "latency_ns", "energy_breakdown"):
            del la[k]
    rep = Report.from_json(raw)
    assert rep.energy is None and all(la.energy is None for la in rep.layers)
    assert rep.to_json() == raw


def test_reads_a_report_written_before_later_keys_existed() -> None:
    # The first imcc-report/1 files had no group_pack, slices, input_bits, params_before,
    # params_after, lower_bound_cycles (per layer) nor passes and lower_bound_cycles.
    raw = report_dict()
    del raw["passes"], raw["lower_bound_cycles"]
    for la in raw["layers"]:
        for k in ("group_pack", "slices", "input_bits", "params_before", "params_after",
                  "lower_bound_cycles"):
            del la[k]
    rep = Report.from_json(raw)
    assert rep.lower_bound_cycles is None and rep.bound_ratio is None
    assert rep.layers[0].lower_bound_cycles is None and rep.layers[0].bound_ratio is None
    assert "lower_bound_cycles" not in rep.to_json()
    assert rep.passes is None and rep.layers[0].group_pack is None
    assert rep.layers[0].input_bits is None and rep.layers[0].slices is None
    out = rep.to_json()
    assert "passes" not in out and "group_pack" not in out["layers"][0]


def test_compiled_report_carries_each_layers_lower_bound(tiny_dir: Path) -> None:
    # Built from the emitted program's typed records: each layer's bound is the tiling
    # model's bound of its geometry, the network's is their sum, and no layer is below it.
    from imcc.report.build import layer_geom
    from imcc.targets.program_io import read_program
    from imcc.targets.tiling import lower_bound_cycles

    rep = Report.from_json(json.loads((tiny_dir / "report.json").read_text()))
    program = read_program(tiny_dir)
    t = rep.target
    for la, layer in zip(rep.layers, program.crossbar_layers(), strict=True):
        assert la.lower_bound_cycles == lower_bound_cycles(
            layer_geom(layer), len(layer.slice_weights), t.rows, t.cols) > 0
        assert la.cycles >= la.lower_bound_cycles
        assert la.bound_ratio == la.cycles / la.lower_bound_cycles
    assert rep.lower_bound_cycles == sum(la.lower_bound_cycles or 0 for la in rep.layers)
    assert rep.bound_ratio is not None and rep.bound_ratio >= 1.0


def _edit(path: str, value: Any = None, drop: bool = False) -> dict[str, Any]:
    """report_dict() with the key at `path` (dotted; list indices as numbers) set or
    deleted."""
    raw = report_dict()
    *parents, last = path.split(".")
    d: Any = raw
    for p in parents:
        d = d[int(p)] if isinstance(d, list) else d[p]
    key: Any = int(last) if isinstance(d, list) else last
    if drop:
        del d[key]
    else:
        d[key] = value
    return raw


def _drop(path: str) -> dict[str, Any]:
    return _edit(path, drop=True)


def _set(path: str, value: Any) -> dict[str, Any]:
    return _edit(path, value)


@pytest.mark.parametrize(("raw", "needle"), [
    ([1, 2], "must be an object"),
    ({"format": "imcc-program/1"}, "not an imcc-report/1 report"),
    (_drop("total_cycles"), "missing key total_cycles"),
    (_drop("target.rows"), "missing key target.rows"),
    (_drop("layers.1.cycles"), "missing key layers[1].cycles"),
    (_set("total_cycles", "many"), "key total_cycles must be an integer"),
    (_set("total_cycles", True), "key total_cycles must be an integer"),
    (_set("speedup", "fast"), "key speedup must be a number or null"),
    (_set("layers", {}), "key layers must be a list"),
    (_set("layers.0.pw", [1, 2, 3]), "key layers[0].pw must be [rows, cols]"),
    (_set("layers.0", "conv"), "layers[0] must be an object"),
    (_set("layers.0.energy_breakdown.adc", "lots"), "layers[0].energy_breakdown.adc must"),
    (_set("energy_breakdown", {"adc": 1.0}), "energy_breakdown must have the keys cells,"),
    (_set("quantized", 1), "key quantized must be true or false"),
    (_set("lowrank", {"rank": "m/2", "groups": 4, "factorized_layers": 1, "skipped": [],
                      "notes": {}}), "lowrank.skipped must be an object"),
    (_set("passes", [1]), "passes must be a list of pass names"),
    (_set("layers.1.lower_bound_cycles", 1.5), "layers[1].lower_bound_cycles must be an "),
], ids=["list", "format", "total", "target", "layer", "string", "bool", "speedup",
        "layers-dict", "pw", "layer-string", "breakdown", "breakdown-keys", "quantized",
        "skipped", "passes", "bound"])
def test_malformed_report_is_a_one_line_data_error(raw: Any, needle: str) -> None:
    with pytest.raises(DataError) as exc:
        Report.from_json(copy.deepcopy(raw))
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_cli_names_the_malformed_key(tiny_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    raw = json.loads((tiny_dir / "report.json").read_text())
    del raw["layers"][0]["cycles"]
    (bad / "report.json").write_text(json.dumps(raw))
    proc = imcc(tmp_path, "report", str(bad), "--markdown")
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    assert "report.json: report: missing key layers[0].cycles" in proc.stderr
    budget = tmp_path / "b.toml"
    budget.write_text("[budget]\ncycles = 10\n")
    proc = imcc(tmp_path, "check", str(bad), "--budget", str(budget))
    assert proc.returncode == 2 and "missing key layers[0].cycles" in proc.stderr


@pytest.mark.parametrize("ops", [["Relu"], ["Flatten", "Relu"]], ids=["relu", "flatten-relu"])
def test_model_without_crossbar_layers(tmp_path: Path, ops: list[str]) -> None:
    names = ["x"] + [f"t{i}" for i in range(len(ops) - 1)] + ["y"]
    nodes = [helper.make_node(op, [names[i]], [names[i + 1]], name=f"n{i}")
             for i, op in enumerate(ops)]
    onnx.save(make_model(nodes, [("x", [1, 3, 4, 4])], ["y"], {}), tmp_path / "m.onnx")
    proc = imcc(tmp_path, "compile", "m.onnx", "-o", "out")
    assert proc.returncode == 0, proc.stderr
    assert "speedup -" in proc.stdout and "total: 0 cycles on 0 arrays" in proc.stdout
    raw = json.loads((tmp_path / "out" / "report.json").read_text())
    assert raw["total_cycles"] == 0 and raw["speedup"] is None and raw["layers"] == []
    assert Report.from_json(raw).to_json() == raw
    for args in ([], ["--markdown"], ["--csv"], ["--json"], ["--html", "r.html"]):
        proc = imcc(tmp_path, "report", "out", *args)
        assert proc.returncode == 0, (args, proc.stderr)
    assert "No crossbar layers" in (tmp_path / "r.html").read_text()
    (tmp_path / "b.toml").write_text("[budget]\ncycles = 10\nenergy_uj = 1.0\n")
    proc = imcc(tmp_path, "check", "out", "--budget", "b.toml", "--junit", "j.xml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "within budget" in proc.stdout


def test_report_and_analysis_do_not_import_passes_driver_or_sweep() -> None:
    # Dependencies run upward only: the report reads typed records, never pass objects.
    import ast

    root = Path(__file__).resolve().parents[1] / "imcc"
    banned = ("imcc.passes", "imcc.compiler", "imcc.sweep")
    for path in sorted([*(root / "report").glob("*.py"), *(root / "analysis").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(banned), f"{path.name} imports {name}"
