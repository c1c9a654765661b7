"""The crossbar cycle model (DESIGN.md section 3): a pure function of layer geometry and
array shape, shared by the `map` pass (to choose a mapping) and the back end (whose emitted
program must execute exactly `Cost.cycles` (window, tile) activations).

Notation: a layer has `groups` groups of `IC_g = IC / groups` input and `OC_g = OC / groups`
output channels, a `kh x kw` kernel with stride `(sh, sw)` and dilation `(dh, dw)`, and an
`ho x wo` output over the padded input. The array has `rows x cols` cells; a weight takes
`S` adjacent columns (bit slices). Every count is per sample.

- **im2col**: one output pixel per window; the unrolled `kh*kw*IC_g x OC_g*S` matrix of each
  group is cut into tiles at element granularity:
  `cycles = ho*wo * groups * ceil(kh*kw*IC_g / rows) * ceil(OC_g*S / cols)`.
- **Parallel window (SDK / VW-SDK)** of `i x j` output pixels: it reads
  `PWh = (kh-1)*dh + 1 + (i-1)*sh` by `PWw = (kw-1)*dw + 1 + (j-1)*sw` input pixels per
  channel and holds the kernel `N = i*j` times, shifted, in its columns. Tiles are cut at
  channel granularity: `ICt = min(IC_g, rows // (PWh*PWw))`, `OCt = min(OC_g, cols // (N*S))`
  (0 means infeasible), `windows = ceil(ho/i) * ceil(wo/j)`,
  `cycles = windows * groups * ceil(IC_g/ICt) * ceil(OC_g/OCt)`. Pixels a window computes
  past the output are discarded.

SDK searches square windows, VW-SDK every `(i, j)`; both keep im2col unless a window is
strictly cheaper. Ties between windows go to the smaller `N = i*j`, then the smaller `i`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from imcc.errors import UsageError
from imcc.ir.annotations import MappingChoice, Strategy


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


class MappingRequest(Enum):
    """What a user asks for. `AUTO` is not a layer's final strategy: it resolves to the
    cheapest of im2col, SDK and VW-SDK for each layer."""

    IM2COL = "im2col"
    SDK = "sdk"
    VW_SDK = "vw-sdk"
    AUTO = "auto"

    @classmethod
    def parse(cls, value: MappingRequest | Strategy | str) -> MappingRequest:
        """Accept a request, a final `Strategy`, or its string spelling."""
        if isinstance(value, MappingRequest):
            return value
        if isinstance(value, Strategy):
            return cls(value.value)
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise UsageError(f"unknown mapping strategy {value!r}",
                             hint=f"valid values: {valid}") from None


@dataclass(frozen=True)
class LayerGeom:
    """One crossbar layer's geometry, per sample. `ho x wo` is the output size: the windows
    run over the padded input, so padding enters only through it."""

    ic: int
    oc: int
    groups: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    ho: int
    wo: int

    def __post_init__(self) -> None:
        for name in ("ic", "oc", "groups", "kh", "kw", "sh", "sw", "dh", "dw", "ho", "wo"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise UsageError(f"layer geometry: {name} must be a positive integer, got {v!r}")
        if self.ic % self.groups or self.oc % self.groups:
            raise UsageError(f"layer geometry: groups={self.groups} must divide both "
                             f"ic={self.ic} and oc={self.oc}")

    @property
    def ic_g(self) -> int:
        return self.ic // self.groups

    @property
    def oc_g(self) -> int:
        return self.oc // self.groups

    @property
    def is_pointwise(self) -> bool:
        """A 1x1 kernel with stride 1: the shape `L` of a low-rank pair must have."""
        return self.kh == 1 and self.kw == 1 and self.sh == 1 and self.sw == 1

    def pw_extent(self, i: int, j: int) -> tuple[int, int]:
        """Input pixels (PWh, PWw) an `i x j` parallel window reads per channel."""
        return ((self.kh - 1) * self.dh + 1 + (i - 1) * self.sh,
                (self.kw - 1) * self.dw + 1 + (j - 1) * self.sw)

    @staticmethod
    def from_conv(ic: int, oc: int, groups: int, kernel: tuple[int, int],
                  stride: tuple[int, int], dilation: tuple[int, int],
                  out_hw: tuple[int, int]) -> LayerGeom:
        return LayerGeom(ic=ic, oc=oc, groups=groups, kh=kernel[0], kw=kernel[1],
                         sh=stride[0], sw=stride[1], dh=dilation[0], dw=dilation[1],
                         ho=out_hw[0], wo=out_hw[1])

    @staticmethod
    def from_linear(in_features: int, out_features: int, positions: int = 1) -> LayerGeom:
        """A linear layer is a 1x1 conv; its `positions` leading rows (1 for a plain
        (batch, features) input) form a `positions x 1` map a window can batch over."""
        return LayerGeom(ic=in_features, oc=out_features, groups=1, kh=1, kw=1, sh=1, sw=1,
                         dh=1, dw=1, ho=positions, wo=1)


@dataclass(frozen=True)
class Cost:
    """Cycles of one layer under one mapping.

    `row_tiles`/`col_tiles` are per group; the layer has `groups * row_tiles * col_tiles`
    array tiles and `cycles = windows * groups * row_tiles * col_tiles`.

    `ict`/`oct` is the capacity of a full tile. For a parallel window: input channels per
    row tile and output channels per column tile (each channel takes PWh*PWw rows /
    N*S columns). For im2col (element granularity): unrolled weight rows
    `min(kh*kw*IC_g, rows)` and columns `min(OC_g*S, cols)` per tile.
    """

    strategy: Strategy
    pw: tuple[int, int]
    windows: int
    row_tiles: int
    col_tiles: int
    groups: int
    cycles: int
    ict: int
    oct: int
    group_pack: int = 1  # groups sharing one array block-diagonally (see `_packed`)

    @property
    def tiles(self) -> int:
        """Array tiles of the whole layer (all groups)."""
        return _cdiv(self.groups, self.group_pack) * self.row_tiles * self.col_tiles


def _packed(c: Cost, rows_g: int, cols_g: int, rows: int, cols: int) -> Cost:
    """Group packing: when one group's whole block (`rows_g` x `cols_g`) fits a single tile,
    `gp = min(groups, rows // rows_g, cols // cols_g)` groups share an array on its block
    diagonal and `cycles = windows * ceil(groups / gp)`. An extension beyond DESIGN.md's
    per-group formula, used by `auto` only; otherwise `c` unchanged."""
    if c.groups < 2 or c.row_tiles != 1 or c.col_tiles != 1:
        return c
    gp = min(c.groups, rows // rows_g, cols // cols_g)
    if gp < 2:
        return c
    return replace(c, group_pack=gp, cycles=c.windows * _cdiv(c.groups, gp))


def _check_array(rows: int, cols: int, slices: int) -> None:
    for name, v in (("rows", rows), ("cols", cols), ("S", slices)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise UsageError(f"{name} must be a positive integer, got {v!r}")


def im2col_cost(g: LayerGeom, rows: int, cols: int, S: int, pack: bool = False) -> Cost:
    """Element-granular im2col: always feasible (a tile may even split one weight's slices).
    `pack`: allow group packing (`_packed`)."""
    _check_array(rows, cols, S)
    k_rows = g.kh * g.kw * g.ic_g
    k_cols = g.oc_g * S
    rt, ct = _cdiv(k_rows, rows), _cdiv(k_cols, cols)
    windows = g.ho * g.wo
    c = Cost(strategy=Strategy.IM2COL, pw=(1, 1), windows=windows, row_tiles=rt,
             col_tiles=ct, groups=g.groups, cycles=windows * g.groups * rt * ct,
             ict=min(k_rows, rows), oct=min(k_cols, cols))
    return _packed(c, k_rows, k_cols, rows, cols) if pack else c


def pw_cost(g: LayerGeom, i: int, j: int, rows: int, cols: int, S: int,
            pack: bool = False) -> Cost | None:
    """An `i x j` parallel window at channel granularity, or None if one channel's window
    does not fit the rows or one output channel's N*S columns do not fit the columns.
    Labelled SDK when square, VW-SDK otherwise; `best_mapping` relabels by request."""
    _check_array(rows, cols, S)
    if not (isinstance(i, int) and isinstance(j, int) and i >= 1 and j >= 1):
        raise UsageError(f"parallel window must be positive integers, got {i}x{j}")
    pwh, pww = g.pw_extent(i, j)
    ict = min(g.ic_g, rows // (pwh * pww))
    oct_ = min(g.oc_g, cols // (i * j * S))
    if ict == 0 or oct_ == 0:
        return None
    rt, ct = _cdiv(g.ic_g, ict), _cdiv(g.oc_g, oct_)
    windows = _cdiv(g.ho, i) * _cdiv(g.wo, j)
    c = Cost(strategy=Strategy.SDK if i == j else Strategy.VW_SDK, pw=(i, j),
             windows=windows, row_tiles=rt, col_tiles=ct, groups=g.groups,
             cycles=windows * g.groups * rt * ct, ict=ict, oct=oct_)
    return _packed(c, g.ic_g * pwh * pww, g.oc_g * i * j * S, rows, cols) if pack else c


def _extents(n: int) -> list[int]:
    """The smallest window extent for each distinct window count `ceil(n / i)`, ascending.

    Exactness: for `i1 < i2` with the same `ceil(n / i)` the window count is equal while
    ICt and OCt can only shrink with the larger window, so `i2` never costs less and loses
    the tie-break (smaller N) — skipping it cannot change the result. O(sqrt n) values.
    """
    out: list[int] = []
    i = 1
    while i <= n:
        out.append(i)
        q = _cdiv(n, i)
        if q == 1:
            break
        i = _cdiv(n, q - 1)  # first extent with fewer windows
    return out


def _square_extents(ho: int, wo: int) -> list[int]:
    # A square window may exceed the shorter side (its extra pixels are discarded) while it
    # still reduces the window count along the longer side.
    return sorted(set(_extents(ho)) | set(_extents(wo)))


def _key(cycles: int, pw: tuple[int, int]) -> tuple[int, int, int]:
    """Deterministic preference: fewer cycles, then smaller N = i*j, then smaller i."""
    return (cycles, pw[0] * pw[1], pw[0])


def _windows(geoms: tuple[LayerGeom, ...], rows: int, cols: int, S: int,
             square: bool, pack: bool = False) -> tuple[tuple[Cost, ...], int] | None:
    """Best parallel window shared by all `geoms` (same output grid), by total cycles.
    Returns the per-layer costs and the total, or None if no window fits every layer."""
    g0 = geoms[0]
    best: tuple[tuple[Cost, ...], int] | None = None
    best_key: tuple[int, int, int] | None = None

    def at(i: int, j: int) -> tuple[Cost, ...] | None:
        costs = []
        for g in geoms:
            c = pw_cost(g, i, j, rows, cols, S, pack)
            if c is None:
                return None
            costs.append(c)
        return tuple(costs)

    def consider(i: int, j: int) -> bool:
        """Keep (i, j) if it beats the best so far; False when it does not fit."""
        nonlocal best, best_key
        costs = at(i, j)
        if costs is None:
            return False
        total = sum(c.cycles for c in costs)
        if best_key is None or _key(total, (i, j)) < best_key:
            best, best_key = (costs, total), _key(total, (i, j))
        return True

    if square:
        # Feasibility is monotone in i (the window's rows and N*S columns only grow).
        for i in _square_extents(g0.ho, g0.wo):
            if not consider(i, i):
                break
        return best

    ext_w = _extents(g0.wo)
    for i in _extents(g0.ho):
        if at(i, 1) is None:
            break  # infeasible for j = 1, hence for every j and every larger i
        for j in ext_w:
            if not consider(i, j):
                break
    return best


def _label(req: MappingRequest, pw: tuple[int, int]) -> Strategy:
    if req is MappingRequest.SDK:
        return Strategy.SDK
    if req is MappingRequest.VW_SDK:
        return Strategy.VW_SDK
    # auto: name what the layer actually gets; a square window is an SDK window.
    return Strategy.SDK if pw[0] == pw[1] else Strategy.VW_SDK


def _fallback_reason(req: MappingRequest, best: tuple[tuple[Cost, ...], int] | None,
                     im_total: int, rows: int, cols: int) -> str:
    if req is MappingRequest.AUTO:
        return ""  # nothing specific was asked for, so nothing was refused
    kind = "square parallel window" if req is MappingRequest.SDK else "parallel window"
    if best is None:
        return f"{req.value}: no {kind} fits a {rows}x{cols} array; using im2col"
    i, j = best[0][0].pw
    return (f"{req.value}: no {kind} beats im2col ({im_total} cycles; best {i}x{j} "
            f"needs {best[1]}); using im2col")


def best_mapping(g: LayerGeom, strategy: MappingRequest | Strategy | str, rows: int,
                 cols: int, S: int) -> tuple[MappingChoice, Cost]:
    """The mapping a layer gets for a request, with its cost.

    im2col: im2col. SDK: best square window, VW-SDK: best window of any shape; each falls
    back to im2col (with a `reason`) unless a window is strictly cheaper. auto: the cheapest
    of all three (ties prefer im2col, then smaller N, then smaller i); a square winner is
    reported as SDK, any other window as VW-SDK.
    """
    req = MappingRequest.parse(strategy)
    pack = req is MappingRequest.AUTO  # explicit requests keep the literature's layouts
    im = im2col_cost(g, rows, cols, S, pack)
    if req is MappingRequest.IM2COL:
        return MappingChoice(Strategy.IM2COL), im
    best = _windows((g,), rows, cols, S, square=req is MappingRequest.SDK, pack=pack)
    if best is not None and best[1] < im.cycles:
        c = best[0][0]
        label = _label(req, c.pw)
        return MappingChoice(label, c.pw, group_pack=c.group_pack), replace(c, strategy=label)
    return (MappingChoice(Strategy.IM2COL, reason=_fallback_reason(req, best, im.cycles,
                                                                   rows, cols),
                          group_pack=im.group_pack), im)


def best_pair_mapping(r: LayerGeom, l: LayerGeom,  # noqa: E741 -- the paper's name for it
                      request: MappingRequest | Strategy | str, rows: int, cols: int, S: int
                      ) -> tuple[MappingChoice, Cost, MappingChoice, Cost]:
    """Joint mapping of a low-rank pair: `r` a (grouped) conv, `l` the 1x1, stride-1 conv
    that follows it on the same output grid.

    Theorem 2 (SDK(L R) = (I_N (x) L) SDK(R)): the 1x1 `l` run with an `i x j` window is
    exactly N copies of L on the block diagonal, so both halves use the SAME window and the
    pair costs `cycles(r) + cycles(l)`; the window minimizing that sum wins. "Both im2col" is
    always a candidate and is kept unless a window is strictly cheaper. Requests and labels
    as in `best_mapping` (SDK: square windows only).
    Returns (choice_r, cost_r, choice_l, cost_l).
    """
    if not l.is_pointwise:
        raise UsageError(f"low-rank pair: the second half must be a 1x1 stride-1 layer, got "
                         f"kernel {l.kh}x{l.kw} stride {l.sh}x{l.sw}")
    if (l.ho, l.wo) != (r.ho, r.wo) or l.ic != r.oc:
        raise UsageError(f"low-rank pair: the second half ({l.ic} -> {l.oc} channels on "
                         f"{l.ho}x{l.wo}) does not consume the first ({r.oc} channels on "
                         f"{r.ho}x{r.wo})")
    req = MappingRequest.parse(request)
    pack = req is MappingRequest.AUTO
    im_r, im_l = im2col_cost(r, rows, cols, S, pack), im2col_cost(l, rows, cols, S, pack)
    im_total = im_r.cycles + im_l.cycles
    if req is MappingRequest.IM2COL:
        return MappingChoice(Strategy.IM2COL), im_r, MappingChoice(Strategy.IM2COL), im_l
    best = _windows((r, l), rows, cols, S, square=req is MappingRequest.SDK, pack=pack)
    if best is not None and best[1] < im_total:
        cr, cl = best[0]
        label = _label(req, cr.pw)
        return (MappingChoice(label, cr.pw, group_pack=cr.group_pack),
                replace(cr, strategy=label),
                MappingChoice(label, cl.pw, group_pack=cl.group_pack),
                replace(cl, strategy=label))
    reason = _fallback_reason(req, best, im_total, rows, cols)
    return (MappingChoice(Strategy.IM2COL, reason=reason, group_pack=im_r.group_pack), im_r,
            MappingChoice(Strategy.IM2COL, reason=reason, group_pack=im_l.group_pack), im_l)


__all__ = ["LayerGeom", "Cost", "MappingRequest", "im2col_cost", "pw_cost", "best_mapping",
           "best_pair_mapping"]
