"""Tensor types of the IR."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

# The batch dimension may be unknown (dynamic batch): it is the only dimension that may be None.
Dim = int | None
Shape = tuple[Dim, ...]


class DType(Enum):
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    INT64 = "int64"
    INT32 = "int32"
    INT8 = "int8"
    UINT8 = "uint8"
    BOOL = "bool"

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(self.value)

    @staticmethod
    def from_numpy(dt: np.dtype) -> DType:
        try:
            return DType(np.dtype(dt).name)
        except ValueError as exc:
            from imcc.errors import UnsupportedError

            raise UnsupportedError([f"tensor element type {np.dtype(dt).name}"]) from exc


@dataclass(frozen=True)
class TensorType:
    shape: Shape
    dtype: DType = DType.FLOAT32

    @property
    def rank(self) -> int:
        return len(self.shape)

    def sample_shape(self) -> tuple[int, ...]:
        """Shape without the batch dimension (all known by construction)."""
        return tuple(int(d) for d in self.shape[1:])  # type: ignore[arg-type]

    def __str__(self) -> str:
        dims = "x".join("N" if d is None else str(d) for d in self.shape)
        return f"{self.dtype.value}[{dims}]"
