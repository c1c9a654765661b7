"""Every bit width the quantize pass accepts exports a compiled.onnx that passes the ONNX
checker and that onnxruntime (run as `imcc simulate` runs it) computes bit for bit like the
simulated crossbar program; widths outside the range are refused with a UsageError.

Small graphs cover the three crossbar lowerings: Conv (with groups), Gemm on a 2-D input and
MatMul on a 3-D input. Wide combinations (e.g. 12-bit weights and activations) push the
integer sums past 2^24, where both sides accumulate in float64 (see imcc.ir.onnx_export)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import make_model
from onnx import helper
from typer.testing import CliRunner

from imcc.cli import app
from imcc.compiler import CompileOptions, compile_graph
from imcc.errors import UsageError
from imcc.frontend import import_proto
from imcc.ir.onnx_export import to_onnx
from imcc.sim.evaluate import ort_session
from imcc.sim.simulator import simulate
from imcc.targets.crossbar import CrossbarTarget


def _conv_model() -> tuple[onnx.ModelProto, tuple[int, ...]]:
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(size=(6, 4, 3, 3)).astype(np.float32)
    b2 = rng.normal(size=6).astype(np.float32)
    m = make_model([helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1] * 4),
                    helper.make_node("Relu", ["a"], ["r"]),
                    helper.make_node("Conv", ["r", "w2", "b2"], ["y"], strides=[2, 2],
                                     pads=[1, 0, 1, 0], group=2)],
                   [("x", ["N", 3, 7, 7])], ["y"], {"w1": w1, "w2": w2, "b2": b2})
    return m, (3, 7, 7)


def _gemm_model() -> tuple[onnx.ModelProto, tuple[int, ...]]:
    rng = np.random.default_rng(1)
    w1 = rng.normal(size=(12, 40)).astype(np.float32)
    b1 = rng.normal(size=12).astype(np.float32)
    w2 = rng.normal(size=(5, 12)).astype(np.float32)
    m = make_model([helper.make_node("Gemm", ["x", "w1", "b1"], ["a"], transB=1),
                    helper.make_node("Relu", ["a"], ["r"]),
                    helper.make_node("Gemm", ["r", "w2"], ["y"], transB=1)],
                   [("x", ["N", 40])], ["y"], {"w1": w1, "b1": b1, "w2": w2})
    return m, (40,)


def _matmul3d_model() -> tuple[onnx.ModelProto, tuple[int, ...]]:
    rng = np.random.default_rng(2)
    w1 = rng.normal(size=(40, 12)).astype(np.float32)
    w2 = rng.normal(size=(12, 5)).astype(np.float32)
    m = make_model([helper.make_node("MatMul", ["x", "w1"], ["a"]),
                    helper.make_node("Relu", ["a"], ["r"]),
                    helper.make_node("MatMul", ["r", "w2"], ["y"])],
                   [("x", ["N", 4, 40])], ["y"], {"w1": w1, "w2": w2})
    return m, (4, 40)


MODELS = {"conv": _conv_model, "gemm": _gemm_model, "matmul3d": _matmul3d_model}
# (weight bits, act bits, first/last bits): the accepted range 2..16 for each, and widths
# across the int8/int16 boundary and the 2^24 exact-float32 bound.
WIDTHS = ([(w, 4, None) for w in (2, 3, 4, 8, 9, 12, 16)]
          + [(4, a, None) for a in (2, 3, 8, 9, 12, 16)]
          + [(8, 8, None), (12, 12, None), (16, 16, None), (2, 16, None), (16, 2, None)]
          + [(4, 4, f) for f in (2, 8, 12, 16)])


def _compile(m: onnx.ModelProto, shape: tuple[int, ...], wbits: int, abits: int,
             fl: int | None, x: np.ndarray):
    target = CrossbarTarget(rows=32, cols=32, weight_bits=wbits, act_bits=abits)
    opts = CompileOptions(target=target, mapping="auto", first_last_bits=fl, calib=x,
                          verify_each=True)
    return compile_graph(import_proto(m, "t"), opts, "t")


@pytest.mark.parametrize("wbits,abits,fl", WIDTHS,
                         ids=[f"w{w}a{a}" + (f"fl{f}" if f else "") for w, a, f in WIDTHS])
@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_onnx_is_valid_and_equals_the_simulator(name, wbits, abits, fl):
    m, shape = MODELS[name]()
    x = (np.random.default_rng(7).normal(size=(24,) + shape) * 2).astype(np.float32)
    res = _compile(m, shape, wbits, abits, fl, x)
    model = to_onnx(res.graph)
    onnx.checker.check_model(model, full_check=True)
    widest = max(abits, wbits, fl or 0)
    assert model.opset_import[0].version == (21 if widest > 8 else 17)
    assert model.ir_version == (10 if widest > 8 else 8)
    got = ort_session(model.SerializeToString()).run(None, {"x": x})[0]
    want = simulate(res.program, {"x": x}).outputs["y"]
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_wide_sums_accumulate_in_float64_on_both_sides():
    """16-bit weights and activations: one product alone exceeds 2^24, so compiled.onnx
    accumulates in double (Conv as an exact patch gather + double MatMul) and the
    simulator in float64; narrow widths keep the plain float32 Conv."""
    m, shape = _conv_model()
    x = np.random.default_rng(7).normal(size=(8,) + shape).astype(np.float32)
    wide = to_onnx(_compile(m, shape, 16, 16, None, x).graph)
    narrow = to_onnx(_compile(m, shape, 4, 4, None, x).graph)
    casts = [n for n in wide.graph.node if n.op_type == "Cast"
             and n.attribute[0].i == onnx.TensorProto.DOUBLE]
    assert casts and not [n for n in narrow.graph.node if n.op_type == "Cast"]
    assert [n.op_type for n in narrow.graph.node].count("Conv") == 2


def test_row_tiles_share_one_exactness_bound():
    """600 inputs on 32-row arrays: every row tile's integer sum stays below 2^24, the
    layer's total does not. The simulator must then accumulate in float64 (it used to
    check each tile alone and add the tiles up in float32), like compiled.onnx."""
    rng = np.random.default_rng(5)
    w = np.ones((3, 600), np.float32)          # 2-bit weights: every level is 1
    m = make_model([helper.make_node("Relu", ["x"], ["r"]),
                    helper.make_node("Gemm", ["r", "w"], ["y"], transB=1)],
                   [("x", ["N", 600])], ["y"], {"w": w})
    x = rng.uniform(0.5, 1.0, size=(16, 600)).astype(np.float32)
    res = _compile(m, (600,), 2, 16, None, x)
    got = ort_session(to_onnx(res.graph).SerializeToString()).run(None, {"x": x})[0]
    want = simulate(res.program, {"x": x}).outputs["y"]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("wbits,abits,fl", [(1, 4, None), (4, 1, None), (4, 4, 1),
                                            (4, 4, 17)])
def test_widths_outside_the_quantize_range_are_refused(wbits, abits, fl):
    m, shape = _conv_model()
    with pytest.raises(UsageError, match=r"must be an integer in \[2, 16\]"):
        _compile(m, shape, wbits, abits, fl, None)
    with pytest.raises(UsageError, match=r"\[1, 16\]"):
        CrossbarTarget(weight_bits=17)


def _save(tmp_path, m: onnx.ModelProto):
    path = tmp_path / "small.onnx"
    path.write_bytes(m.SerializeToString())
    return path


def test_cli_compile_act_bits_12_then_simulate(tmp_path):
    m, shape = _conv_model()
    model = _save(tmp_path, m)
    x = np.random.default_rng(3).normal(size=(20,) + shape).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x)
    runner = CliRunner()
    out = tmp_path / "out"
    res = runner.invoke(app, ["compile", str(model), "--act-bits", "12", "-o", str(out)])
    assert res.exit_code == 0, res.output
    compiled = onnx.load(out / "compiled.onnx")
    onnx.checker.check_model(compiled, full_check=True)
    assert compiled.opset_import[0].version == 21
    res = runner.invoke(app, ["simulate", str(out), "--data", str(tmp_path / "data.npz"),
                              "--json"])
    assert res.exit_code == 0, res.output
    assert '"max_abs_diff": 0.0' in res.output
    assert '"ort_agreement": 1.0' in res.output


@pytest.mark.parametrize("flags", [["--act-bits", "1"], ["--weight-bits", "17"],
                                   ["--first-last-bits", "1"]])
def test_cli_refuses_widths_before_reading_the_model(tmp_path, flags):
    # The model path does not exist: the width is refused first (a usage error, not a
    # model error), before any work.
    res = CliRunner().invoke(app, ["compile", str(tmp_path / "missing.onnx"), *flags,
                                   "-o", str(tmp_path / "out")])
    assert isinstance(res.exception, UsageError), res.output
    assert "must be an integer in [2, 16]" in str(res.exception)
    assert not (tmp_path / "out").exists()


def test_the_ir_does_not_import_the_passes():
    """The exporter owns the QDQ lowering: nothing under imcc/ir imports imcc.passes
    (dependencies run upward only)."""
    import ast
    from pathlib import Path

    import imcc.ir

    for path in Path(imcc.ir.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "imcc.passes" or n.startswith("imcc.passes.")
                           for n in names), path.name
