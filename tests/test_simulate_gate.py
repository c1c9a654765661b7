"""`imcc simulate` never reports a wrong or non-finite result as success: JSON is always
valid JSON, non-finite outputs are an error (exit 4), an exact comparison (ideal or lossless
ADC) that finds a mismatch with onnxruntime exits 1 unless --allow-mismatch, and the ADC
width defaults to the compiled one (another width shown as an override)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import make_model
from onnx import helper
from typer.testing import CliRunner

import imcc.sim.evaluate as evaluate_mod
from imcc.cli import app
from imcc.errors import DataError


def small_model(path: Path) -> Path:
    rng = np.random.default_rng(1)
    inits = {"w0": rng.normal(size=(8, 4, 3, 3)).astype(np.float32),
             "w1": rng.normal(size=(6, 8, 3, 3)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], name="c0", pads=[1] * 4),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w1"], ["y"], name="c1", pads=[1] * 4)]
    onnx.save(make_model(nodes, [("x", [1, 4, 8, 8])], ["y"], inits), path)
    return path


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sim")
    model = small_model(root / "m.onnx")
    x = np.random.default_rng(2).normal(size=(6, 4, 8, 8)).astype(np.float32)
    data = root / "x.npz"
    np.savez(data, x=x)
    res = CliRunner().invoke(app, ["compile", str(model), "-o", str(root / "out")])
    assert res.exit_code == 0, res.output
    return root / "out", data


def simulate(compiled: tuple[Path, Path], *args: str) -> Any:
    out, data = compiled
    return CliRunner().invoke(app, ["simulate", str(out), "--data", str(data), *args])


def test_default_adc_is_the_compiled_one_and_compares_exactly(
        compiled: tuple[Path, Path]) -> None:
    res = simulate(compiled, "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["adc_bits"] == d["adc_bits_compiled"] == 8 and d["adc_override"] is False
    assert d["compared_exactly"] is True and d["matches_onnxruntime"] is True
    assert d["mismatch"] is None
    text = simulate(compiled).stdout
    assert "8-bit ADC (as compiled" in text and "equals onnxruntime" in text


def test_another_adc_width_is_an_override_and_not_judged(compiled: tuple[Path, Path]) -> None:
    res = simulate(compiled, "--adc-bits", "2", "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["adc_bits"] == 2 and d["adc_override"] is True
    assert d["compared_exactly"] is False and d["matches_onnxruntime"] is None
    assert "override; compiled for 8 bits" in simulate(compiled, "--adc-bits", "2").stdout
    d = json.loads(simulate(compiled, "--ideal-adc", "--json").stdout)
    assert d["adc_bits"] is None and d["adc_override"] is True and d["compared_exactly"]


def test_a_mismatch_exits_1_unless_allowed(compiled: tuple[Path, Path],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    real = evaluate_mod.ort_run
    calls: list[int] = []

    def shifted(sess: Any, x: np.ndarray, batch: int = 100) -> np.ndarray:
        y = real(sess, x, batch)
        calls.append(1)
        if len(calls) == 1:  # compiled.onnx: a few logits off
            y = y.copy()
            y.reshape(len(y), -1)[:, 0] += 0.5
        return y

    monkeypatch.setattr(evaluate_mod, "ort_run", shifted)
    res = simulate(compiled, "--json")
    assert res.exit_code == 1
    d = json.loads(res.stdout)
    assert d["matches_onnxruntime"] is False and "max abs diff 0.5" in d["mismatch"]
    calls.clear()
    assert simulate(compiled, "--json", "--allow-mismatch").exit_code == 0


def test_non_finite_outputs_are_an_error_not_nan_json(compiled: tuple[Path, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = evaluate_mod.ort_run
    monkeypatch.setattr(evaluate_mod, "ort_run",
                        lambda s, x, b=100: real(s, x, b) * np.float32("nan"))
    res = simulate(compiled, "--json")
    assert isinstance(res.exception, DataError)
    assert "NaN or inf" in str(res.exception) and res.stdout == ""


def test_save_outputs_holds_both_outputs_and_the_labels(compiled: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    from imcc.sim.evaluate import SAVED_OUTPUT_KEYS, ort_run, ort_session

    out, data = compiled
    x = np.load(data)["x"]
    labelled = tmp_path / "xl.npz"
    np.savez(labelled, x=x, labels=np.arange(len(x)) % 6)
    for src, keys in ((data, ("simulated", "onnxruntime")), (labelled, SAVED_OUTPUT_KEYS)):
        dest = tmp_path / f"saved-{src.stem}.npz"
        res = CliRunner().invoke(app, ["simulate", str(out), "--data", str(src),
                                       "--save-outputs", str(dest)])
        assert res.exit_code == 0, res.output
        with np.load(dest) as saved:
            assert sorted(saved.files) == sorted(keys)
            ort_y = ort_run(ort_session(str(out / "compiled.onnx")), x)
            np.testing.assert_array_equal(saved["onnxruntime"], ort_y)
            assert saved["simulated"].shape == ort_y.shape
            np.testing.assert_allclose(saved["simulated"], ort_y, rtol=1e-4, atol=1e-4)
            if "labels" in keys:
                np.testing.assert_array_equal(saved["labels"], np.arange(len(x)) % 6)
