"""Attention as the exporters write it (issue 11): the batch moved off axis 0 and merged
with the heads, products of two activations, Einsum. Each graph is built with onnx.helper,
imported, exported back (compiled.onnx) and simulated, all against onnxruntime
(test_digital_ops._check); the batch-axis bookkeeping (imcc/frontend/layout.py) is
property-tested against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from test_digital_ops import _check, _model

from imcc.errors import DataError, UnsupportedError
from imcc.frontend import import_proto
from imcc.frontend.layout import (
    Layout,
    LayoutError,
    Plan,
    plan_merge,
    plan_normal,
    plan_reshape,
    plan_runs,
    sym_sizes,
)
from imcc.ir import ops as O

RNG = np.random.default_rng(0)
T, C, H = 5, 8, 2  # tokens, channels, heads
D = C // H


def _w(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)


def attention_nodes() -> tuple[list, dict[str, np.ndarray]]:
    """torch's multi-head attention (TorchScript form) on x (B, T, C): the batch goes to
    axis 1, is merged with the heads ((T, B*H, d)) and comes back."""
    c = helper.make_node
    nodes = [
        c("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),                     # (T, B, C)
        c("MatMul", ["xt", "w_qkv"], ["qkv0"]),                            # (T, B, 3C)
        c("Add", ["b_qkv", "qkv0"], ["qkv"]),
        c("Reshape", ["qkv", "s_split"], ["qkv5"]),                         # (T, B, 3, C)
        c("Unsqueeze", ["qkv5", "ax0"], ["u"]),                            # (1, T, B, 3, C)
        c("Transpose", ["u"], ["ut"], perm=[3, 1, 2, 0, 4]),               # (3, T, B, 1, C)
        c("Squeeze", ["ut", "ax3"], ["sq"]),                               # (3, T, B, C)
        c("Gather", ["sq", "i0"], ["q0"], axis=0),
        c("Gather", ["sq", "i1"], ["k0"], axis=0),
        c("Gather", ["sq", "i2"], ["v0"], axis=0),                         # (T, B, C)
        *[c("Reshape", [f"{n}0", "s_heads"], [f"{n}1"]) for n in "qkv"],  # (T, B*H, d)
        *[c("Transpose", [f"{n}1"], [f"{n}2"], perm=[1, 0, 2]) for n in "qkv"],  # (B*H, T, d)
        c("Transpose", ["k2"], ["kt"], perm=[0, 2, 1]),                    # (B*H, d, T)
        c("Mul", ["q2", "scale"], ["qs"]),
        c("MatMul", ["qs", "kt"], ["scores"], name="attn_scores"),         # (B*H, T, T)
        c("Softmax", ["scores"], ["p"], axis=-1),
        c("MatMul", ["p", "v2"], ["ctx"]),                                 # (B*H, T, d)
        c("Transpose", ["ctx"], ["ctxt"], perm=[1, 0, 2]),                 # (T, B*H, d)
        c("Reshape", ["ctxt", "s_flat"], ["flat"]),                        # (T*B, C)
        c("Gemm", ["flat", "w_o", "b_o"], ["o"], transB=1),
        c("Reshape", ["o", "s_back"], ["ob"]),                             # (T, B, C)
        c("Transpose", ["ob"], ["obt"], perm=[1, 0, 2]),                   # (B, T, C)
        c("Add", ["obt", "x"], ["res"]),
        c("LayerNormalization", ["res", "ln_s", "ln_b"], ["y"], axis=-1),
    ]
    i64 = np.int64
    inits = {
        "w_qkv": _w(C, 3 * C), "b_qkv": _w(3 * C), "w_o": _w(C, C), "b_o": _w(C),
        "ln_s": _w(C) + 1, "ln_b": _w(C),
        "s_split": np.array([T, -1, 3, C], i64), "ax0": np.array([0], i64),
        "ax3": np.array([3], i64), "i0": np.array(0, i64), "i1": np.array(1, i64),
        "i2": np.array(2, i64), "s_heads": np.array([T, -1, D], i64),
        "scale": np.array([D ** -0.5], np.float32), "s_flat": np.array([-1, C], i64),
        "s_back": np.array([T, -1, C], i64),
    }
    return nodes, inits


@pytest.mark.parametrize("batch", ["N", 1])
def test_torch_attention_block_matches_onnxruntime(batch: str | int) -> None:
    """A dynamic batch (merged with the heads as B*H) and a static batch of 1."""
    nodes, inits = attention_nodes()
    m = _model(nodes, inits, 17, x_shape=[batch, T, C])
    _check(m, RNG.standard_normal((2 if batch == "N" else 1, T, C)).astype(np.float32),
           rtol=1e-4, atol=1e-5)


def test_attention_products_are_digital_and_projections_token_parallel() -> None:
    nodes, inits = attention_nodes()
    g = import_proto(_model(nodes, inits, 17, x_shape=["N", T, C]), "t")
    mm = [n for n in g.nodes if isinstance(n.op, O.MatMul)]
    assert [n.op.crossbar for n in mm] == [False, False]
    # scores (B, H, T, d) @ (B, H, d, T), then (B, H, T, T) @ (B, H, T, d), batch first
    assert [(n.inputs[0].type.shape, n.inputs[1].type.shape) for n in mm] == [
        ((None, H, T, D), (None, H, D, T)), ((None, H, T, T), (None, H, T, D))]
    lin = [n for n in g.nodes if isinstance(n.op, O.Linear)]
    # Each projection runs per token: T positions of C features.
    assert [(n.inputs[0].type.shape, n.output.type.shape) for n in lin] == [
        ((None, T, C), (None, T, 3 * C)), ((None, T, C), (None, T, C))]


@pytest.mark.parametrize("batch", ["N", 1])
def test_einsum_products_match_onnxruntime(batch: str | int) -> None:
    """Einsum as a MatMul: a constant projection (crossbar), scores with the key
    transposed by the equation, attention x values (digital)."""
    c = helper.make_node
    nodes = [
        c("Einsum", ["x", "w"], ["p"], equation="btc,oc->bto"),          # (B, T, 2C)
        c("Reshape", ["p", "s4"], ["p4"]),                                 # (B, T, 2H, d)
        c("Transpose", ["p4"], ["p4t"], perm=[0, 2, 1, 3]),                # (B, 2H, T, d)
        c("Split", ["p4t", "sp"], ["q", "k"], axis=1),                     # (B, H, T, d) x2
        c("Einsum", ["q", "k"], ["s"], equation="bhid,bhjd->bhij"),
        c("Softmax", ["s"], ["a"], axis=-1),
        c("Einsum", ["a", "k"], ["o"], equation="bhij,bhjd->bihd"),       # (B, T, H, d)
        c("Reshape", ["o", "s3"], ["y"]),
    ]
    inits = {"w": _w(2 * C, C), "s4": np.array([0, T, 2 * H, D], np.int64),
             "sp": np.array([H, H], np.int64), "s3": np.array([0, T, C], np.int64)}
    m = _model(nodes, inits, 17, x_shape=[batch, T, C])
    _check(m, RNG.standard_normal((2 if batch == "N" else 1, T, C)).astype(np.float32),
           rtol=1e-4, atol=1e-5)
    g = import_proto(m, "t")
    assert [type(n.op).__name__ for n in g.nodes if type(n.op) in (O.Linear, O.MatMul)] == \
        ["Linear", "MatMul", "MatMul"]


@pytest.mark.parametrize("batch", ["N", 1])
def test_window_attention_with_windows_folded_into_the_batch(batch: str | int) -> None:
    """Swin's window attention: (B, 4, 4, C) cut into 2x2 windows, the windows folded into
    the batch ((B*4, 4, C)), a product of two activations on each, and folded back."""
    c = helper.make_node
    nodes = [
        c("Reshape", ["x", "s6"], ["x6"]),                               # (B, 2, 2, 2, 2, C)
        c("Transpose", ["x6"], ["x6t"], perm=[0, 1, 3, 2, 4, 5]),
        c("Reshape", ["x6t", "s3"], ["win"]),                             # (B*4, 4, C)
        c("Transpose", ["win"], ["wt"], perm=[0, 2, 1]),
        c("MatMul", ["win", "wt"], ["s"]),                                # (B*4, 4, 4)
        # As Swin adds its shift mask: per image (B, 4 windows, 4, 4), through an op that
        # takes it batch first (so the 2x2 windows become one axis of 4), and back.
        c("Reshape", ["s", "s4s"], ["s4d"]),
        c("Slice", ["s4d", "st", "en", "ax"], ["sl"]),
        c("Reshape", ["sl", "s3n"], ["sm"]),
        c("Softmax", ["sm"], ["a"], axis=-1),
        c("MatMul", ["a", "win"], ["o"]),                                 # (B*4, 4, C)
        c("Reshape", ["o", "s6"], ["o6"]),
        c("Transpose", ["o6"], ["o6t"], perm=[0, 1, 3, 2, 4, 5]),
        c("Reshape", ["o6t", "s4"], ["y"]),                               # (B, 4, 4, C)
    ]
    i64 = np.int64
    inits = {"s6": np.array([-1, 2, 2, 2, 2, C], i64), "s3": np.array([-1, 4, C], i64),
             "s4": np.array([-1, 4, 4, C], i64), "s4s": np.array([-1, 4, 4, 4], i64),
             "st": np.array([0], i64), "en": np.array([4], i64), "ax": np.array([3], i64),
             "s3n": np.array([-1, 4, 4], i64)}
    m = _model(nodes, inits, 17, x_shape=[batch, 4, 4, C])
    _check(m, RNG.standard_normal((3 if batch == "N" else 1, 4, 4, C)).astype(np.float32),
           rtol=1e-4, atol=1e-5)


def test_einsum_that_is_not_a_product_is_refused() -> None:
    m = _model([helper.make_node("Einsum", ["x", "x"], ["y"], equation="btc,btc->bt")], {}, 17,
               x_shape=["N", T, C])
    with pytest.raises(UnsupportedError, match="Einsum node 'y': equation 'btc,btc->bt' is "
                                               "not a matrix product"):
        import_proto(m, "t")


def test_op_across_the_merged_batch_is_refused_saying_where_the_batch_is() -> None:
    """(B, T, C) -> (B*T, C): a Softmax over axis 0 would mix the samples."""
    nodes = [helper.make_node("Reshape", ["x", "s"], ["f"]),
             helper.make_node("Softmax", ["f"], ["y"], axis=0)]
    m = _model(nodes, {"s": np.array([-1, C], np.int64)}, 17, x_shape=["N", T, C])
    with pytest.raises(UnsupportedError, match=r"Softmax node 'y': axis 0 of input 'f' of shape "
                                               r"\(5\*B, 8\) with the batch on axis 0 merged "
                                               r"with other axes: .*mix the samples"):
        import_proto(m, "t")


def test_reshape_one_minus_one_merges_a_dynamic_batch() -> None:
    """[1, -1] on a dynamic batch is (1, B*T*C), not one sample per row: its consumer is
    refused instead of computing something else for a batch of 2."""
    nodes = [helper.make_node("Reshape", ["x", "s"], ["f"]),
             helper.make_node("Relu", ["f"], ["y"])]
    m = _model(nodes, {"s": np.array([1, -1], np.int64)}, 17, x_shape=["N", T, C])
    with pytest.raises(UnsupportedError, match=r"graph output 'y' of shape \(1, 40\*B\) has "
                                               "the batch on axis 1 merged"):
        import_proto(m, "t")
    m = _model(nodes, {"s": np.array([1, -1], np.int64)}, 17, x_shape=[1, T, C])
    _check(m, RNG.standard_normal((1, T, C)).astype(np.float32))  # a batch of 1 is 1


# ------------------------------------------------------------ the layout bookkeeping


def _materialize(v: np.ndarray, lay: Layout) -> np.ndarray:
    """The ONNX tensor a batch-first value and its layout stand for (module docstring of
    imcc/frontend/layout.py)."""
    order = [a for g in lay.groups for a in g]
    orphans = [a for a in range(v.ndim) if a not in order]
    assert all(v.shape[a] == 1 for a in orphans)
    sizes = [int(np.prod([v.shape[a] for a in g])) for g in lay.groups]
    return v.transpose(order + orphans).reshape(sizes)


def _regrouped(dims: list[int], rnd, batch: int
               ) -> tuple[np.ndarray, Layout, list[tuple[int, int]], np.ndarray, list]:
    """A batch-first tensor (batch ``batch``, sizes ``dims``) transposed at random and
    regrouped at random (each axis split into factors, adjacent factors merged, the batch
    with them): (V, its layout, the target sizes with the batch symbolic, numpy's result,
    the symbolic sizes of V)."""
    shape = [batch, *dims]
    v = np.arange(int(np.prod(shape))).reshape(shape)
    perm = list(range(len(shape)))
    rnd.shuffle(perm)
    factors: list[tuple[int, bool]] = []  # (size, holds the batch)
    x = v.transpose(perm)
    for p, d in zip(perm, x.shape, strict=True):
        if p == 0:
            factors.append((d, True))
            continue
        while d > 1 and rnd.random() < 0.5:
            f = next((f for f in range(2, d + 1) if d % f == 0), d)
            factors.append((f, False))
            d //= f
        factors.append((d, False))
    target: list[tuple[int, int]] = []
    for size, has_b in factors:
        if target and rnd.random() < 0.4:
            k, e = target[-1]
            target[-1] = (k * (1 if has_b else size), e + has_b)
        else:
            target.append((1, 1) if has_b else (size, 0))
    want = x.reshape([k * batch ** e for k, e in target])
    return v, Layout(tuple((p,) for p in perm)), target, want, sym_sizes([None, *dims])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.randoms(use_true_random=False),
       st.integers(2, 3))
def test_reshape_plan_equals_numpy(dims: list[int], rnd, batch: int) -> None:
    """Any regrouping of a transposed batch-first tensor: the planned IR reshape and layout
    give the tensor numpy's reshape gives."""
    v, lay, target, want, vs = _regrouped(dims, rnd, batch)
    new_vs, new_lay = plan_reshape(lay, vs, target)
    got = _materialize(v.reshape([k * batch ** e for k, e in new_vs]), new_lay)
    np.testing.assert_array_equal(got, want)


