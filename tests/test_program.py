"""The emitted program: im2col cycles equal the DESIGN.md formula on hand-computed layers,
executed cycles equal the report, and the simulated program equals onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_model, ort_run
from cycle_oracle import check_counted_cycles
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from imcc.compiler import CompileOptions, compile_graph, write_outputs
from imcc.frontend import import_proto
from imcc.sim.simulator import simulate
from imcc.targets.crossbar import CrossbarTarget
from imcc.targets.program import bit_slice
from imcc.targets.program_io import read_program

T16 = CrossbarTarget(rows=16, cols=16, weight_bits=4, cell_bits=1)


def conv_model(ic, oc, k, hw, stride=1, pad=0, group=1, dil=1, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    inits = {"w": rng.normal(size=(oc, ic // group, k, k)).astype(np.float32)}
    ins = ["x", "w"]
    if bias:
        inits["b"] = rng.normal(size=(oc,)).astype(np.float32)
        ins.append("b")
    node = helper.make_node("Conv", ins, ["y"], name="conv", kernel_shape=[k, k],
                            strides=[stride, stride], pads=[pad] * 4, group=group,
                            dilations=[dil, dil])
    return make_model([node], [("x", ["N", ic, hw, hw])], ["y"], inits)


def compile_small(m, mapping="im2col", quantize=False, target=T16):
    g = import_proto(m, "t")
    return compile_graph(g, CompileOptions(target=target, mapping=mapping, quantize=quantize,
                                           verify_each=True), "t")


# (model, hand-computed im2col cycles on 16x16 arrays with S = 4)
HAND = [
    # stride 2, pad 1: Ho = (9+2-3)//2+1 = 5 -> 25 windows; rows 27 -> 2; cols 8*4=32 -> 2
    (conv_model(3, 8, 3, 9, stride=2, pad=1), 25 * 2 * 2),
    # groups 2: IC_g 4 -> rows 36 -> 3; OC_g 4 -> 16 cols -> 1; 36 windows x 2 groups
    (conv_model(8, 8, 3, 6, pad=1, group=2), 36 * 2 * 3 * 1),
    # depthwise 4 channels, 5x5 -> 3x3: rows 9 -> 1, cols 4 -> 1; 9 windows x 4 groups
    (conv_model(4, 4, 3, 5, group=4), 9 * 4),
    # 1x1, 16 -> 32 on 4x4: rows 16 -> 1; cols 128 -> 8
    (conv_model(16, 32, 1, 4), 16 * 8),
    # dilation 2, 3x3 on 7x7 -> 3x3: rows 18 -> 2; cols 12 -> 1
    (conv_model(2, 3, 3, 7, dil=2), 9 * 2),
]


@pytest.mark.parametrize("model,cycles", HAND, ids=["stride2-pad", "groups", "depthwise",
                                                    "1x1", "dilation"])
def test_im2col_cycles_match_hand_computation(model, cycles):
    res = compile_small(model)
    assert res.report["total_cycles"] == cycles
    assert res.report["layers"][0]["im2col_cycles"] == cycles


def test_linear_is_a_1x1_conv_on_a_1x1_map():
    rng = np.random.default_rng(0)
    m = make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
                   [("x", ["N", 20])], ["y"],
                   {"w": rng.normal(size=(10, 20)).astype(np.float32),
                    "b": rng.normal(size=(10,)).astype(np.float32)})
    res = compile_small(m)
    # rows 20 -> 2 tiles; cols 10*4 = 40 -> 3 tiles; one window
    assert res.report["total_cycles"] == 6


def test_bit_slicing_roundtrip():
    q = np.arange(-8, 8)
    for cb in (1, 2, 3, 4):
        t = CrossbarTarget(weight_bits=4, cell_bits=cb)
        lv = bit_slice(q, 4, cb)
        assert lv.shape[0] == t.slices
        back = sum(w * lv[k].astype(int) for k, w in enumerate(t.slice_weights()))
        np.testing.assert_array_equal(back, q)
    assert set(np.unique(bit_slice(q, 4, 1))) <= {0, 1}


CASES = {
    "stride2-pad": conv_model(3, 8, 3, 9, stride=2, pad=1),
    "groups": conv_model(8, 8, 3, 6, pad=1, group=2),
    "depthwise": conv_model(4, 4, 3, 5, group=4),
    "1x1": conv_model(16, 32, 1, 4),
    "dilation": conv_model(2, 3, 3, 7, dil=2),
    "big": conv_model(12, 20, 3, 11, pad=1),
}


@pytest.mark.parametrize("mapping", ["im2col", "sdk", "vw-sdk", "auto"])
@pytest.mark.parametrize("name", list(CASES))
def test_float_program_equals_onnxruntime(name, mapping):
    m = CASES[name]
    res = compile_small(m, mapping)
    shape = [d.dim_value or 2 for d in m.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    sim = simulate(res.program, {"x": x})
    ref = ort_run(m, {"x": x})[0]
    np.testing.assert_allclose(sim.outputs["y"], ref, rtol=1e-4, atol=1e-4)
    check_counted_cycles(res.program, sim.cycles)


@pytest.mark.parametrize("mapping", ["im2col", "vw-sdk"])
def test_quantized_program_equals_onnxruntime_on_compiled_onnx(tmp_path, mapping):
    rng = np.random.default_rng(3)
    w1 = rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(size=(6, 8, 3, 3)).astype(np.float32)
    m = make_model([helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1] * 4),
                    helper.make_node("Relu", ["a"], ["r"]),
                    helper.make_node("Conv", ["r", "w2"], ["y"], strides=[2, 2])],
                   [("x", ["N", 3, 9, 9])], ["y"], {"w1": w1, "w2": w2})
    x = rng.normal(size=(16, 3, 9, 9)).astype(np.float32)
    g = import_proto(m, "t")
    opts = CompileOptions(target=T16, mapping=mapping, quantize=True, calib=x, verify_each=True)
    res = compile_graph(g, opts, "t")
    write_outputs(res, tmp_path / "out")
    prog = read_program(tmp_path / "out")
    sim = simulate(prog, {"x": x})
    ref = ort_run(tmp_path / "out" / "compiled.onnx", {"x": x})[0]
    # Integer crossbar sums times scales vs float32 DQ->Conv: float rounding only.
    np.testing.assert_allclose(sim.outputs["y"], ref, rtol=1e-5, atol=1e-4)
    check_counted_cycles(prog, sim.cycles)
    assert sim.cycles_per_image == res.report["total_cycles"]


@settings(max_examples=40, deadline=None)
@given(ic=st.integers(1, 6), oc=st.integers(1, 9), k=st.integers(1, 3),
       hw=st.integers(3, 9), stride=st.integers(1, 3), pad=st.integers(0, 2),
       mapping=st.sampled_from(["im2col", "sdk", "vw-sdk", "auto"]),
       rows=st.sampled_from([8, 16, 32]), cols=st.sampled_from([8, 16, 32]))
def test_random_convs_simulate_exactly(ic, oc, k, hw, stride, pad, mapping, rows, cols):
    if hw + 2 * pad < k:
        return
    m = conv_model(ic, oc, k, hw, stride=stride, pad=pad)
    tgt = CrossbarTarget(rows=rows, cols=cols, weight_bits=4, cell_bits=1)
    res = compile_small(m, mapping, target=tgt)
    x = np.random.default_rng(0).normal(size=(2, ic, hw, hw)).astype(np.float32)
    sim = simulate(res.program, {"x": x})
    np.testing.assert_allclose(sim.outputs["y"], ort_run(m, {"x": x})[0], rtol=1e-4,
                               atol=1e-4)
    check_counted_cycles(res.program, sim.cycles)
    assert res.report["total_cycles"] <= res.report["im2col_cycles"] or mapping != "auto"


@settings(max_examples=40, deadline=None)
@given(icg=st.integers(1, 4), ocg=st.integers(1, 4), g=st.integers(2, 6), k=st.integers(1, 3),
       hw=st.integers(3, 8), stride=st.integers(1, 2), pad=st.integers(0, 1),
       rows=st.sampled_from([32, 64, 128]), cols=st.sampled_from([32, 64, 128]))
def test_group_packed_programs_simulate_exactly(icg, ocg, g, k, hw, stride, pad, rows, cols):
    """auto may put several groups on one array's block diagonal; the program it emits must
    still compute the grouped conv, and execute exactly the cycles it reports."""
    if hw + 2 * pad < k:
        return
    m = conv_model(icg * g, ocg * g, k, hw, stride=stride, pad=pad, group=g)
    tgt = CrossbarTarget(rows=rows, cols=cols, weight_bits=4, cell_bits=1)
    res = compile_small(m, "auto", target=tgt)
    layer = res.report["layers"][0]
    assert layer["tiles"] * layer["windows"] == layer["cycles"]
    x = np.random.default_rng(0).normal(size=(2, icg * g, hw, hw)).astype(np.float32)
    sim = simulate(res.program, {"x": x})
    np.testing.assert_allclose(sim.outputs["y"], ort_run(m, {"x": x})[0], rtol=1e-4, atol=1e-4)
    assert sim.cycles_per_image == res.report["total_cycles"] <= layer["im2col_cycles"]


def test_depthwise_packs_all_channels_into_one_array():
    # 8 depthwise 3x3 channels: each group is 9 rows x 4 columns; all 8 fit one 128x128 array.
    res = compile_small(conv_model(8, 8, 3, 6, pad=1, group=8), "auto",
                        target=CrossbarTarget(128, 128))
    layer = res.report["layers"][0]
    assert layer["group_pack"] == 8 and layer["tiles"] == 1


@pytest.mark.parametrize(("mapping", "rows", "cols"), [("im2col", 32, 32), ("sdk", 64, 32),
                                                       ("auto", 16, 64), ("auto", 64, 64)])
def test_levels_sliced_on_demand_give_the_same_program(monkeypatch, mapping, rows, cols):
    """A layer whose sliced levels exceed EAGER_LEVELS_BYTES has its cells sliced from the
    weight levels tile by tile (emit.SlicedLevels): the tiles equal the eager ones."""
    import imcc.targets.emit as emit

    rng = np.random.default_rng(rows + cols)
    m = make_model([helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1] * 4, group=2),
                    helper.make_node("Relu", ["a"], ["r"]),
                    helper.make_node("Conv", ["r", "w2"], ["y"], strides=[2, 2])],
                   [("x", ["N", 4, 8, 8])], ["y"],
                   {"w1": rng.normal(size=(6, 2, 3, 3)).astype(np.float32),
                    "w2": rng.normal(size=(5, 6, 2, 2)).astype(np.float32)})
    x = rng.normal(size=(4, 4, 8, 8)).astype(np.float32)
    opts = CompileOptions(target=CrossbarTarget(rows, cols, weight_bits=5, cell_bits=2),
                          mapping=mapping, calib=x)
    eager = compile_graph(import_proto(m, "t"), opts, "t").program
    monkeypatch.setattr(emit, "EAGER_LEVELS_BYTES", 0)
    lazy = compile_graph(import_proto(m, "t"), opts, "t").program
    for a, b in zip(eager.crossbar_layers(), lazy.crossbar_layers(), strict=True):
        assert len(a.tiles) == len(b.tiles) > 0
        for ta, tb in zip(a.tiles, b.tiles, strict=True):
            assert ta.cells.dtype == tb.cells.dtype == np.int8 and ta.taps == tb.taps
            for part in ("rows", "cols", "cells"):
                np.testing.assert_array_equal(getattr(ta, part), getattr(tb, part))
