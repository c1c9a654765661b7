"""Group low-rank pass: Theorem 1, exact reconstruction, graph rewrite checked against the
IR interpreter and onnxruntime, layer policy, rank parsing and policy files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from imcc.errors import DataError, UsageError
from imcc.ir import Graph, Node, PairRole, TensorType, Value, verify
from imcc.ir.interp import run_outputs
from imcc.ir.ops import Conv, GlobalAveragePool, Linear, Relu, Reshape
from imcc.ir.records import LowRankDecision, LowRankRecord
from imcc.passes.base import CompileContext, PassResult
from imcc.passes.lowrank import (
    LayerDecision,
    LowRankPass,
    RankKind,
    RankSpec,
    grouped_lowrank,
    parse_rank,
    policy_from_file,
)

# --------------------------------------------------------------------------------- helpers

CTX = CompileContext()


def lowrank_decisions(res: PassResult) -> tuple[LowRankDecision, ...]:
    """The decisions of the one LowRankRecord a lowrank run returns."""
    (record,) = res.records
    assert isinstance(record, LowRankRecord)
    assert res.modified == (record.factorized_layers > 0)
    return record.decisions


def reconstruct(r: np.ndarray, lw: np.ndarray, groups: int) -> np.ndarray:
    """W_hat = [L_1 R_1 ... L_g R_g] in the original weight's shape (conv or linear)."""
    gk = r.shape[0]
    k = gk // groups
    m = lw.shape[0]
    l2 = lw.reshape(m, gk).astype(np.float64)
    r2 = r.reshape(gk, -1).astype(np.float64)
    blocks = [l2[:, i * k:(i + 1) * k] @ r2[i * k:(i + 1) * k] for i in range(groups)]
    w_hat = np.concatenate(blocks, axis=1)
    if r.ndim == 4:
        return w_hat.reshape(m, groups * r.shape[1], *r.shape[2:])
    return w_hat


def rel_err(w: np.ndarray, w_hat: np.ndarray) -> float:
    return float(np.linalg.norm(w - w_hat) / np.linalg.norm(w))


def _conv_node(g: Graph, x: Value, name: str, w: np.ndarray, b: np.ndarray | None,
               **attrs: Any) -> Node:
    ins = [x, g.const(f"{name}.weight", w)]
    if b is not None:
        ins.append(g.const(f"{name}.bias", b))
    return g.add(Conv(kernel=(w.shape[2], w.shape[3]), **attrs), ins, name)


CONV_ATTRS: dict[str, dict[str, Any]] = {
    "conv1": {"pads": (1, 1, 1, 1)},
    "conv2": {"stride": (2, 2), "pads": (1, 0, 1, 2)},
    "conv3": {"pads": (1, 1, 0, 1), "dilation": (2, 1)},
}