def _apply(v: np.ndarray, plan: Plan, batch: int) -> np.ndarray:
    if plan.perm is not None:
        v = v.transpose(plan.perm)
    if plan.shape is not None:
        v = v.reshape([k * batch ** e for k, e in plan.shape])
    return v


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.randoms(use_true_random=False),
       st.integers(2, 3))
def test_relayout_plans_keep_the_tensor(dims: list[int], rnd, batch: int) -> None:
    """plan_merge (each axis, to the end or in place), plan_runs and plan_normal emit IR
    ops (batch first) after which the new layout stands for the same tensor; plan_merge and
    plan_normal refuse only axes that hold the batch with others."""
    v, lay, target, want, vs = _regrouped(dims, rnd, batch)
    new_vs, lay = plan_reshape(lay, vs, target)
    v = v.reshape([k * batch ** e for k, e in new_vs])
    plans = [plan_runs(lay, new_vs, range(lay.rank))]
    for k in range(lay.rank):
        for to_end in (False, True):
            try:
                plans.append(plan_merge(lay, new_vs, k, to_end)[0])
            except LayoutError:
                assert 0 in lay.groups[k]
    try:
        plans.append(plan_normal(lay, new_vs)[0])
    except LayoutError:
        assert any(0 in g and len(g) > 1 for g in lay.groups)
    for plan in plans:
        out = _apply(v, plan, batch)
        assert plan.perm is None or plan.perm[0] == 0
        np.testing.assert_array_equal(_materialize(out, plan.layout), want)


