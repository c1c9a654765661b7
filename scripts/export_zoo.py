"""Export small torchvision classifiers (random weights, seed 0) with both PyTorch
exporters, for `scripts/limits_table.py` (docs/limits.md):

    /path/to/torch-venv/bin/python scripts/export_zoo.py OUT_DIR [NAME ...]

Runs in a separate environment with torch and torchvision (imcc itself never imports
torch). Each model is written twice: ``NAME.onnx`` by the TorchScript exporter (opset 17,
dynamic batch) and ``NAME_dynamo.onnx`` by the dynamo exporter (batch 1). Sizes are small
so the table's simulations stay quick: the CNN families at 64x64 input (the TorchScript
exports compute their shapes from the input, so any size works; the dynamo exports are
fixed to it), the transformers as small custom configurations. torchvision zero-initializes
a ViT's classifier head and class token, which makes every logit 0 and every comparison
vacuous: a transformer's all-zero tensors are redrawn from N(0, 0.02) before export.
Without names, every model is exported.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable

import torch
import torchvision.models as tvm
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer

CNN_SIZE = 64


def _vit(layers: int, heads: int, dim: int, mlp: int) -> torch.nn.Module:
    return VisionTransformer(image_size=32, patch_size=4, num_layers=layers, num_heads=heads,
                             hidden_dim=dim, mlp_dim=mlp, num_classes=10)


def _swin() -> torch.nn.Module:
    return SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4],
                           window_size=[4, 4], num_classes=10)


def _convnext() -> torch.nn.Module:
    return ConvNeXt([CNBlockConfig(32, 64, 2), CNBlockConfig(64, 128, 2),
                     CNBlockConfig(128, None, 2)], num_classes=100)


# name -> (constructor, input height = width, a transformer)
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], int, bool]] = {
    "efficientnet_b0": (tvm.efficientnet_b0, CNN_SIZE, False),
    "regnet_y_400mf": (tvm.regnet_y_400mf, CNN_SIZE, False),
    "googlenet": (lambda: tvm.googlenet(aux_logits=False, init_weights=True), CNN_SIZE, False),
    "densenet121": (tvm.densenet121, CNN_SIZE, False),
    "mobilenet_v2": (tvm.mobilenet_v2, CNN_SIZE, False),
    "convnext_small_custom": (_convnext, 64, False),
    "vit_small_custom": (lambda: _vit(6, 6, 192, 384), 32, True),
    "swin_small_custom": (_swin, 64, True),
}


def _redraw_zeros(model: torch.nn.Module) -> None:
    """Redraw every all-zero weight (a transformer's head, class token, biases)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() > 1 and not p.any():
                p.normal_(0.0, 0.02)


def export(name: str, out: str) -> None:
    build, hw, transformer = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    if transformer:
        _redraw_zeros(model)
    x = torch.randn(1, 3, hw, hw)
    for dynamo in (False, True):
        path = os.path.join(out, f"{name}{'_dynamo' if dynamo else ''}.onnx")
        try:
            if dynamo:
                torch.onnx.export(model, (x,), path, dynamo=True, external_data=False)
            else:
                torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17,
                                  input_names=["input"], output_names=["logits"],
                                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
            print(f"ok {path} ({os.path.getsize(path) >> 10} KiB)", flush=True)
        except Exception as exc:  # noqa: BLE001 - report the exporter's failure, go on
            print(f"FAIL {path}: {type(exc).__name__}: {str(exc)[:300]}", flush=True)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    out, names = argv[0], argv[1:] or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"unknown models: {', '.join(unknown)} (known: {', '.join(MODELS)})")
        return 2
    os.makedirs(out, exist_ok=True)
    warnings.filterwarnings("ignore")
    for name in names:
        export(name, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
