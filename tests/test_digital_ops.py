"""Digital ops (issue 11): each small graph is imported, compiled (unquantized), its
crossbar program simulated, and the outputs compared with onnxruntime on the same graph;
compiled.onnx (the IR exported back) must agree with onnxruntime too."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from imcc.compiler import CompileOptions, compile_graph
from imcc.errors import UnsupportedError
from imcc.frontend import import_proto
from imcc.ir.onnx_export import to_onnx
from imcc.sim.simulator import simulate
from imcc.targets.crossbar import CrossbarTarget

RNG = np.random.default_rng(0)
X_SHAPE = [2, 4, 3, 5]


def _model(nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], opset: int,
           x_shape: list[int | str] = X_SHAPE, y_shape: list[int | str] | None = None
           ) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, y_shape)
         for o in nodes[-1].output if o],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset < 19 else 9 if opset < 21 else 10
    return m


def _ort(m: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})


def _check(m: onnx.ModelProto, x: np.ndarray, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    want = _ort(m, x)
    graph = import_proto(m, "t")
    exported = to_onnx(graph)
    for w, g in zip(want, _ort(exported, x), strict=True):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    target = CrossbarTarget(rows=16, cols=16, weight_bits=4, cell_bits=1)
    compiled = compile_graph(graph, CompileOptions(target=target, quantize=False), "t")
    sim = simulate(compiled.program, {"x": x})
    got = [sim.outputs[o] for o in compiled.program.outputs]
    assert len(got) == len(want)
    for w, g in zip(want, got, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def _x(shape: list[int] = X_SHAPE) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32) * 2


I64 = np.int64
UNARY = [
    ("HardSigmoid", {}, 17), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 17),
    ("HardSwish", {}, 17), ("Sigmoid", {}, 17), ("Tanh", {}, 17), ("Erf", {}, 17),
    ("Gelu", {}, 20), ("Gelu", {"approximate": "tanh"}, 20),
    ("Softmax", {"axis": 1}, 17), ("Softmax", {}, 17),
]


@pytest.mark.parametrize(("op", "attrs", "opset"), UNARY,
                         ids=[f"{o}-{i}" for i, (o, _, _) in enumerate(UNARY)])
def test_unary(op: str, attrs: dict[str, object], opset: int) -> None:
    _check(_model([helper.make_node(op, ["x"], ["y"], **attrs)], {}, opset), _x())


def test_sqrt_reciprocal_pow() -> None:
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]),
             helper.make_node("Add", ["sq", "one"], ["p"]),
             helper.make_node("Sqrt", ["p"], ["s"]),
             helper.make_node("Reciprocal", ["s"], ["r"]),
             helper.make_node("Pow", ["r", "three"], ["y"])]
    _check(_model(nodes, {"one": np.array(1.0, np.float32),
                          "three": np.array(3.0, np.float32)}, 17), _x())


def test_pow_integer_exponent_shared_with_an_integer_consumer() -> None:
    # One int64 initializer is both Pow's exponent and Gather's indices: converting the
    # exponent to float for Pow must not turn the indices into floats (they were, once).
    nodes = [helper.make_node("Pow", ["x", "e"], ["p"]),
             helper.make_node("Gather", ["p", "e"], ["y"], axis=1)]
    _check(_model(nodes, {"e": np.array([2], I64)}, 17), _x())


REDUCE = [(op, axes, keep, opset, form) for op in ("ReduceMean", "ReduceSum", "ReduceMax")
          for axes, keep in (([2, 3], 1), ([-1], 0), ([1], 1))
          for opset, form in ((13, "attr"), (18, "input"))]


@pytest.mark.parametrize(("op", "axes", "keep", "opset", "form"), REDUCE)
def test_reduce(op: str, axes: list[int], keep: int, opset: int, form: str) -> None:
    if op == "ReduceSum" and form == "attr":
        opset = 11  # ReduceSum takes axes as an input from opset 13
    if form == "attr":
        nodes = [helper.make_node(op, ["x"], ["y"], axes=axes, keepdims=keep)]
        inits: dict[str, np.ndarray] = {}
    else:
        nodes = [helper.make_node(op, ["x", "axes"], ["y"], keepdims=keep)]
        inits = {"axes": np.array(axes, I64)}
    _check(_model(nodes, inits, opset), _x())


def test_reduce_over_batch_is_refused() -> None:
    m = _model([helper.make_node("ReduceMean", ["x"], ["y"], axes=[0])], {}, 17)
    with pytest.raises(UnsupportedError, match="ReduceMean node .*batch"):
        import_proto(m)


@pytest.mark.parametrize("bias", [True, False])
def test_layernorm(bias: bool) -> None:
    inits = {"s": RNG.standard_normal(5).astype(np.float32)}
    ins = ["x", "s"]
    if bias:
        inits["b"] = RNG.standard_normal(5).astype(np.float32)
        ins.append("b")
    _check(_model([helper.make_node("LayerNormalization", ins, ["y"], axis=-1,
                                    epsilon=1e-6)], inits, 17), _x())


def test_layernorm_decomposed() -> None:
    nodes = [helper.make_node("ReduceMean", ["x", "ax"], ["m"], keepdims=1),
             helper.make_node("Sub", ["x", "m"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["d2"]),
             helper.make_node("ReduceMean", ["d2", "ax"], ["v"], keepdims=1),
             helper.make_node("Add", ["v", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Div", ["d", "sd"], ["y"])]
    _check(_model(nodes, {"ax": np.array([1], I64), "two": np.array(2.0, np.float32),
                          "eps": np.array(1e-6, np.float32)}, 18), _x())


@pytest.mark.parametrize("form", ["attr", "input", "even", "num_outputs"])
def test_split(form: str) -> None:
    if form == "attr":
        node = helper.make_node("Split", ["x"], ["a", "b"], axis=1, split=[1, 3])
        inits, opset = {}, 11
    elif form == "input":
        node = helper.make_node("Split", ["x", "sp"], ["a", "b"], axis=-1)
        inits, opset = {"sp": np.array([2, 3], I64)}, 17
    elif form == "even":
        node = helper.make_node("Split", ["x"], ["a", "b"], axis=1)
        inits, opset = {}, 17
    else:
        node = helper.make_node("Split", ["x"], ["a", "b"], axis=3, num_outputs=2)
        inits, opset = {}, 18
    nodes = [node, helper.make_node("Relu", ["a"], ["ra"]),
             helper.make_node("Sigmoid", ["b"], ["rb"]),
             helper.make_node("Concat", ["rb", "ra"], ["y"], axis=node.attribute[0].i
                              if node.attribute[0].name == "axis" else 1)]
    _check(_model(nodes, inits, opset), _x())


@pytest.mark.parametrize("idx", [np.array(2, I64), np.array([0, 2, -1], I64)])
def test_gather_constant_indices(idx: np.ndarray) -> None:
    _check(_model([helper.make_node("Gather", ["x", "i"], ["y"], axis=2)], {"i": idx}, 17),
           _x())


def test_where_expand() -> None:
    cond = RNG.random((3, 5)) > 0.5
    nodes = [helper.make_node("Expand", ["x", "shp"], ["e"]),
             helper.make_node("Where", ["c", "e", "zero"], ["y"])]
    m = _model(nodes, {"shp": np.array([1, 4, 3, 5], I64), "c": cond,
                       "zero": np.array(0.0, np.float32)}, 17, x_shape=[2, 4, 1, 5])
    _check(m, _x([2, 4, 1, 5]))


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze_both_forms(opset: int) -> None:
    if opset < 13:
        nodes = [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[2]),
                 helper.make_node("Squeeze", ["u"], ["y"], axes=[2])]
        inits: dict[str, np.ndarray] = {}
    else:
        nodes = [helper.make_node("Unsqueeze", ["x", "a"], ["u"]),
                 helper.make_node("Squeeze", ["u", "a"], ["y"])]
        inits = {"a": np.array([2], I64)}
    _check(_model(nodes, inits, opset), _x())


def test_channel_shuffle_with_dynamic_batch_folds() -> None:
    """ShuffleNet's TorchScript channel shuffle: Shape -> Gather -> Div -> Concat ->
    Reshape with a dynamic batch; the batch stays a symbol, the rest folds."""
    c = helper.make_node
    nodes = [
        c("Shape", ["x"], ["s"]),
        c("Gather", ["s", "i0"], ["n"], axis=0), c("Gather", ["s", "i1"], ["ch"], axis=0),
        c("Div", ["ch", "two"], ["half"]),
        c("Unsqueeze", ["n", "z"], ["n1"]), c("Unsqueeze", ["half", "z"], ["h1"]),
        c("Concat", ["n1", "two1", "h1", "hw"], ["shape5"], axis=0),
        c("Reshape", ["x", "shape5"], ["r"]),
        c("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
        c("Concat", ["n1", "m1", "hw"], ["shape4"], axis=0),
        c("Reshape", ["t", "shape4"], ["y"]),
    ]
    inits = {"i0": np.array(0, I64), "i1": np.array(1, I64), "two": np.array(2, I64),
             "z": np.array([0], I64), "two1": np.array([2], I64),
             "hw": np.array([3, 5], I64), "m1": np.array([-1], I64)}
    m = _model(nodes, inits, 13, x_shape=["N", 4, 3, 5], y_shape=["N", 4, 3, 5])
    _check(m, _x([3, 4, 3, 5]))


def test_unsupported_ops_listed_at_once_with_their_kind() -> None:
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["a"]),
             helper.make_node("Mod", ["x", "x"], ["y"], fmod=1)]
    m = _model(nodes, {"w": np.zeros((4, 2, 1, 1), np.float32)}, 17)
    with pytest.raises(UnsupportedError) as e:
        import_proto(m)
    text = "\n".join(e.value.problems)
    assert "ConvTranspose node" in text and "a crossbar op" in text
    assert "Mod node" in text and "a digital op" in text