# ------------------------------------------------------------ where the MACs run


def test_mac_share_of_an_attention_block(tmp_path) -> None:
    """Hand-counted MACs per image of attention_nodes() on T=5 tokens, C=8, H=2 heads:
    QKV projection T*C*3C = 960 and output projection T*C*C = 320 on crossbars; scores
    H*T*T*d = 200 and attention x values H*T*T*d = 200 digital. In report.json, its typed
    model read back, the terminal table/summary, Markdown and HTML."""
    import json

    import onnx

    import imcc
    from imcc.report import to_html, to_markdown
    from imcc.report.model import Report
    from imcc.report.terminal import mac_table, summary_lines

    nodes, inits = attention_nodes()
    path = tmp_path / "attn.onnx"
    onnx.save(_model(nodes, inits, 17, x_shape=["N", T, C]), str(path))
    res = imcc.compile(path, quantize=False, output=tmp_path / "out")
    macs = res.report.macs
    assert macs is not None
    assert [(o.op, o.unit, o.macs) for o in macs.ops] == [
        ("Linear", "crossbar", T * C * 3 * C), ("MatMul", "digital", H * T * T * D),
        ("MatMul", "digital", H * T * T * D), ("Linear", "crossbar", T * C * C)]
    assert (macs.crossbar, macs.digital, macs.total) == (1280, 400, 1680)
    assert macs.crossbar_share == pytest.approx(1280 / 1680)
    assert [la.macs for la in res.report.layers] == [960, 320]
    raw = json.loads((tmp_path / "out" / "report.json").read_text())
    assert raw["macs"]["crossbar"] == 1280 and raw["macs"]["digital"] == 400
    assert raw["macs"]["ops"][1] == {"name": "attn_scores", "op": "MatMul", "unit": "digital",
                                     "macs": 200, "share": pytest.approx(200 / 1680)}
    assert Report.from_json(raw) == res.report
    bad = json.loads(json.dumps(raw))
    bad["macs"]["digital"] = 1
    with pytest.raises(DataError, match="macs.digital is 1, its ops add up to 400"):
        Report.from_json(bad)
    del raw["macs"]  # a report written before the key
    assert Report.from_json(raw).macs is None
    line = "1,680 MACs per image: 76.2% on crossbars (2 layers), 23.8% digital (2 products"
    assert any(s.startswith(line) for s in summary_lines(res.report))
    table, dropped = mac_table(res.report, width=120)
    assert not dropped and [str(c.header) for c in table.columns] == [
        "layer", "runs on", "op", "MACs", "share"]
    md = to_markdown(res.report)
    assert "| `attn_scores` | digital | MatMul | 200 | 11.9% |" in md
    assert "**MACs:** 1,680 per image, 76.2% on crossbars" in md
    page = to_html(res.report)
    assert "<h2>Where the MACs run</h2>" in page and "<code>attn_scores</code>" in page



