"""Validation of a crossbar program read from disk (`imcc-program/1` to `/3`).

The simulator executes a program as written, so `read_program` refuses, before any work,
a program that the format does not allow: the first violation found is a `DataError`
(exit 4). Checked: the target's bit widths and array size; every value a step reads is
defined earlier; each crossbar layer's shapes follow from its conv geometry; its window
loop is the one its parallel window implies (`windows = ceil(out / pw)`); every tile fits
the array; row maps name input channels and window positions inside the window, column
maps name output channels, window pixels and slices that exist; cell levels are finite and
within what the cells store (two's complement slices: `[-(2^(b-1) - 1), 2^b - 1]` for
b-bit cells in a quantized program); scales and biases are finite vectors of the output
channels; the declared cycles equal windows x tiles and are not below the layer's lower
bound (`imcc.targets.tiling.lower_bound_cycles`); and sizes stay under `MAX_ELEMENTS`
per sample, so that a tampered file cannot ask for terabytes.

A placed program (`imcc-program/2` with a placement, `check_placement`) must also put
every tile somewhere it can run: segments are consecutive runs of the crossbar layers in
program order; every replica names one physical array per tile of its layer, inside the
chip; within a segment no array holds two tiles; executing the segments' loads in order,
every array a replica uses holds that replica's tile when its segment runs (loaded before
use); and the replicas' window ranges partition the layer's windows in order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imcc.errors import DataError
from imcc.ir.ops import conv_out
from imcc.targets.program import CrossbarLayer, DigitalStep, Placement, Program, Tile
from imcc.targets.tiling import (
    LayerGeom,
    cdiv,
    complete_column_bound,
    lower_bound_cycles,
    window_extent,
)

MAX_ELEMENTS = 1 << 28  # per-sample elements of any tensor the simulator allocates
MAX_BITS = 16
MAX_SCALE = 1e30  # scales and biases: far beyond any real layer, far below float32's max


def _pos_int(v: Any, what: str, hi: int = MAX_ELEMENTS) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 1 <= int(v) <= hi:
        raise DataError(f"{what} must be an integer in [1, {hi}], got {v!r}")
    return int(v)


def _pair(v: Any, what: str) -> tuple[int, int]:
    a, b = _ints(v, 2, what)
    return a, b


def _ints(v: Any, n: int, what: str, lo: int = 1) -> tuple[int, ...]:
    if not isinstance(v, tuple | list) or len(v) != n or any(
            isinstance(x, bool) or not isinstance(x, int | np.integer) or x < lo
            or x > MAX_ELEMENTS for x in v):
        raise DataError(f"{what} must be {n} integers >= {lo}, got {v!r}")
    return tuple(int(x) for x in v)


def _elements(shape: tuple[int, ...], what: str) -> int:
    n = 1
    for d in shape:
        n *= d
        if n > MAX_ELEMENTS:
            raise DataError(f"{what} {list(shape)} exceeds {MAX_ELEMENTS} elements per sample")
    return n


def _vector(a: Any, n: int, what: str) -> None:
    if not isinstance(a, np.ndarray) or a.shape != (n,) or a.dtype.kind != "f":
        got = getattr(a, "shape", type(a).__name__)
        raise DataError(f"{what} must be a float vector of {n} values, got {got}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{what} holds NaN or infinity")
    if a.size and float(np.abs(a).max()) > MAX_SCALE:
        raise DataError(f"{what} reaches {float(np.abs(a).max()):g}; beyond {MAX_SCALE:g} the "
                        "float32 post-processing overflows")


def check_program(p: Program) -> None:
    """Raise DataError naming the first way `p` breaks the program format."""
    t = p.target
    if not isinstance(t, dict):
        raise DataError("target must be a table")
    rows = _pos_int(t.get("rows"), "target rows", 1 << 16)
    cols = _pos_int(t.get("cols"), "target cols", 1 << 16)
    cell_bits = _pos_int(t.get("cell_bits"), "target cell_bits", 8)
    for k in ("weight_bits", "act_bits", "dac_bits", "adc_bits"):
        _pos_int(t.get(k), f"target {k}", MAX_BITS)
    defined: set[str] = set()
    for name, shape in p.inputs:
        if not isinstance(name, str):
            raise DataError(f"input name {name!r} is not a string")
        _ints([d for d in shape[1:]], len(shape) - 1, f"input {name!r} shape")
        defined.add(name)
    arrays = 0
    for step in p.steps:
        where = f"step {step.name!r}"
        reads = [step.input] if isinstance(step, CrossbarLayer) else \
            [i for i in step.inputs if i not in step.consts]
        missing = [v for v in reads if v not in defined]
        if missing:
            raise DataError(f"{where} reads {', '.join(map(repr, missing))}, which no input or "
                            "earlier step defines")
        if isinstance(step, DigitalStep):
            defined.update(step.outputs)
            continue
        try:
            _check_layer(step, rows, cols, cell_bits, p.quantized)
        except DataError as exc:
            raise DataError(f"{where}: {exc.message}") from None
        arrays += len(step.tiles)
        defined.add(step.output)
    undefined = [o for o in p.outputs if o not in defined]
    if undefined:
        raise DataError(f"program outputs {', '.join(map(repr, undefined))} are never computed")
    if p.n_arrays != arrays:
        raise DataError(f"n_arrays is {p.n_arrays}, the layers hold {arrays} tiles")
    if p.placement is not None:
        try:
            check_placement(p.placement, p.crossbar_layers())
        except DataError as exc:
            raise DataError(f"placement: {exc.message}") from None


def _nat(v: Any, what: str, hi: int = MAX_ELEMENTS) -> int:
    """An integer in [0, hi)."""
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 0 <= int(v) < hi:
        raise DataError(f"{what} must be an integer in [0, {hi}), got {v!r}"[:200])
    return int(v)


def check_placement(pl: Placement, layers: list[CrossbarLayer]) -> None:
    """Raise DataError naming the first way `pl` cannot run `layers` (see the module
    docstring): the checks a simulator or a chip controller relies on."""
    if not isinstance(pl.chip, str) or not pl.chip:
        raise DataError(f"chip must be a non-empty name, got {pl.chip!r}"[:200])
    n_arrays = _pos_int(pl.arrays, "arrays")
    _pos_int(pl.batch, "batch")
    by_name = {la.name: la for la in layers}
    order = [name for seg in pl.segments for name in seg.layers]
    if order != list(by_name):
        raise DataError("the segments must list every crossbar layer once, in program order")
    if [lp.layer for lp in pl.layers] != list(by_name):
        raise DataError("the placed layers must be the crossbar layers, in program order")
    seg_of = {name: k for k, seg in enumerate(pl.segments) for name in seg.layers}
    held: dict[int, tuple[str, int]] = {}
    pos = 0  # the placed layers are in segment order (checked above)
    for k, seg in enumerate(pl.segments):
        if seg.index != k:
            raise DataError(f"segment {k} is numbered {seg.index!r}")
        for ld in seg.loads:
            a = _nat(ld.array, f"segment {k}: a load's array", n_arrays)
            la = by_name.get(ld.layer)
            if la is None:
                raise DataError(f"segment {k} loads a tile of {ld.layer!r}, not a crossbar "
                                "layer"[:200])
            held[a] = (ld.layer, _nat(ld.tile, f"segment {k}: a load's tile of {ld.layer}",
                                      len(la.tiles)))
        used: dict[int, str] = {}
        seg_layers, pos = pl.layers[pos:pos + len(seg.layers)], pos + len(seg.layers)
        for lp in seg_layers:
            la = by_name[lp.layer]
            where = f"layer {lp.layer}"
            if lp.segment != seg_of[lp.layer]:
                raise DataError(f"{where} says segment {lp.segment!r}, it is listed in "
                                f"segment {seg_of[lp.layer]}")
            if not lp.replicas:
                raise DataError(f"{where} has no replica")
            nxt = 0
            for r, rep in enumerate(lp.replicas):
                if not isinstance(rep.arrays, tuple | list) or len(rep.arrays) != len(la.tiles):
                    raise DataError(f"{where} replica {r} must name {len(la.tiles)} arrays "
                                    "(one per tile)")
                start = _nat(rep.start, f"{where} replica {r} window start")
                stop = _nat(rep.stop, f"{where} replica {r} window stop")
                if start != nxt or stop <= start:
                    raise DataError(f"{where} replica {r} serves windows [{start}, {stop}); "
                                    f"the replicas must partition the windows in order "
                                    f"(next window {nxt})")
                nxt = stop
                for t, a in enumerate(rep.arrays):
                    a = _nat(a, f"{where} replica {r} array", n_arrays)
                    if a in used:
                        raise DataError(f"array {a} holds two tiles in segment {k} "
                                        f"({used[a]} and {lp.layer} tile {t})")
                    used[a] = f"{lp.layer} tile {t}"
                    if held.get(a) != (lp.layer, t):
                        have = held.get(a)
                        what = "nothing" if have is None else f"{have[0]} tile {have[1]}"
                        raise DataError(f"{where} replica {r} uses array {a} for tile {t}, "
                                        f"which is not loaded there before segment {k} runs "
                                        f"(it holds {what})")
            if nxt != la.n_windows:
                raise DataError(f"{where}: the replicas serve {nxt} of its {la.n_windows} "
                                "windows")


def _check_layer(s: CrossbarLayer, rows: int, cols: int, cell_bits: int,
                 quantized: bool) -> None:
    if s.op not in ("Conv", "Linear"):
        raise DataError(f"op {s.op!r} is not Conv or Linear")
    kernel = _pair(s.kernel, "kernel")
    stride = _pair(s.stride, "stride")
    dilation = _pair(s.dilation, "dilation")
    pads = _ints(s.pads, 4, "pads", lo=0)
    groups = _pos_int(s.groups, "groups")
    ins = _ints(s.in_shape, len(s.in_shape), "in_shape")
    outs = _ints(s.out_shape, len(s.out_shape), "out_shape")
    if s.op == "Conv":
        if len(ins) != 3 or len(outs) != 3:
            raise DataError(f"a Conv has (C, H, W) shapes, got {list(ins)} -> {list(outs)}")
        ic, h, w = ins
        oc = outs[0]
        want = (oc, conv_out(h, kernel[0], stride[0], pads[0], pads[2], dilation[0]),
                conv_out(w, kernel[1], stride[1], pads[1], pads[3], dilation[1]))
        if outs != want:
            raise DataError(f"out_shape {list(outs)} does not follow from in_shape "
                            f"{list(ins)} and the conv geometry (expected {list(want)})")
        _elements((ic, h + pads[0] + pads[2], w + pads[1] + pads[3]), "padded input")
        ho, wo = want[1], want[2]
    else:
        if ins[:-1] != outs[:-1] or kernel != (1, 1) or stride != (1, 1) or any(pads) \
                or groups != 1:
            raise DataError(f"a Linear maps (..., K) -> (..., N) as a 1x1 conv, got "
                            f"{list(ins)} -> {list(outs)}")
        ic, oc = ins[-1], outs[-1]
        ho, wo = _elements(ins[:-1], "in_shape"), 1
    if ic % groups or oc % groups:
        raise DataError(f"groups={groups} does not divide {ic} input and {oc} output channels")
    _elements(outs, "out_shape")
    m = s.mapping
    i, j = _pair(m.pw, "mapping pw")
    if not 1 <= m.group_pack <= groups:
        raise DataError(f"group_pack {m.group_pack} outside [1, groups={groups}]")
    if isinstance(m.pieces, bool) or not isinstance(m.pieces, int) or \
            not 0 <= m.pieces <= min(rows, cols) or (m.pieces and m.group_pack != 1):
        raise DataError(f"pieces {m.pieces!r} must be 0 or a number of pieces per array in "
                        f"[1, {min(rows, cols)}] (with group_pack 1)")
    if m.strip not in ("", "x", "y") or (m.strip and m.pieces != 1):
        raise DataError(f"strip {m.strip!r} must be x or y, with one piece per array")
    if tuple(m.patch) != (0, 0):
        _pair(m.patch, "mapping patch")
        if m.pieces != 1 or m.strip:
            raise DataError(f"patch {list(m.patch)} takes pieces 1 and no strip")
    if isinstance(m.bicliques, bool) or not isinstance(m.bicliques, int) or m.bicliques < 0 \
            or (m.bicliques and (m.pieces != 1 or m.strip or tuple(m.patch) != (0, 0))):
        raise DataError(f"bicliques {m.bicliques!r} must be 0 or a number of pixels per "
                        "dense block (with pieces 1, no strip, no patch)")
    if m.segments not in ("", "x", "y") or (m.segments and (
            m.pieces != 1 or m.strip or tuple(m.patch) != (0, 0) or m.bicliques)):
        raise DataError(f"segments {m.segments!r} must be x or y, with pieces 1 and no "
                        "strip, patch or dense blocks")
    if tuple(s.windows) != (cdiv(ho, i), cdiv(wo, j)):
        raise DataError(f"window loop {list(s.windows)} is not the one a {i}x{j} window over "
                        f"a {ho}x{wo} output takes ({[cdiv(ho, i), cdiv(wo, j)]})")
    _elements((cdiv(ho, i) * cdiv(wo, j), oc * i * j), "window outputs")
    sw = s.slice_weights
    n_slices = len(sw) if isinstance(sw, list) else 0
    want_sw = [1 << (k * cell_bits) for k in range(n_slices)]
    if want_sw:
        want_sw[-1] = -want_sw[-1]
    if not 1 <= n_slices <= MAX_BITS or sw != want_sw:
        raise DataError(f"slice_weights {sw!r} are not the two's-complement shift-add "
                        f"weights of {cell_bits}-bit cells")
    _vector(s.out_scale, oc, "out_scale")
    if s.bias is not None:
        _vector(s.bias, oc, "bias")
    if s.in_quant is not None:
        scale, bits, signed = s.in_quant
        if not (isinstance(scale, float | int) and np.isfinite(scale)
                and float(np.finfo(np.float32).tiny) <= scale <= MAX_SCALE):
            raise DataError(f"in_quant scale must be a positive number in float32's normal "
                            f"range up to {MAX_SCALE:g}, got {scale!r}")
        _pos_int(bits, "in_quant bits", MAX_BITS)
        if not isinstance(signed, bool):
            raise DataError(f"in_quant signed must be true or false, got {signed!r}")
    pwh, pww = window_extent(kernel, stride, dilation, (i, j))
    lo, hi = -((1 << (cell_bits - 1)) - 1), (1 << cell_bits) - 1
    if not s.tiles:
        raise DataError("a crossbar layer needs at least one tile")
    for k, tile in enumerate(s.tiles):
        try:
            _check_tile(tile, rows, cols, ic, oc, (pwh, pww), (i, j), n_slices,
                        (lo, hi) if quantized else None)
        except DataError as exc:
            raise DataError(f"tile {k}: {exc.message}") from None
    n_windows = cdiv(ho, i) * cdiv(wo, j)
    bound = cdiv(ho * wo * oc * n_slices * cdiv(kernel[0] * kernel[1] * (ic // groups), rows),
                 cols)
    # The recorded bound is the layer's (imcc.targets.tiling.lower_bound_cycles); programs
    # written before its refinements recorded the column bound alone, or the column bound
    # with the complete-column refinement (before the row bound).
    geom = LayerGeom.from_conv(ic, oc, groups, kernel, stride, dilation, (ho, wo))
    older = max(bound, complete_column_bound(geom, n_slices, rows, cols))
    full = lower_bound_cycles(geom, n_slices, rows, cols)
    lb = s.lower_bound_cycles
    if isinstance(lb, bool) or not isinstance(lb, int) or lb not in (0, bound, older, full):
        raise DataError(f"lower_bound_cycles {lb!r} is not the layer's bound {full}")
    if n_windows * len(s.tiles) < bound:
        raise DataError(f"{n_windows * len(s.tiles)} cycles are below the layer's lower bound "
                        f"{bound}: some products are computed by no activation")
    if m.cycles is not None and m.cycles != s.cycles:
        raise DataError(f"declares {m.cycles} cycles, its window loop and tiles make "
                        f"{s.cycles}")


def _check_tile(t: Tile, rows: int, cols: int, ic: int, oc: int, extent: tuple[int, int],
                pw: tuple[int, int], n_slices: int, levels: tuple[int, int] | None) -> None:
    r, c, cells = t.rows, t.cols, t.cells
    for name, a, width, cap in (("rows", r, 3, rows), ("cols", c, 4, cols)):
        if not isinstance(a, np.ndarray) or a.ndim != 2 or a.shape[1] != width \
                or a.dtype.kind not in "iu":
            raise DataError(f"{name} must be an integer ({'R' if width == 3 else 'C'}, "
                            f"{width}) array, got {getattr(a, 'shape', None)}")
        if not 1 <= a.shape[0] <= cap:
            raise DataError(f"{a.shape[0]} {name} used, the array has {cap}")
    for name, a, bounds in (
            ("rows", r, (ic, extent[0], extent[1])),
            ("cols", c, (oc, pw[0], pw[1], n_slices))):
        for col, (label, n) in enumerate(zip(("channel", "dy", "dx") if name == "rows"
                                             else ("output channel", "py", "px", "slice"),
                                             bounds, strict=True)):
            v = a[:, col]
            if v.min() < 0 or v.max() >= n:
                raise DataError(f"{name} name {label} {int(v.min() if v.min() < 0 else v.max())}"
                                f", outside [0, {n})")
    if not isinstance(cells, np.ndarray) or cells.shape != (r.shape[0], c.shape[0]):
        raise DataError(f"cells must be {r.shape[0]} x {c.shape[0]}, got "
                        f"{getattr(cells, 'shape', None)}")
    if cells.dtype.kind not in "iuf" or not np.all(np.isfinite(cells)):
        raise DataError("cells must hold finite numbers")
    if levels is not None:
        if cells.dtype.kind not in "iu":
            raise DataError(f"cells of a quantized program must be integer levels, got "
                            f"{cells.dtype}")
        if cells.size and (cells.min() < levels[0] or cells.max() > levels[1]):
            raise DataError(f"cell levels span [{int(cells.min())}, {int(cells.max())}], the "
                            f"cells store [{levels[0]}, {levels[1]}]")
    if not 0 <= t.taps <= cells.size:
        raise DataError(f"taps {t.taps} outside [0, {cells.size}]")


__all__ = ["check_placement", "check_program", "MAX_ELEMENTS"]
