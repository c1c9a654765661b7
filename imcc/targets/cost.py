"""Mapping search: for one crossbar layer (or a low-rank pair), the cheapest layout the
tiling model (`imcc.targets.tiling`) offers for a request. The `map` pass calls this; the
plans it compares are the very plans the emitter lays out, so the cost a layer was chosen
by is the number of (window, tile) activations its program performs.

SDK searches square windows, VW-SDK every `(i, j)`; both keep im2col unless a window is
strictly cheaper. Ties between windows go to the smaller `N = i*j`, then the smaller `i`.
A low-rank pair shares one window (Theorem 2); each half is costed with its own slices
per weight `S` (e.g. an 8-bit first half and a 4-bit second half).
"""

from __future__ import annotations

from dataclasses import replace
from enum import Enum

from imcc.errors import UsageError
from imcc.ir.annotations import MappingChoice, Strategy
from imcc.targets.tiling import (
    MAX_WINDOW_MATRIX,
    LayerGeom,
    TilePlan,
    cdiv,
    im2col_plan,
    lower_bound_cycles,
    planned_plan,
    pw_plan,
    window_matrix_entries,
)

# The plan is the cost: `Cost` and the `*_cost` names are kept for the search's callers.
Cost = TilePlan
im2col_cost = im2col_plan
pw_cost = pw_plan


# The reason recorded on the L half of a low-rank pair mapped with its own window.
L_ALONE = "L mapped on its own"


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
        q = cdiv(n, i)
        if q == 1:
            break
        i = cdiv(n, q - 1)  # first extent with fewer windows
    return out


def _square_extents(ho: int, wo: int) -> list[int]:
    # A square window may exceed the shorter side (its extra pixels are discarded) while it
    # still reduces the window count along the longer side.
    return sorted(set(_extents(ho)) | set(_extents(wo)))


def _key(cycles: int, pw: tuple[int, int]) -> tuple[int, int, int]:
    """Deterministic preference: fewer cycles, then smaller N = i*j, then smaller i."""
    return (cycles, pw[0] * pw[1], pw[0])


def _windows(geoms: tuple[LayerGeom, ...], slices: tuple[int, ...], rows: int, cols: int,
             square: bool, pack: bool = False) -> tuple[tuple[TilePlan, ...], int] | None:
    """Best parallel window shared by all `geoms` (same output grid; `slices[k]` columns per
    weight of layer k), by total cycles. Returns the per-layer plans and the total, or None
    if no window fits every layer."""
    g0 = geoms[0]
    best: tuple[tuple[TilePlan, ...], int] | None = None
    best_key: tuple[int, int, int] | None = None

    def at(i: int, j: int) -> tuple[TilePlan, ...] | None:
        plans = []
        for g, s in zip(geoms, slices, strict=True):
            p = pw_plan(g, i, j, rows, cols, s, pack)
            if p is None:
                return None
            plans.append(p)
        return tuple(plans)

    def consider(i: int, j: int) -> bool:
        """Keep (i, j) if it beats the best so far; False when it does not fit."""
        nonlocal best, best_key
        plans = at(i, j)
        if plans is None:
            return False
        total = sum(p.cycles for p in plans)
        if best_key is None or _key(total, (i, j)) < best_key:
            best, best_key = (plans, total), _key(total, (i, j))
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


def _fallback_reason(req: MappingRequest, best: tuple[tuple[TilePlan, ...], int] | None,
                     im_total: int, rows: int, cols: int) -> str:
    if req is MappingRequest.AUTO:
        return ""  # nothing specific was asked for, so nothing was refused
    kind = "square parallel window" if req is MappingRequest.SDK else "parallel window"
    if best is None:
        return f"{req.value}: no {kind} fits a {rows}x{cols} array; using im2col"
    i, j = best[0][0].pw
    return (f"{req.value}: no {kind} beats im2col ({im_total} cycles; best {i}x{j} "
            f"needs {best[1]}); using im2col")


def _planned(geoms: tuple[LayerGeom, ...], slices: tuple[int, ...], rows: int, cols: int
             ) -> tuple[tuple[TilePlan, ...], int]:
    """The planner (auto only): the best window shared by all `geoms`, `1 x 1` (im2col)
    included, where each layer takes, at that window, the cheaper of its channel-granular
    plan (with group packing; kept on ties) and the planner's pieces (`planned_plan`).
    Every window of `_extents(ho) x _extents(wo)` is tried (pieces fit any window) whose
    simulation matrices stay within `MAX_WINDOW_MATRIX` entries."""
    g0 = geoms[0]
    best: tuple[tuple[TilePlan, ...], int] | None = None
    best_key: tuple[int, int, int] | None = None
    for i in _extents(g0.ho):
        for j in _extents(g0.wo):
            if (i, j) != (1, 1) and any(window_matrix_entries(g, i, j) > MAX_WINDOW_MATRIX
                                        for g in geoms):
                continue
            plans = []
            for g, s in zip(geoms, slices, strict=True):
                classic = im2col_plan(g, rows, cols, s, True) if (i, j) == (1, 1) else \
                    pw_plan(g, i, j, rows, cols, s, True)
                pieces = planned_plan(g, i, j, rows, cols, s)
                plans.append(pieces if classic is None or pieces.cycles < classic.cycles
                             else classic)
            total = sum(p.cycles for p in plans)
            if best_key is None or _key(total, (i, j)) < best_key:
                best, best_key = (tuple(plans), total), _key(total, (i, j))
    assert best is not None
    return best


