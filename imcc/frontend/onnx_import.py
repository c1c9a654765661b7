"""ONNX -> IR.

Contract: every ONNX node is either folded (all its inputs are constant: evaluated once with
onnx's reference evaluator, which covers the Shape/Gather/Concat/ConstantOfShape/Cast chains
that exporters emit), translated to one typed IR op (Conv, Gemm and MatMul with constant
weights become crossbar `Conv`/`Linear`; the rest are digital ops), or reported. All
unsupported constructs are collected and raised together in one `UnsupportedError`.
Only the batch dimension may be dynamic; every other size must be static.

The IR keeps the batch on axis 0; an ONNX tensor whose batch an exporter moved (attention's
(T, B*heads, d) reshapes) is held as a batch-first IR value plus its `Layout`
(imcc/frontend/layout.py): Transpose/Reshape/Squeeze/Unsqueeze change the layout, the ops
of `_LAYOUT_TRANSLATE` read it, and every other op takes its inputs laid out batch first,
or refuses them saying where the batch is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from imcc.errors import Construct, ModelError, UnsupportedError, UsageError
from imcc.frontend.layout import (
    ONE,
    Layout,
    LayoutError,
    Plan,
    Sym,
    const_to_v,
    plan_merge,
    plan_normal,
    plan_reshape,
    plan_runs,
    sym_prod,
    sym_sizes,
    sym_text,
)
from imcc.frontend.loader import check_onnx, load_onnx, validate_model
from imcc.ir import Graph, TensorType, Value
from imcc.ir import ops as O
from imcc.ir.types import DType

MAX_ELEMENTS = 1 << 28  # refuse tensors that would take gigabytes per sample


class BatchDep:
    """Shape arithmetic that depends on the dynamic batch size: the batch as a symbol.

    ``Shape`` of an activation with a dynamic batch gives its sizes with the batch
    replaced, once by ``B1`` and once by ``B2``; every node reading such a value is folded
    twice, once per substitution. A result equal in both does not depend on the batch and
    is a plain constant (``Shape -> Gather(2) -> Div`` of a channel shuffle); one that
    differs does, and stays a ``BatchDep``. An element equal to ``k * B`` in both is the
    batch times ``k`` (:meth:`batch_factor`), which a Reshape or Expand reads as "the
    batch". ``ref`` is the activation whose batch it is, for an Expand of a constant to
    the batch (a class token). The two values are distinct primes far above any batch
    arithmetic an exporter writes, so an unrelated value never equals ``k * B`` in both."""

    B1, B2 = 1009, 2003

    def __init__(self, v1: np.ndarray, v2: np.ndarray, ref: Value) -> None:
        self.v1, self.v2, self.ref = np.asarray(v1), np.asarray(v2), ref

    def batch_factor(self) -> list[int | None]:
        """Per element (flattened): 0 when it does not depend on the batch, ``k`` when it is
        ``k * B``, None otherwise."""
        out: list[int | None] = []
        for a, b in zip(self.v1.reshape(-1).tolist(), self.v2.reshape(-1).tolist(),
                        strict=True):
            if a == b:
                out.append(0)
            elif isinstance(a, int) and a % self.B1 == 0 and a // self.B1 * self.B2 == b:
                out.append(a // self.B1)
            else:
                out.append(None)
        return out


Operand = Value | np.ndarray | BatchDep  # an activation, a folded constant, batch arithmetic


class _Skip(Exception):
    """A node is unsupported; the reason is collected and import goes on."""

    def __init__(self, construct: Construct | str, sized: bool = False) -> None:
        super().__init__(str(construct))
        # A bare message (no node to group it by) is a construct of its own.
        self.construct = construct if isinstance(construct, Construct) else Construct(construct)
        self.sized = sized  # the check depends on activation sizes (see `_Importer.run`)


_A = onnx.AttributeProto
# The ONNX type of every attribute a translator reads (the same name has the same type in
# every op imcc translates); a model giving another type is malformed.
_ATTR_TYPES: dict[str, int] = {
    **dict.fromkeys(("group", "transA", "transB", "training_mode", "axis", "ceil_mode",
                     "count_include_pad", "storage_order", "allowzero", "is_test", "to",
                     "keepdims", "noop_with_empty_axes", "stash_type", "num_outputs", "start",
                     "end"), _A.INT),
    **dict.fromkeys(("kernel_shape", "strides", "dilations", "pads", "perm", "axes",
                     "starts", "ends", "split"), _A.INTS),
    **dict.fromkeys(("alpha", "beta", "epsilon", "value", "min", "max"), _A.FLOAT),
    **dict.fromkeys(("auto_pad", "mode", "approximate", "equation"), _A.STRING),
}
_REQUIRED_ATTRS: dict[str, tuple[str, ...]] = {
    "Concat": ("axis",), "Cast": ("to",), "MaxPool": ("kernel_shape",),
    "AveragePool": ("kernel_shape",)}
# (fewest, most) inputs of each translated op (optional trailing inputs may be empty).
_ARITY: dict[str, tuple[int, int]] = {
    "Conv": (2, 3), "Gemm": (2, 3), "MatMul": (2, 2), "BatchNormalization": (5, 5),
    "Clip": (1, 3), "Add": (2, 2), "Sub": (2, 2), "Mul": (2, 2), "Div": (2, 2),
    "Pad": (1, 4), "Slice": (1, 5), "Concat": (1, 1 << 30), "Reshape": (2, 2),
    "Squeeze": (1, 2), "Unsqueeze": (1, 2), "Dropout": (1, 3), "Pow": (2, 2),
    "LayerNormalization": (2, 3), "ReduceMean": (1, 2), "ReduceSum": (1, 2),
    "ReduceMax": (1, 2), "Split": (1, 2), "Where": (3, 3), "Expand": (2, 2), "Gather": (2, 2),
    "Einsum": (2, 2)}
# ONNX ops whose weights a crossbar would hold: a model using them is missing a crossbar
# op, not a digital one (the refusal says which).
_CROSSBAR_LIKE = frozenset({"ConvTranspose", "ConvInteger", "QLinearConv", "MatMulInteger",
                            "QLinearMatMul", "DeformConv", "RNN", "LSTM", "GRU"})
# Translated ops that write several outputs themselves (one Slice per Split output), or
# refuse the extra ones with their own reason (LayerNormalization's Mean/InvStdDev).
_MULTI_OUTPUT = frozenset({"MaxPool", "Split", "LayerNormalization"})


def _attrs(im: _Importer, node: onnx.NodeProto) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        want = _ATTR_TYPES.get(a.name)
        if want is not None and a.type != want:
            raise im.fail(node, f"attribute {a.name!r} must be "
                                f"{_A.AttributeType.Name(want)}, got "
                                f"{_A.AttributeType.Name(a.type)}")
        if a.type == _A.UNDEFINED:
            raise im.fail(node, f"attribute {a.name!r} has no type")
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    missing = [n for n in _REQUIRED_ATTRS.get(node.op_type, ()) if n not in out]
    if missing:
        raise im.fail(node, f"required attribute {missing[0]!r} is missing")
    return out


def _pairs(im: _Importer, node: onnx.NodeProto, what: str, v: Any) -> tuple[int, int]:
    """A 2-D attribute (kernel_shape, strides, dilations): exactly two positive values."""
    vals = [int(x) for x in v]
    if len(vals) != 2:
        raise im.fail(node, f"{what} {vals} is not 2-D")
    if min(vals) < 1:
        raise im.fail(node, f"{what} {vals} must be positive")
    return vals[0], vals[1]


class _Importer:
    def __init__(self, model: onnx.ModelProto, name: str,
                 input_shapes: Mapping[str, Sequence[int]] | None = None) -> None:
        self.model = model
        self.input_shapes = dict(input_shapes or {})
        # A dynamic non-batch input size is refused and imported as 1; every size-dependent
        # check after it would only report a cascade of that refusal, so they are counted
        # here instead of reported.
        self.placeholder_sizes = False
        self.skipped_sized = 0
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          0)
        self.g = Graph(name)
        self.env: dict[str, Operand] = {}
        self.problems: list[str | Construct] = []
        self.defined: set[str] = set()  # names defined but unusable (after a problem)
        # Of those, the results of Shape/Size/Constant and of arithmetic on them only.
        self.shape_arith: set[str] = set()
        # Outputs of a Reshape that flattened a batch-1 tensor whole (see _reshape): held
        # as (1, size) per-sample flattens, so only a Gather of constant indices may use one.
        self.flat: set[str] = set()
        self.gather_data = {n.input[0] for n in model.graph.node
                            if n.op_type == "Gather" and n.input}
        # ONNX tensors whose batch is not alone on axis 0: env holds their batch-first IR
        # value, this their layout, and `origin` the node that last moved the batch.
        self.layouts: dict[str, Layout] = {}
        self.origin: dict[str, str] = {}

    # -- helpers
    def fail(self, node: onnx.NodeProto, why: str, sized: bool = False) -> _Skip:
        """A node's refusal; ``sized``: the check depends on activation sizes, so it is
        meaningless while an input has a placeholder size."""
        name = node.name or (node.output[0] if node.output else "")
        return _Skip(Construct(f"{node.op_type} node {name!r}: {why}", node.op_type, name, why),
                     sized)

    def const(self, node: onnx.NodeProto, idx: int, what: str) -> np.ndarray | None:
        if idx >= len(node.input) or not node.input[idx]:
            return None
        v = self.env[node.input[idx]]
        if isinstance(v, Value):
            raise self.fail(node, f"{what} must be a constant (initializer) to be mapped")
        if isinstance(v, BatchDep):
            raise self.fail(node, f"{what} depends on the batch size")
        return v

    def act(self, node: onnx.NodeProto, idx: int = 0) -> Value:
        if idx >= len(node.input) or not node.input[idx]:
            raise self.fail(node, f"input {idx} is missing")
        v = self.env[node.input[idx]]
        if isinstance(v, BatchDep):
            raise self.fail(node, f"input {idx} is shape arithmetic that depends on the batch "
                                  "size")
        if isinstance(v, np.ndarray):
            return self.g.const(node.input[idx] or "const", v.astype(np.float32)
                                if v.dtype == np.float64 else v)
        return v

    def operand_value(self, name: str, node: onnx.NodeProto | None = None) -> Value:
        v = self.env[name]
        if isinstance(v, BatchDep):
            raise _Skip(f"{node.op_type} node {node.name or node.output[0]!r}: operand "
                        f"{name!r} depends on the batch size" if node is not None else
                        f"{name!r} depends on the batch size")
        return v if isinstance(v, Value) else self.g.const(name, v)

    def emit(self, op: O.Op, ins: list[Value], node: onnx.NodeProto,
             out_name: str | None = None, name: str | None = None) -> Value:
        """Add ``op`` for ``node`` (IR node ``name``, default the ONNX node's)."""
        try:
            n = self.g.add(op, ins, name or node.name or node.output[0],
                           out_names=[out_name or node.output[0]])
        except UnsupportedError as exc:  # shape inference refused the model's shapes
            raise self.fail(node, "; ".join(exc.problems), sized=True) from exc
        t = n.output.type
        size = math.prod(d for d in t.shape[1:] if d is not None)
        if size > MAX_ELEMENTS:
            raise self.fail(node, f"output of {size} elements per sample is too large",
                            sized=True)
        return n.output

    # -- layouts (see imcc/frontend/layout.py)
    def layout(self, name: str) -> Layout:
        lay = self.layouts.get(name)
        if lay is not None:
            return lay
        v = self.env[name]
        assert isinstance(v, Value)
        return Layout.identity(v.type.rank)

    def laid(self, node: onnx.NodeProto, idx: int = 0) -> tuple[Value, Layout]:
        """Input ``idx`` as (batch-first IR value, the ONNX tensor's layout)."""
        v = self.act(node, idx)
        return v, self.layouts.get(node.input[idx]) or Layout.identity(v.type.rank)

    def relayout(self, node: onnx.NodeProto, v: Value, plan: Plan) -> Value:
        """Emit a plan's IR Transpose and Reshape (both keep the batch on axis 0)."""
        base = (node.name or node.output[0]) + "/relayout"
        if plan.perm is not None:
            v = self.emit(O.Transpose(plan.perm), [v], node, out_name=base, name=base)
        if plan.shape is not None:
            shape = tuple(int(k) for k, _ in plan.shape[1:])
            assert all(e == 0 for _, e in plan.shape[1:])  # only the batch is symbolic
            v = self.emit(O.Reshape(shape), [v], node, out_name=base, name=base)
        return v

    def where_batch(self, name: str) -> str:
        v = self.env[name]
        assert isinstance(v, Value)
        lay = self.layout(name)
        by = self.origin.get(name)
        vs = sym_sizes(v.type.shape)
        return (f"{name!r} of shape {lay.describe(vs)} has the batch {_batch_place(lay, vs)}"
                + (f" (since {by})" if by else ""))

    def normal(self, node: onnx.NodeProto | None, name: str) -> Value:
        """The ONNX tensor ``name`` with the batch alone on axis 0, as the IR holds every
        value: re-laid out (and cached), or refused saying where the batch is."""
        v = self.env[name]
        assert isinstance(v, Value)
        lay = self.layouts.get(name)
        if lay is None:
            return v
        vs = sym_sizes(v.type.shape)
        try:
            plan, kb = plan_normal(lay, vs)
        except LayoutError as exc:
            if node is None:
                raise _Skip(f"{self.where_batch(name)}; an output needs the batch alone on "
                            "axis 0") from exc
            raise self.fail(node, f"input {self.where_batch(name)}; {node.op_type} takes it "
                                  "only with the batch alone on axis 0") from exc
        if kb != 0:
            if node is None:
                raise _Skip(f"{self.where_batch(name)}; an output needs the batch on axis 0")
            raise self.fail(node, f"input {self.where_batch(name)}; {node.op_type} takes it "
                                  "only with the batch on axis 0")
        at = node if node is not None else helper.make_node("Identity", [name], [name],
                                                              name=f"output {name}")
        out = self.relayout(at, v, plan)
        self.env[name] = out
        del self.layouts[name]
        return out

    def set_out(self, node: onnx.NodeProto, name: str, v: Value, lay: Layout) -> None:
        self.env[name] = v
        if lay.is_identity(v.type.rank):
            self.layouts.pop(name, None)
            return
        self.layouts[name] = lay
        self.origin[name] = next((self.origin[n] for n in node.input if n in self.origin),
                                 f"{node.op_type} node {node.name or node.output[0]!r}")

    # -- main loop
    def run(self) -> Graph:
        gp = self.model.graph
        for init in gp.initializer:
            try:
                self.env[init.name] = numpy_helper.to_array(init)
            except Exception as exc:  # noqa: BLE001 - onnx raises many kinds here
                self.problems.append(f"initializer {init.name!r} cannot be read ({exc})")
        inits = {i.name for i in gp.initializer}
        inputs = [inp for inp in gp.input if inp.name not in inits]
        if "" in self.input_shapes:  # `--input-shape 1x3x224x224`: the model's only input
            if len(inputs) != 1:
                raise UsageError(f"--input-shape without NAME=: the model has {len(inputs)} "
                                 "inputs", hint="name them: " + ", ".join(
                                     f"{i.name}=..." for i in inputs))
            self.input_shapes[inputs[0].name] = self.input_shapes.pop("")
        unknown = sorted(set(self.input_shapes) - {inp.name for inp in inputs})
        if unknown:
            raise UsageError(f"--input-shape: the model has no input named "
                             f"{', '.join(map(repr, unknown))}",
                             hint="its inputs: " + ", ".join(repr(i.name) for i in inputs))
        for inp in inputs:
            self.env[inp.name] = self.g.input(inp.name, self._input_type(inp))
        for node in _toposort(gp):
            outs = [o for o in node.output if o]
            try:
                if node.domain not in ("", "ai.onnx"):
                    raise self.fail(node, f"custom domain {node.domain!r}")
                if not outs:
                    raise self.fail(node, "has no outputs")
                missing = [i for i in node.input if i and i not in self.env]
                if missing:
                    if any(m in self.defined for m in missing):
                        # Downstream of a reported node: its input is an activation, so it
                        # cannot fold; still report its own op type if unsupported.
                        self.defined.update(outs)
                        # (Shape, Size and Constant are handled before translation, so
                        # they are never an unsupported op type themselves; nor is shape
                        # arithmetic on their results -- a Mod or Range of a Shape --
                        # which would have been folded.)
                        if node.op_type in _PRE_TRANSLATED or all(
                                m in self.shape_arith for m in missing):
                            self.shape_arith.update(outs)
                        elif node.op_type not in _TRANSLATE:
                            raise self.fail(node, _unsupported_op(node.op_type))
                        continue
                    raise self.fail(node, f"input {missing[0]!r} is not defined")
                self._node(node)
            except _Skip as s:
                # The translators validate attributes and operands explicitly; any other
                # exception is a bug in imcc and propagates (the CLI's internal error).
                if s.sized and self.placeholder_sizes:
                    self.skipped_sized += 1
                else:
                    self.problems.append(s.construct)
                self.defined.update(outs)
        self.g.outputs = []
        for o in gp.output:
            if o.name in self.layouts:
                try:
                    self.normal(None, o.name)
                except _Skip as s:
                    self.problems.append(f"graph output {s.construct}")
                    continue
            v = self.env.get(o.name)
            if o.name in self.flat:
                self.problems.append(f"graph output {o.name!r} flattens the batch axis")
            elif isinstance(v, Value):
                self.g.outputs.append(v)
            elif v is not None:
                self.problems.append(f"graph output {o.name!r} is a constant")
        if self.problems:
            hint = ("imcc maps Conv/Gemm/MatMul to crossbars and supports common digital ops; "
                    "see docs/limits.md")
            if self.placeholder_sizes:
                hint = ("fix the sizes with --input-shape NAME=1x3x224x224 (re-exporting "
                        "with a fixed size also works)"
                        + (f"; {self.skipped_sized} size-dependent check"
                           f"{'s' if self.skipped_sized != 1 else ''} skipped until then"
                           if self.skipped_sized else ""))
            raise UnsupportedError(self.problems, hint=hint)
        if not self.g.outputs:
            raise ModelError("the model has no outputs")
        _dead_code(self.g)
        return self.g

    def _input_type(self, inp: onnx.ValueInfoProto) -> TensorType:
        tt = inp.type.tensor_type
        if not inp.type.HasField("tensor_type") or not tt.HasField("shape"):
            self.problems.append(f"graph input {inp.name!r} has no tensor shape")
            return TensorType((None,))
        dims: list[int | None] = []
        given = self.input_shapes.get(inp.name)
        if given is not None and len(given) != len(tt.shape.dim):
            raise UsageError(f"--input-shape {inp.name}={'x'.join(map(str, given))}: the "
                             f"input has {len(tt.shape.dim)} axes, not {len(given)}")
        for i, d in enumerate(tt.shape.dim):
            static = d.HasField("dim_value") and d.dim_value > 0
            if given is not None and i > 0:
                if static and d.dim_value != given[i]:
                    raise UsageError(f"--input-shape {inp.name}: axis {i} is fixed at "
                                     f"{d.dim_value} by the model, not {given[i]}")
                dims.append(int(given[i]))
            elif static:
                dims.append(int(d.dim_value))
            elif i == 0:
                dims.append(None)  # the batch axis stays dynamic whatever --input-shape says
            else:
                self.problems.append(f"graph input {inp.name!r} has a dynamic size on axis {i} "
                                     "(only the batch axis may be dynamic)")
                self.placeholder_sizes = True
                dims.append(1)
        try:
            dt = DType.from_numpy(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except Exception:  # noqa: BLE001 - unknown element types surface as many errors
            self.problems.append(f"graph input {inp.name!r} has an unsupported element type")
            dt = DType.FLOAT32
        if dt not in (DType.FLOAT32, DType.FLOAT64):
            # The program computes every activation in float32 (the simulator casts its
            # feeds), so integer arithmetic (wrap-around, truncating Div) would be wrong.
            self.problems.append(f"graph input {inp.name!r} has element type {dt.value} "
                                 "(only float inputs are supported)")
        return TensorType(tuple(dims), dt)

    def _node(self, node: onnx.NodeProto) -> None:
        ins = [self.env[i] if i else None for i in node.input]
        if node.op_type == "Constant":
            self.env[node.output[0]] = _constant(node)
            return
        flat = [n for k, n in enumerate(node.input)
                if n in self.flat and (k > 0 or node.op_type != "Gather")]
        if flat:
            raise self.fail(node, f"input {flat[0]!r} is a batch-1 tensor flattened whole; "
                                  "only a Gather of constant indices may use one")
        if node.op_type in ("Shape", "Size") and len(ins) == 1 and isinstance(ins[0], Value):
            sizes = self.layout(node.input[0]).sizes(sym_sizes(ins[0].type.shape))
            self.env[node.output[0]] = self._shape_of(node, ins[0], sizes)
            return
        if node.op_type == "Expand" and len(ins) == 2 and isinstance(ins[1], BatchDep) \
                and isinstance(ins[0], np.ndarray):
            self.env[node.output[0]] = _expand_to_batch(self, node, ins[0], ins[1])
            return
        if all(v is None or isinstance(v, np.ndarray | BatchDep) for v in ins) and node.input:
            self._fold(node, ins)
            return
        fn = _TRANSLATE.get(node.op_type)
        if fn is None:
            raise self.fail(node, _unsupported_op(node.op_type))
        moved = [n for n in node.input if n in self.layouts]
        if moved and node.op_type in _LAYOUT_TRANSLATE:
            fn = _LAYOUT_TRANSLATE[node.op_type]
        else:
            for n in moved:
                self.normal(node, n)
        if len([o for o in node.output if o]) > 1 and node.op_type not in _MULTI_OUTPUT:
            raise self.fail(node, "several outputs are not supported")
        lo, hi = _ARITY.get(node.op_type, (1, 1))
        if not lo <= len(node.input) <= hi or not all(node.input[:lo]):
            raise self.fail(node, f"{len(node.input)} inputs ({', '.join(map(repr, node.input))})"
                                  f"; it takes {lo}" + (f" to {hi}" if hi > lo else ""))
        out = fn(self, node, _attrs(self, node))
        if isinstance(out, tuple):  # (batch-first value, the ONNX tensor's layout)
            self.set_out(node, node.output[0], *out)
        elif isinstance(out, list):  # one Value per output (Split)
            for name, v in zip(node.output, out, strict=True):
                if name and v is not None:
                    self.env[name] = v
        else:
            self.env[node.output[0]] = out

    def _shape_of(self, node: onnx.NodeProto, x: Value, sizes: list[Sym]
                  ) -> np.ndarray | BatchDep:
        """Shape/Size of an activation (its ONNX sizes, the batch symbolic): a constant
        when they are static, else the sizes with the batch as a symbol (see
        `BatchDep`)."""
        a = _attrs(self, node)
        dims = list(sizes)
        if node.op_type == "Shape":
            r = len(dims)
            start, end = int(a.get("start", 0)), int(a.get("end", r))
            start, end = (max(0, min(r, v + r if v < 0 else v)) for v in (start, end))
            dims = dims[start:end]
        vals = [np.array([self._dim(d, b) for d in dims], np.int64)
                for b in (BatchDep.B1, BatchDep.B2)]
        if node.op_type == "Size":
            vals = [np.array(int(np.prod(v)), np.int64) for v in vals]
        if np.array_equal(vals[0], vals[1]):
            return vals[0]
        return BatchDep(vals[0], vals[1], x)

    @staticmethod
    def _dim(d: Sym, batch: int) -> int:
        return d[0] * batch ** d[1]

    def _fold(self, node: onnx.NodeProto, ins: list[Any]) -> None:
        deps = [v for v in ins if isinstance(v, BatchDep)]
        if not deps:
            self._fold_once(node, ins)
            return
        # Batch arithmetic: fold once per batch substitution, keep what depends on it.
        if node.op_type in ("ConstantOfShape", "Expand", "Tile", "Range"):
            raise self.fail(node, "a tensor sized by the batch (only shape arithmetic may "
                                  "depend on the batch size)")
        outs = [o for o in node.output if o]
        res: list[list[np.ndarray]] = []
        for k in ("v1", "v2"):
            self._fold_once(node, [getattr(v, k) if isinstance(v, BatchDep) else v
                                   for v in ins])
            res.append([np.asarray(self.env[o]) for o in outs])
        for o, r1, r2 in zip(outs, res[0], res[1], strict=True):
            same = r1.shape == r2.shape and np.array_equal(r1, r2)
            self.env[o] = r1 if same else BatchDep(r1, r2, deps[0].ref)

    def _fold_once(self, node: onnx.NodeProto, ins: list[Any]) -> None:
        from onnx.reference import ReferenceEvaluator

        feeds = {name: v for name, v in zip(node.input, ins, strict=True) if name}
        try:
            # onnx's own helpers and evaluator on the model's node and constants; they
            # raise arbitrary errors on malformed ones.
            g = helper.make_graph(
                [node], "fold",
                [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype),
                                               v.shape) for n, v in feeds.items()],
                [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                 for o in node.output if o])
            m = helper.make_model(g, opset_imports=list(self.model.opset_import))
            res = ReferenceEvaluator(m).run(None, feeds)
        except Exception as exc:  # noqa: BLE001 - the evaluator raises arbitrary errors
            raise self.fail(node, f"constant folding failed ({exc})") from exc
        for name, r in zip([o for o in node.output if o], res, strict=False):
            self.env[name] = np.asarray(r)


