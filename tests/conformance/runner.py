"""Run ONNX's backend node test cases through imcc: import, compile unquantized, simulate the
emitted crossbar program, compare with the expected outputs.

The cases come from `onnx.backend.test.case.node` (shipped with the `onnx` package): each
module there generates its cases when imported, so importing only the modules of the ops
imcc claims is much faster than `collect_testcases()`, which imports every module. Only the
single-node cases of those ops are used; the `*_expanded` variants test ONNX function
bodies (Where, ReduceMax, ...), not the op itself.

ONNX's Conv suite has no dilation or group case and its Gemm/MatMul cases are tiny, so a
few `imcc_*` cases are added whose expected outputs come from ONNX's reference
implementation (`onnx.reference.ReferenceEvaluator`).

Inputs that a deployed CNN holds as constants (weights, bias, pads, shape, ...) are bound
as initializers, because imcc maps only constant weights to crossbars and folds the other
constant operands at import; the remaining inputs are fed to the simulator.
"""

from __future__ import annotations

import importlib
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from imcc.compiler import CompileOptions, compile_graph
from imcc.errors import ImccError
from imcc.frontend import import_proto
from imcc.sim.simulator import simulate
from imcc.targets.crossbar import CrossbarTarget

# op type -> the module of onnx.backend.test.case.node that generates its cases
OPS: dict[str, str] = {
    "Conv": "conv", "Gemm": "gemm", "MatMul": "matmul",
    "Relu": "relu", "LeakyRelu": "leakyrelu", "Sigmoid": "sigmoid", "Tanh": "tanh",
    "Clip": "clip", "Softmax": "softmax",
    "Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div",
    "MaxPool": "maxpool", "AveragePool": "averagepool",
    "GlobalAveragePool": "globalaveragepool", "GlobalMaxPool": "globalmaxpool",
    "Pad": "pad", "Slice": "slice", "Concat": "concat", "Reshape": "reshape",
    "Flatten": "flatten", "Squeeze": "squeeze", "Unsqueeze": "unsqueeze",
    "Transpose": "transpose", "Identity": "identity",
    "BatchNormalization": "batch_normalization", "Dropout": "dropout", "Cast": "cast",
    # Digital ops of issue 11 (MobileNetV3, EfficientNet, ConvNeXt, ShuffleNet, ViT, ...)
    "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish", "Erf": "erf", "Gelu": "gelu",
    "Sqrt": "sqrt", "Reciprocal": "reciprocal", "Pow": "pow",
    "ReduceMean": "reducemean", "ReduceSum": "reducesum", "ReduceMax": "reducemax",
    "LayerNormalization": "layernormalization", "Gather": "gather", "Split": "split",
    "Expand": "expand", "Where": "where",
    # Attention (ViT): a product of two activations, digital
    "Einsum": "einsum",
}
CROSSBAR_OPS = ("Conv", "Gemm", "MatMul")

# Node input positions bound as initializers (constants in any deployed CNN).
CONST_INPUTS: dict[str, frozenset[int]] = {
    "Conv": frozenset({1, 2}), "Gemm": frozenset({1, 2}), "MatMul": frozenset({1}),
    "Clip": frozenset({1, 2}), "Pad": frozenset({1, 2, 3}), "Slice": frozenset({1, 2, 3, 4}),
    "Reshape": frozenset({1}), "Squeeze": frozenset({1}), "Unsqueeze": frozenset({1}),
    "BatchNormalization": frozenset({1, 2, 3, 4}), "Dropout": frozenset({1, 2}),
    "Pow": frozenset({1}), "ReduceMean": frozenset({1}), "ReduceSum": frozenset({1}),
    "ReduceMax": frozenset({1}), "LayerNormalization": frozenset({1, 2}),
    "Gather": frozenset({1}), "Split": frozenset({1}), "Expand": frozenset({1}),
    "Where": frozenset({0}),
}

# Float rounding only: the simulator accumulates crossbar column sums in float64 and in a
# different order than the reference, and the reference computes some cases in float64.
RTOL = 1e-4
ATOL = 1e-5
# Cases whose expected outputs ONNX states to fewer digits than float32 carries; the
# reason is printed in docs/conformance.md. imcc agrees with onnxruntime and ONNX's reference
# implementation on these to ~1e-7.
TOLERANCE_OVERRIDES: dict[str, tuple[float, float, str]] = {
    "test_averagepool_2d_ceil_last_window_starts_on_pad": (
        1e-3, 1e-4, "its expected output is written with 4 decimals (e.g. 0.1511)"),
}

