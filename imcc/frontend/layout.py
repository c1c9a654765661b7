"""Where the batch is in an ONNX tensor: the importer's per-value batch-axis tracking.

The IR keeps the batch on axis 0 of every value: the program, the simulator and
compiled.onnx rely on it. Exporters do not. torch's multi-head attention turns a
(B, T, C) activation into (T, B, C), then (T, B*heads, d), then (B*heads, T, d) and back;
Swin folds its windows into the batch. The importer therefore holds each ONNX tensor ``X``
as an IR value ``V`` whose axis 0 is the batch, plus a `Layout`: for every axis of ``X``
the axes of ``V`` merged into it, outermost first,

    X = reshape(transpose(V, order), [prod(V.shape[a] for a in g) for g in groups])

with ``order`` the groups concatenated followed by the axes of ``V`` in no group (which
must have size 1); an empty group is an axis of ``X`` of size 1. ``X`` is ``V`` itself
(the identity layout) when group ``i`` is ``(i,)`` for every axis of ``V``.

A Transpose, Squeeze or Unsqueeze of ``X`` changes only the layout; a Reshape changes the
layout and at most splits axes of ``V`` (an IR Reshape that keeps the batch first, see
`plan_reshape`). Ops that read an axis of ``X`` as one axis (a Linear's features, a
Softmax, a Gather) merge that axis' group into one axis of ``V`` (`plan_merge`: IR
Transpose + Reshape, the batch first); ops without a layout rule take ``X`` with the batch
alone on its axis 0 (`plan_normal`), and refuse it -- saying where the batch went --
when it is not.

Sizes are symbolic in the batch: ``(k, e)`` is ``k * B**e`` (``e`` 0 or 1), so a dynamic
batch is ``(1, 1)`` and a static one ``(1, 0)``. A static batch of 1 is a size-1 axis
like any other: the exporters' batch-1 graphs (dynamo) squeeze, merge and re-insert it
freely, which is exact there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Sym = tuple[int, int]  # (k, e): k * B**e
ONE: Sym = (1, 0)


class LayoutError(Exception):
    """A layout change that cannot be expressed on a batch-first value; the message says
    why (the importer turns it into the node's refusal)."""


def sym_sizes(shape: Sequence[int | None]) -> list[Sym]:
    """The symbolic sizes of an IR shape (None, the dynamic batch, is ``B``)."""
    return [(1, 1) if d is None else (int(d), 0) for d in shape]


def sym_text(s: Sym) -> str:
    k, e = s
    return str(k) if not e else "B" if k == 1 else f"{k}*B"


def sym_mul(a: Sym, b: Sym) -> Sym:
    return a[0] * b[0], a[1] + b[1]


def sym_prod(xs: Sequence[Sym]) -> Sym:
    out = ONE
    for x in xs:
        out = sym_mul(out, x)
    return out


@dataclass(frozen=True)
class Layout:
    """For each axis of an ONNX tensor, the axes of its batch-first IR value merged into
    it (see the module docstring)."""

    groups: tuple[tuple[int, ...], ...]

    @staticmethod
    def identity(rank: int) -> Layout:
        return Layout(tuple((i,) for i in range(rank)))

    def is_identity(self, vrank: int) -> bool:
        return self.groups == tuple((i,) for i in range(vrank))

    @property
    def rank(self) -> int:
        return len(self.groups)

    def sizes(self, vs: Sequence[Sym]) -> list[Sym]:
        """The ONNX tensor's sizes."""
        return [sym_prod([vs[a] for a in g]) for g in self.groups]

    def describe(self, vs: Sequence[Sym]) -> str:
        """The ONNX shape, e.g. ``(65, 4*B, 32)``."""
        parts = [sym_text(s) for s in self.sizes(vs)]
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"

    def batch_axis(self) -> int | None:
        """The axis of the ONNX tensor holding the batch (None: squeezed away)."""
        return next((i for i, g in enumerate(self.groups) if 0 in g), None)

    def permute(self, perm: Sequence[int]) -> Layout:
        return Layout(tuple(self.groups[p] for p in perm))

    def squeeze(self, axes: Sequence[int], vs: Sequence[Sym]) -> Layout:
        for ax in axes:
            if self.sizes(vs)[ax] != ONE:
                raise LayoutError(f"axis {ax} has size {sym_text(self.sizes(vs)[ax])}, not 1")
        return Layout(tuple(g for i, g in enumerate(self.groups) if i not in axes))

    def unsqueeze(self, axes: Sequence[int]) -> Layout:
        """``axes``: positions in the output, sorted."""
        gs = list(self.groups)
        for ax in axes:
            gs.insert(ax, ())
        return Layout(tuple(gs))


@dataclass(eq=False)
class _Piece:
    """A run of one axis of ``V`` in `plan_reshape` (an axis split into several pieces)."""

    axis: int
    size: Sym


def plan_reshape(layout: Layout, vs: Sequence[Sym], target: Sequence[Sym]
                 ) -> tuple[list[Sym], Layout]:
    """An ONNX Reshape of the tensor ``(layout, vs)`` to ``target`` (sizes resolved, the
    batch symbolic): the IR value's new sizes (axes of ``vs`` split, never merged or
    moved, the batch never split) and the output's layout.

    The tensor's elements run through the axes of ``V`` in group order; each target size
    takes the next axes whose sizes multiply to it, splitting an axis whose size it
    divides. A size-1 target takes one size-1 axis when one is next (so a static batch of
    1 stays where the exporter put it), else none; size-1 axes left at the end join the
    last group."""
    if not target:
        raise LayoutError("a reshape to a scalar")
    queue = [_Piece(a, vs[a]) for g in layout.groups for a in g]
    parts: dict[int, list[_Piece]] = {p.axis: [p] for p in queue}
    groups: list[list[_Piece]] = []
    pos = 0
    for ti, t in enumerate(target):
        grp: list[_Piece] = []
        need = t
        if need == ONE and pos < len(queue) and queue[pos].size == ONE:
            grp.append(queue[pos])
            pos += 1
        while need != ONE:
            if pos >= len(queue):
                raise LayoutError(f"size {sym_text(t)} is not a product of the remaining "
                                  "sizes")
            piece = queue[pos]
            c, e = piece.size
            if e <= need[1] and c and need[0] % c == 0:
                grp.append(piece)
                pos += 1
                need = (need[0] // c, need[1] - e)
            elif piece.axis == 0:
                raise LayoutError(f"size {sym_text(t)} would split the batch")
            elif e == 0 and need[1] == 0 and c % need[0] == 0:
                first = _Piece(piece.axis, (need[0], 0))
                piece.size = (c // need[0], 0)
                lst = parts[piece.axis]
                lst.insert(lst.index(piece), first)
                grp.append(first)
                need = ONE
            elif e:
                raise LayoutError(f"size {sym_text(t)} would split the batch")
            elif need[1]:
                raise LayoutError(f"size {sym_text(t)} would merge the batch out of order")
            else:
                raise LayoutError(f"size {sym_text(t)} does not divide the size "
                                  f"{sym_text(piece.size)}")
        if ti == len(target) - 1:
            while pos < len(queue) and queue[pos].size == ONE:
                grp.append(queue[pos])
                pos += 1
        groups.append(grp)
    if pos < len(queue):
        raise LayoutError("the target sizes do not cover the tensor")
    new_vs: list[Sym] = []
    ident: dict[int, int] = {}
    for a, s in enumerate(vs):
        for p in parts.get(a, [_Piece(a, s)]):
            ident[id(p)] = len(new_vs)
            new_vs.append(p.size)
    return new_vs, Layout(tuple(tuple(ident[id(p)] for p in g) for g in groups))


def _real(g: Sequence[int], vs: Sequence[Sym]) -> list[int]:
    return [a for a in g if vs[a] != ONE]


@dataclass(frozen=True)
class Plan:
    """IR ops that re-lay a value out: a Transpose by ``perm`` (None: none needed), then a
    Reshape to ``shape`` (None: none needed); the result has layout ``layout``."""

    perm: tuple[int, ...] | None
    shape: tuple[Sym, ...] | None
    layout: Layout


def _relayout(vs: Sequence[Sym], order: list[int], blocks: list[list[int]]) -> tuple[
        tuple[int, ...] | None, tuple[Sym, ...] | None, list[int]]:
    """Transpose ``V`` to ``order`` (a permutation, 0 first) and merge each block (a run of
    consecutive axes of ``order``) into one axis; the merged value's axis of each original
    axis' block, by original axis (-1 for axes dropped as size 1)."""
    perm = tuple(order)
    shape: list[Sym] = []
    where: dict[int, int] = {}
    i = 0
    while i < len(order):
        blk = next((b for b in blocks if b and b[0] == order[i]), None)
        if blk is None:
            blk = [order[i]]
        for a in blk:
            where[a] = len(shape)
        shape.append(sym_prod([vs[a] for a in blk]))
        i += len(blk)
    # Moving only size-1 axes is a reshape, not a transpose.
    moved = [a for a in order if vs[a] != ONE]
    perm_out = None if moved == sorted(moved) else perm
    shape_out = None if shape == list(vs) else tuple(shape)
    return perm_out, shape_out, [where.get(a, -1) for a in range(len(vs))]


def plan_merge(layout: Layout, vs: Sequence[Sym], k: int, to_end: bool) -> tuple[Plan, int]:
    """Make axis ``k`` of the ONNX tensor a single axis of ``V`` (the last one when
    ``to_end``: a Linear's features, a LayerNorm's normalized axis): the plan and that
    axis. Its size-1 members are left out (they become size-1 axes in no group)."""
    members = _real(layout.groups[k], vs)
    if 0 in members:
        raise LayoutError("an op along that axis would mix the samples")
    n = len(vs)
    if not members:  # a size-1 axis: one of its size-1 axes of V, else a new last one
        ones = [a for a in layout.groups[k] if a != 0]
        if ones and (not to_end or ones[-1] == n - 1):
            return Plan(None, None, _set(layout, k, (ones[-1],))), ones[-1]
        return Plan(None, (*vs, ONE), _set(layout, k, (n,))), n
    if len(members) == 1 and (not to_end or members[0] == n - 1):
        return Plan(None, None, _set(layout, k, (members[0],))), members[0]
    others = [a for a in range(n) if a not in members]
    if to_end:
        order = others + members
    else:
        first = members[0]
        order = [a for a in others if a < first] + members + [a for a in others if a > first]
    perm, shape, where = _relayout(vs, order, [members])
    groups: list[tuple[int, ...]] = []
    for i, g in enumerate(layout.groups):
        if i == k:
            groups.append((where[members[0]],))
        else:
            groups.append(tuple(where[a] for a in g))
    return Plan(perm, shape, Layout(tuple(groups))), where[members[0]]


def _set(layout: Layout, k: int, g: tuple[int, ...]) -> Layout:
    return Layout(layout.groups[:k] + (g,) + layout.groups[k + 1:])


def plan_runs(layout: Layout, vs: Sequence[Sym], axes: Sequence[int]) -> Plan:
    """Merge, in each ONNX axis of ``axes``, every run of consecutive axes of ``V`` between
    the batch (or its ends) into one axis of ``V``: a canonical form of axes that merge the
    batch with others (Swin's (B*windows, ...), however the windows were split), so two
    tensors merging the same sizes get the same axes."""
    blocks: list[list[int]] = []
    for k in axes:
        run: list[int] = []
        for a in [*_real(layout.groups[k], vs), 0]:
            if a == 0:
                if len(run) > 1:
                    blocks.append(run)
                run = []
            else:
                run.append(a)
    first = {b[0]: b for b in blocks}
    inside = {a for b in blocks for a in b}
    order: list[int] = []
    for a in range(len(vs)):
        if a in first:
            order += first[a]
        elif a not in inside:
            order.append(a)
    perm, shape, where = _relayout(vs, order, blocks)
    groups = []
    for k, g in enumerate(layout.groups):
        out: list[int] = []
        for a in g:
            if k in axes and a != 0 and vs[a] == ONE:
                continue  # a size-1 axis inside a run: left in no group
            w = where[a]
            if not out or out[-1] != w or a not in inside:
                out.append(w)
        groups.append(tuple(out))
    return Plan(perm, shape, Layout(tuple(groups)))


def plan_normal(layout: Layout, vs: Sequence[Sym]) -> tuple[Plan, int | None]:
    """The tensor with every axis but the batch's its own axis of ``V``, in order: the
    plan and the ONNX axis holding the batch alone (``kb``; the result's layout puts
    ``V``'s axis 0 there), or None when a static batch of 1 was squeezed or merged away
    (the result then holds the tensor as ``V[0]``). The identity layout when ``kb`` is 0.
    A dynamic batch merged with another axis cannot be laid out so: refused."""
    dyn = vs[0] != ONE
    kb: int | None = None
    for i, g in enumerate(layout.groups):
        if 0 in g:
            if dyn and len(_real(g, vs)) > 1:
                raise LayoutError("the batch is merged with other axes into axis "
                                  f"{i} of {layout.describe(vs)}")
            if dyn or layout.sizes(vs)[i] == ONE:
                kb = i
    if not dyn and layout.groups and layout.sizes(vs)[0] == ONE:
        kb = 0  # a static batch of 1 may sit on any size-1 axis; axis 0 keeps the IR's
    order = [0]
    blocks: list[list[int]] = []
    for i, g in enumerate(layout.groups):
        if i == kb:
            continue
        mem = [a for a in _real(g, vs) if a != 0]
        order += mem
        blocks.append(mem)
    rest = [a for a in range(len(vs)) if a not in order]
    perm, _, where = _relayout(vs, order + rest, [b for b in blocks if len(b) > 1])
    # Every axis but the batch's becomes one axis of V (size 1 when it has no member).
    shape: list[Sym] = [vs[0]]
    groups: list[tuple[int, ...]] = []
    for i, g in enumerate(layout.groups):
        if i == kb:
            groups.append((0,))
            continue
        groups.append((len(shape),))
        shape.append(sym_prod([vs[a] for a in _real(g, vs) if a != 0]))
    del where
    shp = None if shape == list(vs) else tuple(shape)
    return Plan(perm, shp, Layout(tuple(groups))), kb


def const_to_v(layout: Layout, vs: Sequence[Sym], c: np.ndarray) -> np.ndarray:
    """A constant operand of an elementwise op on the ONNX tensor (numpy broadcasting),
    re-laid out to broadcast against ``V`` the same way."""
    r = layout.rank
    if c.ndim > r:
        raise LayoutError(f"a constant of rank {c.ndim} for a rank-{r} tensor")
    c = c.reshape((1,) * (r - c.ndim) + c.shape)
    shape: list[int] = []
    flat: list[int] = []
    dims: tuple[int, ...] = c.shape
    for g, d, s in zip(layout.groups, dims, layout.sizes(vs), strict=True):
        flat += list(g)
        if d == 1:
            shape += [1] * len(g)
        elif s[1] or d != s[0]:
            raise LayoutError(f"a constant of size {d} on an axis of size {sym_text(s)}")
        else:
            shape += [vs[a][0] for a in g]
    orphans = [a for a in range(len(vs)) if a not in flat]
    c = c.reshape(shape + [1] * len(orphans))
    return np.ascontiguousarray(c.transpose(np.argsort(flat + orphans)))


def concrete(s: Sym, what: str) -> int:
    if s[1]:
        raise LayoutError(f"{what} depends on the batch size")
    return s[0]


def total(sizes: Sequence[Sym]) -> Sym:
    return sym_prod(sizes)


__all__ = ["Sym", "ONE", "Layout", "LayoutError", "Plan", "sym_sizes", "sym_text", "sym_prod",
           "plan_reshape", "plan_merge", "plan_normal", "plan_runs", "const_to_v", "concrete",
           "total"]