def _unsupported_op(op_type: str) -> str:
    """The refusal for an op type imcc does not translate, saying which kind is missing."""
    kind = "crossbar" if op_type in _CROSSBAR_LIKE else "digital"
    return f"op type not supported (a {kind} op imcc does not implement)"


def _expand_to_batch(im: _Importer, node: onnx.NodeProto, x: np.ndarray, dep: BatchDep
                     ) -> Value:
    """Expand of a constant to a shape whose first element is the batch (a class token
    broadcast over the batch): an `Expand` reading the batch of ``dep.ref``."""
    factors = dep.batch_factor()
    if not factors or factors[0] != 1 or any(f != 0 for f in factors[1:]):
        raise im.fail(node, "a shape that depends on the batch other than as its first size")
    shape = [int(v) for v in dep.v1.reshape(-1)[1:]]
    xs = (1,) * (len(shape) + 1 - x.ndim) + tuple(x.shape)
    if len(xs) != len(shape) + 1 or xs[0] != 1:
        raise im.fail(node, f"constant of shape {list(x.shape)} expanded to the batch")
    try:
        sample = np.broadcast_shapes(xs[1:], tuple(shape))
    except ValueError as exc:
        raise im.fail(node, f"shape {list(x.shape)} does not broadcast to {shape}") from exc
    c = im.g.const(node.input[0], x.reshape(xs).astype(np.float32)
                   if x.dtype == np.float64 else x.reshape(xs))
    return im.emit(O.Expand(tuple(int(d) for d in sample)), [c, dep.ref], node)


