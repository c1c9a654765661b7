"""Front ends: ONNX -> IR."""

from __future__ import annotations

from imcc.frontend.onnx_import import SUPPORTED_OPS, import_model, import_proto

__all__ = ["import_model", "import_proto", "SUPPORTED_OPS"]
