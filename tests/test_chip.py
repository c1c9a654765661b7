"""Chip descriptions, placement, replication, segmentation and the chip-level figures."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from imcc.analysis.chip import BUILTIN_CHIPS, Chip, load_chip
from imcc.analysis.energy import analyze_energy
from imcc.analysis.place import ChipPlan, place, replicate
from imcc.analysis.tech import load_tech
from imcc.compiler import compile_graph, compile_model, options_from_flags
from imcc.errors import DataError, UsageError
from imcc.frontend import import_model
from imcc.report.model import Report
from imcc.targets.crossbar import CrossbarTarget
from tests.conftest import chip_text, make_model

ISAAC = load_tech("isaac")


def _chip(tmp_path: Path, arrays: int, **overrides: object) -> Chip:
    p = tmp_path / "chip.toml"
    p.write_text(chip_text(**overrides))
    return load_chip(str(p), arrays)


def _two_layer_model() -> object:
    """conv1: 2 -> 2 channels, 3x3 pad 1 on 4x4 (im2col: 18 rows -> 2 tiles of a 16x16
    array, 16 windows); conv2: 1x1 stride 2 (2 rows -> 1 tile, 4 windows)."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1],
                              kernel_shape=[3, 3]),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2", strides=[2, 2],
                              kernel_shape=[1, 1])]
    inits = {"w1": rng.standard_normal((2, 2, 3, 3)).astype(np.float32),
             "w2": rng.standard_normal((2, 2, 1, 1)).astype(np.float32)}
    return make_model(nodes, [("x", [1, 2, 4, 4])], ["y"], inits)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("chip") / "two.onnx"
    import onnx

    onnx.save(_two_layer_model(), path)  # type: ignore[arg-type]
    target = CrossbarTarget(16, 16)
    opts = options_from_flags(target=target, mapping="im2col")
    res = compile_graph(import_model(path, name="two"), opts, "two")
    layers = res.program.crossbar_layers()
    assert [len(la.tiles) for la in layers] == [2, 1]
    assert [la.n_windows for la in layers] == [16, 4]
    assert sorted(t.rows.shape[0] for t in layers[0].tiles) == [2, 16]
    assert all(t.cols.shape[0] == 8 for la in layers for t in la.tiles)
    energy = analyze_energy(res.program, target, ISAAC)
    return res.program, target, energy


def _place(small, chip: Chip) -> ChipPlan:  # type: ignore[no-untyped-def]
    program, target, energy = small
    return place(program, target, ISAAC, energy, chip)


# One window step of either layer: 4 input-bit phases x max(100 ns read, 8 columns / 1 ADC /
# 1.28 GHz = 6.25 ns) = 400 ns.
STEP = 400.0