def _constant(node: onnx.NodeProto) -> np.ndarray:
    if len(node.attribute) != 1:
        raise _Skip(f"Constant node {node.name!r}: {len(node.attribute)} attributes (it takes "
                    "exactly one)")
    a = node.attribute[0]
    want = {"value": _A.TENSOR, "value_float": _A.FLOAT, "value_int": _A.INT,
            "value_floats": _A.FLOATS, "value_ints": _A.INTS}.get(a.name)
    if want is None:
        raise _Skip(f"Constant node {node.name!r}: attribute {a.name} not supported")
    if a.type != want:
        raise _Skip(f"Constant node {node.name!r}: attribute {a.name} has type "
                    f"{_A.AttributeType.Name(a.type)}")
    if a.name == "value":
        try:
            return numpy_helper.to_array(a.t)
        except Exception as exc:  # noqa: BLE001 - onnx decoding the model's tensor
            raise _Skip(f"Constant node {node.name!r}: its tensor cannot be read "
                        f"({exc})") from exc
    v = helper.get_attribute_value(a)
    if a.name in ("value_float", "value_int"):
        return np.array(v, dtype=np.float32 if a.name == "value_float" else np.int64)
    if a.name in ("value_floats", "value_ints"):
        return np.array(v, dtype=np.float32 if a.name == "value_floats" else np.int64)
    raise _Skip(f"Constant node {node.name!r}: attribute {a.name} not supported")


