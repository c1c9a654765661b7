"""The placed program (`imcc-program/2` with `--chip`): its placement section on disk, the
placement checks, the simulator executing it, the chip object of the report and its
renderings, and the chip command-line errors. Small graphs worked out by hand; ResNet-20
end to end is marked slow."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import chip_text, make_model, per_tile_layout
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from imcc.analysis.chip import load_chip
from imcc.analysis.energy import analyze_energy
from imcc.analysis.place import place
from imcc.analysis.tech import load_tech
from imcc.compiler import CompileResult, compile_graph, options_from_flags, write_outputs
from imcc.dataset import Dataset
from imcc.errors import DataError
from imcc.frontend import import_proto
from imcc.report.chip import html_section, markdown, terminal_lines
from imcc.report.model import Report
from imcc.report.progress import without_progress
from imcc.report.render import to_html, to_markdown
from imcc.sim.evaluate import evaluate
from imcc.sim.simulator import simulate
from imcc.targets.crossbar import CrossbarTarget
from imcc.targets.program import FORMAT
from imcc.targets.program_io import read_program

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
ISAAC = load_tech("isaac")
STEP = 400.0  # one window step: 4 input-bit phases x 100 ns reads (8 columns, 1 ADC)

CHIP = chip_text(name='"hand"')


def imcc(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imcc.cli", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=900)


def two_layer() -> Any:
    """conv1: 2 -> 2 channels, 3x3 pad 1 on 4x4 (im2col on 16x16 arrays: 18 rows -> 2 tiles,
    16 windows); relu; conv2: 1x1 stride 2 (1 tile, 4 windows). 592 multiply-accumulates."""
    rng = np.random.default_rng(0)
    return make_model(
        [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["a"], ["r"], name="relu"),
         helper.make_node("Conv", ["r", "w2", "b2"], ["y"], name="conv2", strides=[2, 2])],
        [("x", ["N", 2, 4, 4])], ["y"],
        {"w1": rng.standard_normal((2, 2, 3, 3)).astype(np.float32),
         "w2": rng.standard_normal((2, 2, 1, 1)).astype(np.float32),
         "b2": rng.standard_normal(2).astype(np.float32)})


@pytest.fixture(scope="module")
def chip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("chip") / "hand.toml"
    p.write_text(CHIP)
    return p


def compile_on(chip: Path | None, arrays: int | None = None, batch: int | None = None,
               model: Any = None) -> CompileResult:
    opts = options_from_flags(target=CrossbarTarget(16, 16), mapping="im2col",
                              chip=None if chip is None else str(chip), chip_arrays=arrays,
                              chip_batch=batch)
    return compile_graph(import_proto(two_layer() if model is None else model, "two"),
                         opts, "two")


@pytest.fixture(scope="module")
def placed(chip_file: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> dict[int, tuple[CompileResult, Path]]:
    """The two-layer model on the hand chip with 2 (two segments), 3 (exact) and 5
    (conv1 replicated) arrays, written to disk."""
    root = tmp_path_factory.mktemp("placed")
    return {n: (res := compile_on(chip_file, n), write_outputs(res, root / f"a{n}"))
            for n in (2, 3, 5)}


X = np.random.default_rng(1).standard_normal((6, 2, 4, 4)).astype(np.float32)


# ------------------------------------------------------------------ program and simulator


@pytest.mark.parametrize(("arrays", "replicas", "segments"), [
    (2, [1, 2], [["conv1"], ["conv2"]]), (3, [1, 1], [["conv1", "conv2"]]),
    (5, [2, 1], [["conv1", "conv2"]])])
def test_placed_program_on_disk_and_simulated(placed: dict[int, tuple[CompileResult, Path]],
                                              arrays: int, replicas: list[int],
                                              segments: list[list[str]]) -> None:
    res, outdir = placed[arrays]
    doc = json.loads((outdir / "program.json").read_text())
    assert doc["format"] == FORMAT == "imcc-program/3"
    pl = doc["placement"]
    assert (pl["chip"], pl["arrays"], pl["batch"]) == ("hand", arrays, 1)
    assert [s["layers"] for s in pl["segments"]] == segments
    assert [len(la["replicas"]) for la in pl["layers"]] == replicas
    prog = read_program(outdir)
    assert prog.placement == res.program.placement
    # every segment loads exactly the tiles of its layers' replicas, each on its own array
    for seg in prog.placement.segments:
        want = sorted((a, lp.layer, t) for lp in prog.placement.layers if lp.layer in seg.layers
                      for rep in lp.replicas for t, a in enumerate(rep.arrays))
        assert sorted((ld.array, ld.layer, ld.tile) for ld in seg.loads) == want
        assert len({ld.array for ld in seg.loads}) == len(seg.loads) <= arrays
    # outputs bit-identical to the program without placement; counted activations per
    # replica: (stop - start) x tiles, at most ceil(windows / r) window steps each
    plain = simulate(compile_on(None).program, {"x": X})
    sim = simulate(prog, {"x": X})
    assert np.array_equal(sim.outputs["y"], plain.outputs["y"])
    for layer, lp in zip(prog.crossbar_layers(), prog.placement.layers, strict=True):
        tiles, r = len(layer.tiles), len(lp.replicas)
        counts = sim.replica_cycles[layer.name]
        assert counts == [(rep.stop - rep.start) * tiles for rep in lp.replicas]
        assert max(counts) == math.ceil(layer.n_windows / r) * tiles
    assert sim.placed_cycles_per_image == sim.cycles_per_image == prog.total_cycles \
        == res.report["total_cycles"] == 16 * 2 + 4 * 1
    # and against onnxruntime on compiled.onnx
    out, _ = evaluate(outdir, Dataset(X, None, "random"))
    assert out["matches_onnxruntime"] is True
    assert out["placed_cycles_per_image"] == res.report["total_cycles"]


def test_window_ranges_of_replicas(placed: dict[int, tuple[CompileResult, Path]]) -> None:
    pl = placed[5][0].program.placement
    assert pl is not None
    conv1 = pl.layer("conv1")
    assert [(r.arrays, r.start, r.stop) for r in conv1.replicas] == [((0, 1), 0, 8),
                                                                     ((2, 3), 8, 16)]
    assert [(r.arrays, r.start, r.stop) for r in pl.layer("conv2").replicas] == [((4,), 0, 4)]


def test_format_1_is_still_read(placed: dict[int, tuple[CompileResult, Path]],
                                tmp_path: Path) -> None:
    _, outdir = placed[3]
    d = per_tile_layout(outdir, tmp_path / "v1", "imcc-program/1")
    prog = read_program(d)
    assert prog.placement is None
    sim = simulate(prog, {"x": X})
    assert sim.placed_cycles_per_image is None and sim.cycles_per_image == 36
    doc = json.loads((d / "program.json").read_text())
    doc["format"] = "imcc-program/4"
    (d / "program.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="expected 'imcc-program/1' or 'imcc-program/2' or "
                                        "'imcc-program/3'"):
        read_program(d)


def test_format_2_placement_is_still_read(placed: dict[int, tuple[CompileResult, Path]],
                                          tmp_path: Path) -> None:
    res, outdir = placed[5]
    prog = read_program(per_tile_layout(outdir, tmp_path / "v2"))
    assert prog.placement == res.program.placement
    assert np.array_equal(simulate(prog, {"x": X}).outputs["y"],
                          simulate(read_program(outdir), {"x": X}).outputs["y"])


def _pl(d: dict[str, Any]) -> dict[str, Any]:
    return d["placement"]


def _set_windows(d: dict[str, Any], k: int, w: list[int]) -> None:
    _pl(d)["layers"][0]["replicas"][k]["windows"] = w


PLACEMENT_CASES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "two tiles on one array": (
        lambda d: _pl(d)["layers"][0]["replicas"][1].__setitem__("arrays", [0, 1]),
        "array 0 holds two tiles in segment 0"),
    "array not loaded": (lambda d: _pl(d)["segments"][0]["loads"].pop(0),
                         "uses array 0 for tile 0, which is not loaded there"),
    "wrong tile loaded": (lambda d: _pl(d)["segments"][0]["loads"][0].__setitem__(2, 1),
                          "not loaded there before segment 0 runs (it holds conv1 tile 1)"),
    "window gap": (lambda d: _set_windows(d, 1, [9, 16]), "partition the windows"),
    "window overlap": (lambda d: _set_windows(d, 1, [7, 16]), "partition the windows"),
    "windows short": (lambda d: _set_windows(d, 1, [8, 15]), "serve 15 of its 16 windows"),
    "array outside the chip": (
        lambda d: _pl(d)["layers"][1]["replicas"][0].__setitem__("arrays", [5]),
        "must be an integer in [0, 5)"),
    "replica misses a tile": (
        lambda d: _pl(d)["layers"][0]["replicas"][0].__setitem__("arrays", [0]),
        "must name 2 arrays"),
    "segments out of order": (
        lambda d: _pl(d)["segments"][0].__setitem__("layers", ["conv2", "conv1"]),
        "in program order"),
    "load of no layer": (lambda d: _pl(d)["segments"][0]["loads"][0].__setitem__(1, 7),
                         "not in [0, 2)"),
    "no replica": (lambda d: _pl(d)["layers"][1].__setitem__("replicas", []), "no replica"),
}


@pytest.mark.parametrize("case", list(PLACEMENT_CASES))
def test_bad_placements_are_refused(placed: dict[int, tuple[CompileResult, Path]],
                                    tmp_path: Path, case: str) -> None:
    _, outdir = placed[5]
    edit, needle = PLACEMENT_CASES[case]
    doc = json.loads((outdir / "program.json").read_text())
    edit(doc)
    d = tmp_path / "t"
    d.mkdir()
    (d / "program.json").write_text(json.dumps(doc))
    (d / "arrays.npz").write_bytes((outdir / "arrays.npz").read_bytes())
    with pytest.raises(DataError, match="placement|program files") as info:
        read_program(d)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_bad_placement_exits_4(placed: dict[int, tuple[CompileResult, Path]],
                                 tmp_path: Path) -> None:
    _, outdir = placed[5]
    d = tmp_path / "bad"
    d.mkdir()
    for f in outdir.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    doc = json.loads((outdir / "program.json").read_text())
    PLACEMENT_CASES["two tiles on one array"][0](doc)
    (d / "program.json").write_text(json.dumps(doc))
    proc = imcc(tmp_path, "simulate", str(d), "--limit", "2")
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "placement: array 0 holds two tiles in segment 0" in proc.stderr


# ------------------------------------------------------------------------ chip figures


def test_write_energy_appears_exactly_on_reloads(chip_file: Path) -> None:
    """Writes: conv1 (16 + 2 rows) x 8 columns and conv2's two replicas 2 x 8 cells each, at
    2 pJ per cell, per batch; nothing when the model fits (written once)."""
    for arrays, batch, want in ((2, 1, 352.0), (2, 4, 88.0), (3, 1, 0.0), (5, 4, 0.0)):
        res = compile_on(chip_file, arrays, batch)
        c = res.report["chip"]
        pl = res.program.placement
        assert pl is not None
        cells = {(la.name, t): tile.rows.shape[0] * tile.cols.shape[0]
                 for la in res.program.crossbar_layers() for t, tile in enumerate(la.tiles)}
        loaded = sum(cells[(ld.layer, ld.tile)] for s in pl.segments for ld in s.loads)
        assert c["write_energy_pj"] == pytest.approx(want)
        if c["segments"] > 1:
            assert c["write_energy_pj"] == pytest.approx(loaded * 2.0 / batch)
            assert c["lifetime_inferences"] == pytest.approx(1e6 * batch)
        else:
            assert c["lifetime_inferences"] is None
        assert c["energy_per_inference_pj"] == pytest.approx(
            res.report["total_energy_pj"] + c["write_energy_pj"])
        assert c["compute_energy_pj"] == res.report["total_energy_pj"]


def test_chip_object_figures(placed: dict[int, tuple[CompileResult, Path]]) -> None:
    rep = placed[5][0].report
    c = rep["chip"]
    assert c["arrays_used"] == 5 == sum(la["tiles"] * la["chip"]["replicas"]
                                        for la in rep["layers"])
    assert c["utilization"] == 1.0
    assert c["ops_per_inference"] == 2 * (2 * 2 * 9 * 16 + 2 * 2 * 1 * 4)
    assert c["throughput_ips"] == pytest.approx(1e9 / (8 * STEP))
    assert c["latency_ns"] == pytest.approx(12 * STEP)  # one core: no transfer
    assert c["tops"] == pytest.approx(c["ops_per_inference"] * c["throughput_ips"] / 1e12)
    assert c["tops_per_w"] == pytest.approx(c["ops_per_inference"]
                                            / c["energy_per_inference_pj"])
    assert c["area_mm2"] == pytest.approx(5 * (0.001 + 0.002) + 0.1 + 0.2)
    assert c["tops_per_mm2"] == pytest.approx(c["tops"] / c["area_mm2"])
    assert c["layers"] == [
        {"name": "conv1", "segment": 0, "replicas": 2, "arrays": 4, "stage_ns": 8 * STEP},
        {"name": "conv2", "segment": 0, "replicas": 1, "arrays": 1, "stage_ns": 4 * STEP}]
    assert rep["layers"][0]["chip"] == {"segment": 0, "replicas": 2, "arrays": 4,
                                        "stage_ns": 8 * STEP}
    assert Report.from_json(json.loads(json.dumps(rep))).to_json() == rep


def test_chip_renderings(placed: dict[int, tuple[CompileResult, Path]]) -> None:
    rep = Report.from_json(placed[2][0].report)
    assert rep.chip is not None
    lines = terminal_lines(rep.chip)
    text = "\n".join(lines)
    for needle in ("arrays used / available: 2 / 2 (100.0%)",
                   "segments: 2 (weights reloaded every 1 inferences)",
                   "throughput:", "latency (first input to last output):",
                   "energy per inference:", "of which weight writes: 352.00 pJ",
                   "area: 0.306 mm2", "TOPS/W:", "lifetime (endurance): 1e+06 inferences"):
        assert needle in text, needle
    md = "\n".join(markdown(rep.chip, str))
    assert "| throughput |" in md and "| `conv2` | 1 | 2 | 2 |" in md
    assert "<h2>Chip</h2>" in html_section(rep.chip)
    assert "#### Chip" in to_markdown(rep) and "<h2>Chip</h2>" in to_html(rep)
    # a report without --chip shows none of it
    plain = Report.from_json(compile_on(None).report)
    assert "Chip" not in to_markdown(plain) and "<h2>Chip</h2>" not in to_html(plain)


# ----------------------------------------------------------------- properties of place


def three_layer() -> Any:
    """conv 3x3 4 -> 8 on 8x8 (16x16 arrays: 36 rows x 32 columns -> 3 x 2 tiles, 64
    windows), conv 3x3 8 -> 4 stride 2 (72 x 16 -> 5 tiles, 16 windows), 1x1 conv 4 -> 6
    (4 x 24 -> 2 tiles, 16 windows): stages of different lengths and sizes."""
    rng = np.random.default_rng(2)

    def w(*s: int) -> np.ndarray:
        return rng.standard_normal(s).astype(np.float32)

    return make_model(
        [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", pads=[1] * 4),
         helper.make_node("Relu", ["a"], ["r"], name="relu"),
         helper.make_node("Conv", ["r", "w2"], ["b"], name="c2", pads=[1] * 4,
                          strides=[2, 2]),
         helper.make_node("Conv", ["b", "w3"], ["y"], name="c3")],
        [("x", ["N", 4, 8, 8])], ["y"],
        {"w1": w(8, 4, 3, 3), "w2": w(4, 8, 3, 3), "w3": w(6, 4, 1, 1)})


@pytest.fixture(scope="module")
def programs(chip_file: Path) -> list[tuple[Any, Any]]:
    out = []
    for model in (two_layer(), three_layer()):
        res = compile_on(None, model=model)
        out.append((res.program, analyze_energy(res.program, CrossbarTarget(16, 16), ISAAC)))
    return out


@settings(max_examples=60, deadline=None)
@given(which=st.integers(0, 1), arrays=st.integers(1, 120), batch=st.integers(1, 8),
       cores=st.sampled_from([1, 3, 1000]))
def test_doubling_the_arrays_never_lowers_throughput(programs: list[tuple[Any, Any]],
                                                     chip_file: Path, which: int,
                                                     arrays: int, batch: int,
                                                     cores: int) -> None:
    program, energy = programs[which]
    need = max(len(la.tiles) for la in program.crossbar_layers())
    arrays = max(arrays, need)
    base = load_chip(str(chip_file), batch=batch)
    base = dataclasses.replace(base, arrays_per_core=cores)
    target = CrossbarTarget(16, 16)
    one = place(program, target, ISAAC, energy, base.with_arrays(arrays))
    two = place(program, target, ISAAC, energy, base.with_arrays(2 * arrays))
    assert one.throughput_ips is not None and two.throughput_ips is not None
    assert two.throughput_ips >= one.throughput_ips * (1 - 1e-12)
    for plan in (one, two):
        # every segment fits; arrays = tiles x replicas; throughput never above the
        # slowest stage's rate; latency never below the critical path
        for seg in plan.segments:
            assert seg.arrays_used <= plan.chip.arrays
        for p in plan.layers:
            assert p.arrays_used == p.tiles * p.replicas
            assert p.stage_ns == math.ceil(p.windows / p.replicas) * p.step_ns
        assert plan.throughput_ips <= 1e9 / max(p.stage_ns for p in plan.layers) * (1 + 1e-12)
        assert plan.latency_ns >= sum(p.stage_ns for p in plan.layers) * (1 - 1e-12)
        assert (plan.write_energy_pj > 0) == (len(plan.segments) > 1)


# ------------------------------------------------------------------------ command line


def test_too_small_chip_is_a_usage_error(tmp_path: Path) -> None:
    proc = imcc(tmp_path, "compile", "resnet20", "--chip", "isaac", "--chip-arrays", "9",
                "-o", "out")
    assert proc.returncode == 2, proc.stderr
    assert without_progress(proc.stderr) == [
        "imcc: error: layer /layer3/layer3.0/conv2/Conv needs 10 arrays but the chip has 9 "
        "(use --chip-arrays 10 or more)"]
    assert not (tmp_path / "out").exists()
    proc = imcc(tmp_path, "compile", "resnet20", "--chip-batch", "4", "-o", "out")
    assert proc.returncode == 2 and "--chip-batch needs --chip" in proc.stderr


@pytest.mark.slow  # ResNet-20 compiled and simulated in subprocesses
@pytest.mark.parametrize("extra", [[], ["--chip-arrays", "40", "--chip-batch", "8"]],
                         ids=["fits", "segmented"])
def test_resnet20_on_isaac_end_to_end(tmp_path: Path, extra: list[str]) -> None:
    proc = imcc(tmp_path, "compile", "resnet20", "--chip", "isaac", *extra, "-o", "r")
    assert proc.returncode == 0, proc.stderr
    for needle in ("arrays used / available:", "throughput:", "latency (first input",
                   "energy per inference:", "area:", "TOPS/W:"):
        assert needle in proc.stdout, needle
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    c = rep["chip"]
    assert c["arrays_used"] <= c["arrays_available"]
    assert (c["segments"] > 1) == bool(extra) and (c["write_energy_pj"] > 0) == bool(extra)
    proc = imcc(tmp_path, "simulate", "r", "--limit", "16", "--json")
    assert proc.returncode == 0, proc.stderr
    sim = json.loads(proc.stdout)
    assert sim["matches_onnxruntime"] is True
    assert sim["placed_cycles_per_image"] == sim["cycles_per_image"] == rep["total_cycles"]