def test_chip_exactly_big_enough(small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = _place(small, _chip(tmp_path, 3))
    assert [p.replicas for p in plan.layers] == [1, 1]
    assert [p.stage_ns for p in plan.layers] == [16 * STEP, 4 * STEP]
    assert len(plan.segments) == 1 and plan.arrays_used == 3
    assert plan.throughput_ips == pytest.approx(1e9 / (16 * STEP))
    assert plan.latency_ns == pytest.approx(20 * STEP)  # one core: no transfer
    assert plan.write_energy_pj == 0.0 and plan.writes_per_cell == 0.0
    assert plan.layers[0].arrays == ((0, 1),) and plan.layers[1].arrays == ((2,),)


def test_one_array_short_gives_two_segments(small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = _place(small, _chip(tmp_path, 2))
    assert [s.layers for s in plan.segments] == [("conv1",), ("conv2",)]
    # conv2's segment has one spare array: it runs twice, 2 windows per replica.
    assert [p.replicas for p in plan.layers] == [1, 2]
    assert plan.layers[1].window_ranges == ((0, 2), (2, 4))
    assert plan.layers[1].stage_ns == 2 * STEP
    # Writes: conv1 (16 + 2) rows x 8 columns; conv2 twice 2 x 8 cells; 2 pJ per cell.
    assert plan.write_energy_pj == pytest.approx((18 * 8 + 2 * 2 * 8) * 2.0)
    assert plan.writes_per_cell == 1.0
    # Segment write time: slowest array, 16 rows x 50 ns; conv2's: 2 rows x 50 ns.
    assert [s.write_ns for s in plan.segments] == [800.0, 100.0]
    batch_ns = 800 + 16 * STEP + 100 + 2 * STEP
    assert plan.throughput_ips == pytest.approx(1e9 / batch_ns)
    assert plan.latency_ns == pytest.approx(batch_ns)
    assert all(s.arrays_used <= 2 for s in plan.segments)


def test_batch_amortizes_the_reloads(small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = _place(small, _chip(tmp_path, 2, batch=4))
    assert plan.write_energy_pj == pytest.approx((18 * 8 + 2 * 2 * 8) * 2.0 / 4)
    batch_ns = 800 + 4 * 16 * STEP + 100 + 4 * 2 * STEP
    assert plan.throughput_ips == pytest.approx(4e9 / batch_ns)
    assert plan.latency_ns == pytest.approx(800 + 100 + 4 * 16 * STEP + 2 * STEP)


def test_spare_arrays_replicate_the_slowest_layer(small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    four = _place(small, _chip(tmp_path, 4))
    # conv1 (2 arrays per copy) cannot be copied with one spare array: the bottleneck
    # stays; the spare array halves conv2's stage instead.
    assert [p.replicas for p in four.layers] == [1, 2]
    assert four.throughput_ips == pytest.approx(1e9 / (16 * STEP))
    five = _place(small, _chip(tmp_path, 5))
    assert [p.replicas for p in five.layers] == [2, 1]
    assert [p.stage_ns for p in five.layers] == [8 * STEP, 4 * STEP]
    assert five.layers[0].arrays == ((0, 1), (2, 3))
    assert five.layers[0].window_ranges == ((0, 8), (8, 16))
    assert five.throughput_ips == pytest.approx(1e9 / (8 * STEP))
    assert five.arrays_used == 5


def test_chip_smaller_than_a_layer_is_an_error(small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="layer conv1 needs 2 arrays but the chip has 1"):
        _place(small, _chip(tmp_path, 1))


def test_transfer_between_cores(small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # One array per core: conv1's output (2 x 4 x 4 values at 4 bits) crosses to conv2's core
    # at 1 bit per ns.
    plan = _place(small, _chip(tmp_path, 3, arrays_per_core=1, cores=3))
    assert plan.layers[0].transfer_ns == pytest.approx(2 * 16 * 4 / 1.0)
    assert plan.latency_ns == pytest.approx(20 * STEP + 128)


def test_placement_invariants_and_monotone_throughput() -> None:
    target = CrossbarTarget(128, 128)
    res = compile_model("resnet20", options_from_flags(target=target))
    energy = analyze_energy(res.program, target, ISAAC)
    chip = load_chip("isaac")
    prev = 0.0
    for n in (10, 11, 20, 45, 87, 88, 100, 174, 400, 1000, 5000, 14593, 16128):
        plan = place(res.program, target, ISAAC, energy, chip.with_arrays(n))
        assert plan.throughput_ips is not None
        assert plan.throughput_ips >= prev * (1 - 1e-12), n   # more arrays: never slower
        prev = plan.throughput_ips
        for seg in plan.segments:
            assert seg.arrays_used <= n
            seen = [a for p in plan.layers if p.segment == seg.index
                    for rep in p.arrays for a in rep]
            assert len(seen) == len(set(seen)) == seg.arrays_used  # one tile per array
        for p, layer in zip(plan.layers, res.program.crossbar_layers(), strict=True):
            assert p.arrays_used == p.tiles * p.replicas
            assert p.stage_ns == math.ceil(p.windows / p.replicas) * p.step_ns
            starts = [a for a, _ in p.window_ranges]
            assert starts[0] == 0 and p.window_ranges[-1][1] == p.windows
            assert all(b > a for a, b in p.window_ranges)  # no idle replica
            assert all(p.window_ranges[k][1] == p.window_ranges[k + 1][0]
                       for k in range(p.replicas - 1))
            assert max(b - a for a, b in p.window_ranges) == math.ceil(p.windows / p.replicas)
            # the serial latency of the energy model is windows x the sum of tile latencies
            assert p.step_ns * p.windows <= energy.layer(layer.name).latency_ns + 1e-6
        slowest = max(p.stage_ns for p in plan.layers)
        assert plan.throughput_ips <= 1e9 / slowest * (1 + 1e-12)
        assert plan.latency_ns >= sum(p.stage_ns for p in plan.layers) - 1e-6
        assert (plan.write_energy_pj > 0) == (len(plan.segments) > 1)
    # 87 arrays hold ResNet-20 once; 86 need at least two segments.
    assert len(place(res.program, target, ISAAC, energy, chip.with_arrays(87)).segments) == 1
    assert len(place(res.program, target, ISAAC, energy, chip.with_arrays(86)).segments) >= 2


def test_minmax_is_never_worse_than_greedy() -> None:
    from imcc.analysis import place as pl

    rng = random.Random(1)
    for _ in range(300):
        k = rng.randint(1, 5)
        tiles = [rng.randint(1, 4) for _ in range(k)]
        windows = [rng.randint(1, 40) for _ in range(k)]
        step = [rng.choice([100.0, 400.0, 700.0]) for _ in range(k)]
        spare = rng.randint(0, 40)
        g = pl._greedy(tiles, windows, step, spare)
        m = pl._minmax(tiles, windows, step, spare)
        for reps in (g, m):
            assert sum(r * t for r, t in zip(reps, tiles, strict=True)) <= sum(tiles) + spare
        sg = pl._score(g, tiles, windows, step)
        sm = pl._score(m, tiles, windows, step)
        assert sm[0] <= sg[0]
        # exhaustive optimum of the slowest stage for small cases
        if k <= 2 and spare <= 12:
            best = min(max(pl._stage(w, r, t) for w, r, t in zip(windows, rs, step,
                                                                    strict=True))
                       for rs in _all_reps(tiles, spare))
            assert sm[0] == best
        reps, _ = replicate(tiles, windows, step, spare)
        assert pl._score(reps, tiles, windows, step) <= min(sg, sm)


def _all_reps(tiles: list[int], spare: int) -> list[list[int]]:
    out: list[list[int]] = [[]]
    for t in tiles:
        out = [o + [r] for o in out for r in range(1, spare // t + 2)]
    return [o for o in out if sum((r - 1) * t for r, t in zip(o, tiles, strict=True)) <= spare]


def test_presets_load_with_sources() -> None:
    for name in BUILTIN_CHIPS:
        chip = load_chip(name)
        assert chip.arrays == 168 * 96 and (chip.rows, chip.cols) == (128, 128)
        assert chip.source
        # ISAAC Table 2: 0.372 mm2 per tile, 62.5 mm2 for 168 tiles (without HyperTransport)
        assert chip.area_mm2 / chip.cores == pytest.approx(0.372, abs=5e-4)
    small_chip = load_chip("isaac", 100)
    assert small_chip.arrays == 100 and small_chip.n_cores == 2


@pytest.mark.parametrize("text,match", [
    (chip_text(colour=1), "unknown key colour"),
    (chip_text(batch=None), "missing key batch"),
    (chip_text(cores=0), "key cores must be > 0"),
    (chip_text(area_adc_mm2=-1.0), "key area_adc_mm2 must be >= 0"),
    (chip_text(rows=1.5), "key rows must be an integer"),
    ("rows = [", "malformed TOML"),
])
def test_bad_chip_files(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(DataError, match=match) as e:
        load_chip(str(p))
    assert "\n" not in str(e.value)


def test_chip_options_are_checked() -> None:
    with pytest.raises(DataError, match="unknown chip 'nope'"):
        options_from_flags(target=CrossbarTarget(128, 128), chip="nope")
    with pytest.raises(UsageError, match="--chip-arrays needs --chip"):
        options_from_flags(target=CrossbarTarget(128, 128), chip_arrays=4)
    with pytest.raises(UsageError, match="--chip-arrays must be an integer >= 1"):
        options_from_flags(target=CrossbarTarget(128, 128), chip="isaac", chip_arrays=0)
    with pytest.raises(UsageError, match="chip isaac has 128x128 arrays but the target is 64x64"):
        options_from_flags(target=CrossbarTarget(64, 64), chip="isaac")


@pytest.mark.parametrize("chip,cell_bits", [("isaac", 1), ("pimcomp-arch-a", 2)])
def test_resnet20_on_presets(chip: str, cell_bits: int) -> None:
    target = CrossbarTarget(128, 128, cell_bits=cell_bits)
    plain = compile_model("resnet20", options_from_flags(target=target)).report
    res = compile_model("resnet20", options_from_flags(target=target, chip=chip))
    rep = res.report
    c = rep["chip"]
    assert set(c) >= {"arrays_used", "arrays_available", "segments", "throughput_ips",
                      "latency_ns", "write_energy_pj", "area_mm2"}
    assert c["arrays_available"] == 16128 and c["segments"] == 1
    assert c["write_energy_pj"] == 0.0
    assert c["area_mm2"] == pytest.approx(62.54472)
    # Replication changes time, never the count of (window, tile) activations.
    assert rep["total_cycles"] == plain["total_cycles"]
    assert c["arrays_used"] == sum(la["tiles"] * la["chip"]["replicas"] for la in rep["layers"])
    assert c["arrays_used"] <= 16128
    assert c["throughput_ips"] <= 1e9 / max(la["chip"]["stage_ns"] for la in rep["layers"])
    # Without --chip nothing chip-level appears; with it the rest of the report is unchanged.
    assert "chip" not in plain and all("chip" not in la for la in plain["layers"])
    stripped = {k: v for k, v in rep.items() if k != "chip"}
    stripped["layers"] = [{k: v for k, v in la.items() if k != "chip"} for la in rep["layers"]]
    assert stripped == plain
    # The typed report reads it back exactly, and a second compile is identical.
    assert Report.from_json(json.loads(json.dumps(rep))).to_json() == rep
    again = compile_model("resnet20", options_from_flags(target=target, chip=chip)).report
    assert json.dumps(again) == json.dumps(rep)