def _toposort(gp: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes in dependency order; a cycle is a malformed model."""
    producer = {o: i for i, n in enumerate(gp.node) for o in n.output if o}
    state = [0] * len(gp.node)
    order: list[onnx.NodeProto] = []
    for root in range(len(gp.node)):
        stack = [(root, False)]
        while stack:
            i, done = stack.pop()
            if done:
                state[i] = 2
                order.append(gp.node[i])
                continue
            if state[i] == 2:
                continue
            if state[i] == 1:
                raise ModelError(f"the graph has a cycle through node {gp.node[i].name!r}")
            state[i] = 1
            stack.append((i, True))
            for inp in gp.node[i].input:
                j = producer.get(inp)
                if j is not None and state[j] != 2:
                    if state[j] == 1:
                        raise ModelError(f"the graph has a cycle through node "
                                         f"{gp.node[j].name!r}")
                    stack.append((j, False))
    return order


def _dead_code(g: Graph) -> None:
    live = {id(v) for v in g.outputs}
    for n in reversed(list(g.nodes)):
        if any(id(o) in live for o in n.outputs):
            live.update(id(v) for v in n.inputs)
        else:
            g.remove(n)


# ----------------------------------------------------------------------------- translators


def _auto_pads(im: _Importer, node: onnx.NodeProto, a: dict[str, Any], x: Value,
               k: tuple[int, int], s: tuple[int, int], d: tuple[int, int]) -> O.Pads2:
    mode = a.get("auto_pad", "NOTSET")
    if mode in ("NOTSET", ""):
        p = a.get("pads", [0, 0, 0, 0])
        if len(p) != 4:
            raise im.fail(node, f"pads {p} are not 2-D")
        if min(p) < 0:
            raise im.fail(node, "negative pads")
        return int(p[0]), int(p[1]), int(p[2]), int(p[3])
    if mode == "VALID":
        return 0, 0, 0, 0
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise im.fail(node, f"auto_pad={mode}")
    pads: list[tuple[int, int]] = []
    for axis in (0, 1):
        n = int(x.type.shape[2 + axis])  # type: ignore[arg-type]
        out = -(-n // s[axis])
        total = max(0, (out - 1) * s[axis] + (k[axis] - 1) * d[axis] + 1 - n)
        lo = total // 2 if mode == "SAME_UPPER" else total - total // 2
        pads.append((lo, total - lo))
    return pads[0][0], pads[1][0], pads[0][1], pads[1][1]


def _finite(im: _Importer, node: onnx.NodeProto, arr: np.ndarray | None, what: str) -> None:
    """Weights and biases must be finite: a crossbar multiplies every cell, padding zeros
    included, so an infinite weight would give NaN where onnxruntime skips the pad."""
    if arr is not None and arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise im.fail(node, f"{what} holds NaN or infinite values")


def _spatial4(im: _Importer, node: onnx.NodeProto, x: Value) -> None:
    if x.type.rank != 4:
        raise im.fail(node, f"only 2-D (NCHW) inputs are supported, got rank {x.type.rank}")


def _conv(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    x = im.act(node)
    _spatial4(im, node, x)
    w = im.const(node, 1, "the weight")
    b = im.const(node, 2, "the bias")
    if w is None:
        raise im.fail(node, "no weight input")
    if w.ndim != 4:
        raise im.fail(node, f"weight rank {w.ndim}")
    if b is not None and b.size != w.shape[0]:
        raise im.fail(node, f"bias of {b.size} values for {w.shape[0]} output channels")
    _finite(im, node, w, "the weight")
    _finite(im, node, b, "the bias")
    k = _pairs(im, node, "kernel_shape", a.get("kernel_shape", w.shape[2:]))
    s = _pairs(im, node, "strides", a.get("strides", [1, 1]))
    d = _pairs(im, node, "dilations", a.get("dilations", [1, 1]))
    group = int(a.get("group", 1))
    ic = int(x.type.shape[1])  # type: ignore[arg-type]
    if group < 1 or ic % group or w.shape[1] * group != ic or w.shape[0] % group:
        raise im.fail(node, f"group={group} does not match {ic} input channels and weight "
                            f"{list(w.shape)}")
    if min(s) < 1 or min(d) < 1 or tuple(w.shape[2:]) != k:
        raise im.fail(node, "inconsistent kernel_shape/strides/dilations")
    pads = _auto_pads(im, node, a, x, k, s, d)
    op = O.Conv(kernel=k, stride=s, pads=pads, dilation=d, group=group)
    ho, wo = op.out_hw(int(x.type.shape[2]), int(x.type.shape[3]))  # type: ignore[arg-type]
    if ho < 1 or wo < 1:
        raise im.fail(node, "the kernel is larger than the padded input", sized=True)
    # copy=False: a float32 weight is shared with the model's array, not duplicated
    ins = [x, im.g.const(node.input[1], w.astype(np.float32, copy=False))]
    if b is not None:
        ins.append(im.g.const(node.input[2], b.astype(np.float32).reshape(-1)))
    return im.emit(op, ins, node)


def _gemm(im: _Importer, node: onnx.NodeProto, a: dict[str, Any], x: Value | None = None
          ) -> Value:
    """``x``: the input laid out with the features last (`_l_linear`), else input 0."""
    if a.get("transA", 0):
        raise im.fail(node, "transA=1 (the activation must be the left operand, untransposed)")
    if x is None:
        x = im.act(node)
        if x.type.rank != 2:
            raise im.fail(node, f"input rank {x.type.rank} (Gemm takes 2-D inputs)")
    bmat = im.const(node, 1, "the weight (B)")
    if bmat is None or bmat.ndim != 2:
        raise im.fail(node, "the weight (B) must be a 2-D constant")
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    w = bmat if a.get("transB", 0) else bmat.T
    if alpha != 1.0:  # scaled in float64, rounded once; alpha 1 is exact in float32 as is
        w = w.astype(np.float64) * alpha
    n_out = w.shape[0]
    if w.shape[1] != x.type.shape[-1]:
        raise im.fail(node, f"weight {list(bmat.shape)} does not match {x.type.shape[-1]} "
                            "input features", sized=True)
    _finite(im, node, w, "the weight (B) times alpha")
    # A float32 weight is kept as it is (VGG-11's first Gemm: 411 MB), not copied.
    ins = [x, im.g.const(node.input[1], np.ascontiguousarray(w, dtype=np.float32))]
    c = im.const(node, 2, "the bias (C)")
    _finite(im, node, c, "the bias (C)")
    if c is not None:
        # C broadcasts to (batch, n_out); imcc takes one bias per output.
        if c.ndim == 2 and c.shape[0] != 1:
            raise im.fail(node, f"bias C of shape {list(c.shape)} varies along the batch")
        if c.ndim > 2 or c.size not in (1, n_out) or (c.ndim and c.shape[-1] not in (1, n_out)):
            raise im.fail(node, f"bias C of shape {list(c.shape)} for {n_out} outputs")
        c2 = np.broadcast_to(c.astype(np.float64).reshape(-1) * beta, (n_out,))
        ins.append(im.g.const(node.input[2], c2.astype(np.float32)))
    return im.emit(O.Linear(), ins, node)


def _matmul(im: _Importer, node: onnx.NodeProto, a: dict[str, Any], x: Value | None = None
            ) -> Value | tuple[Value, Layout]:
    """``x @ W`` with a constant ``W`` is a crossbar Linear (``x``: the input laid out with
    the features last, `_l_linear`); a product of two activations is a digital MatMul."""
    if isinstance(im.env[node.input[0]], np.ndarray):
        raise im.fail(node, "a constant left operand (only x @ W with constant W is mapped)")
    if isinstance(im.env[node.input[1]], Value):
        return _matmul_act(im, node)
    if x is None:
        x = im.act(node)
    w = im.const(node, 1, "the right operand (weight)")
    if w is None:
        raise im.fail(node, "no right operand")
    if w.ndim != 2 or x.type.rank < 2:
        raise im.fail(node, f"weight rank {w.ndim} / input rank {x.type.rank} "
                            "(supported: N-D input times a 2-D constant)")
    if w.shape[0] != x.type.shape[-1]:
        raise im.fail(node, f"weight {list(w.shape)} does not match {x.type.shape[-1]} "
                            "input features", sized=True)
    _finite(im, node, w, "the weight")
    return im.emit(O.Linear(), [x, im.g.const(node.input[1], w.T.astype(np.float32))], node)


def _bn(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    if a.get("training_mode", 0):
        raise im.fail(node, "training_mode=1")
    x = im.act(node)
    sc, b, mean, var = (im.const(node, i, "BatchNormalization parameters") for i in (1, 2, 3, 4))
    if sc is None or b is None or mean is None or var is None:
        raise im.fail(node, "scale, bias, mean and var are all required")
    channels = x.type.shape[1] if x.type.rank > 1 else None
    if any(v.size != channels for v in (sc, b, mean, var)):
        raise im.fail(node, f"parameters of sizes {[v.size for v in (sc, b, mean, var)]} "
                            f"for {channels} channels")
    for v in (sc, b, mean, var):
        _finite(im, node, v, "the parameters")
    eps = float(a.get("epsilon", 1e-5))
    if not np.all(var.astype(np.float64) + eps > 0):
        raise im.fail(node, "variance + epsilon is not positive (a malformed BatchNormalization)")
    scale = sc.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    shift = b.astype(np.float64) - mean.astype(np.float64) * scale
    return im.emit(O.Affine(), [x, im.g.const(node.name + ".scale", scale.astype(np.float32)),
                                im.g.const(node.name + ".shift", shift.astype(np.float32))], node)


def _unary(op: O.Op) -> Callable[[_Importer, onnx.NodeProto, dict[str, Any]], Value]:
    def f(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        return im.emit(op, [im.act(node)], node)
    return f


def _leaky(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    return im.emit(O.LeakyRelu(float(a.get("alpha", 0.01))), [im.act(node)], node)


def _clip(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    if im.opset < 11:
        lo, hi = a.get("min"), a.get("max")
    else:
        lo_a, hi_a = im.const(node, 1, "min"), im.const(node, 2, "max")
        for v, what in ((lo_a, "min"), (hi_a, "max")):
            if v is not None and v.size != 1:
                raise im.fail(node, f"{what} must be a scalar, got shape {list(v.shape)}")
        lo = None if lo_a is None else float(lo_a.reshape(-1)[0])
        hi = None if hi_a is None else float(hi_a.reshape(-1)[0])
    return im.emit(O.Clip(lo, hi), [im.act(node)], node)


def _softmax(im: _Importer, node: onnx.NodeProto, a: dict[str, Any], x: Value | None = None
             ) -> Value:
    x = im.act(node) if x is None else x
    axis = int(a.get("axis", -1 if im.opset >= 13 else 1))
    if not -x.type.rank <= axis < x.type.rank:
        raise im.fail(node, f"axis={axis} is out of range for rank {x.type.rank}")
    axis = axis % x.type.rank
    if im.opset < 13 and axis != x.type.rank - 1:
        raise im.fail(node, "opset < 13 Softmax over several axes")
    if axis == 0:
        raise im.fail(node, "Softmax over the batch axis")
    return im.emit(O.Softmax(axis), [x], node)


def _binary(op: O.Op) -> Callable[[_Importer, onnx.NodeProto, dict[str, Any]], Value]:
    def f(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        exp = im.env[node.input[1]] if len(node.input) > 1 else None
        float_exp: np.ndarray | None = None
        if node.op_type == "Pow" and isinstance(exp, np.ndarray) and exp.dtype.kind in "iu":
            # ONNX's Pow takes an integer exponent with a float base (T2 != T1); as float32
            # it is the same exponent while it is exactly representable.  Converted for
            # this node only: the initializer may also feed a node that needs integers.
            if np.abs(exp).max(initial=0) >= 1 << 24:
                raise im.fail(node, "integer exponent beyond float32's exact range")
            float_exp = exp.astype(np.float32)
        try:
            if float_exp is None:
                ins = [im.operand_value(n) for n in node.input]
            else:
                ins = [im.operand_value(node.input[0]), im.g.const(node.input[1], float_exp)]
        except UnsupportedError as exc:  # a constant operand of a type imcc does not carry
            raise im.fail(node, "; ".join(exc.problems)) from exc
        for v in ins:
            if v.is_const and v.data is not None and v.data.dtype == np.float64:
                v.data = v.data.astype(np.float32)
        return im.emit(op, ins, node)
    return f


def _pool(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    x = im.act(node)
    _spatial4(im, node, x)
    if len([o for o in node.output if o]) > 1:
        raise im.fail(node, "the Indices output")
    k = _pairs(im, node, "kernel_shape", a["kernel_shape"])
    s = _pairs(im, node, "strides", a.get("strides", [1, 1]))
    d = _pairs(im, node, "dilations", a.get("dilations", [1, 1]))
    pads = _auto_pads(im, node, a, x, k, s, d)
    ceil = bool(a.get("ceil_mode", 0))
    if node.op_type == "MaxPool":
        if a.get("storage_order", 0):
            raise im.fail(node, "storage_order=1")
        op: O.Op = O.MaxPool(k, s, pads, d, ceil)
    elif d != (1, 1):
        raise im.fail(node, "dilations on AveragePool")
    else:
        op = O.AveragePool(k, s, pads, ceil, bool(a.get("count_include_pad", 0)))
    ho, wo = op.infer([x.type])[0].shape[2:]
    if ho is None or wo is None or ho < 1 or wo < 1:
        raise im.fail(node, "the kernel is larger than the padded input", sized=True)
    return im.emit(op, [x], node)


def _global(op: O.Op) -> Callable[[_Importer, onnx.NodeProto, dict[str, Any]], Value]:
    def f(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
        return im.emit(op, [im.act(node)], node)
    return f


def _pad(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    x = im.act(node)
    r = x.type.rank
    mode = a.get("mode", "constant")
    if im.opset < 11:
        if "pads" not in a:
            raise im.fail(node, "required attribute 'pads' is missing")
        pads = list(a["pads"])
        value = float(a.get("value", 0.0))
    else:
        p = im.const(node, 1, "pads")
        if p is None:
            raise im.fail(node, "the pads input is missing")
        pads = [int(v) for v in p.reshape(-1)]
        cv = im.const(node, 2, "constant_value")
        value = 0.0 if cv is None else float(cv.reshape(-1)[0]) if cv.size else 0.0
        axes_a = im.const(node, 3, "axes")
        if axes_a is not None:
            axes = [int(v) for v in axes_a.reshape(-1)]
            if any(not -r <= ax < r for ax in axes) or len(pads) != 2 * len(axes):
                raise im.fail(node, f"axes {axes} and {len(pads)} pads do not match rank {r}")
            axes = [ax % r for ax in axes]
            full = [0] * (2 * r)
            for i, ax in enumerate(axes):
                full[ax], full[ax + r] = pads[i], pads[i + len(axes)]
            pads = full
    if len(pads) != 2 * r:
        raise im.fail(node, f"{len(pads)} pads for rank {r}")
    if pads[0] or pads[r]:
        raise im.fail(node, "padding the batch axis")
    if min(pads) < 0:
        raise im.fail(node, "negative pads (cropping)")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise im.fail(node, f"mode={mode}")
    return im.emit(O.Pad(tuple(pads), mode, value), [x], node)


def _slice(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    x = im.act(node)
    r = x.type.rank
    if im.opset < 10:
        if "starts" not in a or "ends" not in a:
            raise im.fail(node, "the starts and ends attributes are required")
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        vals = [im.const(node, i, n) for i, n in ((1, "starts"), (2, "ends"), (3, "axes"),
                                                  (4, "steps"))]
        if vals[0] is None or vals[1] is None:
            raise im.fail(node, "the starts and ends inputs are required")
        flat = [None if v is None else [int(e) for e in v.reshape(-1)] for v in vals]
        starts, ends = flat[0] or [], flat[1] or []
        axes = flat[2] if flat[2] is not None else list(range(len(starts)))
        steps = flat[3] if flat[3] is not None else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise im.fail(node, "starts, ends, axes and steps differ in length")
    if any(not -r <= ax < r for ax in axes) or len({ax % r for ax in axes}) != len(axes):
        raise im.fail(node, f"axes {axes} are out of range or repeated for rank {r}")
    ns, ne, na, nst = [], [], [], []
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        ax %= r
        if st == 0:
            raise im.fail(node, "step 0")
        dim = x.type.shape[ax]
        if dim is None:
            if (s, st) == (0, 1) and e >= (1 << 31):
                continue  # a no-op over the dynamic batch axis, as exporters write it
            raise im.fail(node, "slicing the dynamic batch axis")
        if ax == 0:
            raise im.fail(node, "slicing the batch axis")
        start, stop, step = slice(s, e, st).indices(dim)
        ns.append(start)
        ne.append(stop)
        na.append(ax)
        nst.append(step)
    if not na:
        return x
    return im.emit(O.Slice(tuple(ns), tuple(ne), tuple(na), tuple(nst)), [x], node)


def _concat(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    ins = [im.operand_value(n) for n in node.input if n]
    act = next((v for v in ins if not v.is_const), None)
    if act is not None:
        # A constant of one sample (a batch-1 export's class token) joins every sample:
        # an Expand to the batch of an activation operand.
        ins = [im.emit(O.Expand(tuple(int(d or 1) for d in v.type.shape[1:])), [v, act], node,
                       out_name=f"{v.name}/expand", name=f"{v.name}/expand")
               if v.is_const and v.type.rank == act.type.rank and v.type.shape[0] == 1
               else v for v in ins]
    rank = ins[0].type.rank
    axis = int(a["axis"])
    if not -rank <= axis < rank:
        raise im.fail(node, f"axis={axis} is out of range for rank {rank}")
    axis %= rank
    if axis == 0:
        raise im.fail(node, "concatenating along the batch axis")
    # Concat.infer only adds up the axis; every other dimension must agree (a constant
    # operand's fixed first axis does not match the dynamic batch).
    shapes = [v.type.shape for v in ins]
    if any(len(sh) != rank or any(d != e for i, (d, e) in
                                  enumerate(zip(sh, shapes[0], strict=True)) if i != axis)
           for sh in shapes):
        raise im.fail(node, f"operand shapes {[list(sh) for sh in shapes]} differ outside "
                            f"axis {axis}", sized=True)
    return im.emit(O.Concat(axis), ins, node)


def _finish(im: _Importer, node: onnx.NodeProto, x: Value, lay: Layout
            ) -> Value | tuple[Value, Layout]:
    """The output of a layout change: a plain IR Reshape when the result has the batch
    alone on axis 0 without moving axes (every reshape of a CNN), else the value and its
    layout, re-laid out only when an op needs it."""
    vs = sym_sizes(x.type.shape)
    if lay.is_identity(len(vs)):
        return x
    try:
        plan, kb = plan_normal(lay, vs)
    except LayoutError:
        return x, lay
    if kb != 0 or plan.perm is not None:
        return x, lay
    shape = tuple(int(k) for k, _ in (plan.shape or vs)[1:])
    return im.emit(O.Reshape(shape), [x], node)


def _reshape_to(im: _Importer, node: onnx.NodeProto, x: Value, full: list[int | Sym],
                allowzero: bool = False) -> Value | tuple[Value, Layout]:
    """ONNX Reshape of input 0 (batch-first value ``x``) to ``full``: ints as ONNX writes
    them (0 copies the input's size unless ``allowzero``, -1 is inferred) or sizes with the
    batch symbolic (from batch-dependent shape arithmetic). The batch goes where the
    element order puts it (`plan_reshape`): a 1 is the batch only when the batch is 1."""
    lay = im.layouts.get(node.input[0]) or Layout.identity(x.type.rank)
    vs = sym_sizes(x.type.shape)
    sizes = lay.sizes(vs)
    out: list[Sym | None] = []
    for j, d in enumerate(full):
        if isinstance(d, tuple):
            out.append(d)
        elif d == 0 and not allowzero:
            if j >= len(sizes):
                raise im.fail(node, f"shape {full}: a 0 (copy) beyond the input's rank "
                                    f"{len(sizes)}")
            out.append(sizes[j])
        elif d == -1:
            out.append(None)
        elif d < 1:
            raise im.fail(node, f"shape {full}")
        else:
            out.append((int(d), 0))
    if out.count(None) > 1:
        raise im.fail(node, f"shape {full}")
    tot = sym_prod(sizes)
    known = sym_prod([d for d in out if d is not None])
    if None in out:
        if known[0] == 0 or tot[0] % known[0] or tot[1] < known[1]:
            raise im.fail(node, f"cannot reshape {lay.describe(vs)} to {full}", sized=True)
        out = [(tot[0] // known[0], tot[1] - known[1]) if d is None else d for d in out]
    target = [d for d in out if d is not None]
    text = "(" + ", ".join(sym_text(d) for d in target) + ")"
    if sym_prod(target) != tot:
        raise im.fail(node, f"cannot reshape {lay.describe(vs)} to {text}", sized=True)
    if lay.is_identity(len(vs)) and target[0] == vs[0]:
        # The batch stays axis 0: a reshape of each sample, whatever it does to the rest.
        return im.emit(O.Reshape(tuple(k for k, _ in target[1:])), [x], node)
    try:
        new_vs, new_lay = plan_reshape(lay, vs, target)
    except LayoutError as exc:
        raise im.fail(node, f"reshape of {lay.describe(vs)} to {text} moves the batch axis "
                            f"({exc})", sized=True) from exc
    if new_vs != vs:
        split = im.emit(O.Reshape(tuple(k for k, _ in new_vs[1:])), [x], node,
                        out_name=node.output[0] + "/split",
                        name=(node.name or node.output[0]) + "/split")
        return _finish(im, node, split, new_lay)
    return _finish(im, node, x, new_lay)


def _reshape(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]
             ) -> Value | tuple[Value, Layout]:
    x = im.act(node)
    dep = im.env[node.input[1]] if len(node.input) > 1 and node.input[1] else None
    if isinstance(dep, BatchDep):
        # Shape arithmetic with the batch as a symbol: each size a constant or k * batch.
        full: list[int | Sym] = []
        for f, v in zip(dep.batch_factor(), dep.v1.reshape(-1).tolist(), strict=True):
            if f is None:
                raise im.fail(node, "a target shape that depends on the batch other than as "
                                    "a multiple of it")
            full.append(int(v) if f == 0 else (f, 1))
        return _reshape_to(im, node, x, full, bool(a.get("allowzero", 0)))
    s = im.const(node, 1, "the shape")
    if s is None:
        raise im.fail(node, "the shape input is missing")
    ints = [int(v) for v in s.reshape(-1)]
    if not ints:
        raise im.fail(node, "reshape to a scalar")
    per = math.prod(int(d or 0) for d in x.type.shape[1:])
    if len(ints) == 1 and x.type.shape[0] == 1 and ints[0] in (-1, per) \
            and node.output[0] in im.gather_data and node.input[0] not in im.layouts:
        # The dynamo exporter writes torch's as_strided on a static batch of 1 (ConvNeXt's
        # LayerNorm2d before the classifier) as Reshape(x, [-1]) followed by a Gather of
        # constant indices of shape (1, ...): one sample's elements picked by flat index.
        # Held as a per-sample flatten; _gather keeps the batch axis first.
        im.flat.add(node.output[0])
        return im.emit(O.Reshape((per,)), [x], node)
    return _reshape_to(im, node, x, list(ints), bool(a.get("allowzero", 0)))


def _flatten(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]
             ) -> Value | tuple[Value, Layout]:
    x, lay = im.laid(node)
    r = lay.rank
    # ONNX allows axis in [-r, r]; a negative axis counts from the end (-1 is r - 1).
    axis = int(a.get("axis", 1))
    if not -r <= axis <= r:
        raise im.fail(node, f"axis={axis} is out of range for rank {r}")
    axis = axis + r if axis < 0 else axis
    sizes = lay.sizes(sym_sizes(x.type.shape))
    return _reshape_to(im, node, x, [sym_prod(sizes[:axis]), sym_prod(sizes[axis:])])


def _squeeze_like(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]
                  ) -> Value | tuple[Value, Layout]:
    x, lay = im.laid(node)
    if "axes" in a:
        axes = list(a["axes"])
    else:
        c = im.const(node, 1, "axes")
        axes = [] if c is None else [int(v) for v in c.reshape(-1)]
    vs = sym_sizes(x.type.shape)
    sizes = lay.sizes(vs)
    n = len(sizes) + (len(axes) if node.op_type == "Unsqueeze" else 0)
    if any(not -n <= ax < n for ax in axes) or len({ax % n for ax in axes}) != len(axes):
        raise im.fail(node, f"axes {axes} are out of range or repeated for rank {n}")
    if node.op_type == "Squeeze":
        axes = [ax % n for ax in axes] or [i for i, d in enumerate(sizes) if d == ONE]
        try:
            new = lay.squeeze(axes, vs)
        except LayoutError as exc:
            raise im.fail(node, f"squeezing {lay.describe(vs)}: {exc}") from exc
    else:
        new = lay.unsqueeze(sorted(ax % n for ax in axes))
    return _finish(im, node, x, new)


def _transpose(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]
               ) -> Value | tuple[Value, Layout]:
    x, lay = im.laid(node)
    perm = tuple(int(p) for p in a.get("perm", reversed(range(lay.rank))))
    if sorted(perm) != list(range(lay.rank)):
        raise im.fail(node, f"perm {list(perm)} is not a permutation of {lay.rank} axes")
    if perm[0] == 0 and node.input[0] not in im.layouts:
        return im.emit(O.Transpose(perm), [x], node)
    return x, lay.permute(perm)  # the batch moves: only the layout changes


def _identity(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    return im.act(node)


def _dropout(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    """Inference-mode Dropout is the identity; training mode drops at random: refused."""
    if im.opset < 7 and not a.get("is_test", 0):
        raise im.fail(node, "is_test=0 (training-mode dropout is random)")
    if im.opset >= 12:
        ratio = im.const(node, 1, "ratio")
        mode = im.const(node, 2, "training_mode")
        training = mode is not None and mode.size > 0 and bool(mode.reshape(-1)[0])
        zero = ratio is not None and ratio.size > 0 and float(ratio.reshape(-1)[0]) == 0.0
        if training and not zero:
            raise im.fail(node, "training_mode=1 (training-mode dropout is random)")
    return im.act(node)


def _cast(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    x = im.act(node)
    if int(a["to"]) not in helper.get_all_tensor_dtypes():
        raise im.fail(node, f"to={a['to']} is not an ONNX element type")
    if int(a["to"]) != helper.np_dtype_to_tensor_dtype(x.type.dtype.numpy):
        raise im.fail(node, "casting an activation to another type")
    return x


def _hardsigmoid(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    return im.emit(O.HardSigmoid(float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))),
                   [im.act(node)], node)


def _gelu(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    approx = a.get("approximate", "none")
    if approx not in ("none", "tanh"):
        raise im.fail(node, f"approximate={approx!r} (none or tanh)")
    return im.emit(O.Gelu(approx), [im.act(node)], node)


def _axis_of(im: _Importer, node: onnx.NodeProto, axis: int, rank: int) -> int:
    """A non-negative, non-batch axis."""
    if not -rank <= axis < rank:
        raise im.fail(node, f"axis={axis} is out of range for rank {rank}")
    axis %= rank
    if axis == 0:
        raise im.fail(node, "an operation along the batch axis")
    return axis


def _reduce(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    x = im.act(node)
    r = x.type.rank
    if "axes" in a:
        axes: list[int] | None = [int(v) for v in a["axes"]]
    else:
        c = im.const(node, 1, "axes")
        axes = None if c is None else [int(v) for v in c.reshape(-1)]
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(r))
    if any(not -r <= ax < r for ax in axes) or len({ax % r for ax in axes}) != len(axes):
        raise im.fail(node, f"axes {axes} are out of range or repeated for rank {r}")
    norm = tuple(sorted(ax % r for ax in axes))
    if 0 in norm:
        raise im.fail(node, "reducing over the batch axis")
    keep = bool(a.get("keepdims", 1))
    op: O.Op = (O.ReduceMean(norm, keep) if node.op_type == "ReduceMean" else
                O.ReduceSum(norm, keep) if node.op_type == "ReduceSum" else
                O.ReduceMax(norm, keep))
    return im.emit(op, [x], node)


def _layernorm(im: _Importer, node: onnx.NodeProto, a: dict[str, Any],
               x: Value | None = None) -> Value:
    x = im.act(node) if x is None else x
    axis = _axis_of(im, node, int(a.get("axis", -1)), x.type.rank)
    if len([o for o in node.output if o]) > 1:
        raise im.fail(node, "the Mean/InvStdDev outputs")
    norm_shape = tuple(int(d) for d in x.type.shape[axis:])  # type: ignore[arg-type]
    ins = [x]
    for i, what in ((1, "the scale"), (2, "the bias")):
        v = im.const(node, i, what)
        if v is None:
            if i == 1:
                raise im.fail(node, "the scale input is missing")
            continue
        try:
            np.broadcast_shapes(v.shape, norm_shape)
        except ValueError as exc:
            raise im.fail(node, f"{what} of shape {list(v.shape)} for normalized shape "
                                f"{list(norm_shape)}") from exc
        if v.ndim > len(norm_shape):
            raise im.fail(node, f"{what} of rank {v.ndim} beyond the normalized axes")
        _finite(im, node, v, what)
        ins.append(im.g.const(node.input[i], v.astype(np.float32)))
    return im.emit(O.LayerNorm(axis, float(a.get("epsilon", 1e-5))), ins, node)


def _gather(im: _Importer, node: onnx.NodeProto, a: dict[str, Any], x: Value | None = None
            ) -> Value:
    if isinstance(im.env[node.input[0]], np.ndarray):
        raise im.fail(node, "constant data gathered by activation indices (an embedding "
                            "lookup)")
    x = im.act(node) if x is None else x
    idx = im.const(node, 1, "the indices")
    assert idx is not None  # the arity check requires it
    if node.input[0] in im.flat:
        return _gather_flat(im, node, a, x, idx)
    axis = _axis_of(im, node, int(a.get("axis", 0)), x.type.rank)
    if idx.dtype.kind not in "iu" or idx.ndim > 1:
        raise im.fail(node, f"indices of type {idx.dtype} and rank {idx.ndim} (integer "
                            "scalar or 1-D)")
    dim = int(x.type.shape[axis])  # type: ignore[arg-type]
    vals = [int(v) for v in idx.reshape(-1)]
    if any(not -dim <= v < dim for v in vals):
        raise im.fail(node, f"indices {vals} out of range for size {dim}")
    return im.emit(O.Gather(axis, tuple(v % dim for v in vals), idx.ndim == 0), [x], node)


def _gather_flat(im: _Importer, node: onnx.NodeProto, a: dict[str, Any], x: Value,
                 idx: np.ndarray) -> Value:
    """Gather(axis 0) of constant indices of shape (1, *rest) from a batch-1 tensor that
    _reshape flattened whole (``x`` is its per-sample flatten, (1, size)): the sample's
    elements at ``idx[0]``, reshaped to ``rest`` -- ONNX's result for a batch of 1."""
    size = int(x.type.shape[1])  # type: ignore[arg-type]
    if int(a.get("axis", 0)) != 0 or idx.dtype.kind not in "iu" or idx.ndim < 2 \
            or idx.shape[0] != 1:
        raise im.fail(node, f"indices of shape {list(idx.shape)} on axis {a.get('axis', 0)} "
                            "of a batch-1 tensor flattened whole (supported: axis 0, "
                            "shape (1, ...))")
    vals = [int(v) for v in idx.reshape(-1)]
    if any(not -size <= v < size for v in vals):
        raise im.fail(node, f"indices out of range for size {size}")
    picked = im.emit(O.Gather(1, tuple(v % size for v in vals)), [x], node,
                     out_name=node.output[0] + "/flat")
    rest = tuple(int(d) for d in idx.shape[1:])
    return im.emit(O.Reshape(rest), [picked], node)


def _split(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> list[Value | None]:
    x = im.act(node)
    axis = _axis_of(im, node, int(a.get("axis", 0)), x.type.rank)
    dim = int(x.type.shape[axis])  # type: ignore[arg-type]
    n = len(node.output)
    if im.opset >= 13:
        c = im.const(node, 1, "split")
        sizes = None if c is None else [int(v) for v in c.reshape(-1)]
    else:
        sizes = [int(v) for v in a["split"]] if "split" in a else None
    if sizes is None:
        if im.opset >= 18 and "num_outputs" in a:
            k = int(a["num_outputs"])
            if k != n or k < 1:
                raise im.fail(node, f"num_outputs={k} for {n} outputs")
            chunk = -(-dim // k)
            sizes = [min(chunk, dim - i * chunk) for i in range(k)]
        elif dim % n:
            raise im.fail(node, f"{dim} does not split evenly into {n} outputs")
        else:
            sizes = [dim // n] * n
    if len(sizes) != n or sum(sizes) != dim or min(sizes) < 0:
        raise im.fail(node, f"split sizes {sizes} for {n} outputs of a size-{dim} axis")
    outs: list[Value | None] = []
    start = 0
    for name, size in zip(node.output, sizes, strict=True):
        if name:
            op = O.Slice((start,), (start + size,), (axis,), (1,))
            outs.append(im.emit(op, [x], node, out_name=name))
        else:
            outs.append(None)
        start += size
    return outs


def _where(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    """Where(cond, a, b); a constant condition is cast to bool, as ONNX requires it be."""
    ins = [im.operand_value(n, node) for n in node.input]
    if ins[0].type.dtype != DType.BOOL:
        raise im.fail(node, f"a condition of type {ins[0].type.dtype.value} (bool)")
    for v in ins[1:]:
        if v.is_const and v.data is not None and v.data.dtype == np.float64:
            v.data = v.data.astype(np.float32)
    return im.emit(O.Where(), ins, node)


def _expand(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> Value:
    x = im.act(node)
    dep = im.env[node.input[1]]
    if isinstance(dep, BatchDep):
        f = dep.batch_factor()
        if not f or f[0] != 1 or any(k != 0 for k in f[1:]):
            raise im.fail(node, "a shape that depends on the batch other than as its first "
                                "size")
        shape: list[int | None] = [None, *(int(v) for v in dep.v1.reshape(-1)[1:])]
    else:
        s = im.const(node, 1, "the shape")
        assert s is not None
        shape = [int(v) for v in s.reshape(-1)]
    xs = list(x.type.shape)
    if len(shape) > len(xs):
        raise im.fail(node, f"expanding {x.type} to {shape} adds axes before the batch")
    shape = [*([1] * (len(xs) - len(shape))), *shape]
    if shape[0] not in (1, None) and shape[0] != xs[0]:
        raise im.fail(node, f"expanding the batch axis of {x.type} to {shape[0]}")
    out: list[int] = []
    for d, t in zip(xs[1:], shape[1:], strict=True):
        if t == 1 or t == d:
            out.append(int(d))  # type: ignore[arg-type]
        elif d == 1 and t is not None and t > 0:
            out.append(t)
        else:
            raise im.fail(node, f"shape {shape} does not broadcast from {x.type}")
    return im.emit(O.Expand(tuple(out)), [x], node)


# ----------------------------------------------------- translators of moved-batch tensors
# Called when an input's batch is not alone on its axis 0 (see imcc/frontend/layout.py);
# each returns the batch-first IR value and the ONNX tensor's layout.


def _batch_place(lay: Layout, vs: list[Sym]) -> str:
    k = lay.batch_axis()
    if k is None:
        return "squeezed away"
    real = [a for a in lay.groups[k] if a == 0 or vs[a] != ONE]
    return f"on axis {k}" + (" merged with other axes" if len(real) > 1 else "")


def _merged(im: _Importer, node: onnx.NodeProto, idx: int, axis: int, to_end: bool,
            laid: tuple[Value, Layout] | None = None) -> tuple[Value, Layout, int]:
    """Input ``idx`` (or the tensor ``laid``) with its ONNX ``axis`` one axis of the IR
    value (the last when ``to_end``): the value, its layout and that axis."""
    x, lay = laid or im.laid(node, idx)
    try:
        plan, ax = plan_merge(lay, sym_sizes(x.type.shape), axis, to_end)
    except LayoutError as exc:
        vs = sym_sizes(x.type.shape)
        raise im.fail(node, f"axis {axis} of input {node.input[idx]!r} of shape "
                            f"{lay.describe(vs)} with the batch {_batch_place(lay, vs)}: "
                            f"{exc}") from exc
    return im.relayout(node, x, plan), plan.layout, ax


def _onnx_axis(im: _Importer, node: onnx.NodeProto, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise im.fail(node, f"axis={axis} is out of range for rank {rank}")
    return axis % rank


def _l_same(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[Value, Layout]:
    """An elementwise op of one activation: the same op on the IR value, the same layout."""
    lay = im.layouts[node.input[0]]
    out = _TRANSLATE[node.op_type](im, node, a)
    return out, lay


def _l_binary(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]
              ) -> Value | tuple[Value, Layout]:
    """An elementwise binary op: constants re-laid out to the activation's layout; two
    activations of different layouts are both laid out batch first."""
    acts = [n for n in node.input if isinstance(im.env[n], Value)]
    lays = {n: im.layout(n) for n in acts}
    if len(set(lays.values())) > 1:
        for n in acts:
            im.normal(node, n)
        return _TRANSLATE[node.op_type](im, node, a)
    lay = lays[acts[0]]
    vs = sym_sizes(im.env[acts[0]].type.shape)  # type: ignore[union-attr]
    ins: list[Value] = []
    for i, n in enumerate(node.input):
        e = im.env[n]
        if node.op_type == "Pow" and i == 1 and isinstance(e, np.ndarray) and \
                e.dtype.kind in "iu":
            # An integer exponent as float32, for this node only (as `_binary`).
            if np.abs(e).max(initial=0) >= 1 << 24:
                raise im.fail(node, "integer exponent beyond float32's exact range")
            e = e.astype(np.float32)
        if isinstance(e, Value):
            ins.append(e)
        elif isinstance(e, BatchDep):
            raise im.fail(node, f"operand {n!r} depends on the batch size")
        else:
            c = e.astype(np.float32) if e.dtype == np.float64 else e
            try:
                ins.append(im.g.const(n, const_to_v(lay, vs, c)))
            except LayoutError as exc:
                raise im.fail(node, f"operand {n!r} for input {im.where_batch(acts[0])}: "
                                    f"{exc}") from exc
    op = {"Add": O.Add(), "Sub": O.Sub(), "Mul": O.Mul(), "Div": O.Div(), "Pow": O.Pow()
          }[node.op_type]
    return im.emit(op, ins, node), lay


def _l_linear(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]
              ) -> Value | tuple[Value, Layout]:
    """Gemm / MatMul with a constant weight on a tensor whose batch moved: its features
    (the last ONNX axis) made the last IR axis; every other axis, the batch's included, is
    a position of the token-parallel crossbar layer."""
    if node.op_type == "MatMul" and isinstance(im.env[node.input[1]], Value):
        return _matmul_act(im, node)
    rank = im.layouts[node.input[0]].rank
    if node.op_type == "Gemm" and rank != 2:
        raise im.fail(node, f"input rank {rank} (Gemm takes 2-D inputs)")
    x, lay, _ = _merged(im, node, 0, rank - 1, True)
    out = _gemm(im, node, a, x) if node.op_type == "Gemm" else _matmul(im, node, a, x)
    assert isinstance(out, Value)
    return out, lay


def _matmul_act(im: _Importer, node: onnx.NodeProto,
                operands: Sequence[tuple[Value, Layout]] | None = None
                ) -> Value | tuple[Value, Layout]:
    """A product of two activations (attention scores, attention x values): a digital
    MatMul (``operands``: the two tensors laid out as ONNX MatMul operands, else the node's
    inputs). Its leading (broadcast) axes are elementwise, so a leading axis merging
    several IR axes -- the batch with the heads, torch's (B*heads, T, d) -- is the same
    product over those axes split, when both operands merge the same sizes; so split, both
    are laid out with the batch alone on the same leading axis and the IR product is batch
    first and per sample."""
    pairs = list(operands or [im.laid(node, 0), im.laid(node, 1)])
    ranks = [lay.rank for _, lay in pairs]
    for i, (v, lay) in enumerate(pairs):
        run = plan_runs(lay, sym_sizes(v.type.shape), range(lay.rank - 2))
        pairs[i] = (im.relayout(node, v, run), run.layout)
    views: list[tuple[Value, Layout, list[int]]] = []
    for v, lay in pairs:
        vs = sym_sizes(v.type.shape)
        lead = [[a for a in g if a == 0 or vs[a] != ONE] for g in lay.groups[:-2]]
        views.append((v, Layout(tuple((a,) for m in lead for a in m) + lay.groups[-2:]),
                      [len(m) for m in lead]))
    seqs = [[sym_sizes(v.type.shape)[g[0]] for g in lay.groups[:-2]] for v, lay, _ in views]
    if ranks[0] != ranks[1] or views[0][2] != views[1][2] or seqs[0] != seqs[1]:
        views = [(v, lay, [1] * (lay.rank - 2)) for v, lay in pairs]  # as written
    laid: list[tuple[Value, Plan, int | None, int]] = []
    for i, (v, lay, _) in enumerate(views):
        vs = sym_sizes(v.type.shape)
        try:
            plan, kb = plan_normal(lay, vs)
        except LayoutError as exc:
            raise im.fail(node, f"operand {i} of shape {pairs[i][1].describe(vs)}: "
                                f"{exc}") from exc
        laid.append((v, plan, kb, lay.rank))
    (va, pa, ka, ra), (vb, pb, kb_, rb) = laid
    static = va.type.shape[0] is not None and ka is None
    if ra != rb or ra < 2 or ka != kb_ or (not static and (ka is None or ka >= ra - 2)):
        raise im.fail(node, f"a product of two activations of ranks {ranks[0]} and "
                            f"{ranks[1]} with the batch on axes {ka} and {kb_} (supported: "
                            "the batch on the same leading axis of both)")
    xa, xb = im.relayout(node, va, pa), im.relayout(node, vb, pb)
    y = im.emit(O.MatMul(), [xa, xb], node)
    # Merge the split leading axes back as the operands had them.
    groups: list[tuple[int, ...]] = []
    j = 0
    for span in views[0][2]:
        groups.append(tuple(a for g in pa.layout.groups[j:j + span] for a in g))
        j += span
    return y, Layout(tuple(groups) + pa.layout.groups[-2:])


def _einsum(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]
            ) -> Value | tuple[Value, Layout]:
    """Einsum where it is a matrix product: two operands, each letter once per operand, no
    ellipsis; the letters of both operands and the output are batch axes, one letter of
    each operand alone in the output its rows / columns, one letter of both operands only
    the contraction. Two activations: the digital MatMul of the operands transposed to
    (batch, rows, contraction) and (batch, contraction, columns); a constant 2-D second
    operand: a crossbar Linear (its contraction letter becomes the features axis)."""
    eq = str(a.get("equation", "")).replace(" ", "")
    if "->" not in eq or "..." in eq:
        raise im.fail(node, f"equation {eq!r} (supported: explicit output, no ellipsis)")
    lhs, so = eq.split("->")
    subs = lhs.split(",")
    if len(subs) != 2 or any(len(set(t)) != len(t) for t in (*subs, so)) \
            or not all(t.isalpha() for t in (*subs, so)):
        raise im.fail(node, f"equation {eq!r} (supported: two operands, each letter once)")
    sa, sb = subs
    const_b = not isinstance(im.env[node.input[1]], Value)
    if isinstance(im.env[node.input[0]], np.ndarray):
        raise im.fail(node, "a constant first operand (only x . W with constant W is mapped)")
    contr = [c for c in sa if c in sb and c not in so]
    batch = [c for c in so if c in sa and c in sb]
    rows = [c for c in so if c in sa and c not in sb]
    cols = [c for c in so if c in sb and c not in sa]
    if set(so) - set(sa + sb) or len(contr) != 1 or len(cols) != 1 or \
            set(sa + sb) != set(so) | set(contr) or (not const_b and len(rows) != 1) or \
            (const_b and (batch or len(sb) != 2)):
        raise im.fail(node, f"equation {eq!r} is not a matrix product")
    x, lay = im.laid(node, 0)
    if len(sa) != lay.rank:
        raise im.fail(node, f"equation {eq!r} for an operand of rank {lay.rank}")
    if const_b:
        w = im.const(node, 1, "the weight")
        assert w is not None
        if w.ndim != 2:
            raise im.fail(node, f"a weight of rank {w.ndim}")
        wt = w if sb == contr[0] + cols[0] else w.T  # (features in, features out)
        order = rows + contr  # the operand as (rows..., features)
        xa, la, _ = _merged(im, node, 0, len(order) - 1, True,
                            (x, lay.permute([sa.index(c) for c in order])))
        if wt.shape[0] != xa.type.shape[-1]:
            raise im.fail(node, f"weight {list(w.shape)} does not match "
                                f"{xa.type.shape[-1]} input features", sized=True)
        _finite(im, node, wt, "the weight")
        y = im.emit(O.Linear(), [xa, im.g.const(node.input[1],
                                                np.ascontiguousarray(wt.T, np.float32))], node)
        cur = rows + cols
        return y, la.permute([cur.index(c) for c in so])
    vb, lb = im.laid(node, 1)
    if len(sb) != lb.rank:
        raise im.fail(node, f"equation {eq!r} for an operand of rank {lb.rank}")
    out = _matmul_act(im, node, [(x, lay.permute([sa.index(c) for c in batch + rows + contr])),
                                 (vb, lb.permute([sb.index(c) for c in batch + contr + cols]))])
    y, ly = out if isinstance(out, tuple) else (out, Layout.identity(out.type.rank))
    cur = batch + rows + cols
    return y, ly.permute([cur.index(c) for c in so])


def _l_softmax(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]
               ) -> tuple[Value, Layout]:
    rank = im.layouts[node.input[0]].rank
    axis = _onnx_axis(im, node, int(a.get("axis", -1 if im.opset >= 13 else 1)), rank)
    if im.opset < 13 and axis != rank - 1:
        raise im.fail(node, "opset < 13 Softmax over several axes")
    x, lay, ax = _merged(im, node, 0, axis, False)
    return _softmax(im, node, dict(a, axis=ax), x), lay


def _l_layernorm(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]
                 ) -> Value | tuple[Value, Layout]:
    rank = im.layouts[node.input[0]].rank
    axis = _onnx_axis(im, node, int(a.get("axis", -1)), rank)
    if axis != rank - 1:  # several normalized axes: batch first, or refused
        im.normal(node, node.input[0])
        return _layernorm(im, node, a)
    x, lay, _ = _merged(im, node, 0, axis, True)
    return _layernorm(im, node, dict(a, axis=-1), x), lay


def _l_gather(im: _Importer, node: onnx.NodeProto, a: dict[str, Any]
              ) -> tuple[Value, Layout]:
    rank = im.layouts[node.input[0]].rank
    axis = _onnx_axis(im, node, int(a.get("axis", 0)), rank)
    x, lay, ax = _merged(im, node, 0, axis, False)
    out = _gather(im, node, dict(a, axis=ax), x)
    if out.type.rank == x.type.rank:
        return out, lay
    # A scalar index removed axis `ax` of the IR value and axis `axis` of the tensor.
    groups = tuple(tuple(b - (b > ax) for b in g) for i, g in enumerate(lay.groups)
                   if i != axis)
    return out, Layout(groups)


_TRANSLATE: dict[str, Callable[[_Importer, onnx.NodeProto, dict[str, Any]], Any]] = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul, "BatchNormalization": _bn,
    "Relu": _unary(O.Relu()), "Sigmoid": _unary(O.Sigmoid()), "Tanh": _unary(O.Tanh()),
    "LeakyRelu": _leaky, "Clip": _clip, "Softmax": _softmax,
    "Add": _binary(O.Add()), "Sub": _binary(O.Sub()), "Mul": _binary(O.Mul()),
    "Div": _binary(O.Div()),
    "MaxPool": _pool, "AveragePool": _pool,
    "GlobalAveragePool": _global(O.GlobalAveragePool()),
    "GlobalMaxPool": _global(O.GlobalMaxPool()),
    "Pad": _pad, "Slice": _slice, "Concat": _concat, "Reshape": _reshape, "Flatten": _flatten,
    "Squeeze": _squeeze_like, "Unsqueeze": _squeeze_like, "Transpose": _transpose,
    "Identity": _identity, "Dropout": _dropout, "Cast": _cast,
    "HardSigmoid": _hardsigmoid, "HardSwish": _unary(O.HardSwish()), "Erf": _unary(O.Erf()),
    "Gelu": _gelu, "Sqrt": _unary(O.Sqrt()), "Reciprocal": _unary(O.Reciprocal()),
    "Pow": _binary(O.Pow()), "ReduceMean": _reduce, "ReduceSum": _reduce,
    "ReduceMax": _reduce, "LayerNormalization": _layernorm, "Gather": _gather,
    "Split": _split, "Expand": _expand, "Where": _where, "Einsum": _einsum,
}


# Ops with a rule for a tensor whose batch moved (any other op takes it batch first).
_LAYOUT_TRANSLATE: dict[str, Callable[[_Importer, onnx.NodeProto, dict[str, Any]], Any]] = {
    **dict.fromkeys(("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid",
                     "HardSwish", "Erf", "Gelu", "Sqrt", "Reciprocal", "Identity", "Dropout",
                     "Cast"), _l_same),
    **dict.fromkeys(("Add", "Sub", "Mul", "Div", "Pow"), _l_binary),
    "Gemm": _l_linear, "MatMul": _l_linear, "Softmax": _l_softmax,
    "LayerNormalization": _l_layernorm, "Gather": _l_gather, "Einsum": _einsum,
    "Reshape": _reshape, "Flatten": _flatten, "Squeeze": _squeeze_like,
    "Unsqueeze": _squeeze_like, "Transpose": _transpose,
}

# Op types _Importer._node handles itself (folded or read off shapes), not via _TRANSLATE.
_PRE_TRANSLATED = frozenset({"Shape", "Size", "Constant"})

SUPPORTED_OPS = sorted(_TRANSLATE)


def import_model(path: str | Path, name: str | None = None,
                 input_shapes: Mapping[str, Sequence[int]] | None = None) -> Graph:
    """Load an ONNX file and translate it to IR (see the module docstring).
    ``input_shapes``: fixed sizes for graph inputs by name (``--input-shape``), which
    replace dynamic dimensions; axis 0 (the batch) keeps the model's own size. The key
    ``""`` names the model's only input (``--input-shape 1x3x224x224``)."""
    model = load_onnx(path)
    return import_proto(model, name or Path(path).stem, input_shapes)


def import_proto(model: onnx.ModelProto, name: str = "model",
                 input_shapes: Mapping[str, Sequence[int]] | None = None) -> Graph:
    validate_model(model)
    graph = _Importer(model, name, input_shapes).run()
    check_onnx(model)
    return graph
