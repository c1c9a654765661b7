"""imcc's typed graph IR."""

from __future__ import annotations

from imcc.ir.annotations import LowRank, MappingChoice, PairRole, Strategy, WeightQuant
from imcc.ir.graph import Graph, Node, Value, VerifyError, verify
from imcc.ir.types import DType, TensorType

__all__ = ["Graph", "Node", "Value", "verify", "VerifyError", "DType", "TensorType",
           "LowRank", "MappingChoice", "PairRole", "Strategy", "WeightQuant"]
