"""IR -> ONNX (`compiled.onnx`): the network exactly as imcc maps it, so onnxruntime and the
user's own tools can run it. Factorized convs stay two convs. An activation FakeQuant
becomes Clip (to the b-bit range) -> QuantizeLinear -> DequantizeLinear. A quantized
crossbar layer runs on the integer levels: DequantizeLinear(scale 1) of its input's
QuantizeLinear and of its int8 weights, then Mul(input scale x weight scale) and Add(bias),
the arithmetic of the crossbar and its digital post-processing."""

from __future__ import annotations

from typing import Any

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

    def node(self, op_type: str, ins: list[str], outs: list[str], name: str,
             **attrs: Any) -> None:
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


def _int_input(ctx: _Ctx, n: Node) -> str | None:
    """For a quantized crossbar node fed by a FakeQuant: the integer levels of its input as
    float (DequantizeLinear with scale 1), the values the crossbar rows are driven with."""
    fq = n.inputs[0].producer
    if n.wquant is None or fq is None or not isinstance(fq.op, O.FakeQuant):
        return None
    name = f"{fq.name}_int"  # the QuantizeLinear output of fakequant_onnx_nodes
    out = f"{fq.name}_levels"
    if out not in ctx.names:
        ctx.names.add(out)
        one = ctx.init(f"{fq.name}_one", np.array(1.0, np.float32))
        ctx.node("DequantizeLinear", [name, one], [out], f"{fq.name}/levels")
    return out


def _crossbar_exact(ctx: _Ctx, n: Node, x_levels: str) -> None:
    """y = (levels(x) (*) levels(W)) * out_scale + bias: the crossbar's own arithmetic. The
    conv of integer-valued floats is exact in float32 whatever the summation order, so
    onnxruntime and the simulator agree bit for bit up to the final scale and bias."""
    assert n.wquant is not None
    fq = n.inputs[0].producer
    assert fq is not None and isinstance(fq.op, O.FakeQuant)
    op, out, nm = n.op, n.output.name, n.name
    wname = n.inputs[1].name
    q = ctx.init(wname + "_q", n.wquant.q.astype(np.int8 if n.wquant.bits <= 8 else np.int32))
    w = wname + "_levels"
    ctx.node("DequantizeLinear", [q, ctx.init(wname + "_one", np.array(1.0, np.float32))], [w],
             nm + "/w_levels")
    acc = nm + "/acc"
    if isinstance(op, O.Conv):
        ctx.node("Conv", [x_levels, w], [acc], nm, kernel_shape=list(op.kernel),
                 strides=list(op.stride), pads=list(op.pads), dilations=list(op.dilation),
                 group=op.group)
        shp: tuple[int, ...] = (-1, 1, 1)
    else:
        ctx.node("Gemm", [x_levels, w], [acc], nm, transB=1)
        shp = (-1,)
    out_scale = (n.wquant.scale.astype(np.float32) * np.float32(fq.op.scale)).astype(np.float32)
    scaled = nm + "/scaled" if len(n.inputs) > 2 else out
    ctx.node("Mul", [acc, ctx.init(nm + "/out_scale", out_scale.reshape(shp))], [scaled],
             nm + "/scale")
    if len(n.inputs) > 2:
        b = n.inputs[2].data
        assert b is not None
        ctx.node("Add", [scaled, ctx.init(nm + "/bias", b.astype(np.float32).reshape(shp))],
                 [out], nm + "/bias_add")


def _export_node(ctx: _Ctx, n: Node) -> None:
    op, out, nm = n.op, n.output.name, n.name
    levels = _int_input(ctx, n) if op.crossbar else None
    if levels is not None and (isinstance(op, O.Conv) or n.inputs[0].type.rank == 2):
        _crossbar_exact(ctx, n, levels)
    elif isinstance(op, O.Conv):
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
        attrs: dict[str, Any] = dict(kernel_shape=list(op.kernel), strides=list(op.stride),
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