# A small array so that even ONNX's tiny cases are cut into several row and column tiles
# (a 3x3 kernel has 9 rows; 4-bit weights on 1-bit cells take 4 columns each).
SMALL_TARGET = CrossbarTarget(rows=8, cols=8, weight_bits=4, cell_bits=1)
# A larger array for a third run, where parallel-window mappings (SDK / VW-SDK) fit.
WIDE_TARGET = CrossbarTarget(rows=64, cols=64, weight_bits=4, cell_bits=1)
RUNS: tuple[tuple[str, CrossbarTarget], ...] = (
    ("im2col", SMALL_TARGET), ("auto", SMALL_TARGET), ("auto", WIDE_TARGET))


@dataclass
class Case:
    name: str
    op: str
    source: str                   # "onnx" (its backend suite) or "imcc" (added here)
    model: onnx.ModelProto
    inputs: list[Any]
    outputs: list[Any]


@dataclass
class Outcome:
    case: str
    op: str
    source: str
    status: str                   # matched | refused | mismatch | crash
    detail: str = ""
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0      # |got - want| / max(|want|, 1)
    strategies: set[str] = field(default_factory=set)


# ------------------------------------------------------------------------------ collection


def onnx_cases() -> list[Case]:
    """ONNX's single-node test cases for the ops in `OPS`."""
    import onnx.backend.test.case.node as node_cases

    for mod in sorted(set(OPS.values())):
        importlib.import_module(f"{node_cases.__name__}.{mod}")
    # Importing a case module appends its cases to this list (what collect_testcases
    # returns after importing every module).
    out: list[Case] = []
    for tc in node_cases._NodeTestCases:
        nodes = tc.model.graph.node
        if len(nodes) != 1 or nodes[0].op_type not in OPS or nodes[0].domain not in ("",
                                                                                    "ai.onnx"):
            continue
        if "_expanded" in tc.name or not tc.data_sets:
            continue
        ins, outs = tc.data_sets[0]
        out.append(Case(tc.name, nodes[0].op_type, "onnx", tc.model, list(ins), list(outs)))
    return sorted(out, key=lambda c: (c.op, c.name))


