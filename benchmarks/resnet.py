"""CIFAR ResNet-(6n+2) ONNX models with random weights, for benchmarks.

The structure is that of the bundled ResNet-20 (He et al. 2016, CIFAR variant, as exported
from PyTorch with batch norm folded into the convs): a 3x3 conv 3 -> 16 on 32x32, three
stages of ``n`` basic blocks (two 3x3 convs with bias, ReLU, residual Add, ReLU) with 16, 32
and 64 channels on 32x32, 16x16 and 8x8 maps, the first conv of stages 2 and 3 with stride
2; "option A" shortcuts (a Slice with step 2 over H and W, then a Pad of the channels, no
conv); an 8x8 AveragePool, Flatten and a Gemm 64 -> 10. ``n = 3`` is ResNet-20, ``n = 9``
ResNet-56 (55 convs + 1 linear).

Weights are He-normal with a fixed seed (biases small; each block's second conv scaled by
``1/sqrt(3n)`` so the residual sums do not blow up with depth), so a model is reproducible
and its activations stay in a sensible range for calibration; accuracy is meaningless.

    python benchmarks/resnet.py --n 9 -o resnet56.onnx
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
STAGES: tuple[tuple[int, int], ...] = ((16, 1), (32, 2), (64, 2))  # (channels, first stride)
NUM_CLASSES = 10


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n_conv = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        out = f"{name}_output_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, stride: int, name: str,
             gain: float = 1.0, k: int = 3) -> str:
        """A k x k conv with bias, "same" padding (k // 2 on every side)."""
        self.n_conv += 1
        # He-normal keeps a ReLU layer's activation variance roughly constant.
        std = gain * np.sqrt(2.0 / (cin * k * k))
        w = self.rng.normal(0.0, std, (cout, cin, k, k)).astype(np.float32)
        b = self.rng.normal(0.0, 0.01, cout).astype(np.float32)
        p = k // 2
        return self.node("Conv", [x, self.const(f"{name}.weight", w),
                                  self.const(f"{name}.bias", b)], name,
                         kernel_shape=[k, k], pads=[p, p, p, p], strides=[stride, stride],
                         dilations=[1, 1], group=1)

    def linear(self, x: str, cin: int, cout: int, name: str, out: str | None = None) -> str:
        """A Gemm x @ W^T + b with W (cout, cin), He-normal (fan-in)."""
        w = self.rng.normal(0.0, np.sqrt(2.0 / cin), (cout, cin)).astype(np.float32)
        b = np.zeros(cout, np.float32)
        y = out or f"{name}_output_0"
        self.nodes.append(helper.make_node(
            "Gemm", [x, self.const(f"{name}.weight", w), self.const(f"{name}.bias", b)], [y],
            name=name, alpha=1.0, beta=1.0, transB=1))
        return y

    def model(self, name: str, chw: Sequence[int], classes: int,
              out: str = "logits") -> onnx.ModelProto:
        """The checked model of the nodes so far: input ``input`` (N, *chw), output
        ``out`` (N, classes), which the last node must produce."""
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *chw])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", classes])],
            self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="imcc-benchmarks")
        model.ir_version = 7  # what onnxruntime and the bundled model use for opset 13
        # full_check infers every shape; the 2 GB protobuf limit rules out larger models.
        onnx.checker.check_model(model, full_check=True)
        return model

    def shortcut_a(self, x: str, cin: int, cout: int, name: str) -> str:
        """Option A: subsample by 2 in H and W, zero-pad the new channels on both sides."""
        starts = self.const(f"{name}.starts", np.array([0, 0], np.int64))
        ends = self.const(f"{name}.ends", np.array([np.iinfo(np.int64).max] * 2, np.int64))
        axes = self.const(f"{name}.axes", np.array([2, 3], np.int64))
        steps = self.const(f"{name}.steps", np.array([2, 2], np.int64))
        sub = self.node("Slice", [x, starts, ends, axes, steps], f"{name}/Slice")
        p = (cout - cin) // 2
        pads = self.const(f"{name}.pads", np.array([0, p, 0, 0, 0, p, 0, 0], np.int64))
        return self.node("Pad", [sub, pads], f"{name}/Pad", mode="constant")


def build_resnet(n: int, seed: int = 0) -> onnx.ModelProto:
    """A CIFAR ResNet-(6n+2) with random weights (see the module docstring)."""
    if n < 1:
        raise ValueError(f"blocks per stage must be >= 1, got {n}")
    b = _Builder(seed)
    x = b.node("Relu", [b.conv("input", 3, 16, 1, "/conv1/Conv")], "/Relu")
    cin = 16
    # Each residual Add would otherwise double the variance (2^(3n) at the end); scaling
    # each block's last conv by 1/sqrt(3n) keeps the logits O(1) at any depth.
    branch_gain = 1.0 / np.sqrt(3 * n)
    for s, (ch, first_stride) in enumerate(STAGES, start=1):
        for blk in range(n):
            p = f"/layer{s}/layer{s}.{blk}"
            stride = first_stride if blk == 0 else 1
            y = b.node("Relu", [b.conv(x, cin, ch, stride, f"{p}/conv1/Conv")], f"{p}/Relu")
            y = b.conv(y, ch, ch, 1, f"{p}/conv2/Conv", gain=branch_gain)
            short = x if (stride == 1 and cin == ch) else b.shortcut_a(x, cin, ch, f"{p}/short")
            x = b.node("Relu", [b.node("Add", [y, short], f"{p}/Add")], f"{p}/Relu_1")
            cin = ch
    x = b.node("AveragePool", [x], "/AveragePool", kernel_shape=[8, 8], strides=[8, 8],
               pads=[0, 0, 0, 0], ceil_mode=0, count_include_pad=1)
    x = b.node("Flatten", [x], "/Flatten", axis=1)
    w = b.rng.normal(0.0, np.sqrt(1.0 / cin), (NUM_CLASSES, cin)).astype(np.float32)
    bias = np.zeros(NUM_CLASSES, np.float32)
    b.nodes.append(helper.make_node(
        "Gemm", [x, b.const("linear.weight", w), b.const("linear.bias", bias)], ["logits"],
        name="/linear/Gemm", alpha=1.0, beta=1.0, transB=1))
    assert b.n_conv == 6 * n + 1
    return b.model(f"resnet{6 * n + 2}", (3, 32, 32), NUM_CLASSES)


def write_model_main(builders: Mapping[str, Callable[[int], onnx.ModelProto]],
                     description: str) -> None:
    """The command line of a model-builder script: MODEL --seed S -o FILE."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("model", choices=sorted(builders))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    onnx.save(builders[args.model](args.seed), args.output)
    print(f"wrote {args.output} ({args.model}, {args.output.stat().st_size / 1e6:.1f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description="Write a random-weight CIFAR ResNet-(6n+2).")
    ap.add_argument("--n", type=int, default=9, help="basic blocks per stage (9: ResNet-56)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    onnx.save(build_resnet(args.n, args.seed), args.output)
    print(f"wrote {args.output} (ResNet-{6 * args.n + 2})")


if __name__ == "__main__":
    main()
