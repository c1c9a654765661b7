"""IR -> ONNX (`compiled.onnx`): the network exactly as imcc maps it, so onnxruntime and the
user's own tools can run it. Factorized convs stay two convs.

**Activations.** A FakeQuant becomes ``Clip (to the b-bit range) -> QuantizeLinear ->
DequantizeLinear`` (:func:`fakequant_onnx_nodes`), bit-exact with ``FakeQuant.compute``.
Its integer levels are held in the smallest QDQ integer type that fits them: int8/uint8 up
to 8 bits (opset 13), int16/uint16 from 9 to 16 bits (opset 21).

**Crossbar layers** run on the integer levels, the crossbar's own arithmetic::

    levels(x) = DequantizeLinear(QuantizeLinear output, scale 1)      (float32 integers)
    levels(W) = DequantizeLinear(int8 / int16 weight levels, scale 1)
    y         = Conv|Gemm|MatMul(levels(x), levels(W)) * (x scale * W scale) + bias

Integer levels wider than int8 are kept as int16 initializers + DequantizeLinear (opset
21), not as float32 constants: the file stays a QDQ model whose integer types say what
the crossbar holds, and DequantizeLinear with scale 1 yields the integers exactly (any
integer below 2^24 is a float32). A Linear on an N-D input (MatMul) gets the same lowering
as Gemm and Conv.

**Exactness of the integer sums.** A sum of integer products is exact in float32, in any
summation order, while every partial sum stays below 2^24. Per layer the exporter bounds
``max over outputs of sum |levels(W)| * max |levels(x)|``; below 2^24 the conv/matmul runs
in float32. Above (e.g. 16-bit activations, or 12-bit weights and activations, at
realistic fan-in) it accumulates in float64, exact below 2^53, and casts the sum to
float32 once: Gemm/MatMul in double; a Conv (onnxruntime's CPU Conv is float-only) as an
exact float32 patch gather (a depthwise Conv with one-hot kernels: every output is one
input level) followed by a double MatMul with the weight levels. The simulator
(`imcc.sim.simulator`) switches to float64 above the same bound and also casts once, so
both are exact and agree bit for bit before the common float32 scale and bias.

**Opset.** The model declares the highest opset its nodes need: 17 as a baseline, 19 for a
``wrap`` Pad, 21 when an int16/uint16 QuantizeLinear/DequantizeLinear is emitted; its IR
version is the lowest that opset allows (8 for 17, 9 for 19, 10 for 21; onnxruntime reads
IR 10 from release 1.17 on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from imcc.ir import Graph, Node, Value
from imcc.ir import ops as O

BASE_OPSET = 17
EXACT_F32 = 1 << 24  # integer sums below this are exact in float32
MAX_LEVEL_BITS = 16  # the widest integer levels a QDQ type here holds


def level_type(bits: int, signed: bool) -> tuple[type[np.integer], int]:
    """The QDQ integer type holding ``bits``-bit levels, and the lowest opset whose
    QuantizeLinear/DequantizeLinear accepts it."""
    if not 1 <= bits <= MAX_LEVEL_BITS:
        raise ValueError(f"{bits}-bit levels have no ONNX QDQ type here (1 to "
                         f"{MAX_LEVEL_BITS} bits)")
    if bits <= 8:
        return (np.int8 if signed else np.uint8), 13
    return (np.int16 if signed else np.uint16), 21


def fakequant_min_opset(fq: O.FakeQuant) -> int:
    """Lowest ONNX opset at which :func:`fakequant_onnx_nodes` is valid: 13 for <= 8 bits
    (int8/uint8), 21 above (int16/uint16 QuantizeLinear)."""
    return level_type(fq.bits, fq.signed)[1]


def fakequant_levels_name(name: str) -> str:
    """The tensor holding the integer levels (the QuantizeLinear output) of the FakeQuant
    exported by ``fakequant_onnx_nodes(name, ...)``."""
    return f"{name}_int"


def fakequant_onnx_nodes(name: str, x_name: str, out_name: str, fq: O.FakeQuant,
                         ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """ONNX nodes computing ``out = FakeQuant(x)`` exactly (checked against onnxruntime
    at all graph-optimization levels)::

        Clip(x, qmin*scale, qmax*scale) -> QuantizeLinear(scale, zp=0) -> DequantizeLinear

    The b-bit range is enforced by the float Clip *before* quantizing: QuantizeLinear only
    saturates to the full 8/16-bit range, and onnxruntime has no integer Clip for 16-bit
    types. This is exact: the clip bounds are float32 products whose quotient by the scale
    rounds back to qmin/qmax, and float division is monotone, so clipping x and then
    rounding x/scale equals rounding and then clipping to [qmin, qmax]. onnxruntime divides
    by the float32 scale and rounds half to even, like ``FakeQuant.compute``.

    The zero point is 0 and typed int8/uint8 for <= 8 bits, int16/uint16 above (opset 21;
    see :func:`fakequant_min_opset`). Initializer and intermediate names start with
    ``name``; the integer levels are :func:`fakequant_levels_name` ``(name)``.

    To reproduce a whole compiled graph exactly, run onnxruntime with the session config
    entry ``session.disable_quant_qdq = "1"`` (or ``ORT_DISABLE_ALL``): from
    ``ORT_ENABLE_BASIC`` on, its QDQ transformers re-quantize a float Conv weight/bias fed
    by a DequantizeLinear to int8/int32 per tensor, or fuse QLinearConv, which moves
    outputs by a quantization step (observed with onnxruntime 1.32).
    """
    lo, hi = fq.qrange
    s = np.float32(fq.scale)
    zp_type, _ = level_type(fq.bits, fq.signed)
    scale_n, zp_n, lo_n, hi_n = (f"{name}_scale", f"{name}_zero_point", f"{name}_min",
                                 f"{name}_max")
    inits = [
        numpy_helper.from_array(np.array(s, dtype=np.float32), scale_n),
        numpy_helper.from_array(np.array(0, dtype=zp_type), zp_n),
        numpy_helper.from_array(np.array(np.float32(lo) * s, dtype=np.float32), lo_n),
        numpy_helper.from_array(np.array(np.float32(hi) * s, dtype=np.float32), hi_n),
    ]
    clipped, q = f"{name}_clipped", fakequant_levels_name(name)
    nodes = [
        helper.make_node("Clip", [x_name, lo_n, hi_n], [clipped], name=f"{name}_clip"),
        helper.make_node("QuantizeLinear", [clipped, scale_n, zp_n], [q],
                         name=f"{name}_quantize"),
        helper.make_node("DequantizeLinear", [q, scale_n, zp_n], [out_name],
                         name=f"{name}_dequantize"),
    ]
    return nodes, inits


# Initializers at least this large are streamed by `write_onnx`, not built as protos.
STREAM_BYTES = 1 << 16


class _Ctx:
    def __init__(self, stream: bool = False) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        # With `stream`: the large initializers as (name, array), written by `write_onnx`.
        self.stream = stream
        self.large: list[tuple[str, np.ndarray]] = []
        self.names: set[str] = set()
        self.opset = BASE_OPSET
        # FakeQuant output name -> (FakeQuant node name, its op): where the levels are.
        self.fakequants: dict[str, tuple[str, O.FakeQuant]] = {}

    def need(self, opset: int) -> None:
        self.opset = max(self.opset, opset)

    def init(self, name: str, arr: np.ndarray) -> str:
        base, i = name, 1
        while name in self.names:
            name = f"{base}_{i}"
            i += 1
        self.names.add(name)
        a = np.ascontiguousarray(arr)
        if self.stream and a.nbytes >= STREAM_BYTES and a.dtype.kind in "biuf":
            self.large.append((name, a))
        else:
            self.inits.append(numpy_helper.from_array(a, name))
        return name

    def node(self, op_type: str, ins: list[str], outs: list[str], name: str,
             **attrs: Any) -> None:
        self.nodes.append(helper.make_node(op_type, ins, outs, name=name, **attrs))


def _weight_q(ctx: _Ctx, name: str, wq_bits: int, q: np.ndarray) -> str:
    """The weight levels as an int8/int16 initializer (symmetric: signed)."""
    dt, opset = level_type(wq_bits, True)
    ctx.need(opset)
    return ctx.init(name, q.astype(dt, copy=False))


def _weight(ctx: _Ctx, node: Node, v: Value) -> str:
    """The weight as integer levels + DequantizeLinear when quantized, else a float
    initializer."""
    assert v.data is not None
    wq = node.wquant
    if wq is None:
        return ctx.init(v.name, v.data)
    q = _weight_q(ctx, v.name + "_q", wq.bits, wq.q)
    s = ctx.init(v.name + "_scale", wq.scale.astype(np.float32))
    out = v.name + "_dq"
    ctx.node("DequantizeLinear", [q, s], [out], node.name + "/dq_w", axis=0)
    return out


def _vname(ctx: _Ctx, v: Value) -> str:
    if v.data is not None:
        return ctx.init(v.name, v.data) if v.name not in ctx.names else v.name
    return v.name


def _int_input(ctx: _Ctx, n: Node) -> tuple[str, O.FakeQuant] | None:
    """For a quantized crossbar node fed by a FakeQuant: the integer levels of its input as
    float (DequantizeLinear with scale 1), the values the crossbar rows are driven with,
    and that FakeQuant."""
    found = ctx.fakequants.get(n.inputs[0].name)
    if n.wquant is None or found is None:
        return None
    fq_name, fq = found
    out = f"{fq_name}_levels"
    if out not in ctx.names:
        ctx.names.add(out)
        one = ctx.init(f"{fq_name}_one", np.array(1.0, np.float32))
        ctx.node("DequantizeLinear", [fakequant_levels_name(fq_name), one], [out],
                 f"{fq_name}/levels")
    return out, fq


def sum_bound(q: np.ndarray, fq: O.FakeQuant) -> int:
    """An upper bound on |partial sums| of a crossbar layer on integer levels: the largest
    sum of |weight levels| over one output's fan-in times the largest |input level|."""
    rows = q.reshape(q.shape[0], -1)
    # In blocks of rows: a whole int64 copy of VGG-11's 103M-level classifier is 822 MB.
    step = max(1, (1 << 20) // max(1, rows.shape[1]))
    per_out = np.concatenate([np.abs(rows[i:i + step].astype(np.int64)).sum(axis=1)
                              for i in range(0, rows.shape[0], step)] or [np.zeros(0, np.int64)])
    lo, hi = fq.qrange
    return int(per_out.max(initial=0)) * max(abs(lo), abs(hi))


def _cast(ctx: _Ctx, x: str, to: int, out: str, name: str) -> str:
    ctx.node("Cast", [x], [out], name, to=to)
    return out


def _crossbar_exact(ctx: _Ctx, n: Node, x_levels: str, fq: O.FakeQuant) -> None:
    """y = (levels(x) (*) levels(W)) * out_scale + bias: the crossbar's own arithmetic, with
    the integer sums exact (see the module docstring), so onnxruntime and the simulator
    agree bit for bit."""
    wq = n.wquant
    assert wq is not None
    op, out, nm = n.op, n.output.name, n.name
    wname = n.inputs[1].name
    rank = n.inputs[0].type.rank
    wide = sum_bound(wq.q, fq) >= EXACT_F32
    matmul = isinstance(op, O.Linear) and rank != 2
    q = _weight_q(ctx, wname + "_q", wq.bits, wq.q.T if matmul else wq.q)
    w = wname + "_levels"
    ctx.node("DequantizeLinear", [q, ctx.init(wname + "_one", np.array(1.0, np.float32))], [w],
             nm + "/w_levels")
    acc = nm + "/acc"
    if isinstance(op, O.Conv):
        conv = dict(kernel_shape=list(op.kernel), strides=list(op.stride), pads=list(op.pads),
                    dilations=list(op.dilation))
        if not wide:
            ctx.node("Conv", [x_levels, w], [acc], nm, group=op.group, **conv)
        else:
            _conv_float64(ctx, n, op, x_levels, w, acc, conv)
        shp: tuple[int, ...] = (-1, 1, 1)
    else:
        xs, ws, a = x_levels, w, acc
        if wide:
            xs = _cast(ctx, x_levels, TensorProto.DOUBLE, nm + "/x_f64", nm + "/x_to_f64")
            ws = _cast(ctx, w, TensorProto.DOUBLE, nm + "/w_f64", nm + "/w_to_f64")
            a = nm + "/acc_f64"
        if matmul:
            ctx.node("MatMul", [xs, ws], [a], nm)
        else:
            ctx.node("Gemm", [xs, ws], [a], nm, transB=1)
        if wide:
            _cast(ctx, a, TensorProto.FLOAT, acc, nm + "/acc_to_f32")
        shp = (-1,)
    out_scale = (wq.scale.astype(np.float32) * np.float32(fq.scale)).astype(np.float32)
    scaled = nm + "/scaled" if len(n.inputs) > 2 else out
    ctx.node("Mul", [acc, ctx.init(nm + "/out_scale", out_scale.reshape(shp))], [scaled],
             nm + "/scale")
    if len(n.inputs) > 2:
        b = n.inputs[2].data
        assert b is not None
        ctx.node("Add", [scaled, ctx.init(nm + "/bias", b.astype(np.float32).reshape(shp))],
                 [out], nm + "/bias_add")


def _conv_float64(ctx: _Ctx, n: Node, op: O.Conv, x_levels: str, w_levels: str, acc: str,
                  conv: dict[str, Any]) -> None:
    """A Conv on integer levels accumulated in float64: gather each output pixel's
    receptive field exactly in float32 (a depthwise Conv whose kernels are one-hot, so each
    output is one input level or a padding zero), then a double MatMul per group."""
    nm = n.name
    c = n.inputs[0].type.shape[1]
    oc, ho, wo = n.output.type.shape[1:]
    assert isinstance(c, int) and isinstance(oc, int) and isinstance(ho, int) \
        and isinstance(wo, int)
    kh, kw = op.kernel
    g = op.group
    taps = kh * kw
    onehot = np.tile(np.eye(taps, dtype=np.float32).reshape(taps, 1, kh, kw), (c, 1, 1, 1))
    patches = nm + "/patches"
    ctx.node("Conv", [x_levels, ctx.init(nm + "/gather", onehot)], [patches], nm + "/gather",
             group=c, **conv)
    p64 = _cast(ctx, patches, TensorProto.DOUBLE, nm + "/patches_f64", nm + "/patches_to_f64")
    k = c // g * taps
    pg = nm + "/patches_g"
    ctx.node("Reshape", [p64, ctx.init(nm + "/patches_shape", np.array([-1, g, k, ho * wo],
                                                                        np.int64))],
             [pg], nm + "/patches_reshape")
    w64 = _cast(ctx, w_levels, TensorProto.DOUBLE, nm + "/w_f64", nm + "/w_to_f64")
    wg = nm + "/w_g"
    ctx.node("Reshape", [w64, ctx.init(nm + "/w_shape", np.array([g, oc // g, k], np.int64))],
             [wg], nm + "/w_reshape")
    mm = nm + "/acc_g"
    ctx.node("MatMul", [wg, pg], [mm], nm)   # (g, OCg, K) @ (B, g, K, HW) -> (B, g, OCg, HW)
    a64 = nm + "/acc_f64"
    ctx.node("Reshape", [mm, ctx.init(nm + "/acc_shape", np.array([-1, oc, ho, wo], np.int64))],
             [a64], nm + "/acc_reshape")
    _cast(ctx, a64, TensorProto.FLOAT, acc, nm + "/acc_to_f32")


def _export_node(ctx: _Ctx, n: Node) -> None:
    op, out, nm = n.op, n.output.name, n.name
    levels = _int_input(ctx, n) if op.crossbar else None
    if levels is not None:
        _crossbar_exact(ctx, n, *levels)
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
        nodes, inits = fakequant_onnx_nodes(nm, n.inputs[0].name, out, op)
        ctx.need(fakequant_min_opset(op))
        ctx.fakequants[out] = (nm, op)
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
        if op.mode == "wrap":
            ctx.need(19)  # Pad-19 added mode "wrap"
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
    elif isinstance(op, O.HardSigmoid):
        ctx.node("HardSigmoid", [n.inputs[0].name], [out], nm, alpha=op.alpha, beta=op.beta)
    elif isinstance(op, O.Gelu):
        ctx.need(20)  # Gelu is an ONNX op from opset 20
        ctx.node("Gelu", [n.inputs[0].name], [out], nm, approximate=op.approximate)
    elif isinstance(op, O.LayerNorm):
        ctx.node("LayerNormalization", [_vname(ctx, v) for v in n.inputs], [out], nm,
                 axis=op.axis, epsilon=op.epsilon)
    elif isinstance(op, (O.ReduceMean, O.ReduceSum, O.ReduceMax)):
        ctx.need(18)  # axes as an input (ReduceSum from 13, the others from 18)
        axes = ctx.init(nm + "/axes", np.array(op.axes, np.int64))
        ctx.node(op.kind, [n.inputs[0].name, axes], [out], nm, keepdims=int(op.keepdims))
    elif isinstance(op, O.Gather):
        ind = ctx.init(nm + "/indices", np.array(op.indices, np.int64))
        if op.scalar:  # ctx.init stores 1-D arrays; a scalar index also removes the axis
            ctx.node("Gather", [n.inputs[0].name, ind], [nm + "/gathered"], nm + "/gather",
                     axis=op.axis)
            ctx.node("Squeeze", [nm + "/gathered", ctx.init(nm + "/axis", np.array(
                [op.axis], np.int64))], [out], nm)
        else:
            ctx.node("Gather", [n.inputs[0].name, ind], [out], nm, axis=op.axis)
    elif isinstance(op, O.Expand):
        # (batch of the last input,) + sample_shape, the batch read at run time.
        ref_shape = nm + "/ref_shape"
        ctx.node("Shape", [n.inputs[-1].name], [ref_shape], nm + "/shape", start=0, end=1)
        full = nm + "/full_shape"
        ctx.node("Concat", [ref_shape, ctx.init(nm + "/sample_shape",
                                                np.array(op.sample_shape, np.int64))], [full],
                 nm + "/concat", axis=0)
        ctx.node("Expand", [_vname(ctx, n.inputs[0]), full], [out], nm)
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
    return _build(graph, _Ctx())


def _build(graph: Graph, ctx: _Ctx) -> onnx.ModelProto:
    for n in graph.nodes:
        _export_node(ctx, n)
    g = helper.make_graph(ctx.nodes, graph.name, [_vi(v) for v in graph.inputs],
                          [_vi(v) for v in graph.outputs], initializer=ctx.inits)
    opset = [helper.make_opsetid("", ctx.opset)]
    model = helper.make_model(g, opset_imports=opset, producer_name="imcc")
    # The lowest IR version the opset allows, so older onnxruntime releases still read it.
    model.ir_version = helper.find_min_ir_version_for(opset)
    return model


def serialize(graph: Graph) -> bytes:
    return to_onnx(graph).SerializeToString(deterministic=True)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


# Protobuf keys (field number << 3 | 2, length-delimited) of the fields written by hand.
_MODEL_GRAPH = _varint(7 << 3 | 2)        # ModelProto.graph
_GRAPH_INITIALIZER = _varint(5 << 3 | 2)  # GraphProto.initializer
_TENSOR_RAW_DATA = _varint(9 << 3 | 2)    # TensorProto.raw_data


def write_onnx(graph: Graph, f: IO[bytes],
               edit: Callable[[onnx.ModelProto], None] | None = None) -> None:
    """Write `to_onnx(graph)` (after `edit`, e.g. metadata) to `f` without building it in
    memory: the model without its large initializers, then each large initializer as one
    more occurrence of ModelProto.graph holding only it. A protobuf parser merges repeated
    occurrences of a message field (the graph) and appends repeated fields (its
    initializers), so every reader (onnx.load, onnxruntime) sees the same model, with the
    large initializers last; the bytes are deterministic. Each tensor's data is written
    straight from its array: the peak is the model skeleton, not a proto copy plus a
    serialized copy of every weight (VGG-11: 531 MB each)."""
    ctx = _Ctx(stream=True)
    model = _build(graph, ctx)
    if edit is not None:
        edit(model)
    f.write(model.SerializeToString(deterministic=True))
    for name, a in ctx.large:
        meta = onnx.TensorProto(name=name, dims=a.shape,
                                data_type=helper.np_dtype_to_tensor_dtype(a.dtype))
        head = meta.SerializeToString(deterministic=True)
        data = np.ascontiguousarray(a, a.dtype.newbyteorder("<")).reshape(-1).view(np.uint8)
        raw = _TENSOR_RAW_DATA + _varint(data.size)
        tensor = len(head) + len(raw) + data.size
        init = _GRAPH_INITIALIZER + _varint(tensor)
        f.write(_MODEL_GRAPH + _varint(len(init) + tensor))
        f.write(init + head + raw)
        f.write(data.data)


__all__ = ["to_onnx", "serialize", "write_onnx", "BASE_OPSET", "fakequant_onnx_nodes",
           "fakequant_min_opset", "fakequant_levels_name", "level_type", "sum_bound"]
