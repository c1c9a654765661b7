"""VGG and ImageNet ResNet ONNX models with random weights, for chip-level tables and
benchmarks (the layer shapes are the published networks'; accuracy is meaningless).

- ``vgg8``: the CIFAR-10 VGG-8 of DNN+NeuroSim (its ``models/VGG.py``): six 3x3 "same"
  convs 3 -> 128 -> 128, max-pool, -> 256 -> 256, max-pool, -> 512 -> 512, max-pool (each
  conv followed by ReLU), then Linear 8192 -> 1024, ReLU, Linear 1024 -> 10; 32x32 inputs.
- ``vgg16``: VGG-16 (Simonyan and Zisserman 2015, configuration D) on 224x224: 13 3x3
  convs in five stages of 64, 128, 256, 512, 512 channels (2, 2, 3, 3, 3 convs) each ended
  by a 2x2 max-pool, then Linear 25088 -> 4096 -> 4096 -> 1000 with ReLUs.
- ``resnet18``: ResNet-18 (He et al. 2016, ImageNet) on 224x224: 7x7 conv 3 -> 64 stride
  2, 3x3 max-pool stride 2, four stages of two basic blocks (64, 128, 256, 512 channels,
  the first block of stages 2-4 with stride 2 and a 1x1 stride-2 conv shortcut), global
  average pool, Linear 512 -> 1000. Batch norm is folded (convs carry biases).

Weights are He-normal with a fixed seed (`benchmarks.resnet._Builder`), so a model is
reproducible.

    python benchmarks/cnn.py vgg8 -o vgg8.onnx
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resnet import _Builder, write_model_main  # noqa: E402  (benchmarks/ is not a package)


def _maxpool(b: _Builder, x: str, name: str, k: int = 2, s: int = 2, p: int = 0) -> str:
    return b.node("MaxPool", [x], name, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)


def _vgg(b: _Builder, x: str, cin: int, stages: list[list[int]]) -> tuple[str, int]:
    for s, widths in enumerate(stages, start=1):
        for i, ch in enumerate(widths, start=1):
            x = b.node("Relu", [b.conv(x, cin, ch, 1, f"/features/conv{s}_{i}/Conv")],
                       f"/features/relu{s}_{i}")
            cin = ch
        x = _maxpool(b, x, f"/features/pool{s}")
    return x, cin


def build_vgg8(seed: int = 0) -> onnx.ModelProto:
    """NeuroSim's CIFAR-10 VGG-8 (see the module docstring)."""
    b = _Builder(seed)
    x, c = _vgg(b, "input", 3, [[128, 128], [256, 256], [512, 512]])
    x = b.node("Flatten", [x], "/Flatten", axis=1)
    x = b.node("Relu", [b.linear(x, c * 4 * 4, 1024, "/classifier/fc1/Gemm")], "/relu_fc1")
    b.linear(x, 1024, 10, "/classifier/fc2/Gemm", out="logits")
    return b.model("vgg8", [3, 32, 32], 10, "logits")


def build_vgg16(seed: int = 0) -> onnx.ModelProto:
    """VGG-16 on 224x224 ImageNet inputs (see the module docstring)."""
    b = _Builder(seed)
    x, c = _vgg(b, "input", 3, [[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3])
    x = b.node("Flatten", [x], "/Flatten", axis=1)
    x = b.node("Relu", [b.linear(x, c * 7 * 7, 4096, "/classifier/fc1/Gemm")], "/relu_fc1")
    x = b.node("Relu", [b.linear(x, 4096, 4096, "/classifier/fc2/Gemm")], "/relu_fc2")
    b.linear(x, 4096, 1000, "/classifier/fc3/Gemm", out="logits")
    return b.model("vgg16", [3, 224, 224], 1000, "logits")


def build_resnet18(seed: int = 0) -> onnx.ModelProto:
    """ResNet-18 on 224x224 ImageNet inputs (see the module docstring)."""
    b = _Builder(seed)
    x = b.node("Relu", [b.conv("input", 3, 64, 2, "/conv1/Conv", k=7)], "/relu")
    x = _maxpool(b, x, "/maxpool", k=3, s=2, p=1)
    cin = 64
    for s, ch in enumerate((64, 128, 256, 512), start=1):
        for blk in range(2):
            p = f"/layer{s}/layer{s}.{blk}"
            stride = 2 if (blk == 0 and s > 1) else 1
            y = b.node("Relu", [b.conv(x, cin, ch, stride, f"{p}/conv1/Conv")], f"{p}/relu")
            # 1/sqrt(2) per block keeps the residual sums from growing with depth.
            y = b.conv(y, ch, ch, 1, f"{p}/conv2/Conv", gain=float(np.sqrt(0.5)))
            short = x if stride == 1 and cin == ch else \
                b.conv(x, cin, ch, stride, f"{p}/downsample/Conv", k=1)
            x = b.node("Relu", [b.node("Add", [y, short], f"{p}/Add")], f"{p}/relu_1")
            cin = ch
    x = b.node("GlobalAveragePool", [x], "/avgpool")
    x = b.node("Flatten", [x], "/Flatten", axis=1)
    b.linear(x, cin, 1000, "/fc/Gemm", out="logits")
    return b.model("resnet18", [3, 224, 224], 1000, "logits")


BUILDERS: dict[str, Callable[[int], onnx.ModelProto]] = {
    "vgg8": build_vgg8, "vgg16": build_vgg16, "resnet18": build_resnet18}


def main() -> None:
    write_model_main(BUILDERS, "Write a random-weight VGG-8, VGG-16 or ResNet-18 ONNX model.")


if __name__ == "__main__":
    main()
