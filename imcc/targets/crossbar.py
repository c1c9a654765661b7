"""The crossbar target: array geometry and bit widths.

A weight of `weight_bits` is bit-sliced over `S = ceil(weight_bits / cell_bits)` adjacent
columns (two's complement; the most significant slice carries negative weight in the
shift-and-add). Activations are applied bit-serially in `ceil(act_bits / dac_bits)` phases.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from imcc.errors import UsageError

_TARGET_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
MAX_ARRAY_DIM = 1 << 16


@dataclass(frozen=True)
class CrossbarTarget:
    rows: int = 128
    cols: int = 128
    weight_bits: int = 4
    cell_bits: int = 1
    act_bits: int = 4
    dac_bits: int = 1
    adc_bits: int = 8

    def __post_init__(self) -> None:
        for name, lo, hi in (("rows", 1, MAX_ARRAY_DIM), ("cols", 1, MAX_ARRAY_DIM),
                             ("weight_bits", 1, 16), ("cell_bits", 1, 8), ("act_bits", 1, 16),
                             ("dac_bits", 1, 16), ("adc_bits", 1, 16)):
            v = getattr(self, name)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise UsageError(f"{name.replace('_', '-')} must be an integer in [{lo}, {hi}], "
                                 f"got {v!r}")
        if self.cell_bits > self.weight_bits:
            raise UsageError(f"cell-bits ({self.cell_bits}) cannot exceed weight-bits "
                             f"({self.weight_bits})")

    @property
    def slices(self) -> int:
        """S: columns per weight."""
        return self.slices_for(self.weight_bits)

    def slices_for(self, weight_bits: int) -> int:
        """Columns per weight for a layer quantized to `weight_bits` (e.g. an 8-bit first
        layer on a 4-bit target)."""
        return math.ceil(weight_bits / self.cell_bits)

    @property
    def phases(self) -> int:
        """P: bit-serial input phases per computing cycle."""
        return math.ceil(self.act_bits / self.dac_bits)

    @property
    def name(self) -> str:
        return f"{self.rows}x{self.cols}"

    @staticmethod
    def parse_shape(spec: str) -> tuple[int, int]:
        """Parse ``RxC`` (rows x columns), e.g. ``128x128``."""
        m = _TARGET_RE.match(spec or "")
        if not m:
            raise UsageError(f"bad target {spec!r}", hint="write it as ROWSxCOLS, e.g. 128x128")
        r, c = int(m.group(1)), int(m.group(2))
        if not (1 <= r <= MAX_ARRAY_DIM and 1 <= c <= MAX_ARRAY_DIM):
            raise UsageError(f"bad target {spec!r}: rows and columns must be in "
                             f"[1, {MAX_ARRAY_DIM}]", hint="e.g. 128x128")
        return r, c

    def slice_weights(self, weight_bits: int | None = None) -> list[int]:
        """Shift-add weight of each slice column, least significant first; the most
        significant slice is negative (two's complement)."""
        s = self.slices_for(weight_bits or self.weight_bits)
        w = [1 << (k * self.cell_bits) for k in range(s)]
        w[-1] = -w[-1]
        return w
