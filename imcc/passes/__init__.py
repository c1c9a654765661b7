"""Compiler passes, one per file. `REGISTRY` maps each pass name to its class."""

from __future__ import annotations

from imcc.passes.base import CompileContext, Pass, PassResult
from imcc.passes.fold_bn import FoldBatchNorm
from imcc.passes.lowrank import LowRankPass
from imcc.passes.map import MapPass
from imcc.passes.quantize import QuantizePass

REGISTRY: dict[str, type[Pass]] = {p.name: p for p in (FoldBatchNorm, LowRankPass,
                                                       QuantizePass, MapPass)}

__all__ = ["Pass", "PassResult", "CompileContext", "REGISTRY", "FoldBatchNorm", "LowRankPass",
           "QuantizePass", "MapPass"]
