"""The `map` pass on small hand-built IR graphs."""

from __future__ import annotations

import numpy as np
import pytest

from imcc.errors import UsageError
from imcc.ir import (
    Graph,
    LowRank,
    MappingChoice,
    PairRole,
    Strategy,
    TensorType,
    VerifyError,
    verify,
)
from imcc.ir.ops import Conv, FakeQuant, Linear, Relu, Reshape
from imcc.ir.records import MappingRecord
from imcc.passes.base import CompileContext
from imcc.passes.map import MapPass, find_pairs, node_geometry
from imcc.targets.cost import LayerGeom, best_mapping, best_pair_mapping
from imcc.targets.crossbar import CrossbarTarget

RNG = np.random.default_rng(0)
T128 = CrossbarTarget(rows=128, cols=128, weight_bits=4, cell_bits=1)
CTX = CompileContext(target=T128)


def weight(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def small_cnn() -> Graph:
    """conv3x3(8->16, pad 1) -> relu -> conv3x3(16->16, stride 2, groups 4) -> relu ->
    reshape -> linear(16*5*5 -> 10)."""
    g = Graph()
    x = g.input("x", TensorType((1, 8, 10, 10)))
    c1 = g.add(Conv(kernel=(3, 3), pads=(1, 1, 1, 1)), [x, g.const("w1", weight(16, 8, 3, 3))],
               "conv1")
    r1 = g.add(Relu(), [c1.output], "relu1")
    c2 = g.add(Conv(kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1), group=4),
               [r1.output, g.const("w2", weight(16, 4, 3, 3))], "conv2")
    r2 = g.add(Relu(), [c2.output], "relu2")
    flat = g.add(Reshape((16 * 5 * 5,)), [r2.output], "flat")
    fc = g.add(Linear(), [flat.output, g.const("wfc", weight(10, 400)),
                          g.const("bfc", weight(10))], "fc")
    g.outputs = [fc.output]
    verify(g)
    return g


def test_geometry_from_nodes() -> None:
    g = small_cnn()
    assert node_geometry(g.node("conv1")) == LayerGeom.from_conv(
        8, 16, 1, (3, 3), (1, 1), (1, 1), (10, 10))
    assert node_geometry(g.node("conv2")) == LayerGeom.from_conv(
        16, 16, 4, (3, 3), (2, 2), (1, 1), (5, 5))
    assert node_geometry(g.node("fc")) == LayerGeom.from_linear(400, 10, 1)


def test_linear_positions() -> None:
    g = Graph()
    x = g.input("x", TensorType((None, 3, 7, 32)))
    fc = g.add(Linear(), [x, g.const("w", weight(8, 32))], "fc")
    g.outputs = [fc.output]
    assert node_geometry(fc) == LayerGeom.from_linear(32, 8, positions=21)


@pytest.mark.parametrize("strategy", ["im2col", "sdk", "vw-sdk", "auto"])
def test_every_crossbar_node_mapped(strategy: str) -> None:
    g = small_cnn()
    res = MapPass(strategy=strategy).run(g, CTX)
    assert res.graph is g and res.modified
    assert res.records == (MappingRecord(strategy),)
    verify(g)
    for node in g.crossbar_nodes():
        want, _ = best_mapping(node_geometry(node), strategy, 128, 128, T128.slices)
        assert node.mapping == want
    for node in g.nodes:
        if not node.op.crossbar:
            assert node.mapping is None


def test_mapping_values() -> None:
    g = small_cnn()
    MapPass(strategy="vw-sdk").run(g, CTX)
    # conv1: 72 rows, 64 columns: im2col 100 cycles. A 1x2 window (3x4 pixels, 10 channels
    # per tile -> 1 row tile; 16 OC * 2 * 4 = 128 columns) needs 10 * 5 = 50.
    assert g.node("conv1").mapping == MappingChoice(Strategy.VW_SDK, (1, 2))
    # The linear layer on a 1x1 map has nothing to parallelize: im2col with a reason.
    fc = g.node("fc").mapping
    assert fc is not None and fc.strategy is Strategy.IM2COL and fc.reason
    MapPass(strategy="im2col").run(g, CTX)
    assert all(n.mapping == MappingChoice(Strategy.IM2COL) for n in g.crossbar_nodes())


def test_strategy_validation() -> None:
    with pytest.raises(UsageError) as exc:
        MapPass(strategy="vw_sdk")
    assert "im2col, sdk, vw-sdk, auto" in str(exc.value)
    assert MapPass.name == "map"
    assert MapPass() == MapPass(strategy="auto")  # the target comes from the context