# ------------------------------------------------------------ quantization and low-rank


def _mlp_block() -> tuple[list, dict[str, np.ndarray]]:
    """attention_nodes() followed by a GELU MLP (exact Erf form, as TorchScript writes it)."""
    nodes, inits = attention_nodes()
    c = helper.make_node
    nodes[-1] = c("LayerNormalization", ["res", "ln_s", "ln_b"], ["ln"], axis=-1)
    nodes += [c("MatMul", ["ln", "w1"], ["h"]), c("Div", ["h", "sqrt2"], ["hd"]),
              c("Erf", ["hd"], ["e"]), c("Add", ["e", "one"], ["e1"]),
              c("Mul", ["h", "e1"], ["he"]), c("Mul", ["he", "half"], ["g"]),
              c("MatMul", ["g", "w2"], ["y"])]
    inits.update(w1=_w(C, 2 * C), w2=_w(2 * C, C), sqrt2=np.array(np.sqrt(2), np.float32),
                 one=np.array(1, np.float32), half=np.array(0.5, np.float32))
    return nodes, inits


def test_quantized_inputs_after_layernorm_and_gelu_are_signed() -> None:
    """Every crossbar input of a transformer block is signed (LayerNorm, the attention
    context and GELU all go negative), and the quantized program equals compiled.onnx."""
    from imcc.compiler import CompileOptions, compile_graph
    from imcc.ir.onnx_export import to_onnx
    from imcc.sim.simulator import simulate

    nodes, inits = _mlp_block()
    m = _model(nodes, inits, 17, x_shape=["N", T, C])
    x = RNG.standard_normal((3, T, C)).astype(np.float32)
    g = import_proto(m, "t")
    res = compile_graph(g, CompileOptions(calib=x), "t")
    fq = {n.output.users[0].name: n.op for n in res.graph.nodes
          if isinstance(n.op, O.FakeQuant) and n.output.users[0].op.crossbar}
    assert len(fq) == 4 and all(op.signed for op in fq.values()), fq
    got = simulate(res.program, {"x": x}).outputs[res.program.outputs[0]]
    import onnxruntime as ort

    sess = ort.InferenceSession(to_onnx(res.graph).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want)