def _ref_case(name: str, node: onnx.NodeProto, feeds: dict[str, np.ndarray],
              consts: dict[str, np.ndarray], opset: int = 17) -> Case:
    """A case whose expected output is ONNX's reference implementation. Constants are
    passed as graph inputs too, as in ONNX's own cases, so binding treats both alike."""
    from onnx.reference import ReferenceEvaluator

    all_in = {**feeds, **consts}
    order = [n for n in node.input if n]
    g = helper.make_graph(
        [node], name,
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(all_in[n].dtype),
                                       all_in[n].shape) for n in order],
        [helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    want = ReferenceEvaluator(model).run(None, {n: all_in[n] for n in order})
    return Case(name, node.op_type, "imcc", model, [all_in[n] for n in order], list(want))


def extra_cases() -> list[Case]:
    """Conv dilations, groups and auto_pad variants, crossbar layers larger than one 8x8
    array, float Pad modes and single-output LayerNormalization, which ONNX's own suite
    does not cover."""
    rng = np.random.default_rng(20240601)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    def conv(name: str, x: tuple[int, ...], w: tuple[int, ...], bias: bool = False,
             **attrs: Any) -> Case:
        ins = ["x", "W"] + (["B"] if bias else [])
        consts = {"W": r(*w)}
        if bias:
            consts["B"] = r(w[0])
        return _ref_case(name, helper.make_node("Conv", ins, ["y"], **attrs), {"x": r(*x)},
                         consts)

    cases = [
        conv("imcc_conv_dilations", (1, 2, 7, 7), (3, 2, 3, 3), dilations=[2, 2],
             pads=[2, 2, 2, 2]),
        conv("imcc_conv_dilation_stride_asymmetric", (1, 2, 9, 8), (2, 2, 3, 2),
             dilations=[1, 2], strides=[2, 1], pads=[1, 0, 2, 1]),
        conv("imcc_conv_groups", (1, 4, 6, 6), (4, 2, 3, 3), bias=True, group=2,
             pads=[1, 1, 1, 1]),
        conv("imcc_conv_depthwise", (2, 3, 5, 5), (3, 1, 3, 3), group=3, strides=[2, 2],
             pads=[1, 1, 1, 1]),
        conv("imcc_conv_groups_dilations", (1, 6, 8, 8), (6, 2, 2, 2), bias=True, group=3,
             dilations=[2, 3]),
        conv("imcc_conv_autopad_same_lower_strides", (1, 2, 7, 6), (3, 2, 3, 3),
             auto_pad="SAME_LOWER", strides=[2, 2]),
        conv("imcc_conv_autopad_same_upper_dilations", (1, 1, 6, 6), (2, 1, 2, 2),
             auto_pad="SAME_UPPER", dilations=[2, 2]),
        conv("imcc_conv_autopad_valid", (1, 2, 6, 5), (2, 2, 3, 2), auto_pad="VALID",
             strides=[1, 2]),
        conv("imcc_conv_1x1_tiled", (2, 20, 3, 3), (12, 20, 1, 1), bias=True),
        conv("imcc_conv_3x3_tiled", (1, 5, 6, 6), (7, 5, 3, 3), bias=True, pads=[1, 1, 1, 1]),
        conv("imcc_conv_kernel_2x3_strides", (1, 3, 7, 9), (4, 3, 2, 3), strides=[2, 3],
             pads=[0, 1, 1, 0]),
        _ref_case("imcc_gemm_transB_alpha_beta_tiled",
                  helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1, alpha=0.5,
                                   beta=2.0),
                  {"a": r(3, 20)}, {"b": r(10, 20), "c": r(10)}),
        _ref_case("imcc_gemm_scalar_bias_tiled",
                  helper.make_node("Gemm", ["a", "b", "c"], ["y"], alpha=1.5),
                  {"a": r(2, 17)}, {"b": r(17, 9), "c": r(1)}),
        _ref_case("imcc_matmul_3d_tiled", helper.make_node("MatMul", ["a", "b"], ["y"]),
                  {"a": r(2, 3, 20)}, {"b": r(20, 6)}),
        _ref_case("imcc_matmul_2d_tiled", helper.make_node("MatMul", ["a", "b"], ["y"]),
                  {"a": r(4, 19)}, {"b": r(19, 11)}),
    ]
    pads = {"pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)}
    for mode, opset in (("edge", 17), ("reflect", 17), ("wrap", 19)):
        # ONNX's own cases for these modes use int32 data, which imcc refuses.
        cases.append(_ref_case(f"imcc_pad_{mode}_float",
                               helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode),
                               {"x": r(1, 2, 4, 5)}, pads, opset=opset))
    # ONNX's LayerNormalization cases all ask for the Mean/InvStdDev outputs too (refused:
    # exporters never use them); these ask for Y alone, as the exporters write it: over
    # the tokens' channels (ViT), channels last (ConvNeXt), all of a sample (axis 1).
    for name, x, axis, bias in (("tokens", (2, 5, 8), -1, True), ("nhwc", (1, 3, 4, 6), -1, True),
                                ("axis1_no_bias", (2, 3, 4, 5), 1, False)):
        norm = x[axis:]
        consts = {"scale": r(*norm) + 1.0, **({"bias": r(*norm)} if bias else {})}
        cases.append(_ref_case(f"imcc_layernorm_{name}", helper.make_node(
            "LayerNormalization", ["x", "scale"] + (["bias"] if bias else []), ["y"],
            axis=axis, epsilon=1e-3), {"x": r(*x)}, consts))
    return cases


# --------------------------------------------------------------------------------- running


def _array(v: Any) -> np.ndarray | None:
    """A case's input as an array; None for sequences, optionals and exotic element types."""
    if isinstance(v, onnx.TensorProto):
        try:
            return numpy_helper.to_array(v)
        except Exception:  # noqa: BLE001 - float8/int4 tensors have no numpy form
            return None
    if isinstance(v, (np.ndarray, np.generic)):
        return np.asarray(v)
    return None


