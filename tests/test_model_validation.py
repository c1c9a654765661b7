"""Malformed models that onnxruntime refuses are refused by imcc too (exit 3), instead of
being imported silently with one of two meanings (issue 13, model validation)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from conftest import make_model
from onnx import helper, numpy_helper

from imcc.errors import ModelError
from imcc.frontend import import_proto


def base() -> onnx.ModelProto:
    w = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    return make_model([helper.make_node("Conv", ["x", "w"], ["a"], pads=[1] * 4, name="conv"),
                       helper.make_node("Relu", ["a"], ["y"], name="relu")],
                      [("x", ["N", 3, 8, 8])], ["y"], {"w": w})


def dup_producer(m: onnx.ModelProto) -> None:
    m.graph.node.append(helper.make_node("Relu", ["a"], ["y"], name="relu2"))


def dup_init(m: onnx.ModelProto) -> None:
    m.graph.initializer.append(numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w"))


def opset(v: int) -> Callable[[onnx.ModelProto], None]:
    def edit(m: onnx.ModelProto) -> None:
        m.opset_import[0].version = v
    return edit


def no_opset(m: onnx.ModelProto) -> None:
    del m.opset_import[:]


def batch0(m: onnx.ModelProto) -> None:
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0


def neg_dims(m: onnx.ModelProto) -> None:
    m.graph.initializer[0].dims[0] = -4


def dup_attr(m: onnx.ModelProto) -> None:
    m.graph.node[0].attribute.append(helper.make_attribute("pads", [1] * 4))


def dup_name(m: onnx.ModelProto) -> None:
    m.graph.node[1].name = m.graph.node[0].name


CASES = {"two producers": (dup_producer, "written by 2 nodes"),
         "duplicate node name": (dup_name, "used by more than one node"),
         "duplicate initializer": (dup_init, "defined 2 times"),
         "opset 99": (opset(99), "opset 99 is newer"),
         "no opset": (no_opset, "no opset_import"),
         "batch 0": (batch0, "dimension 0 = 0"),
         "negative dims": (neg_dims, "negative dimension"),
         "duplicate attribute": (dup_attr, "repeats attribute pads")}


def test_the_base_model_is_valid() -> None:
    import_proto(base(), "ok")


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_models_are_refused(name: str) -> None:
    edit, needle = CASES[name]
    m = base()
    edit(m)
    with pytest.raises(ModelError, match=needle):
        import_proto(m, "bad")