def factorized(fake_quant: bool = False, l_kernel: int = 1, extra_user: bool = False) -> Graph:
    """R: 3x3 conv 16 -> 8 with groups 2, then L: 1x1 conv 8 -> 32 (a factorized layer)."""
    g = Graph()
    x = g.input("x", TensorType((1, 16, 12, 12)))
    r = g.add(Conv(kernel=(3, 3), pads=(1, 1, 1, 1), group=2),
              [x, g.const("wr", weight(8, 8, 3, 3))], "R")
    v = r.output
    if fake_quant:
        v = g.add(FakeQuant(scale=0.1, bits=4, signed=True), [v], "q").output
    p = (l_kernel - 1) // 2
    lay = g.add(Conv(kernel=(l_kernel, l_kernel), pads=(p, p, p, p)),
                [v, g.const("wl", weight(32, 8, l_kernel, l_kernel)),
                 g.const("bl", weight(32))], "L")
    g.outputs = [lay.output]
    if extra_user:
        g.outputs.append(g.add(Relu(), [r.output], "side").output)
    verify(g)
    return g


def _pair_choice(g: Graph, strategy: str) -> tuple[MappingChoice, MappingChoice]:
    rg, lg = node_geometry(g.node("R")), node_geometry(g.node("L"))
    cr, _, cl, _ = best_pair_mapping(rg, lg, strategy, 128, 128, T128.slices)
    return cr, cl


@pytest.mark.parametrize("strategy", ["sdk", "vw-sdk", "auto"])
def test_prefactorized_pair_mapped_jointly(strategy: str) -> None:
    g = factorized()
    assert [(a.name, b.name) for a, b in find_pairs(g)] == [("R", "L")]
    MapPass(strategy=strategy).run(g, CTX)
    r, lay = g.node("R"), g.node("L")
    assert (r.mapping, lay.mapping) == _pair_choice(g, strategy)
    assert r.mapping is not None and lay.mapping is not None
    assert r.mapping.pw == lay.mapping.pw
    assert r.lowrank is None and lay.lowrank is None  # recognized, not annotated


def test_joint_differs_from_independent() -> None:
    # Independently, the 1x1 L would prefer its own window; jointly both share one.
    g = factorized()
    MapPass(strategy="vw-sdk").run(g, CTX)
    r_alone, _ = best_mapping(node_geometry(g.node("R")), "vw-sdk", 128, 128, 4)
    l_alone, _ = best_mapping(node_geometry(g.node("L")), "vw-sdk", 128, 128, 4)
    assert (r_alone.pw, l_alone.pw) != (g.node("R").mapping.pw,  # type: ignore[union-attr]
                                        g.node("L").mapping.pw)  # type: ignore[union-attr]


def test_prefactorized_through_fakequant() -> None:
    g = factorized(fake_quant=True)
    assert [(a.name, b.name) for a, b in find_pairs(g)] == [("R", "L")]


@pytest.mark.parametrize("kwargs", [{"l_kernel": 3}, {"extra_user": True}])
def test_not_a_pair(kwargs: dict[str, object]) -> None:
    g = factorized(**kwargs)  # type: ignore[arg-type]
    assert find_pairs(g) == []
    MapPass(strategy="vw-sdk").run(g, CTX)
    for name in ("R", "L"):
        node = g.node(name)
        assert node.mapping == best_mapping(node_geometry(node), "vw-sdk", 128, 128, 4)[0]


def test_pointwise_chain_pairs_once() -> None:
    g = Graph()
    v = g.input("x", TensorType((1, 8, 6, 6)))
    for k in range(3):
        v = g.add(Conv(kernel=(1, 1)), [v, g.const(f"w{k}", weight(8, 8, 1, 1))], f"c{k}").output
    g.outputs = [v]
    assert [(a.name, b.name) for a, b in find_pairs(g)] == [("c0", "c1")]
    MapPass().run(g, CTX)
    assert all(n.mapping is not None for n in g.crossbar_nodes())


def _annotate(g: Graph, r_partner: str = "L", l_role: PairRole = PairRole.L) -> None:
    common = dict(source="conv", rank=4, groups=2, rel_error=0.1, params_before=4608,
                  params_after=832)
    g.node("R").lowrank = LowRank(role=PairRole.R, partner=r_partner, **common)  # type: ignore[arg-type]
    g.node("L").lowrank = LowRank(role=l_role, partner="R", **common)  # type: ignore[arg-type]


def test_annotated_pair() -> None:
    g = factorized(fake_quant=True)
    _annotate(g)
    MapPass(strategy="auto").run(g, CTX)
    assert (g.node("R").mapping, g.node("L").mapping) == _pair_choice(g, "auto")


def test_inconsistent_annotation() -> None:
    g = factorized()
    _annotate(g, r_partner="nowhere")
    with pytest.raises(VerifyError):
        MapPass().run(g, CTX)
    g = factorized()
    _annotate(g, l_role=PairRole.R)
    with pytest.raises(VerifyError):
        MapPass().run(g, CTX)
    g = factorized(l_kernel=3)
    _annotate(g)
    with pytest.raises(VerifyError):
        MapPass().run(g, CTX)
