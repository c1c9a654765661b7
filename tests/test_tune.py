"""`imcc tune`: the budget holds on the real compile, the policy compiles as is, and the
command line's errors are one line with the documented exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from typer.testing import CliRunner

import imcc
from imcc.cli import app
from imcc.errors import UsageError
from imcc.passes.lowrank import LowRankPass, policy_bits
from imcc.tune import NONE, Option, Setting, hull_moves, order_moves, tune, write_policy
from tests.conftest import make_model, ort_run

C = 16  # channels of the tiny network's middle convs


def _tiny(tmp: Path, seed: int = 0) -> tuple[Path, Path]:
    """A 4-channel 8x8 -> conv 16 -> conv 16 -> conv 16 -> pool -> Linear(4) network and
    96 labelled inputs: of 480 random inputs the 96 the float model separates best (largest
    margin between its top two logits; a random network's small margins would make any
    4-bit rounding flip most labels), labelled by the float model's argmax with 10% of the
    labels replaced at random, so the float top-1 is not 100%."""
    rng = np.random.default_rng(seed)

    def conv(name: str, x: str, w: str, b: str, out: str) -> onnx.NodeProto:
        return helper.make_node("Conv", [x, w, b], [out], name=name, kernel_shape=[3, 3],
                                pads=[1, 1, 1, 1])

    inits = {"w1": rng.standard_normal((C, 4, 3, 3)).astype(np.float32) * 0.3,
             "b1": np.zeros(C, np.float32),
             "w2": rng.standard_normal((C, C, 3, 3)).astype(np.float32) * 0.12,
             "b2": rng.standard_normal(C).astype(np.float32) * 0.1,
             "w3": rng.standard_normal((C, C, 3, 3)).astype(np.float32) * 0.12,
             "b3": rng.standard_normal(C).astype(np.float32) * 0.1,
             "wf": rng.standard_normal((4, C)).astype(np.float32),
             "bf": np.zeros(4, np.float32)}
    nodes = [conv("conv1", "input", "w1", "b1", "c1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             conv("conv2", "r1", "w2", "b2", "c2"),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             conv("conv3", "r2", "w3", "b3", "c3"),
             helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
             helper.make_node("GlobalAveragePool", ["r3"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["out"], name="fc", transB=1)]
    x = rng.standard_normal((480, 4, 8, 8)).astype(np.float32)
    model = make_model(nodes, [("input", ["N", 4, 8, 8])], ["out"], inits)
    # Centre the logits so that every class occurs.
    logits = ort_run(model, {"input": x})[0]
    inits["bf"] = (-logits.mean(axis=0)).astype(np.float32)
    model = make_model(nodes, [("input", ["N", 4, 8, 8])], ["out"], inits)
    logits = ort_run(model, {"input": x})[0]
    top2 = np.sort(logits, axis=1)[:, -2:]
    x = x[np.sort(np.argsort(top2[:, 0] - top2[:, 1])[:96])]  # largest margins, in order
    labels = ort_run(model, {"input": x})[0].argmax(1)
    flip = rng.random(len(labels)) < 0.1
    labels[flip] = rng.integers(0, 4, int(flip.sum()))
    mpath, dpath = tmp / "tiny.onnx", tmp / "tiny.npz"
    onnx.save(model, mpath)
    np.savez(dpath, x=x, labels=labels.astype(np.int64))
    return mpath, dpath


def _imcc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from imcc.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=300)


def _held_out_drop(model: Path, data: Path, policy: Path, tmp: Path, cycles: int) -> float:
    """The policy compiled as `imcc compile --policy` compiles it (`imcc.compile`, what the
    command runs) on each calibration half and scored on the other half with onnxruntime on
    compiled.onnx: the drop (points) against the float model over both halves. Asserts
    the compile's cycles equal `cycles`."""
    with np.load(data) as z:
        x, labels = z["x"], z["labels"]
    h = len(x) // 2
    correct_c = correct_f = 0
    for name, (fit, held) in {"a": (slice(0, h), slice(h, None)),
                              "b": (slice(h, None), slice(0, h))}.items():
        np.savez(tmp / f"calib_{name}.npz", x=x[fit])
        out = tmp / f"out_{name}"
        imcc.compile(model, target="32x32", policy=policy, calib=tmp / f"calib_{name}.npz",
                     output=out)
        rep = json.loads((out / "report.json").read_text())
        assert rep["total_cycles"] == cycles
        y = ort_run(out / "compiled.onnx", {"input": x[held]})[0]
        yf = ort_run(out / "float.onnx", {"input": x[held]})[0]
        correct_c += int(np.sum(y.argmax(1) == labels[held]))
        correct_f += int(np.sum(yf.argmax(1) == labels[held]))
    return (correct_f - correct_c) / len(x) * 100


@pytest.mark.slow
def test_tune_respects_its_budget_on_a_tiny_network(tmp_path: Path) -> None:
    model, data = _tiny(tmp_path)
    tight = tune(model, data, target="32x32", max_drop=12.0)
    loose = tune(model, data, target="32x32", max_drop=100.0)
    # The tight budget binds: some moves were verified and refused, some kept.
    assert 0 < tight.final.moves < tight.moves
    assert any(not v.passed for v in tight.verifications)
    for res, max_drop in ((tight, 12.0), (loose, 100.0)):
        assert res.final.passed and res.final.drop <= max_drop
        pol = write_policy(res, tmp_path / f"policy_{max_drop:g}.toml")
        # The policy is what `imcc compile --policy` reads: the verified drop is reproduced
        # by compiling it independently, and the cycles are the compiled report's.
        drop = _held_out_drop(model, data, pol, tmp_path, res.cycles)
        assert drop == pytest.approx(res.final.drop)
        assert drop <= max_drop
        assert policy_bits(pol) == (8, {})
        assert LowRankPass.policy_from_file(pol).method == "data"
    # With no accuracy constraint every move is taken; the estimated costs add up to the
    # compiled cycles, and the tight budget cannot save more than the loose one.
    assert loose.final.moves == loose.moves
    assert loose.cycles < loose.baseline.cycles
    first_last = loose.baseline.cycles - sum(la.baseline.cycles for la in loose.layers)
    assert loose.cycles == first_last + sum(la.chosen.cycles for la in loose.layers)
    assert tight.cycles >= loose.cycles