def _auto_label(p: TilePlan) -> TilePlan:
    if p.is_im2col:
        return p
    return replace(p, strategy=_label(MappingRequest.AUTO, p.pw))


def _search(geoms: tuple[LayerGeom, ...], slices: tuple[int, ...],
            request: MappingRequest | Strategy | str, rows: int, cols: int
            ) -> list[tuple[MappingChoice, TilePlan]]:
    """The layout shared by `geoms` for a request: im2col for each, or one parallel window
    for all, whichever has fewer total cycles (ties keep im2col)."""
    req = MappingRequest.parse(request)
    pack = req is MappingRequest.AUTO  # explicit requests keep the literature's layouts
    ims = [im2col_plan(g, rows, cols, s, pack) for g, s in zip(geoms, slices, strict=True)]
    if req is MappingRequest.IM2COL:
        return [(p.choice(), p) for p in ims]
    im_total = sum(p.cycles for p in ims)
    best = _windows(geoms, slices, rows, cols, square=req is MappingRequest.SDK, pack=pack)
    if req is MappingRequest.AUTO:
        # The planner replaces today's auto layout only where it is strictly cheaper.
        today = best[1] if best is not None and best[1] < im_total else im_total
        # No layout goes below the layers' lower bounds, so when today's layout meets them
        # the planner cannot be strictly cheaper: skip its search (most of a large CNN's
        # layers at 128x128; on ResNet-50 the search was 6 of a 13 s compile).
        floor = sum(lower_bound_cycles(g, s, rows, cols)
                    for g, s in zip(geoms, slices, strict=True))
        if today > floor:
            planned, total = _planned(geoms, slices, rows, cols)
            if total < today:
                return [(q.choice(), q) for q in map(_auto_label, planned)]
    if best is not None and best[1] < im_total:
        label = _label(req, best[0][0].pw)
        return [(p.choice(strategy=label), replace(p, strategy=label)) for p in best[0]]
    reason = _fallback_reason(req, best, im_total, rows, cols)
    return [(p.choice(reason), p) for p in ims]


def best_mapping(g: LayerGeom, strategy: MappingRequest | Strategy | str, rows: int,
                 cols: int, S: int) -> tuple[MappingChoice, TilePlan]:
    """The mapping a layer gets for a request, with its plan.

    im2col: im2col. SDK: best square window, VW-SDK: best window of any shape; each falls
    back to im2col (with a `reason`) unless a window is strictly cheaper. auto: the cheapest
    of all three (ties prefer im2col, then smaller N, then smaller i) with group packing; a
    square winner is reported as SDK, any other window as VW-SDK.
    """
    ((choice, plan),) = _search((g,), (S,), strategy, rows, cols)
    return choice, plan


def best_pair_mapping(r: LayerGeom, l: LayerGeom,  # noqa: E741 -- the paper's name for it
                      request: MappingRequest | Strategy | str, rows: int, cols: int, S: int,
                      S_l: int | None = None
                      ) -> tuple[MappingChoice, TilePlan, MappingChoice, TilePlan]:
    """Joint mapping of a low-rank pair: `r` a (grouped) conv with `S` columns per weight,
    `l` the 1x1, stride-1 conv that follows it on the same output grid with `S_l` (default
    `S`) columns per weight.

    Theorem 2 (SDK(L R) = (I_N (x) L) SDK(R)): the 1x1 `l` run with an `i x j` window is
    exactly N copies of L on the block diagonal, so both halves use the SAME window and the
    pair costs `cycles(r) + cycles(l)`, each half tiled with its own `S`; the window
    minimizing that sum wins. "Both im2col" is always a candidate and is kept unless a
    window is strictly cheaper. Requests and labels as in `best_mapping`. Under `auto`, L
    mapped on its own (R's best plus L's best, each with its own window) replaces the
    shared window when strictly cheaper; L's `reason` then starts with `L_ALONE`.
    Returns (choice_r, plan_r, choice_l, plan_l).
    """
    if not l.is_pointwise:
        raise UsageError(f"low-rank pair: the second half must be a 1x1 stride-1 layer, got "
                         f"kernel {l.kh}x{l.kw} stride {l.sh}x{l.sw}")
    if (l.ho, l.wo) != (r.ho, r.wo) or l.ic != r.oc:
        raise UsageError(f"low-rank pair: the second half ({l.ic} -> {l.oc} channels on "
                         f"{l.ho}x{l.wo}) does not consume the first ({r.oc} channels on "
                         f"{r.ho}x{r.wo})")
    s_l = S if S_l is None else S_l
    (cr, pr), (cl, pl) = _search((r, l), (S, s_l), request, rows, cols)
    if MappingRequest.parse(request) is MappingRequest.AUTO:
        # L on its own: R's best layout plus L's best layout, each with its own window, when
        # that is strictly cheaper than the shared window (recorded in L's reason).
        ((cr1, pr1),) = _search((r,), (S,), request, rows, cols)
        ((cl1, pl1),) = _search((l,), (s_l,), request, rows, cols)
        joint, alone = pr.cycles + pl.cycles, pr1.cycles + pl1.cycles
        if alone < joint:
            note = (f"{L_ALONE}: the pair takes {alone} cycles, {joint} with R's window "
                    "(Theorem 2)")
            return cr1, pr1, replace(cl1, reason=note), pl1
    return cr, pr, cl, pl


__all__ = ["LayerGeom", "Cost", "TilePlan", "MappingRequest", "L_ALONE", "im2col_cost", "pw_cost",
           "best_mapping", "best_pair_mapping"]