def bind(case: Case) -> tuple[onnx.ModelProto, dict[str, np.ndarray], list[str]]:
    """The case's model with its constant inputs bound as initializers, the feeds for the
    rest, and the names of kept inputs that have no array form (imcc must refuse those)."""
    m = onnx.ModelProto()
    m.CopyFrom(case.model)
    node = m.graph.node[0]
    positions = {n: i for i, n in enumerate(node.input) if n}
    const_pos = CONST_INPUTS.get(case.op, frozenset())
    feeds: dict[str, np.ndarray] = {}
    unfed: list[str] = []
    kept = []
    for vi, v in zip(m.graph.input, case.inputs, strict=True):
        arr = _array(v)
        if positions.get(vi.name) in const_pos and arr is not None:
            m.graph.initializer.append(numpy_helper.from_array(arr, vi.name))
            continue
        kept.append(vi)
        if arr is None:
            unfed.append(vi.name)
        else:
            feeds[vi.name] = arr
    del m.graph.input[:]
    m.graph.input.extend(kept)
    return m, feeds, unfed


def run_case(case: Case, runs: tuple[tuple[str, CrossbarTarget], ...] = RUNS) -> Outcome:
    """Compile and simulate one case under every (mapping, target) run."""
    model, feeds, unfed = bind(case)
    res = Outcome(case.name, case.op, case.source, "matched")
    rtol, atol, _ = TOLERANCE_OVERRIDES.get(case.name, (RTOL, ATOL, ""))
    for mapping, target in runs:
        label = f"{mapping}@{target.name}/S={target.slices}"
        try:
            graph = import_proto(model, case.name)
            compiled = compile_graph(graph, CompileOptions(target=target, mapping=mapping,
                                                           quantize=False), case.name)
        except ImccError as exc:
            res.status, res.detail = "refused", exc.message
            return res
        except Exception:  # noqa: BLE001 - a crash is a finding, reported with the others
            res.status, res.detail = "crash", f"{label}: {traceback.format_exc(limit=-3)}"
            return res
        if unfed:
            res.status = "crash"
            res.detail = f"{label}: compiled although inputs {unfed} have no float form"
            return res
        try:
            sim = simulate(compiled.program, feeds)
            got = [sim.outputs[o] for o in compiled.program.outputs]
        except Exception:  # noqa: BLE001
            res.status, res.detail = "crash", f"{label}: {traceback.format_exc(limit=-3)}"
            return res
        res.strategies.update(layer.mapping.strategy.value
                              for layer in compiled.program.crossbar_layers())
        want = [np.asarray(_array(w)) for w in case.outputs]
        if len(got) != len(want):
            res.status = "mismatch"
            res.detail = f"{label}: {len(got)} outputs, expected {len(want)}"
            return res
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            if g.shape != w.shape:
                res.status = "mismatch"
                res.detail = f"{label}: output {k} has shape {g.shape}, expected {w.shape}"
                return res
            gf, wf = g.astype(np.float64), w.astype(np.float64)
            if not np.array_equal(np.isnan(gf), np.isnan(wf)):
                res.status, res.detail = "mismatch", f"{label}: output {k}: NaN pattern differs"
                return res
            ok = ~np.isnan(wf)
            err = np.abs(gf - wf)[ok]
            if err.size:
                res.max_abs_err = max(res.max_abs_err, float(err.max()))
                res.max_rel_err = max(res.max_rel_err, float(
                    (err / np.maximum(np.abs(wf[ok]), 1.0)).max()))
            if not np.allclose(gf[ok], wf[ok], rtol=rtol, atol=atol):
                res.status = "mismatch"
                res.detail = (f"{label}: output {k} differs: max abs err "
                              f"{float(err.max()):.3g}")
                return res
    return res


def run_all(cases: list[Case] | None = None) -> list[Outcome]:
    return [run_case(c) for c in (cases if cases is not None else onnx_cases() + extra_cases())]


# ------------------------------------------------------------------------------- reporting