def test_hull_moves_keep_the_lower_convex_hull() -> None:
    opts = [Option(NONE, 100, None, 100.0),
            Option(Setting("m/2", 1), 80, None, 80.0, loss=1.0),
            Option(Setting("m/4", 1), 70, None, 70.0, loss=3.0),  # above the chord: dropped
            Option(Setting("m/8", 1), 50, None, 50.0, loss=4.0),
            Option(Setting("m/2", 8), 120, None, 120.0, loss=0.0),  # costs more: never
            Option(Setting("m/16", 1), 50, None, 50.0, loss=9.0)]  # same saving, more loss
    assert hull_moves(opts) == [(1, 20.0, 1.0), (3, 30.0, 3.0)]
    # Across layers: most saved per unit of loss first, a layer's moves in order.
    other = [Option(NONE, 10, None, 10.0), Option(Setting("m/2", 1), 5, None, 5.0, loss=0.5)]
    moves = order_moves([opts, other])
    assert [(m.layer, m.to) for m in moves] == [(0, 1), (0, 3), (1, 1)]


@pytest.mark.slow
def test_tune_cli_errors(tmp_path: Path) -> None:
    model, data = _tiny(tmp_path)
    # Through the console entry point: one line on stderr, exit 2.
    r = _imcc("tune", str(model))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "--calib" in r.stderr
    r = _imcc("tune", str(model), "--calib", str(data), "--max-drop", "nan")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "--max-drop" in r.stderr
    # The other refusals, in process: the typed error the entry point turns into exit 2.
    for args, word in ((["--max-drop", "-1"], "--max-drop"), (["--max-drop", "101"],
                                                              "--max-drop"),
                       (["--metric", "top5"], "--metric"), (["--budget", "area"], "--budget"),
                       (["--jobs", "0"], "--jobs"), (["--folds", "3"], "--folds"),
                       (["--calib-limit", "1"], "--calib-limit"),
                       (["-o", str(tmp_path / "p.json")], "TOML")):
        res = CliRunner().invoke(app, ["tune", str(model), "--calib", str(data), *args])
        assert isinstance(res.exception, UsageError), (args, res.exception)
        assert res.exception.exit_code == 2 and word in str(res.exception)
    res = CliRunner().invoke(app, ["tune", "--help"], terminal_width=200)
    assert res.exit_code == 0
    for unit in ("percentage points", "pJ", "cycles per image"):
        assert unit in " ".join(res.output.split())


@pytest.mark.slow
def test_tune_cli_writes_the_policy_and_json(tmp_path: Path) -> None:
    model, data = _tiny(tmp_path)
    pol = tmp_path / "policy.toml"
    r = _imcc("tune", str(model), "--calib", str(data), "--target", "32x32", "--max-drop",
              "100", "--folds", "1", "-o", str(pol), "--json", "-q")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["format"] == "imcc-tune" and doc["command"] == "tune"
    assert doc["drop"] <= 100 and doc["total_cycles"] < doc["baseline_cycles"]
    assert LowRankPass.policy_from_file(pol).layer_ranks == {
        name: entry["rank"] for name, entry in doc["policy"]["layers"].items()}
    # A budget nothing meets (the tiny float model is not reachable at 2 bits): exit 1.
    r = _imcc("tune", str(model), "--calib", str(data), "--target", "32x32", "--max-drop",
              "0", "--weight-bits", "2", "--act-bits", "2", "--first-last-bits", "2",
              "-o", str(tmp_path / "never.toml"), "-q")
    assert r.returncode == 1, r.stderr
    assert "even uncompressed" in r.stderr and r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "never.toml").exists()


def test_policy_bits_reach_the_quantize_pass(tmp_path: Path) -> None:
    """A policy's per-layer ``bits`` (what --allow-8bit writes) and ``first_last_bits``
    are what the compile uses: 8-bit weights and inputs on exactly those layers (a
    factorized one on both halves), and the program stays equal to onnxruntime."""
    model, data = _tiny(tmp_path)
    pol = tmp_path / "p.toml"
    pol.write_text('first_last_bits = 6\n[layers]\n"conv2" = { bits = 8 }\n'
                   '"conv3" = { rank = "m/2", groups = 2, bits = 8 }\n')
    res = imcc.compile(model, target="32x32", policy=pol, calib=data,
                       output=tmp_path / "o")
    bits = {la.name: (la.input_bits, la.slices) for la in res.report.layers}
    assert bits == {"conv1": (6, 6), "conv2": (8, 8), "conv3.R": (8, 8), "conv3.L": (8, 8),
                    "fc": (6, 6)}
    sim = imcc.simulate(res, data=data)
    assert sim.matches_onnxruntime and sim.cycles_per_image == res.cycles
    # --first-last-bits overrides the policy's.
    res4 = imcc.compile(model, target="32x32", policy=pol, calib=data, first_last_bits=4,
                        write=False)
    assert {la.name: la.input_bits for la in res4.report.layers}["fc"] == 4
