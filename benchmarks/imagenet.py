"""ImageNet-shaped ONNX models with random weights, for the scale benchmarks.

* ``resnet50``: the layer shapes of ResNet-50 (He et al. 2016) on 3x224x224 inputs, batch
  norm folded into the convs (as an inference export with constant folding leaves it): a
  7x7/2 conv 3 -> 64, a 3x3/2 MaxPool, four stages of 3, 4, 6 and 3 bottleneck blocks
  (1x1 reduce, 3x3 with the stage's stride in the first block, 1x1 expand by 4; a 1x1
  projection shortcut in each stage's first block), GlobalAveragePool, Flatten and a Gemm
  2048 -> 1000. 53 convs + 1 linear, 25.5 M parameters (about 102 MB).
* ``vgg11``: VGG-11 (configuration "A", Simonyan & Zisserman 2015) on 3x224x224: eight
  3x3 convs (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M with M a 2x2/2 MaxPool),
  Flatten, Gemm 25088 -> 4096, ReLU, Gemm 4096 -> 4096, ReLU, Gemm 4096 -> 1000 (no
  dropout at inference). 132.9 M parameters (about 531 MB).

Weights are He-normal with a fixed seed, each residual branch's last conv scaled down so the
sums stay O(1); accuracy is meaningless, the shapes and sizes are what matter. Build the
big one outside the repository:

    python benchmarks/imagenet.py vgg11 -o /tmp/vgg11.onnx
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from resnet import _Builder, write_model_main

IMAGENET_CLASSES = 1000
RESNET50_STAGES: tuple[tuple[int, int, int], ...] = ((64, 3, 1), (128, 4, 2), (256, 6, 2),
                                                     (512, 3, 2))  # (width, blocks, stride)
VGG11_CONVS: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512,
                                      512, "M")


def build_resnet50(seed: int = 0) -> onnx.ModelProto:
    """ResNet-50's shapes with random weights (see the module docstring)."""
    b = _Builder(seed)
    x = b.node("Relu", [b.conv("input", 3, 64, 2, "/conv1/Conv", k=7)], "/Relu")
    x = b.node("MaxPool", [x], "/MaxPool", kernel_shape=[3, 3], strides=[2, 2],
               pads=[1, 1, 1, 1])
    cin = 64
    gain = 1.0 / np.sqrt(sum(n for _, n, _ in RESNET50_STAGES))
    for s, (width, blocks, first_stride) in enumerate(RESNET50_STAGES, start=1):
        for blk in range(blocks):
            p = f"/layer{s}/layer{s}.{blk}"
            stride = first_stride if blk == 0 else 1
            y = b.node("Relu", [b.conv(x, cin, width, 1, f"{p}/conv1/Conv", k=1)],
                       f"{p}/Relu")
            y = b.node("Relu", [b.conv(y, width, width, stride, f"{p}/conv2/Conv")],
                       f"{p}/Relu_1")
            y = b.conv(y, width, 4 * width, 1, f"{p}/conv3/Conv", gain=gain, k=1)
            short = x if blk else b.conv(x, cin, 4 * width, stride,
                                         f"{p}/downsample/downsample.0/Conv", k=1)
            x = b.node("Relu", [b.node("Add", [y, short], f"{p}/Add")], f"{p}/Relu_2")
            cin = 4 * width
    x = b.node("GlobalAveragePool", [x], "/GlobalAveragePool")
    x = b.node("Flatten", [x], "/Flatten", axis=1)
    b.linear(x, cin, IMAGENET_CLASSES, "/fc/Gemm", out="logits")
    assert b.n_conv == 53
    return b.model("resnet50", (3, 224, 224), IMAGENET_CLASSES)


def build_vgg11(seed: int = 0) -> onnx.ModelProto:
    """VGG-11 with random weights (see the module docstring)."""
    b = _Builder(seed)
    x, cin, n = "input", 3, 0
    for item in VGG11_CONVS:
        if item == "M":
            x = b.node("MaxPool", [x], f"/features/MaxPool_{n}", kernel_shape=[2, 2],
                       strides=[2, 2])
            continue
        assert isinstance(item, int)
        x = b.node("Relu", [b.conv(x, cin, item, 1, f"/features/{n}/Conv")],
                   f"/features/Relu_{n}")
        cin, n = item, n + 1
    x = b.node("Flatten", [x], "/Flatten", axis=1)
    x = b.node("Relu", [b.linear(x, 512 * 7 * 7, 4096, "/classifier/0/Gemm")],
               "/classifier/Relu_0")
    x = b.node("Relu", [b.linear(x, 4096, 4096, "/classifier/3/Gemm")], "/classifier/Relu_1")
    b.linear(x, 4096, IMAGENET_CLASSES, "/classifier/6/Gemm", out="logits")
    return b.model("vgg11", (3, 224, 224), IMAGENET_CLASSES)


BUILDERS: dict[str, Callable[[int], onnx.ModelProto]] = {"resnet50": build_resnet50,
                                                         "vgg11": build_vgg11}


def main() -> None:
    write_model_main(BUILDERS, "Write a random-weight ImageNet-shaped model.")


if __name__ == "__main__":
    main()