def summary(outcomes: list[Outcome]) -> str:
    by = {s: [o for o in outcomes if o.status == s]
          for s in ("matched", "refused", "mismatch", "crash")}
    lines = [f"conformance: {len(by['matched'])} matched, {len(by['refused'])} refused, "
             f"{len(by['mismatch'])} mismatched, {len(by['crash'])} crashed "
             f"(of {len(outcomes)} cases)"]
    if by["matched"]:
        worst = max(by["matched"], key=lambda o: o.max_rel_err)
        lines.append(f"largest error of a matched case: {worst.max_abs_err:.3g} abs, "
                     f"{worst.max_rel_err:.3g} relative ({worst.case})")
    ops = sorted({o.op for o in outcomes}, key=lambda op: (op not in CROSSBAR_OPS, op))
    lines.append("by op (matched/refused): " + ", ".join(
        f"{op} {sum(o.status == 'matched' for o in outcomes if o.op == op)}/"
        f"{sum(o.status == 'refused' for o in outcomes if o.op == op)}" for op in ops))
    for s in ("refused", "mismatch", "crash"):
        if by[s]:
            lines.append(f"{s}: " + ", ".join(o.case for o in by[s]))
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_conformance(outcomes: list[Outcome]) -> str:
    """docs/conformance.md: per-op counts and every refused case with imcc's reason."""
    ops = sorted({o.op for o in outcomes}, key=lambda op: (op not in CROSSBAR_OPS, op))
    n_onnx = sum(o.source == "onnx" for o in outcomes)
    lines = [
        "# ONNX conformance",
        "",
        "<!-- Generated by `python scripts/conformance_report.py`; do not edit by hand. -->",
        "",
        f"Generated by `python scripts/conformance_report.py` (onnx {onnx.__version__}). "
        "It runs ONNX's backend node test cases for every op imcc claims "
        f"({n_onnx} single-node cases from `onnx.backend.test.case.node`) plus "
        f"{len(outcomes) - n_onnx} `imcc_*` cases for Conv dilations/groups/auto_pad, "
        "tiled crossbar layers, float Pad modes and single-output LayerNormalization "
        "(expected outputs from ONNX's reference implementation). "
        "Weights, biases and other operands a deployed CNN holds as constants are bound as "
        "initializers; each case is compiled with `--no-quantize` for "
        + ", ".join(f"`--mapping {m} --target {t.name}`" for m, t in RUNS)
        + f" and its crossbar program simulated; outputs must match to rtol {RTOL:g}, "
        f"atol {ATOL:g} (float rounding). The test `tests/test_conformance.py` checks that "
        "every case matches or is refused at import/compile time with a message naming the "
        "unsupported construct, and that this file is current.",
        "",
        *[f"`{name}` is compared with rtol {rt:g}, atol {at:g}: {why}."
          for name, (rt, at, why) in sorted(TOLERANCE_OVERRIDES.items())],
        "",
        "imcc treats axis 0 of every activation as the batch axis: ops that move, slice, "
        "concatenate, squeeze or reshape across it are refused, as are integer activations "
        "(the crossbar program computes in float), non-2-D pooling and convolution, and "
        "operands that would have to be crossbar weights but are not constant.",
        "",
        "## Summary",
        "",
        "| op | ONNX cases | imcc cases | matched | refused |",
        "|---|---:|---:|---:|---:|",
    ]
    for op in ops:
        mine = [o for o in outcomes if o.op == op]
        lines.append(f"| {op} | {sum(o.source == 'onnx' for o in mine)} | "
                     f"{sum(o.source == 'imcc' for o in mine)} | "
                     f"{sum(o.status == 'matched' for o in mine)} | "
                     f"{sum(o.status == 'refused' for o in mine)} |")
    tot_m = sum(o.status == "matched" for o in outcomes)
    tot_r = sum(o.status == "refused" for o in outcomes)
    lines += [f"| **total** | {n_onnx} | {len(outcomes) - n_onnx} | {tot_m} | {tot_r} |", "",
              "## Refused cases", "", "| case | op | reason |", "|---|---|---|"]
    for o in sorted(outcomes, key=lambda o: (o.op, o.case)):
        if o.status == "refused":
            lines.append(f"| `{o.case}` | {o.op} | {_md(o.detail)} |")
    bad = [o for o in outcomes if o.status not in ("matched", "refused")]
    if bad:
        lines += ["", "## Cases that neither match nor are refused (bugs)", "",
                  "| case | op | status | detail |", "|---|---|---|---|"]
        for o in bad:
            lines.append(f"| `{o.case}` | {o.op} | {o.status} | "
                         f"{_md(o.detail.strip().splitlines()[-1] if o.detail else '')} |")
    return "\n".join(lines) + "\n"