def test_lowrank_linear_pairs_run_token_parallel_and_bit_exact(tmp_path) -> None:
    """lowrank{include_linear} on the block: every Linear (QKV, output projection, MLP) is
    a pair whose halves run over the T tokens with one shared window (a parallel window
    of several tokens when that is cheaper, Theorem 2 of DESIGN.md), and the quantized
    program equals compiled.onnx bit for bit."""
    import onnx

    import imcc
    from imcc.dataset import Dataset

    nodes, inits = _mlp_block()
    path = tmp_path / "block.onnx"
    onnx.save(_model(nodes, inits, 17, x_shape=["N", T, C]), str(path))
    res = imcc.compile(path, output=tmp_path / "out", passes="fold-bn, lowrank{rank=m/2, "
                       "groups=2, include_linear=true, include_first_last=true}, quantize, map")
    layers = res.report.layers
    assert [la.role for la in layers] == ["R", "L"] * 4
    for r, lh in zip(layers[::2], layers[1::2], strict=True):
        assert r.shape.startswith(f"{T}x") and lh.shape.startswith(f"{T}x")
        assert (r.pw, r.windows) == (lh.pw, lh.windows)
        assert r.pw is not None and r.windows == -(-T // r.pw[0])
        assert r.cycles == r.windows * r.tiles
    x = RNG.standard_normal((2, T, C)).astype(np.float32)
    sim = imcc.simulate(res, data=Dataset(x, None, "random"))
    assert sim.matches_onnxruntime is True and sim.cycles_per_image == sim.report_cycles
    assert float(np.abs(np.asarray(sim.saved["simulated"]) -
                        np.asarray(sim.saved["onnxruntime"])).max()) == 0.0


def test_short_names_keep_the_op_type_where_they_would_collide() -> None:
    """A transformer block's QKV MatMul and output Gemm share a scope: the tables show them
    with their op type, and either spelling resolves."""
    from imcc.ir.names import resolve_layer_names, short_names

    full = ["/enc/layer_0/attn/MatMul", "/enc/layer_0/attn/Gemm", "/enc/layer_0/mlp/MatMul"]
    assert short_names(full) == ["enc/layer_0/attn/MatMul", "enc/layer_0/attn/Gemm",
                                 "enc/layer_0/mlp"]
    assert resolve_layer_names(["enc/layer_0/attn/Gemm", "enc/layer_0/mlp"], full, "t") == {
        "enc/layer_0/attn/Gemm": full[1], "enc/layer_0/mlp": full[2]}
