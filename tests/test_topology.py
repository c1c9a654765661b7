"""`first_last_crossbar`: the one data-flow definition of the first and last crossbar
layers, shared by the lowrank policy and quantize's first_last_bits."""

from __future__ import annotations

import numpy as np

from imcc.ir import Graph, TensorType
from imcc.ir.ops import Add, Conv, Linear, Relu, Reshape
from imcc.ir.records import LowRankRecord
from imcc.ir.topology import first_last_crossbar
from imcc.passes.base import CompileContext
from imcc.passes.lowrank import LowRankPass

RNG = np.random.default_rng(0)


def _conv(g: Graph, x, name: str, ic: int, oc: int):
    w = g.const(f"{name}.w", RNG.standard_normal((oc, ic, 1, 1)).astype(np.float32))
    return g.add(Conv(kernel=(1, 1)), [x, w], name)


def branchy() -> Graph:
    """Two convs read the input (a, b); their sum feeds c; c feeds two heads (d, e)."""
    g = Graph("branchy")
    x = g.input("x", TensorType((1, 4, 5, 5)))
    a = _conv(g, x, "a", 4, 4)
    b = _conv(g, x, "b", 4, 4)
    s = g.add(Add(), [a.output, b.output], "sum")
    c = _conv(g, g.add(Relu(), [s.output], "relu").output, "c", 4, 4)
    d = _conv(g, c.output, "d", 4, 4)
    e = _conv(g, c.output, "e", 4, 4)
    g.outputs = [d.output, e.output]
    return g


def test_branches_give_several_first_and_last_layers() -> None:
    first, last = first_last_crossbar(branchy())
    assert [n.name for n in first] == ["a", "b"]
    assert [n.name for n in last] == ["d", "e"]


def test_lowrank_policy_uses_the_data_flow_definition() -> None:
    g = branchy()
    res = LowRankPass(rank="2").run(g, CompileContext())
    (record,) = res.records
    assert isinstance(record, LowRankRecord)
    done = {d.layer for d in record.decisions if d.factorized}
    # Graph order alone would have protected only a and e.
    assert done == {"c"}


def test_linear_first_layer() -> None:
    g = Graph("mlp")
    x = g.input("x", TensorType((1, 8)))
    w1 = g.const("w1", RNG.standard_normal((16, 8)).astype(np.float32))
    h = g.add(Linear(), [x, w1], "fc1")
    r = g.add(Reshape((16, 1, 1)), [h.output], "reshape")
    c = _conv(g, r.output, "conv", 16, 4)
    g.outputs = [c.output]
    first, last = first_last_crossbar(g)
    assert ([n.name for n in first], [n.name for n in last]) == (["fc1"], ["conv"])
    (record,) = LowRankPass(rank="2", include_linear=True).run(g, CompileContext()).records
    assert isinstance(record, LowRankRecord)
    notes = {d.layer: d.notes for d in record.decisions}
    assert "first crossbar layer" in notes["fc1"][0]
    assert "last crossbar layer" in notes["conv"][0]
