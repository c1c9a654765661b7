"""The quantize pass: weight grid, FakeQuant placement and signedness, calibration, and the
ONNX export recipe of FakeQuant checked bit-exactly against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from imcc.dataset import bundled_example_data, load_npz
from imcc.errors import DataError, ModelError, UsageError
from imcc.ir import DType, Graph, LowRank, Node, PairRole, TensorType, Value, ops, verify
from imcc.ir.interp import run as interp_run
from imcc.ir.onnx_export import fakequant_min_opset, fakequant_onnx_nodes
from imcc.ir.records import CalibrationRecord
from imcc.passes.base import CompileContext
from imcc.passes.quantize import (
    MAX_CALIB_VALUES,
    QuantizePass,
    calibrate_scale,
    calibration_feeds,
    dequantize_weight,
    fakequant_mse,
    quantize_weight,
    synthetic_samples,
)

# ------------------------------------------------------------------------------ fixtures


class Net:
    """x -> conv_a -> relu r -> {conv_b, conv_d} ; add = conv_b + r (residual, float) ->
    conv_c -> global pool -> reshape -> fc. Outputs: fc, conv_d."""

    def __init__(self, seed: int = 0, c: int = 4) -> None:
        rng = np.random.default_rng(seed)
        g = Graph("net")
        self.g = g

        def conv(name: str, v: Value, oc: int) -> Node:
            ic = int(v.type.shape[1])  # type: ignore[arg-type]
            w = g.const(name + "_w", rng.standard_normal((oc, ic, 3, 3)).astype(np.float32))
            b = g.const(name + "_b", rng.standard_normal(oc).astype(np.float32))
            return g.add(ops.Conv((3, 3), pads=(1, 1, 1, 1)), [v, w, b], name)

        self.x = g.input("x", TensorType((None, 3, 8, 8)))
        self.a = conv("conv_a", self.x, c)
        self.r = g.add(ops.Relu(), [self.a.output], "relu")
        self.b = conv("conv_b", self.r.output, c)
        self.d = conv("conv_d", self.r.output, c)
        self.add = g.add(ops.Add(), [self.b.output, self.r.output], "add")
        self.c = conv("conv_c", self.add.output, c)
        gap = g.add(ops.GlobalAveragePool(), [self.c.output], "gap")
        flat = g.add(ops.Reshape((c,)), [gap.output], "flat")
        w = g.const("fc_w", rng.standard_normal((3, c)).astype(np.float32))
        self.fc = g.add(ops.Linear(), [flat.output, w], "fc")
        g.outputs += [self.fc.output, self.d.output]
        verify(g)


CTX = CompileContext()


def fakequants(g: Graph) -> list[Node]:
    return [n for n in g.nodes if isinstance(n.op, ops.FakeQuant)]


def fq_of(node: Node) -> ops.FakeQuant:
    prod = node.inputs[0].producer
    assert prod is not None and isinstance(prod.op, ops.FakeQuant)
    return prod.op


def calib_data(n: int = 16, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)


# ------------------------------------------------------------------------------ weights


def test_weights_on_the_grid() -> None:
    net = Net()
    originals = {n.name: (n.inputs[1], n.inputs[1].data.copy()) for n in net.g.crossbar_nodes()}
    biases = {n.name: n.inputs[2] for n in net.g.crossbar_nodes() if len(n.inputs) > 2}
    QuantizePass(weight_bits=4, act_bits=4).run(net.g, CTX)
    verify(net.g)
    for node in net.g.crossbar_nodes():
        wq = node.wquant
        assert wq is not None and wq.bits == 4
        old, data = originals[node.name]
        assert node.inputs[1] is not old and node not in old.users and node in node.inputs[1].users
        np.testing.assert_array_equal(old.data, data)  # the original constant is untouched
        assert np.issubdtype(wq.q.dtype, np.integer) and wq.q.shape == data.shape
        assert wq.scale.dtype == np.float32 and wq.scale.shape == (data.shape[0],)
        assert np.abs(wq.q).max() <= 7
        # Every (non-zero) channel uses the full range: its largest weight maps to +-qmax.
        assert np.all(np.abs(wq.q.reshape(len(wq.scale), -1)).max(axis=1) == 7)
        new = node.inputs[1].data
        assert new is not None and new.dtype == np.float32
        shp = (-1,) + (1,) * (data.ndim - 1)
        np.testing.assert_array_equal(new, wq.q.astype(np.float32) * wq.scale.reshape(shp))
        np.testing.assert_allclose(new, data, atol=float(wq.scale.max()) / 2 + 1e-6)
        if node.name in biases:
            assert node.inputs[2] is biases[node.name]  # bias stays float


def test_zero_channel_gets_unit_scale() -> None:
    w = np.ones((3, 2, 1, 1), np.float32)
    w[1] = 0
    wq = quantize_weight(w, 4)
    assert wq.scale[1] == 1.0 and np.all(wq.q[1] == 0)
    np.testing.assert_array_equal(dequantize_weight(wq), w)


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 16), seed=st.integers(0, 2**31 - 1),
       shape=st.sampled_from([(4, 3, 3, 3), (5, 7), (1, 1, 1, 1), (6, 2, 1, 3)]))
def test_weight_quant_property(bits: int, seed: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(shape) * rng.uniform(1e-3, 1e3)).astype(np.float32)
    wq = quantize_weight(w, bits)
    qmax = 2 ** (bits - 1) - 1
    assert np.abs(wq.q).max() <= qmax
    shp = (-1,) + (1,) * (w.ndim - 1)
    err = np.abs(dequantize_weight(wq) - w)
    # Round to nearest: at most half a step, plus float32 rounding of w / scale (which can
    # pick the other level near a tie) and of q * scale: an ulp of |w| each.
    assert np.all(err <= wq.scale.reshape(shp) * 0.5 * (1 + 1e-5)
                  + 2 * np.spacing(np.abs(w)) + 1e-30)


# -------------------------------------------------------------------------- activations


def test_fakequant_placement_sharing_and_signedness() -> None:
    net = Net()
    QuantizePass().run(net.g, CTX)
    verify(net.g)
    fqs = fakequants(net.g)
    # x, relu (shared by conv_b and conv_d), add, and the fc input.
    assert len(fqs) == 4
    r = net.r.output
    shared = [n for n in fqs if n.inputs[0] is r]
    assert len(shared) == 1
    assert net.b.inputs[0] is shared[0].output and net.d.inputs[0] is shared[0].output
    assert set(map(id, shared[0].output.users)) == {id(net.b), id(net.d)}
    # The residual Add keeps reading the float ReLU output: the shortcut is digital.
    assert net.add.inputs[1] is r
    assert {id(u) for u in r.users} == {id(net.add), id(shared[0])}
    assert fq_of(net.a).signed  # graph input: unknown sign
    assert not fq_of(net.b).signed and fq_of(net.b) is fq_of(net.d)  # after ReLU
    assert fq_of(net.c).signed  # Add of a conv output: may be negative
    assert fq_of(net.fc).signed
    # Each FakeQuant sits right after the producer of its input (graph input: first).
    assert net.g.nodes[0] is fqs[0] and fqs[0].inputs[0] is net.x
    assert net.g.nodes[net.g.nodes.index(net.r) + 1] is shared[0]
    assert net.g.outputs == [net.fc.output, net.d.output]


@pytest.mark.parametrize("chain,signed", [
    ([ops.Relu(), ops.MaxPool((2, 2), (2, 2)), ops.Pad((0, 0, 1, 1, 0, 0, 1, 1)),
      ops.Slice((1,), (3,), (2,), (1,)), ops.AveragePool((2, 2))], False),
    ([ops.Clip(0.0, 6.0), ops.Transpose((0, 1, 3, 2))], False),
    ([ops.Sigmoid()], False),
    ([ops.Relu(), ops.Pad((0, 0, 1, 1, 0, 0, 1, 1), value=-1.0)], True),
    ([ops.Clip(-1.0, 6.0)], True),
    ([ops.LeakyRelu()], True),
    ([ops.Relu(), ops.Tanh()], True),
])
def test_nonnegativity_propagates(chain: list[ops.Op], signed: bool) -> None:
    g = Graph()
    v = g.input("x", TensorType((None, 2, 8, 8)))
    for i, op in enumerate(chain):
        v = g.add(op, [v], f"op{i}").output
    c = int(v.type.shape[1])  # type: ignore[arg-type]
    w = g.const("w", np.ones((2, c, 1, 1), np.float32))
    conv = g.add(ops.Conv((1, 1)), [v, w], "conv")
    g.outputs.append(conv.output)
    QuantizePass().run(g, CTX)
    verify(g)
    assert fq_of(conv).signed is signed


def test_relu_then_add_of_two_relus_is_unsigned() -> None:
    g = Graph()
    x = g.input("x", TensorType((None, 4)))
    r1 = g.add(ops.Relu(), [x], "r1").output
    r2 = g.add(ops.Relu(), [g.add(ops.Sub(), [x, x], "sub").output], "r2").output
    s = g.add(ops.Add(), [r1, r2], "add").output
    fc = g.add(ops.Linear(), [s, g.const("w", np.eye(4, dtype=np.float32))], "fc")
    g.outputs.append(fc.output)
    QuantizePass().run(g, CTX)
    assert not fq_of(fc).signed


def test_first_last_bits() -> None:
    net = Net()
    QuantizePass(weight_bits=4, act_bits=3, first_last_bits=8).run(net.g, CTX)
    verify(net.g)
    bits = {n.name: (n.wquant.bits if n.wquant else None, fq_of(n).bits)
            for n in net.g.crossbar_nodes()}
    # conv_d feeds no crossbar layer (it is a network output): a last layer too.
    assert bits == {"conv_a": (8, 8), "conv_b": (4, 3), "conv_d": (8, 8), "conv_c": (4, 3),
                    "fc": (8, 8)}


def test_value_shared_at_two_bit_widths_gets_two_fakequants() -> None:
    g = Graph()
    x = g.input("x", TensorType((None, 4)))
    h = g.add(ops.Linear(), [x, g.const("w1", np.eye(4, dtype=np.float32))], "first")
    r = g.add(ops.Relu(), [h.output], "relu").output
    mid = g.add(ops.Linear(), [r, g.const("w2", np.eye(4, dtype=np.float32))], "mid")
    last = g.add(ops.Linear(), [mid.output, g.const("w3", np.eye(4, dtype=np.float32))], "last")
    side = g.add(ops.Linear(), [r, g.const("w4", np.eye(4, dtype=np.float32))], "side")
    g.outputs += [last.output, side.output]
    QuantizePass(first_last_bits=8).run(g, CTX)
    verify(g)
    # `side` (last) and `mid` read the same ReLU at 8 and 4 bits.
    assert fq_of(side).bits == 8 and fq_of(mid).bits == 4
    assert len([n for n in fakequants(g) if n.inputs[0] is r]) == 2


def test_lowrank_partner_of_first_layer_counts_as_first() -> None:
    g = Graph()
    x = g.input("x", TensorType((None, 4, 6, 6)))
    rng = np.random.default_rng(0)
    rr = g.add(ops.Conv((3, 3), pads=(1, 1, 1, 1)),
               [x, g.const("r_w", rng.standard_normal((2, 4, 3, 3)).astype(np.float32))], "R")
    ll = g.add(ops.Conv((1, 1)),
               [rr.output, g.const("l_w", rng.standard_normal((8, 2, 1, 1)).astype(np.float32))],
               "L")
    rr.lowrank = LowRank(PairRole.R, "conv1", "L", 2, 1, 0.1, 288, 88)
    ll.lowrank = LowRank(PairRole.L, "conv1", "R", 2, 1, 0.1, 288, 88)
    relu = g.add(ops.Relu(), [ll.output], "relu")
    mid = g.add(ops.Conv((1, 1)),
                [relu.output, g.const("m_w", rng.standard_normal((8, 8, 1, 1)).astype(np.float32))],
                "mid")
    out = g.add(ops.Conv((1, 1)),
                [mid.output, g.const("o_w", rng.standard_normal((3, 8, 1, 1)).astype(np.float32))],
                "out")
    g.outputs.append(out.output)
    QuantizePass(first_last_bits=8).run(g, CTX)
    verify(g)
    assert [n.wquant.bits for n in g.crossbar_nodes() if n.wquant] == [8, 8, 4, 8]
    assert fq_of(ll).bits == 8 and fq_of(mid).bits == 4


# -------------------------------------------------------------------------- calibration


def heavy_tailed(n: int = 200_000, seed: int = 0) -> np.ndarray:
    """Student t with 4 degrees of freedom: finite variance, max |x| far out in the tail."""
    return np.random.default_rng(seed).standard_t(4.0, n).astype(np.float32)


@pytest.mark.parametrize("bits,signed", [(4, True), (4, False), (3, True), (8, True)])
def test_mse_calibration_beats_max_scaling(bits: int, signed: bool) -> None:
    x = heavy_tailed()
    if not signed:
        x = np.abs(x)
    qmax = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    naive = float(np.float32(np.abs(x).max() / qmax))
    assert calibrate_scale(x, bits, signed, "max") == naive
    s = calibrate_scale(x, bits, signed, "mse")
    assert s < naive
    # Large gains at low precision, smaller ones at 8 bits where rounding error is tiny.
    gain = 0.5 if bits <= 4 else 0.9
    assert fakequant_mse(x, s, bits, signed) < gain * fakequant_mse(x, naive, bits, signed)
    # A local optimum of the search: nudging the scale does not help.
    assert fakequant_mse(x, s, bits, signed) <= fakequant_mse(x, s * 1.05, bits, signed)
    assert fakequant_mse(x, s, bits, signed) <= fakequant_mse(x, s * 0.95, bits, signed)


def test_calibration_edge_cases() -> None:
    assert calibrate_scale(np.zeros(10, np.float32), 4, False) == 1.0
    assert calibrate_scale(np.array([np.nan, 2.0, np.inf], np.float32), 4, False, "max") == \
        float(np.float32(2.0 / 15))
    big = heavy_tailed(1_000_000, seed=1)  # above the 2^18 sample cap
    assert calibrate_scale(big, 4, True) == calibrate_scale(big, 4, True)
    with pytest.raises(UsageError, match="percentile"):
        calibrate_scale(big, 4, True, "percentile")


def test_pass_uses_mse_on_calibration_data() -> None:
    def graph() -> tuple[Graph, Node]:
        g = Graph()
        x = g.input("x", TensorType((None, 64)))
        fc = g.add(ops.Linear(), [x, g.const("w", np.eye(64, dtype=np.float32))], "fc")
        g.outputs.append(fc.output)
        return g, fc

    data = heavy_tailed(64 * 256).reshape(256, 64)
    results = {}
    for method in ("mse", "max"):
        g, fc = graph()
        res = QuantizePass(act_bits=4, method=method).run(g, CompileContext(calib=data))
        assert res.records == (CalibrationRecord("data:256 samples", weight_method="gptq"),)
        results[method] = fakequant_mse(data, fq_of(fc).scale, 4, True)
    assert results["mse"] < 0.5 * results["max"]


def test_later_scales_see_earlier_quantization() -> None:
    net = Net()
    data = calib_data()
    QuantizePass().run(net.g, CompileContext(calib=data))
    # Re-run the quantized graph: every FakeQuant's scale is the calibrated scale of the
    # input it actually receives (upstream FakeQuants and quantized weights applied).
    values = interp_run(net.g, {"x": data})
    for fq in fakequants(net.g):
        x = values[fq.inputs[0].name]
        assert isinstance(fq.op, ops.FakeQuant)
        assert fq.op.scale == calibrate_scale(x, fq.op.bits, fq.op.signed)


def test_synthetic_fallback_is_deterministic() -> None:
    runs = []
    for _ in range(2):
        net = Net()
        res = QuantizePass().run(net.g, CTX)
        assert res.modified and res.records == (CalibrationRecord("synthetic"),)
        runs.append(net.g)
    a, b = runs
    assert [repr(n.op) for n in a.nodes] == [repr(n.op) for n in b.nodes]
    for na, nb in zip(a.crossbar_nodes(), b.crossbar_nodes(), strict=True):
        assert na.wquant is not None and nb.wquant is not None
        np.testing.assert_array_equal(na.wquant.q, nb.wquant.q)
        np.testing.assert_array_equal(na.wquant.scale, nb.wquant.scale)
    scales = [n.op.scale for n in fakequants(a) if isinstance(n.op, ops.FakeQuant)]
    assert all(s > 0 for s in scales) and len(set(scales)) > 1


def test_quantized_graph_tracks_float_graph_at_8_bits() -> None:
    data = calib_data(32)
    ref = interp_run(Net().g, {"x": data})
    net = Net()
    QuantizePass(weight_bits=8, act_bits=8).run(net.g, CompileContext(calib=data))
    out = interp_run(net.g, {"x": data})
    y, y0 = out[net.fc.output.name], ref[net.fc.output.name]
    assert np.linalg.norm(y - y0) < 0.05 * np.linalg.norm(y0)


def test_with_bundled_data() -> None:
    d = load_npz(bundled_example_data(), "x", (None, 3, 32, 32)).take(8)
    g = Graph()
    x = g.input("x", TensorType((None, 3, 32, 32)))
    w = g.const("w", np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32))
    conv = g.add(ops.Conv((3, 3), stride=(2, 2)), [x, w], "conv")
    g.outputs.append(conv.output)
    res = QuantizePass(first_last_bits=8).run(g, CompileContext(calib=d.x))
    verify(g)
    assert res.records == (CalibrationRecord("data:8 samples", weight_method="gptq"),)
    assert fq_of(conv).bits == 8 and fq_of(conv).signed


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("kwargs,match", [
    ({"weight_bits": 1}, "weight_bits=1.*1-bit symmetric"),
    ({"weight_bits": 17}, r"weight_bits=17: must be an integer in \[2, 16\]"),
    ({"act_bits": 0}, "act_bits=0"),
    ({"act_bits": 1}, r"act_bits=1: must be an integer in \[2, 16\] when quantizing "
                      r"\(1-bit signed activations"),
    ({"act_bits": True}, "act_bits=True"),
    ({"act_bits": 4.0}, "act_bits=4.0"),
    ({"first_last_bits": 1}, "first_last_bits=1"),
    ({"method": "kl"}, "method='kl'.*mse, max"),
])
def test_bad_options(kwargs: dict[str, object], match: str) -> None:
    net = Net()
    before = repr(net.g)
    with pytest.raises(UsageError, match=match):
        QuantizePass(**kwargs)  # type: ignore[arg-type]
    # Refused when the pass is built, so a bad pipeline fails before any graph work.
    assert repr(net.g) == before


@pytest.mark.parametrize("kwargs", [{"weight_bits": 1}, {"act_bits": 17},
                                    {"first_last_bits": 0}])
def test_bad_widths_are_refused_when_the_pass_is_made(kwargs: dict[str, int]) -> None:
    # Up front: a pipeline (`-p quantize{act_bits=17}`) fails before the model is read.
    with pytest.raises(UsageError, match=r"must be an integer in \[2, 16\]"):
        QuantizePass(**kwargs)


def test_bad_calibration_data() -> None:
    for bad, match in [(np.zeros((4, 3, 9, 9), np.float32), "shape"),
                       (np.zeros((4, 3, 8), np.float32), "shape"),
                       (np.zeros((0, 3, 8, 8), np.float32), "zero samples"),
                       (np.full((2, 3, 8, 8), np.nan, np.float32), "NaN"),
                       (np.zeros((2, 3, 8, 8), np.int64), "floating point")]:
        net = Net()
        before = repr(net.g)
        with pytest.raises(DataError, match=match):
            QuantizePass().run(net.g, CompileContext(calib=bad))
        assert repr(net.g) == before


def test_runs_once_only() -> None:
    net = Net()
    QuantizePass().run(net.g, CTX)
    with pytest.raises(UsageError, match="already quantized"):
        QuantizePass().run(net.g, CTX)


def test_non_finite_weights_are_a_model_error() -> None:
    net = Net()
    assert net.a.inputs[1].data is not None
    net.a.inputs[1].data[0, 0, 0, 0] = np.nan
    with pytest.raises(ModelError, match="conv_a"):
        QuantizePass().run(net.g, CTX)


def test_graph_without_crossbar_layers_is_unchanged() -> None:
    g = Graph()
    x = g.input("x", TensorType((None, 4)))
    g.outputs.append(g.add(ops.Relu(), [x], "relu").output)
    QuantizePass().run(g, CTX)
    verify(g)
    assert [n.op.kind for n in g.nodes] == ["Relu"]


# --------------------------------------------------------------- ONNX export recipe


def _ort_fakequant(fq: ops.FakeQuant, opset: int, level: ort.GraphOptimizationLevel,
                   ) -> ort.InferenceSession:
    nodes, inits = fakequant_onnx_nodes("fq", "x", "y", fq)
    graph = helper.make_graph(nodes, "fq", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          [None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset < 21 else 10
    onnx.checker.check_model(model, full_check=True)
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def _probe_inputs(fq: ops.FakeQuant, rng: np.random.Generator) -> np.ndarray:
    s = np.float32(fq.scale)
    lo, hi = fq.qrange
    span = float(max(abs(lo), hi)) * float(s)
    uniform = rng.uniform(-1.5 * span, 1.5 * span, 50_000).astype(np.float32)
    # Exact and near ties (k + 1/2) * scale, one ulp either side: the rounding mode and
    # whether x / scale or x * (1 / scale) is computed both show here.
    k = rng.integers(lo - 2, hi + 2, 20_000).astype(np.float32)
    ties = (k + np.float32(0.5)) * s
    near = np.concatenate([ties, np.nextafter(ties, np.float32(np.inf)),
                           np.nextafter(ties, np.float32(-np.inf))])
    special = np.array([0.0, -0.0, lo * s, hi * s, 1e30, -1e30, 1e-30], np.float32)
    return np.concatenate([uniform, near, special]).astype(np.float32)


@pytest.mark.parametrize("bits,signed,opset", [
    (2, True, 13), (2, False, 13), (3, True, 13), (4, True, 13), (4, False, 13),
    (8, True, 13), (8, False, 13), (12, True, 21), (16, False, 21), (16, True, 21)])
@pytest.mark.parametrize("scale", [0.1, 1 / 3, 0.0301, 2.5e-3, 7.0])
def test_onnx_recipe_matches_fakequant_exactly(bits: int, signed: bool, opset: int,
                                               scale: float) -> None:
    fq = ops.FakeQuant(float(np.float32(scale)), bits, signed)
    assert fakequant_min_opset(fq) <= opset
    x = _probe_inputs(fq, np.random.default_rng(bits * 2 + signed))
    want = fq.compute(x)
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        got = _ort_fakequant(fq, opset, level).run(None, {"x": x})[0]
        np.testing.assert_array_equal(got, want)


def test_reciprocal_would_not_match() -> None:
    # Guard the premise above: for scale 1/3 many near-tie inputs round differently under
    # x * (1/scale), so agreement really pins down IEEE division.
    fq = ops.FakeQuant(float(np.float32(1 / 3)), 4, True)
    x = _probe_inputs(fq, np.random.default_rng(0))
    s = np.float32(fq.scale)
    assert np.any(np.rint(x / s) != np.rint(x * (np.float32(1) / s)))


def test_onnx_recipe_names() -> None:
    nodes, inits = fakequant_onnx_nodes("layer3_in", "a", "b", ops.FakeQuant(0.5, 4, False))
    assert [n.op_type for n in nodes] == ["Clip", "QuantizeLinear", "DequantizeLinear"]
    assert nodes[0].input[0] == "a" and nodes[-1].output[0] == "b"
    assert all(t.name.startswith("layer3_in_") for t in inits)
    zp = next(t for t in inits if t.name.endswith("zero_point"))
    assert zp.data_type == TensorProto.UINT8
    assert fakequant_min_opset(ops.FakeQuant(0.5, 9, True)) == 21


def test_onnx_qdq_conv_matches_ir_with_ort_qdq_transforms_off() -> None:
    """A crossbar layer as the exporter will write it: FakeQuant -> Conv(q*scale weight,
    float bias) -> Relu -> FakeQuant. With ORT's QDQ rewrites off (they re-quantize the
    float weight/bias), onnxruntime reproduces the IR at full optimization otherwise."""
    rng = np.random.default_rng(0)
    wq = quantize_weight(rng.standard_normal((8, 4, 3, 3)).astype(np.float32), 4)
    bias = rng.standard_normal(8).astype(np.float32)
    fq_in, fq_out = ops.FakeQuant(0.05, 4, True), ops.FakeQuant(0.11, 4, False)
    n_in, i_in = fakequant_onnx_nodes("in", "x", "xq", fq_in)
    n_out, i_out = fakequant_onnx_nodes("out", "r", "y", fq_out)
    nodes = n_in + [helper.make_node("Conv", ["xq", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
                    helper.make_node("Relu", ["c"], ["r"])] + n_out
    inits = i_in + i_out + [onnx.numpy_helper.from_array(dequantize_weight(wq), "W"),
                            onnx.numpy_helper.from_array(bias, "B")]
    graph = helper.make_graph(
        nodes, "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = rng.standard_normal((32, 4, 8, 8)).astype(np.float32)
    conv = ops.Conv((3, 3), pads=(1, 1, 1, 1)).compute(fq_in.compute(x), dequantize_weight(wq),
                                                       bias)
    want = fq_out.compute(np.maximum(conv, 0))
    got = sess.run(None, {"x": x})[0]
    # The FakeQuants agree bit-exactly; the only freedom left is the Conv's float
    # summation order, which can flip an output sitting exactly at a rounding boundary.
    diff = np.abs(got - want)
    assert diff.max() <= fq_out.scale * 1.0001
    assert np.count_nonzero(diff) <= 0.002 * diff.size


@pytest.mark.parametrize(("shape", "want"), [((3, 32, 32), 32), ((3, 64, 64), 22),
                                             ((3, 96, 96), 10), ((3, 224, 224), 8),
                                             ((3, 512, 512), 8), ((10,), 32)])
def test_synthetic_batch_fills_the_scale_search(shape: tuple[int, ...], want: int) -> None:
    """32 samples for CIFAR-sized inputs (unchanged), fewer for large ones: as many as
    needed for the input to hold MAX_CALIB_VALUES values, at least 8."""
    assert synthetic_samples([shape]) == want
    if 8 < want < 32:
        assert (want - 1) * np.prod(shape) < MAX_CALIB_VALUES <= want * np.prod(shape)
    g = Graph("big")
    g.input("x", TensorType((None,) + shape, DType.FLOAT32))
    feeds, source = calibration_feeds(g, None)
    assert source == "synthetic" and feeds["x"].shape == (want,) + shape
