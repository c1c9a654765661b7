"""Planner windows stay simulable: the simulator's dense per-window matrix is bounded, and a
program whose matrix cannot fit (an older imcc's) is refused with a reason, not a crash."""

from __future__ import annotations

import numpy as np
import pytest

import imcc.sim.simulator as simulator
from imcc.errors import DataError
from imcc.targets.cost import best_mapping
from imcc.targets.tiling import MAX_WINDOW_MATRIX, LayerGeom, window_matrix_entries


def test_the_planner_keeps_a_big_map_in_simulable_windows() -> None:
    """SqueezeNet 1.1's 64->16 1x1 conv on 55x55, 128x128 arrays, 4 slices: the planner's
    1x1 patches pack tightest as one 55x55 window (9.4e9 matrix entries); it takes the
    cheapest window within MAX_WINDOW_MATRIX instead."""
    g = LayerGeom(ic=64, oc=16, groups=1, kh=1, kw=1, sh=1, sw=1, dh=1, dw=1, ho=55, wo=55)
    assert window_matrix_entries(g, 55, 55) > 100 * MAX_WINDOW_MATRIX
    choice, plan = best_mapping(g, "auto", 128, 128, 4)
    i, j = plan.pw
    assert window_matrix_entries(g, i, j) <= MAX_WINDOW_MATRIX
    # 3,025 pixels of 64 rows x 64 columns, two per array: ceil(3025 / 2) is the floor
    assert 1513 <= choice.cycles <= 1540


def test_a_window_too_big_to_simulate_is_a_clear_error(monkeypatch) -> None:
    from conftest import make_model
    from onnx import helper

    from imcc.compiler import CompileOptions, compile_graph
    from imcc.frontend.onnx_import import import_proto

    w = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    m = make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
                   [("x", [1, 3, 8, 8])], ["y"], {"w": w})
    prog = compile_graph(import_proto(m, "t"), CompileOptions(quantize=False), "t").program
    monkeypatch.setattr(simulator, "_physical_memory", lambda: 1000)
    with pytest.raises(DataError, match=r"simulating its \d+x\d+ window takes a .* matrix, "
                                        r"more than this machine's memory"):
        simulator.Simulator(prog)
