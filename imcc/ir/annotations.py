"""Typed annotations that passes attach to crossbar nodes and the target reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class Strategy(Enum):
    IM2COL = "im2col"
    SDK = "sdk"
    VW_SDK = "vw-sdk"


@dataclass(frozen=True)
class MappingChoice:
    """How a crossbar layer is laid out: a parallel window of `pw = (i, j)` output pixels
    (im2col is (1, 1) with element-granular row packing). `reason` says why a requested
    strategy was not used (e.g. a fallback to im2col). `cycles` is what the map pass costed
    this layout at (per sample); the emitter checks the program it lays out against it. It
    is a record, not part of the layout, so it does not take part in equality."""

    strategy: Strategy
    pw: tuple[int, int] = (1, 1)
    reason: str = ""
    # Groups placed block-diagonally in one array (auto only; 1 = one group per array).
    group_pack: int = 1
    cycles: int | None = field(default=None, compare=False)
    # The planner's element-granular layout (auto only): pieces per array, 0 = the
    # channel-granular layout (imcc.targets.tiling, "Pieces and bins").
    pieces: int = 0
    # "x" / "y": the planner's strips along the window's width / height ("" otherwise).
    strip: str = ""
    # (u, v): the planner's patches of u x v read offsets, pieces packed into bins
    # (imcc.targets.tiling, "Patches"); (0, 0) otherwise.
    patch: tuple[int, int] = (0, 0)
    # b >= 1: the planner's dense blocks of up to b window pixels times the input positions
    # all of them read, pieces packed into bins ("Dense blocks"); 0 otherwise.
    bicliques: int = 0
    # "x" / "y": the planner's segments, a column's fan-in cut by the input rows / columns
    # it reads, pieces packed into bins ("Segments"); "" otherwise.
    segments: str = ""

    @property
    def n_parallel(self) -> int:
        return self.pw[0] * self.pw[1]


class PairRole(Enum):
    R = "R"  # the K x K grouped conv producing g*k channels
    L = "L"  # the 1x1 conv g*k -> m carrying the bias


@dataclass(frozen=True)
class LowRank:
    """Marks one half of a group low-rank pair W ~ [L_1..L_g] blockdiag(R_1..R_g)."""

    role: PairRole
    source: str        # name of the original layer
    partner: str       # node name of the other half
    rank: int
    groups: int
    rel_error: float | None  # ||W - W_hat||_F / ||W||_F; None if the model arrived factorized
    params_before: int
    params_after: int
    method: str | None = None         # "svd" or "data"; None if the model arrived factorized
    data_error: float | None = None   # data-weighted relative output error (LowRankDecision)


def level_dtype(bits: int) -> type[np.signedinteger]:
    """The narrowest signed integer type holding symmetric `bits`-bit weight levels: int8
    up to 8 bits (VGG-11's 133M levels: 133 MB instead of 532 MB as int32)."""
    return np.int8 if bits <= 8 else np.int16 if bits <= 16 else np.int32


@dataclass(frozen=True, eq=False)
class WeightQuant:
    """Symmetric per-output-channel weights: W ~ q * scale[oc], q integer in
    [-(2^(bits-1) - 1), 2^(bits-1) - 1], stored as `level_dtype(bits)`."""

    bits: int
    scale: np.ndarray  # float32, (OC,)
    q: np.ndarray      # integer levels, same shape as the weight
