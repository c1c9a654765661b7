"""Typed records passes hand to the driver (`PassResult.records`) and the report reads.

They live in the IR layer so that `imcc.report` and `imcc.analysis` can read what a pass
decided without importing `imcc.passes` (dependencies run upward only:
ir <- frontend / export / targets <- passes <- driver <- cli).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LowRankDecision:
    """What the lowrank pass did with one crossbar layer, and why."""

    layer: str
    factorized: bool
    notes: tuple[str, ...] = ()        # why skipped, or what was adjusted (clipping, groups)
    rank: int | None = None            # rank used
    groups: int | None = None          # groups used
    rel_error: float | None = None
    params_before: int | None = None
    params_after: int | None = None
    method: str | None = None          # "svd" or "data" (imcc.passes.lowrank)
    # ||Y - Y_hat||_F / ||Y||_F of the layer's pre-bias outputs on the calibration patches
    # (Y: the float network, Y_hat: the factorized layer fed by the factorized network);
    # None without calibration data
    data_error: float | None = None
    requested_rank: int | None = None  # the rank asked for, when it was clamped to `rank`


@dataclass(frozen=True)
class LowRankRecord:
    """The lowrank pass's run: its default rank spec and groups, one decision per layer."""

    rank: str
    groups: int
    decisions: tuple[LowRankDecision, ...]
    method: str = "svd"   # the factorization used: "svd" or "data" (calibration data)

    @property
    def factorized_layers(self) -> int:
        return sum(1 for d in self.decisions if d.factorized)


@dataclass(frozen=True)
class CalibrationRecord:
    """Where the quantize pass's activation scales came from: ``"synthetic"`` or
    ``"data:<n> samples"``."""

    source: str
    # how the weight levels were chosen: "rtn" (round to nearest) or "gptq" (imcc.passes.datafit)
    weight_method: str = "rtn"


@dataclass(frozen=True)
class MappingRecord:
    """The map pass's run: the mapping strategy it applied to every crossbar layer."""

    strategy: str


Record = LowRankRecord | CalibrationRecord | MappingRecord

__all__ = ["LowRankDecision", "LowRankRecord", "CalibrationRecord", "MappingRecord", "Record"]
