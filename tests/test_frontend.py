"""Front end: both real PyTorch exports import, round-trip through compiled.onnx exactly,
and unsupported constructs are all reported at once."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import RESNET20, RESNET20_DYNAMO, make_model, ort_run
from onnx import helper

from imcc.errors import ModelError, UnsupportedError
from imcc.frontend import import_model, import_proto
from imcc.ir import ops as O
from imcc.ir import verify
from imcc.ir.onnx_export import serialize
from imcc.passes.base import CompileContext
from imcc.passes.fold_bn import FoldBatchNorm


@pytest.mark.parametrize("path", [RESNET20, RESNET20_DYNAMO], ids=["torchscript", "dynamo"])
def test_resnet20_exports_import(path):
    g = import_model(path)
    verify(g)
    xbar = list(g.crossbar_nodes())
    assert len(xbar) == 20
    assert sum(isinstance(n.op, O.Conv) for n in xbar) == 19
    assert isinstance(xbar[-1].op, O.Linear)
    # The shape chains of the option-A shortcuts are folded away: only real ops remain.
    kinds = {n.op.kind for n in g.nodes}
    assert kinds <= {"Conv", "Linear", "Relu", "Add", "Slice", "Pad", "AveragePool", "Reshape"}


def test_compiled_onnx_matches_original_on_cifar(cifar):
    x, labels = cifar
    g = import_model(RESNET20)
    ref = ort_run(RESNET20, {"input": x})[0]
    got = ort_run(serialize(g), {"input": x})[0]
    assert np.abs(ref - got).max() <= 1e-4
    assert (got.argmax(1) == labels).mean() == pytest.approx(0.91)


def test_dynamo_export_matches_torchscript_export(cifar):
    x, _ = cifar
    g = import_model(RESNET20_DYNAMO)
    ref = ort_run(RESNET20, {"input": x[:8]})[0]
    got = np.concatenate([ort_run(serialize(g), {"x": x[i:i + 1]})[0] for i in range(8)])
    assert np.abs(ref - got).max() <= 1e-4


def test_unsupported_ops_are_listed_together():
    w = np.ones((4, 3, 3, 3), np.float32)
    m = make_model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                    helper.make_node("Hardmax", ["c"], ["e"], name="hmax1"),
                    helper.make_node("Relu", ["e"], ["r"], name="relu"),
                    helper.make_node("Cos", ["r"], ["y"], name="cos1")],
                   [("x", [1, 3, 8, 8])], ["y"], {"w": w})
    with pytest.raises(UnsupportedError) as ei:
        import_proto(m)
    msg = str(ei.value)
    assert "Hardmax node 'hmax1'" in msg and "Cos node 'cos1'" in msg
    assert len(ei.value.problems) == 2


def test_non_constant_weight_and_dynamic_spatial_size_are_refused():
    m = make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                   [("x", ["N", 3, "H", 8]), ("w", [4, 3, 3, 3])], ["y"], {})
    with pytest.raises(UnsupportedError) as ei:
        import_proto(m)
    text = str(ei.value)
    assert "dynamic size on axis 2" in text and "must be a constant" in text


def test_cycle_is_a_model_error():
    m = make_model([helper.make_node("Relu", ["b"], ["a"], name="r1"),
                    helper.make_node("Relu", ["a"], ["b"], name="r2")],
                   [("x", [1, 4])], ["a"], {})
    with pytest.raises(ModelError, match="cycle"):
        import_proto(m)


def test_gemm_alpha_beta_transb_and_matmul():
    rng = np.random.default_rng(0)
    b = rng.normal(size=(5, 6)).astype(np.float32)
    c = rng.normal(size=(5,)).astype(np.float32)
    w2 = rng.normal(size=(5, 3)).astype(np.float32)
    m = make_model([helper.make_node("Gemm", ["x", "b", "c"], ["h"], alpha=0.5, beta=2.0,
                                     transB=1, name="gemm"),
                    helper.make_node("MatMul", ["h", "w2"], ["y"], name="mm")],
                   [("x", ["N", 6])], ["y"], {"b": b, "c": c, "w2": w2})
    g = import_proto(m)
    assert [n.op.kind for n in g.nodes] == ["Linear", "Linear"]
    x = rng.normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_allclose(ort_run(serialize(g), {"x": x})[0], ort_run(m, {"x": x})[0],
                               rtol=1e-5, atol=1e-5)


def test_batchnorm_folds_into_conv_and_stays_digital_elsewhere():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    bn = {k: rng.uniform(0.5, 1.5, size=4).astype(np.float32) for k in ("s", "b", "m", "v")}
    bn2 = {k + "2": v for k, v in bn.items()}
    m = make_model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
                    helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"],
                                     name="bn_fold"),
                    helper.make_node("Relu", ["n"], ["r"], name="relu"),
                    helper.make_node("BatchNormalization", ["r", "s2", "b2", "m2", "v2"], ["y"],
                                     name="bn_keep")],
                   [("x", [2, 3, 6, 6])], ["y"], {"w": w, **bn, **bn2})
    g = FoldBatchNorm().run(import_proto(m), CompileContext()).graph
    verify(g)
    assert [n.op.kind for n in g.nodes] == ["Conv", "Relu", "BatchNormalization"]
    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(ort_run(serialize(g), {"x": x})[0], ort_run(m, {"x": x})[0],
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all", bytes(range(256)) * 8])
def test_malformed_files_are_model_errors(tmp_path, content):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(ModelError):
        import_model(p)


def test_directory_and_missing_path(tmp_path):
    with pytest.raises(ModelError, match="directory"):
        import_model(tmp_path)
    with pytest.raises(ModelError, match="no such file"):
        import_model(tmp_path / "missing.onnx")
