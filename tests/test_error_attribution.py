"""Errors are blamed on what caused them: a malformed model is a ModelError (exit 3), a
corrupt compiled output a DataError naming that output (exit 4), but an exception raised
by imcc's own code (a translator, or onnxruntime refusing a model imcc wrote) is a bug and
reaches the CLI's internal-error path (exit 70, traceback under --debug)."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from conftest import make_model
from onnx import helper

import imcc.cli
from imcc.compiler import CompileOptions, compile_graph, write_outputs
from imcc.dataset import Dataset
from imcc.errors import DataError, ImccError, ModelError, UnsupportedError
from imcc.fileio import OUTPUT_STAMP, _write_stamp
from imcc.frontend import import_proto, onnx_import
from imcc.sim.evaluate import OnnxRuntimeRejected, evaluate
from imcc.targets.crossbar import CrossbarTarget


def _model(**conv_attrs: object) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 2, 3, 3)).astype(np.float32)
    return make_model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4, **conv_attrs),
                       helper.make_node("Relu", ["c"], ["y"])],
                      [("x", ["N", 2, 5, 5])], ["y"], {"w": w})


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["imcc", *args])
    with pytest.raises(SystemExit) as exc:
        imcc.cli.main()
    return int(exc.value.code or 0)


def test_a_bug_in_a_translator_is_not_blamed_on_the_model(monkeypatch, tmp_path, capsys):
    def broken(im, node, a):
        raise TypeError("a bug in imcc")

    monkeypatch.setitem(onnx_import._TRANSLATE, "Relu", broken)
    with pytest.raises(TypeError, match="a bug in imcc"):
        import_proto(_model(), "t")
    path = tmp_path / "m.onnx"
    path.write_bytes(_model().SerializeToString())
    assert _cli(monkeypatch, "compile", str(path), "-o", str(tmp_path / "out")) == 70
    assert "internal error" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["imcc", "--debug", "compile", str(path)])
    with pytest.raises(TypeError):  # --debug: the traceback, not a message
        imcc.cli.main()


@pytest.mark.parametrize("node,match", [
    (helper.make_node("Conv", ["x", "w"], ["y"], group="two"),
     "attribute 'group' must be INT, got STRING"),
    (helper.make_node("Conv", ["x", "w"], ["y"], strides=[1]), r"strides \[1\] is not 2-D"),
    (helper.make_node("Conv", ["x"], ["y"]), "1 inputs .* it takes 2 to 3"),
    (helper.make_node("Add", ["x"], ["y"]), "it takes 2"),
    (helper.make_node("Conv", ["x", "", "w"], ["y"]), "it takes 2 to 3"),
    (helper.make_node("MaxPool", ["x"], ["y"]), "required attribute 'kernel_shape'"),
    (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[9, 9]), "kernel is larger"),
    (helper.make_node("Transpose", ["x"], ["y"], perm=[0, 1, 1, 2]), "not a permutation"),
    (helper.make_node("Softmax", ["x"], ["y"], axis=4), "axis=4 is out of range"),
    (helper.make_node("Add", ["x", "b"], ["y"]), "do not broadcast"),
])
def test_malformed_nodes_are_model_errors(node, match):
    w = np.ones((3, 2, 3, 3), np.float32)
    m = make_model([node], [("x", ["N", 2, 5, 5])], ["y"],
                   {"w": w, "b": np.ones((3,), np.float32)})
    with pytest.raises(UnsupportedError, match=match):
        import_proto(m, "t")


def _output(tmp_path):
    m = _model()
    x = np.random.default_rng(1).normal(size=(6, 2, 5, 5)).astype(np.float32)
    opts = CompileOptions(target=CrossbarTarget(rows=16, cols=16), calib=x)
    out = write_outputs(compile_graph(import_proto(m, "t"), opts, "t"), tmp_path / "out")
    np.savez(tmp_path / "data.npz", x=x)
    return out, Dataset(x, None, "data.npz")


def test_a_corrupt_compiled_onnx_is_blamed_on_the_compiled_output(tmp_path, monkeypatch,
                                                                   capsys):
    out, data = _output(tmp_path)
    evaluate(out, data)  # intact: runs
    good = (out / "compiled.onnx").read_bytes()
    (out / "compiled.onnx").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="compiled.onnx of the compiled output changed"):
        evaluate(out, data)  # the stamp's digest catches it first
    (out / OUTPUT_STAMP).unlink()  # an output written before stamps: decoding catches it
    with pytest.raises(DataError, match=r"compiled\.onnx: the compiled output is corrupt"):
        evaluate(out, data)
    assert _cli(monkeypatch, "simulate", str(out), "--data", str(tmp_path / "data.npz")) == 4
    err = capsys.readouterr().err
    assert "compiled output" in err and "data.npz" not in err
    (out / "compiled.onnx").unlink()
    with pytest.raises(DataError, match="missing from the compiled output"):
        evaluate(out, data)


def test_onnxruntime_refusing_imccs_own_model_is_an_internal_error(tmp_path, monkeypatch,
                                                                   capsys):
    out, data = _output(tmp_path)
    model = onnx.load(out / "compiled.onnx")
    model.graph.node[0].op_type = "NoSuchOp"  # what an exporter bug would look like
    (out / "compiled.onnx").write_bytes(model.SerializeToString())
    _write_stamp(out)  # as if imcc itself had written it
    with pytest.raises(OnnxRuntimeRejected) as exc:
        evaluate(out, data)
    assert not isinstance(exc.value, ImccError)
    assert _cli(monkeypatch, "simulate", str(out), "--data", str(tmp_path / "data.npz")) == 70
    assert "internal error" in capsys.readouterr().err


def test_a_foreign_onnx_file_in_an_output_is_a_data_error(tmp_path):
    out, data = _output(tmp_path)
    (out / "float.onnx").write_bytes(_model().SerializeToString())  # not written by imcc
    (out / OUTPUT_STAMP).unlink()
    with pytest.raises(DataError, match="not an ONNX model written by imcc"):
        evaluate(out, data)


def test_model_errors_still_exit_3(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(_model(group="two").SerializeToString())
    with pytest.raises(ModelError):
        import_proto(_model(group="two"), "t")
    assert _cli(monkeypatch, "compile", str(path), "-o", str(tmp_path / "out")) == 3
