"""Patterns the PyTorch exporters write for CNN families beyond the zoo assets (issue 11),
each as a small onnx.helper graph checked against onnxruntime: imported, compiled
unquantized, its crossbar program simulated (helpers of test_digital_ops)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from test_digital_ops import _check, _model

from imcc.errors import UnsupportedError
from imcc.frontend import import_proto

RNG = np.random.default_rng(3)


def _as_strided(perm: np.ndarray, consumer: str = "Gather") -> list:
    """ConvNeXt's dynamo export (batch 1): a conv, then torch's as_strided written as a
    flatten of the whole tensor and a Gather of constant indices of shape (1, C, 1, 1)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("ReduceMean", ["c", "axes"], ["m"], keepdims=1),
             helper.make_node("Reshape", ["m", "flat"], ["f"])]
    if consumer == "Gather":
        nodes.append(helper.make_node("Gather", ["f", "idx"], ["g"], axis=0))
        nodes.append(helper.make_node("Transpose", ["g"], ["y"], perm=[0, 2, 3, 1]))
    else:
        nodes.append(helper.make_node(consumer, ["f"], ["y"]))
    return nodes


def _inits(perm: np.ndarray) -> dict[str, np.ndarray]:
    return {"w": RNG.standard_normal((6, 4, 3, 3)).astype(np.float32),
            "axes": np.array([-1, -2], np.int64), "flat": np.array([-1], np.int64),
            "idx": perm.reshape(1, 6, 1, 1).astype(np.int64)}


@pytest.mark.parametrize("perm", [np.arange(6), np.array([5, 0, 3, 1, 4, 2]),
                                  np.array([-1, 0, 0, 2, 3, -6])],
                         ids=["identity", "permuted", "negative-repeated"])
def test_flatten_whole_then_gather_on_batch_1(perm: np.ndarray) -> None:
    m = _model(_as_strided(perm), _inits(perm), 20, x_shape=[1, 4, 5, 5])
    _check(m, RNG.standard_normal((1, 4, 5, 5)).astype(np.float32))


def test_flatten_whole_with_another_consumer_is_refused() -> None:
    perm = np.arange(6)
    m = _model(_as_strided(perm, "Relu"), _inits(perm), 20, x_shape=[1, 4, 5, 5])
    # The flatten itself is a layout (the batch merged into the one axis); the output
    # cannot be held batch first.
    with pytest.raises(UnsupportedError, match="graph output 'y' .*batch on axis 0 merged "
                                               "with other axes .*since Reshape node 'f'"):
        import_proto(m, "t")


def test_flatten_whole_of_a_dynamic_batch_is_refused() -> None:
    perm = np.arange(6)
    m = _model(_as_strided(perm), _inits(perm), 20, x_shape=["N", 4, 5, 5])
    with pytest.raises(UnsupportedError, match="Gather node 'g': .*of shape \\(6\\*B,\\) with "
                                               "the batch on axis 0 merged"):
        import_proto(m, "t")


def test_shape_arithmetic_downstream_of_a_refusal_is_not_called_unsupported() -> None:
    """A Mod/Range/ConstantOfShape of a refused tensor's Shape would have folded (Swin's
    TorchScript export listed 'Mod x10', 'Range x18', ... below one refusal); an op that
    reads the activation itself is still named."""
    nodes = [helper.make_node("Foo", ["x"], ["f"]),
             helper.make_node("Shape", ["f"], ["s"]),
             helper.make_node("Mod", ["s", "two"], ["m"]),
             helper.make_node("ConstantOfShape", ["m"], ["z"]),
             helper.make_node("Range", ["zero", "two", "one"], ["r"]),
             helper.make_node("Reshape", ["f", "s"], ["g"]),
             helper.make_node("Bar", ["g"], ["y"])]
    inits = {"two": np.array(2, np.int64), "zero": np.array(0, np.int64),
             "one": np.array(1, np.int64)}
    m = _model(nodes, inits, 17, x_shape=["N", 4, 5, 5])
    with pytest.raises(UnsupportedError) as exc:
        import_proto(m, "t")
    text = str(exc.value)
    assert text.startswith("2 unsupported constructs: Bar node 'y'") or \
        text.startswith("2 unsupported constructs: Foo node 'f'"), text
    assert "Foo" in text and "Bar" in text
    assert not any(op in text for op in ("Mod", "ConstantOfShape", "Range", "Shape"))


def test_shape_downstream_of_a_refusal_is_not_called_unsupported() -> None:
    """Shape is read off the activation's shape; below a refused node it used to be listed
    as an op type imcc does not implement (ViT and Swin exports: 'Shape x176')."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2, 3]),
             helper.make_node("Shape", ["t"], ["s"]),
             helper.make_node("Reshape", ["x", "s"], ["y"])]
    m = _model(nodes, {}, 17, x_shape=["N", 4, 5, 5])
    with pytest.raises(UnsupportedError) as exc:
        import_proto(m, "t")
    # The Transpose is a layout now (the batch on axis 1); the Reshape of x to its shape
    # would split the batch.
    assert str(exc.value).startswith("1 unsupported construct: Reshape node"), str(exc.value)
    assert "Shape" not in str(exc.value)
