"""IR -> ONNX (`compiled.onnx`): the network exactly as imcc maps it, so onnxruntime and the
user's own tools can run it. Factorized convs stay two convs; quantized weights are int8
initializers behind a per-channel DequantizeLinear; activation FakeQuant becomes
QuantizeLinear -> Clip (to the b-bit range) -> DequantizeLinear."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from imcc.ir import Graph, Node, Value
from imcc.ir import ops as O

OPSET = 17


class _Ctx:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.names: set[str] = set()

    def init(self, name: str, arr: np.ndarray) -> str:
        base, i = name, 1
        while name in self.names:
            name = f"{base}_{i}"
            i += 1
        self.names.add(name)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op_type: str, ins: list[str], outs: list[str], name: str, **attrs: object) -> None:
        self.nodes.append(helper.make_node(op_type, ins, outs, name=name, **attrs))


def _weight(ctx: _Ctx, node: Node, v: Value) -> str:
    """The weight as int8 + DequantizeLinear when quantized, else a float initializer."""
    assert v.data is not None
    wq = node.wquant
    if wq is None:
        return ctx.init(v.name, v.data)
    q = ctx.init(v.name + "_q", wq.q.astype(np.int8))
    s = ctx.init(v.name + "_scale", wq.scale.astype(np.float32))
    out = v.name + "_dq"
    ctx.node("DequantizeLinear", [q, s], [out], node.name + "/dq_w", axis=0)
    return out


def _vname(ctx: _Ctx, v: Value) -> str:
    if v.data is not None:
        return ctx.init(v.name, v.data) if v.name not in ctx.names else v.name
    return v.name


def _export_node(ctx: _Ctx, n: Node) -> None:
    op, out, nm = n.op, n.output.name, n.name
    if isinstance(op, O.Conv):
        ins = [n.inputs[0].name, _weight(ctx, n, n.inputs[1])]
        if len(n.inputs) > 2:
            ins.append(_vname(ctx, n.inputs[2]))
        ctx.node("Conv", ins, [out], nm, kernel_shape=list(op.kernel), strides=list(op.stride),
                 pads=[op.pads[0], op.pads[1], op.pads[2], op.pads[3]],
                 dilations=list(op.dilation), group=op.group)
    elif isinstance(op, O.Linear):
        x = n.inputs[0]
        w = _weight(ctx, n, n.inputs[1])
        if x.type.rank == 2:
            ins = [x.name, w] + ([_vname(ctx, n.inputs[2])] if len(n.inputs) > 2 else [])
            ctx.node("Gemm", ins, [out], nm, transB=1)
        else:
            wt = nm + "/wT"
            ctx.node("Transpose", [w], [wt], nm + "/transpose_w", perm=[1, 0])
            if len(n.inputs) > 2:
                mm = nm + "/matmul"
                ctx.node("MatMul", [x.name, wt], [mm], nm + "/mm")
                ctx.node("Add", [mm, _vname(ctx, n.inputs[2])], [out], nm)
            else:
                ctx.node("MatMul", [x.name, wt], [out], nm)
    elif isinstance(op, O.FakeQuant):
        from imcc.passes.quantize import fakequant_onnx_nodes

        nodes, inits = fakequant_onnx_nodes(nm, n.inputs[0].name, out, op)
        ctx.nodes.extend(nodes)
        for t in inits:
            ctx.names.add(t.name)
        ctx.inits.extend(inits)
    elif isinstance(op, O.Affine):
        x, sc, sh = n.inputs
        assert sc.data is not None and sh.data is not None
        shp = (-1,) + (1,) * (x.type.rank - 2)
        m = nm + "/mul"
        ctx.node("Mul", [x.name, ctx.init(sc.name, sc.data.reshape(shp))], [m], nm + "/scale")
        ctx.node("Add", [m, ctx.init(sh.name, sh.data.reshape(shp))], [out], nm)
    elif isinstance(op, O.Clip):
        ins = [n.inputs[0].name,
               "" if op.min is None else ctx.init(nm + "/min", np.array(op.min, np.float32)),
               "" if op.max is None else ctx.init(nm + "/max", np.array(op.max, np.float32))]
        ctx.node("Clip", ins, [out], nm)
    elif isinstance(op, (O.MaxPool, O.AveragePool)):
        attrs: dict[str, object] = dict(kernel_shape=list(op.kernel), strides=list(op.stride),
                                        pads=list(op.pads), ceil_mode=int(op.ceil_mode))
        if isinstance(op, O.MaxPool):
            attrs["dilations"] = list(op.dilation)
        else:
            attrs["count_include_pad"] = int(op.count_include_pad)
        ctx.node(op.kind, [n.inputs[0].name], [out], nm, **attrs)
    elif isinstance(op, O.Pad):
        ins = [n.inputs[0].name, ctx.init(nm + "/pads", np.array(op.pads, np.int64))]
        if op.mode == "constant":
            ins.append(ctx.init(nm + "/value", np.array(op.value, np.float32)))
        ctx.node("Pad", ins, [out], nm, mode=op.mode)
    elif isinstance(op, O.Slice):
        ends = [e if e >= 0 else -(1 << 62) for e in op.ends]
        ins = [n.inputs[0].name] + [ctx.init(f"{nm}/{k}", np.array(v, np.int64)) for k, v in
                                    (("starts", op.starts), ("ends", ends), ("axes", op.axes),
                                     ("steps", op.steps))]
        ctx.node("Slice", ins, [out], nm)
    elif isinstance(op, O.Reshape):
        shape = ctx.init(nm + "/shape", np.array((-1,) + op.sample_shape, np.int64))
        ctx.node("Reshape", [n.inputs[0].name, shape], [out], nm)
    elif isinstance(op, O.Concat):
        ctx.node("Concat", [_vname(ctx, v) for v in n.inputs], [out], nm, axis=op.axis)
    elif isinstance(op, O.Transpose):
        ctx.node("Transpose", [n.inputs[0].name], [out], nm, perm=list(op.perm))
    elif isinstance(op, O.Softmax):
        ctx.node("Softmax", [n.inputs[0].name], [out], nm, axis=op.axis)
    elif isinstance(op, O.LeakyRelu):
        ctx.node("LeakyRelu", [n.inputs[0].name], [out], nm, alpha=op.alpha)
    else:
        # Ops whose ONNX form has the same name, inputs and no attributes.
        ctx.node(op.kind, [_vname(ctx, v) for v in n.inputs], [out], nm)


def _vi(v: Value) -> onnx.ValueInfoProto:
    dims = ["N" if d is None else d for d in v.type.shape]
    return helper.make_tensor_value_info(v.name, helper.np_dtype_to_tensor_dtype(
        v.type.dtype.numpy), dims)


def to_onnx(graph: Graph) -> onnx.ModelProto:
    ctx = _Ctx()
    for n in graph.nodes:
        _export_node(ctx, n)
    g = helper.make_graph(ctx.nodes, graph.name, [_vi(v) for v in graph.inputs],
                          [_vi(v) for v in graph.outputs], initializer=ctx.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="imcc")
    model.ir_version = 8  # readable by onnxruntime releases from 1.14 on
    return model


def serialize(graph: Graph) -> bytes:
    return to_onnx(graph).SerializeToString(deterministic=True)


__all__ = ["to_onnx", "serialize", "OPSET", "TensorProto"]