def make_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def f(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    return {"conv1.weight": f(8, 3, 3, 3), "conv1.bias": f(8),
            "conv2.weight": f(16, 8, 3, 3), "conv2.bias": f(16),
            "conv3.weight": f(12, 16, 2, 3), "conv3.bias": f(12),
            "fc.weight": f(10, 12), "fc.bias": f(10)}


def make_net(weights: dict[str, np.ndarray]) -> Graph:
    """conv1 -> relu -> conv2 (stride 2, asymmetric pads) -> relu -> conv3 (dilated,
    2x3 kernel) -> relu -> global avg pool -> flatten -> fc."""
    g = Graph("net")
    x = g.input("x", TensorType((None, 3, 12, 12)))
    h = x
    for name in ("conv1", "conv2", "conv3"):
        c = _conv_node(g, h, name, weights[f"{name}.weight"], weights[f"{name}.bias"],
                       **CONV_ATTRS[name])
        h = g.add(Relu(), [c.output], f"{name}.relu").output
    h = g.add(GlobalAveragePool(), [h], "gap").output
    h = g.add(Reshape((12,)), [h], "flatten").output
    fc = g.add(Linear(), [h, g.const("fc.weight", weights["fc.weight"]),
                          g.const("fc.bias", weights["fc.bias"])], "fc")
    g.outputs = [fc.output]
    verify(g)
    return g


def feeds(seed: int = 1, n: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((n, 3, 12, 12)).astype(np.float32)}


def factorized(graph: Graph) -> dict[str, tuple[str, str]]:
    """source layer -> (R node name, L node name)."""
    out: dict[str, tuple[str, str]] = {}
    for n in graph.nodes:
        if n.lowrank is not None and n.lowrank.role is PairRole.R:
            out[n.lowrank.source] = (n.name, n.lowrank.partner)
    return out


def assert_close(a: np.ndarray, b: np.ndarray) -> None:
    # float32 accumulation over a few hundred terms: relative 1e-4 of the output scale.
    scale = float(np.abs(b).max())
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


# ----------------------------------------------------------------------------- Theorem 1


@st.composite
def lowrank_cases(draw: st.DrawFn) -> tuple[np.ndarray, int, int]:
    m = draw(st.integers(1, 12))
    ic = draw(st.integers(1, 12))
    kh = draw(st.integers(1, 3))
    kw = draw(st.integers(1, 3))
    g = draw(st.sampled_from([d for d in range(1, ic + 1) if ic % d == 0]))
    k = draw(st.integers(1, min(m, ic * kh * kw // g)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((m, ic, kh, kw))
    if draw(st.booleans()):
        # Decaying column/row scales make the spectrum uneven, the interesting case.
        w *= np.exp(rng.uniform(-3, 3, (m, 1, 1, 1))) * np.exp(rng.uniform(-3, 3, (1, ic, 1, 1)))
    return w, g, k


@settings(max_examples=100, deadline=None)
@given(lowrank_cases())
def test_theorem1_grouped_error_never_exceeds_ungrouped(case: tuple[np.ndarray, int, int]) -> None:
    w, g, k = case
    r_g, l_g, e_g = grouped_lowrank(w, g, k)
    r_1, l_1, e_1 = grouped_lowrank(w, 1, k)
    direct_g = rel_err(w, reconstruct(r_g, l_g, g))
    direct_1 = rel_err(w, reconstruct(r_1, l_1, 1))
    # The reported error is the one of the returned factors.
    assert abs(direct_g - e_g) <= 1e-9 + 1e-7 * e_g
    assert abs(direct_1 - e_1) <= 1e-9 + 1e-7 * e_1
    # Slack only for float64 rounding.
    assert direct_g <= direct_1 * (1 + 1e-9) + 1e-12
    assert r_g.shape == (g * k, w.shape[1] // g, *w.shape[2:])
    assert l_g.shape == (w.shape[0], g * k, 1, 1)


@pytest.mark.parametrize("shape,groups", [((8, 4, 3, 3), 1), ((8, 4, 3, 3), 4),
                                          ((16, 8, 1, 1), 2), ((5, 6, 2, 3), 3),
                                          ((40, 4, 1, 1), 2), ((10, 12), 3)])
def test_full_rank_reconstructs(shape: tuple[int, ...], groups: int) -> None:
    w = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    k = min(shape[0], int(np.prod(shape[1:])) // groups)
    r, lw, e = grouped_lowrank(w, groups, k)
    assert r.dtype == np.float32 and lw.dtype == np.float32
    assert rel_err(w, reconstruct(r, lw, groups)) < 1e-5
    assert e < 1e-6


def test_grouped_lowrank_rejects_bad_arguments() -> None:
    w = np.ones((4, 6, 3, 3), dtype=np.float32)
    with pytest.raises(UsageError):
        grouped_lowrank(w, 0, 1)
    with pytest.raises(UsageError):
        grouped_lowrank(w, 4, 1)  # 4 does not divide 6
    with pytest.raises(UsageError):
        grouped_lowrank(w, 2, 0)
    with pytest.raises(UsageError):
        grouped_lowrank(w, 2, 5)  # above min(m, n/g) = 4


def test_singular_values_are_in_l() -> None:
    w = np.random.default_rng(4).standard_normal((6, 4, 3, 3))
    r, _, _ = grouped_lowrank(w, 2, 3)
    for i in range(2):
        ri = r[i * 3:(i + 1) * 3].reshape(3, -1)
        np.testing.assert_allclose(ri @ ri.T, np.eye(3), atol=1e-12)


# ----------------------------------------------------------------- graph rewrite, numerics


def reference_graph(weights: dict[str, np.ndarray], graph: Graph) -> Graph:
    """The original network with each factorized layer's weight replaced by W_hat."""
    w = dict(weights)
    for src, (r_name, l_name) in factorized(graph).items():
        r_node, l_node = graph.node(r_name), graph.node(l_name)
        assert r_node.lowrank is not None
        r, lw = r_node.inputs[1].data, l_node.inputs[1].data
        assert r is not None and lw is not None
        gr = r_node.lowrank.groups
        if isinstance(r_node.op, Linear):
            # Undo the block-diagonal expansion to get the stacked R_i.
            k, n = r_node.lowrank.rank, r.shape[1]
            ng = n // gr
            r = np.concatenate([r[i * k:(i + 1) * k, i * ng:(i + 1) * ng] for i in range(gr)])
        w[f"{src}.weight"] = reconstruct(r, lw, gr).astype(np.float32)
    return make_net(w)


@pytest.mark.parametrize("rank,groups", [("m/2", 2), ("3", 1), ("m/4", 4), ("2", 3)])
def test_factorized_net_equals_reconstructed_weights(rank: str, groups: int) -> None:
    weights = make_weights()
    g = make_net(weights)
    p = LowRankPass(rank=rank, groups=groups, include_first_last=True, include_linear=True)
    decisions = lowrank_decisions(p.run(g, CTX))
    verify(g)
    assert set(factorized(g)) == {"conv1", "conv2", "conv3", "fc"}
    (got,) = run_outputs(g, feeds())
    (want,) = run_outputs(reference_graph(weights, g), feeds())
    assert_close(got, want)
    for d in decisions:
        assert d.factorized and d.rel_error is not None and 0.0 <= d.rel_error <= 1.0


def test_full_rank_equals_original() -> None:
    weights = make_weights()
    (orig,) = run_outputs(make_net(weights), feeds())
    g = make_net(weights)
    p = LowRankPass(rank="1000", groups=2, include_first_last=True, include_linear=True)
    decisions = lowrank_decisions(p.run(g, CTX))
    verify(g)
    (got,) = run_outputs(g, feeds())
    assert_close(got, orig)
    by_layer = {d.layer: d for d in decisions}
    # conv1 has 3 input channels: groups=2 falls back to 1; then min(m, n) = min(8, 27) = 8.
    assert by_layer["conv1"].groups == 1 and by_layer["conv1"].rank == 8
    assert any("used 1" in s for s in by_layer["conv1"].notes)
    assert any("clipped to 8" in s for s in by_layer["conv1"].notes)
    assert by_layer["conv2"].rank == 16 and by_layer["conv2"].groups == 2


def test_rewrite_structure_and_annotations() -> None:
    weights = make_weights()
    g = make_net(weights)
    out_name = g.outputs[0].name
    conv2_out = g.node("conv2").output.name
    LowRankPass(rank="m/4", groups=2).run(g, CTX)
    verify(g)
    assert set(factorized(g)) == {"conv2", "conv3"}
    names = [n.name for n in g.nodes]
    assert "conv2" not in names and "conv3" not in names
    i = names.index("conv2.R")
    assert names[i + 1] == "conv2.L" and names[i + 2] == "conv2.relu"
    r, lnode = g.node("conv2.R"), g.node("conv2.L")
    assert r.op == Conv(kernel=(3, 3), stride=(2, 2), pads=(1, 0, 1, 2), group=2)
    assert lnode.op == Conv(kernel=(1, 1))
    assert r.inputs[1].data is not None and r.inputs[1].data.shape == (8, 4, 3, 3)
    assert r.inputs[1].data.dtype == np.float32
    assert lnode.inputs[1].data is not None and lnode.inputs[1].data.shape == (16, 8, 1, 1)
    assert lnode.inputs[1].data.dtype == np.float32
    assert len(r.inputs) == 2 and len(lnode.inputs) == 3  # bias on L only
    np.testing.assert_array_equal(lnode.inputs[2].data, weights["conv2.bias"])
    assert r.lowrank is not None and lnode.lowrank is not None
    assert r.lowrank.role is PairRole.R and lnode.lowrank.role is PairRole.L
    assert r.lowrank.partner == "conv2.L" and lnode.lowrank.partner == "conv2.R"
    assert r.lowrank.source == lnode.lowrank.source == "conv2"
    assert (r.lowrank.rank, r.lowrank.groups) == (4, 2)
    # m=16, n=8*9=72, k=4, g=2: before 16*72+16, after 4*72 + 16*2*4 + 16.
    assert r.lowrank.params_before == 16 * 72 + 16
    assert r.lowrank.params_after == 4 * 72 + 16 * 8 + 16
    assert r.lowrank == replace(lnode.lowrank, role=PairRole.R, partner="conv2.L")
    # Downstream names are kept.
    assert lnode.output.name == conv2_out
    assert g.outputs[0].name == out_name


def test_linear_pair_uses_block_diagonal_r() -> None:
    weights = make_weights()
    g = make_net(weights)
    LowRankPass(layer_ranks={"fc": "2"}, layer_groups={"fc": 3}).run(g, CTX)
    verify(g)
    assert set(factorized(g)) == {"fc"}
    r = g.node("fc.R")
    w = r.inputs[1].data
    assert w is not None and w.shape == (6, 12)
    mask = np.zeros((6, 12), dtype=bool)
    for i in range(3):
        mask[i * 2:(i + 1) * 2, i * 4:(i + 1) * 4] = True
    assert not w[~mask].any()
    assert r.lowrank is not None and r.lowrank.params_after == 2 * 12 + 10 * 6 + 10
    (got,) = run_outputs(g, feeds())
    (want,) = run_outputs(reference_graph(weights, g), feeds())
    assert_close(got, want)


# ------------------------------------------------------------------------ onnxruntime check


def _onnx_conv(name: str, x: str, y: str, w: str, b: str | None, op: Conv) -> onnx.NodeProto:
    t, left, bottom, right = op.pads
    return helper.make_node("Conv", [x, w] + ([b] if b else []), [y], name=name,
                            kernel_shape=list(op.kernel), strides=list(op.stride),
                            pads=[t, left, bottom, right], dilations=list(op.dilation),
                            group=op.group)


@pytest.mark.parametrize("groups,rank,attrs", [
    (1, "3", {"pads": (1, 1, 1, 1)}),
    (2, "m/2", {"stride": (2, 2), "pads": (1, 0, 1, 2)}),
    (4, "2", {"pads": (2, 1, 0, 1), "dilation": (2, 1)}),
    (8, "1", {"stride": (1, 2)}),
])
def test_pair_matches_onnxruntime(groups: int, rank: str, attrs: dict[str, tuple[int, ...]]
                                  ) -> None:
    rng = np.random.default_rng(7)
    w = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    x = rng.standard_normal((2, 8, 9, 10)).astype(np.float32)
    g = Graph("one")
    xin = g.input("x", TensorType((None, 8, 9, 10)))
    c = _conv_node(g, xin, "c", w, b, **attrs)
    g.outputs = [c.output]
    LowRankPass(layer_ranks={"c": rank}, groups=groups).run(g, CTX)
    verify(g)
    r, lnode = g.node("c.R"), g.node("c.L")
    assert isinstance(r.op, Conv) and isinstance(lnode.op, Conv) and r.op.group == groups
    rw, lw = r.inputs[1].data, lnode.inputs[1].data
    assert rw is not None and lw is not None

    inits = [numpy_helper.from_array(rw, "R.w"), numpy_helper.from_array(lw, "L.w"),
             numpy_helper.from_array(b, "L.b")]
    model = helper.make_model(
        helper.make_graph(
            [_onnx_conv("R", "x", "h", "R.w", None, r.op),
             _onnx_conv("L", "h", "y", "L.w", "L.b", lnode.op)],
            "pair",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8, 9, 10])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                           list(lnode.output.type.shape))],
            initializer=inits),
        opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y_ort,) = sess.run(None, {"x": x})
    (y_ir,) = run_outputs(g, {"x": x})
    assert_close(y_ir, y_ort)

    # And both equal one conv with the reconstructed weight.
    ref = Graph("ref")
    xr = ref.input("x", TensorType((None, 8, 9, 10)))
    assert r.lowrank is not None
    w_hat = reconstruct(rw, lw, r.lowrank.groups).astype(np.float32)
    ref.outputs = [_conv_node(ref, xr, "c", w_hat, b, **attrs).output]
    (y_ref,) = run_outputs(ref, {"x": x})
    assert_close(y_ort, y_ref)


# ------------------------------------------------------------------------------- policy


def test_default_policy_skips_first_conv_and_last_linear() -> None:
    g = make_net(make_weights())
    p = LowRankPass(rank="m/2", include_linear=True)
    decisions = lowrank_decisions(p.run(g, CTX))
    assert set(factorized(g)) == {"conv2", "conv3"}
    notes = {d.layer: d.notes for d in decisions}
    assert "first conv" in notes["conv1"][0] and "last crossbar layer" in notes["fc"][0]


def test_include_first_last_without_linear() -> None:
    g = make_net(make_weights())
    p = LowRankPass(rank="m/2", include_first_last=True)
    decisions = lowrank_decisions(p.run(g, CTX))
    assert set(factorized(g)) == {"conv1", "conv2", "conv3"}
    assert "include_linear" in {d.layer: d for d in decisions}["fc"].notes[0]


def test_noop_by_default() -> None:
    g = make_net(make_weights())
    before = [n.name for n in g.nodes]
    res = LowRankPass().run(g, CTX)
    assert [n.name for n in g.nodes] == before
    # No rank requested anywhere: nothing to decide, so no record for the report.
    assert res == PassResult(g, modified=False, records=())


def test_pass_is_frozen_and_keeps_no_state() -> None:
    p = LowRankPass(rank="m/2", layer_ranks={"conv2": "4"})
    with pytest.raises(AttributeError):
        p.rank = "m/4"  # type: ignore[misc]
    first = lowrank_decisions(p.run(make_net(make_weights()), CTX))
    again = lowrank_decisions(p.run(make_net(make_weights()), CTX))
    assert first == again
    assert LayerDecision is LowRankDecision  # the old name stays importable


def test_layer_overrides() -> None:
    g = make_net(make_weights())
    p = LowRankPass(rank="m/2", groups=2,
                    layer_ranks={"conv1": "4", "conv2": "none"}, layer_groups={"conv3": 4})
    p.run(g, CTX)
    verify(g)
    pairs = factorized(g)
    # An explicit rank overrides the first-conv policy; "none" skips a layer.
    assert set(pairs) == {"conv1", "conv3"}
    r1 = g.node(pairs["conv1"][0]).lowrank
    r3 = g.node(pairs["conv3"][0]).lowrank
    assert r1 is not None and (r1.rank, r1.groups) == (4, 1)  # 3 channels: fallback to 1
    assert r3 is not None and (r3.rank, r3.groups) == (6, 4)


def test_default_groups_fall_back_to_largest_divisor() -> None:
    rng = np.random.default_rng(0)
    g = Graph("g")
    x = g.input("x", TensorType((1, 6, 5, 5)))
    c = _conv_node(g, x, "c", rng.standard_normal((4, 6, 3, 3)).astype(np.float32), None)
    g.outputs = [c.output]
    p = LowRankPass(layer_ranks={"c": "2"}, groups=4)
    decisions = lowrank_decisions(p.run(g, CTX))
    verify(g)
    (d,) = decisions
    assert d.groups == 3 and "groups 4 does not divide 6" in d.notes[0]


def test_rank_clipped_up_to_one() -> None:
    g = make_net(make_weights())
    p = LowRankPass(rank="m/64")
    decisions = lowrank_decisions(p.run(g, CTX))
    d = {d.layer: d for d in decisions}["conv2"]
    assert d.rank == 1 and any("clipped to 1" in s for s in d.notes)


def test_explicit_groups_that_do_not_divide_raise() -> None:
    g = make_net(make_weights())
    with pytest.raises(UsageError, match="conv2"):
        LowRankPass(rank="m/2", layer_groups={"conv2": 3}).run(g, CTX)


def test_unknown_layer_name_raises() -> None:
    g = make_net(make_weights())
    with pytest.raises(UsageError, match="conv9"):
        LowRankPass(rank="m/2", layer_ranks={"conv9": "2"}).run(g, CTX)


def _depthwise_net() -> Graph:
    rng = np.random.default_rng(0)
    g = Graph("dw")
    x = g.input("x", TensorType((1, 4, 6, 6)))
    c0 = _conv_node(g, x, "c0", rng.standard_normal((4, 4, 1, 1)).astype(np.float32), None)
    dw = _conv_node(g, c0.output, "dw", rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
                    None, group=4)
    c2 = _conv_node(g, dw.output, "c2", rng.standard_normal((4, 4, 1, 1)).astype(np.float32),
                    None)
    g.outputs = [c2.output]
    return g


def test_grouped_conv_is_skipped() -> None:
    g = _depthwise_net()
    p = LowRankPass(rank="2", include_first_last=True)
    decisions = lowrank_decisions(p.run(g, CTX))
    verify(g)
    assert set(factorized(g)) == {"c0", "c2"}
    assert "grouped conv" in {d.layer: d for d in decisions}["dw"].notes[0]
    with pytest.raises(UsageError, match="dw"):
        LowRankPass(layer_ranks={"dw": "2"}).run(_depthwise_net(), CTX)


def test_second_run_leaves_pairs_alone() -> None:
    g = make_net(make_weights())
    LowRankPass(rank="m/2").run(g, CTX)
    names = [n.name for n in g.nodes]
    p = LowRankPass(rank="m/2", include_first_last=True)
    decisions = lowrank_decisions(p.run(g, CTX))
    verify(g)
    assert set(factorized(g)) == {"conv1", "conv2", "conv3"}
    assert len(g.nodes) == len(names) + 1
    assert all("already" in d.notes[0] for d in decisions if d.layer.endswith((".R", ".L")))


# -------------------------------------------------------------------------- rank parsing


@pytest.mark.parametrize("spec,m,want", [("none", 16, None), ("m/2", 16, 8), ("m/4", 10, 2),
                                         (" M / 8 ", 64, 8), ("8", 3, 8), (5, 16, 5),
                                         ("m/1", 7, 7), ("m/32", 16, 0)])
def test_parse_rank(spec: str | int, m: int, want: int | None) -> None:
    rs = parse_rank(spec)
    assert rs.resolve(m) == want
    assert parse_rank(str(rs)) == rs


def test_parse_rank_kinds() -> None:
    assert parse_rank("m/2") == RankSpec(RankKind.FRACTION, 2)
    assert parse_rank("8") == RankSpec(RankKind.ABSOLUTE, 8)
    assert parse_rank("None") == RankSpec(RankKind.NONE)


@pytest.mark.parametrize("spec", ["m/0", "m/-1", "m/x", "m/1.5", "m/", "-3", "0", "abc", "",
                                  "2.5", "m*2", True])
def test_parse_rank_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_rank(spec)


@pytest.mark.parametrize("kwargs", [{"groups": 0}, {"groups": -2}, {"rank": "m/0"},
                                    {"layer_ranks": {"a": "x"}}, {"layer_groups": {"a": 0}}])
def test_bad_options_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        LowRankPass(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ policy files


def test_policy_json(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"rank": "m/2", "groups": 4, "include_linear": True,
                             "layers": {"conv2": {"rank": "m/4", "groups": 2},
                                        "conv3": "none", "fc": 3, "conv1": {"groups": 1}}}))
    p = policy_from_file(f)
    assert p == LowRankPass(rank="m/2", groups=4, include_linear=True,
                            layer_ranks={"conv2": "m/4", "conv3": "none", "fc": "3"},
                            layer_groups={"conv2": 2, "conv1": 1})
    g = make_net(make_weights())
    p.run(g, CTX)
    verify(g)
    assert set(factorized(g)) == {"conv2", "fc"}


def test_policy_toml(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text('rank = "m/8"\ngroups = 2\ninclude_first_last = true\n\n[layers]\n'
                 '"conv2" = "none"\n"conv3" = { rank = "4", groups = 4 }\n')
    p = LowRankPass.policy_from_file(f)
    assert p == LowRankPass(rank="m/8", groups=2, include_first_last=True,
                            layer_ranks={"conv2": "none", "conv3": "4"},
                            layer_groups={"conv3": 4})


@pytest.mark.parametrize("name,text,match", [
    ("a.json", "{rank: m/2}", "invalid JSON"),
    ("a.toml", "rank = ", "malformed TOML"),
    ("a.json", '["m/2"]', "top level"),
    ("a.json", '{"rnak": "m/2"}', "rnak"),
    ("a.json", '{"rank": "m/0"}', "rank"),
    ("a.json", '{"groups": "4"}', "groups"),
    ("a.json", '{"groups": 0}', "groups"),
    ("a.json", '{"include_linear": "yes"}', "include_linear"),
    ("a.json", '{"layers": ["conv1"]}', "layers"),
    ("a.json", '{"layers": {"conv2": {"rank": "m/x"}}}', "layers.conv2.rank"),
    ("a.json", '{"layers": {"conv2": {"groups": 0}}}', "layers.conv2.groups"),
    ("a.json", '{"layers": {"conv2": {"rank": "2", "width": 4}}}', "width"),
    ("a.json", '{"layers": {"conv2": {"rank": "2", "bits": 1}}}', "layers.conv2.bits"),
    ("a.json", '{"first_last_bits": 8.0}', "first_last_bits"),
    ("a.json", '{"method": "pca"}', "method"),
    ("a.yaml", "rank: m/2", "json or .toml"),
])
def test_policy_malformed(tmp_path: Path, name: str, text: str, match: str) -> None:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(DataError, match=match):
        policy_from_file(f)


def test_policy_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        policy_from_file(tmp_path / "nope.json")
