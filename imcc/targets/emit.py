"""Emit the crossbar program for a mapped graph (the crossbar target's back end).

Contract: every crossbar node carries a `MappingChoice`; each becomes a `CrossbarLayer`
whose tiles are those of its `imcc.targets.tiling.TilePlan` (row maps, column maps, group
sets), so the layer executes exactly `plan.cycles` (window, tile) activations. The cycles
the map pass recorded in the choice must equal that count: a mismatch is a VerifyError
(the pass optimized another objective than the one the program has).

Quantized weights are bit-sliced (`bit_slice`); unquantized weights keep the same layout
(and so the same cycles) with the real-valued weight in the least significant slice column
and zeros in the others. Every other node becomes a `DigitalStep`; a FakeQuant read only by
crossbar layers is fused into them as the layer's input quantization.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from imcc.errors import ModelError, UsageError
from imcc.ir import Graph, Node, VerifyError
from imcc.ir import ops as O
from imcc.targets.crossbar import CrossbarTarget
from imcc.targets.program import (
    CrossbarLayer,
    DigitalStep,
    Program,
    Tile,
    bit_slice,
    bit_slice_at,
)
from imcc.targets.tiling import lower_bound_cycles, node_plan, node_slices

# No trained network has weights near this; float32 column sums times scales of weights
# beyond it (for inputs up to imcc.dataset.MAX_INPUT_MAGNITUDE) can reach infinity.
MAX_WEIGHT_MAGNITUDE = 1e15


def _conv_view(node: Node) -> tuple[np.ndarray, O.Conv]:
    """Weight as (OC, IC/g, kh, kw) and the conv attributes (a Linear is a 1x1 conv)."""
    w = node.inputs[1].data
    assert w is not None
    if isinstance(node.op, O.Conv):
        return w, node.op
    return w.reshape(w.shape[0], w.shape[1], 1, 1), O.Conv(kernel=(1, 1))


# A quantized layer whose sliced levels would take more than this many bytes has its
# tiles' cells sliced on demand from the weight levels (`SlicedLevels`) instead: VGG-11's
# first classifier layer would otherwise hold 411 MB of levels next to its 411 MB of cells.
EAGER_LEVELS_BYTES = 64 << 20


@dataclass(frozen=True)
class SlicedLevels:
    """`bit_slice(q, bits, cell_bits)` as `_cells` reads it (`shape`, `size`, `take` of flat
    indices), computing only the entries taken (`bit_slice_at`): the same values."""

    q: np.ndarray  # integer weight levels, flattened
    bits: int
    cell_bits: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def take(self, flat: np.ndarray) -> np.ndarray:
        s, idx = np.divmod(flat, self.q.size)
        return bit_slice_at(self.q.take(idx), s, self.bits, self.cell_bits)


def _levels(node: Node, target: CrossbarTarget, quantized: bool) -> np.ndarray | SlicedLevels:
    """(S, OC, IC/g, kh, kw) cell values, shift-add weights `target.slice_weights()`."""
    w, _ = _conv_view(node)
    s = node_slices(node, target)
    if quantized:
        assert node.wquant is not None
        q = node.wquant.q.reshape(w.shape)
        if s * q.size > EAGER_LEVELS_BYTES:
            return SlicedLevels(q.reshape(-1), node.wquant.bits, target.cell_bits,
                                (s,) + q.shape)
        return bit_slice(q, node.wquant.bits, target.cell_bits)
    out = np.zeros((s,) + w.shape, dtype=np.float32)
    # Slice 0 is shift-added with weight +1, or -1 when it is also the (negative) top slice.
    out[0] = w * np.float32(target.slice_weights()[0])
    return out


def emit_layer(node: Node, target: CrossbarTarget, quantized: bool, first_array: int
               ) -> CrossbarLayer:
    """Lay one mapped crossbar node out as its tile plan (`imcc.targets.tiling.node_plan`)
    prescribes: one tile per array of `plan.bins()`, its pieces (group, row tile, column
    tile) on the block diagonal."""
    plan = node_plan(node, target)
    w, conv = _conv_view(node)
    big = float(np.abs(w).max(initial=0.0))
    if not big <= MAX_WEIGHT_MAGNITUDE:
        raise ModelError(f"layer {node.name!r}: weights up to {big:g} in magnitude; beyond "
                         f"{MAX_WEIGHT_MAGNITUDE:g} the float32 sums of the crossbar's "
                         "products and scales overflow", "check the model's weights")
    oc, icg, kh, kw = w.shape
    g = conv.group
    ocg = oc // g
    sh, sw = conv.stride
    dh, dw = conv.dilation
    levels = _levels(node, target, quantized)
    maps = plan.piece_maps()

    tiles: list[Tile] = []
    for pieces in plan.bins():
        parts = []
        for gi, rt, ct in pieces:
            rows, cols = maps[(rt, ct)]
            cells, taps = _cells(levels, gi * ocg, rows, cols, sh, sw, dh, dw, kh, kw)
            r_abs = rows.copy()
            r_abs[:, 0] += gi * icg
            c_abs = cols.copy()
            c_abs[:, 0] += gi * ocg
            parts.append((r_abs.astype(np.int32), c_abs.astype(np.int32), cells, taps))
        gi, rt, ct = pieces[0]
        tiles.append(_block_diagonal(parts, first_array + len(tiles), gi, rt, ct, target,
                                     node.name))
    if len(tiles) != plan.tiles:
        raise VerifyError(f"layer {node.name!r}: emitted {len(tiles)} tiles, its plan has "
                          f"{plan.tiles}")

    xs = node.inputs[0].type.sample_shape()
    ys = node.output.type.sample_shape()
    in_quant = None
    out_scale = np.ones(oc, np.float32)
    if quantized:
        assert node.wquant is not None
        out_scale = node.wquant.scale.astype(np.float32).copy()
        fq = node.inputs[0].producer
        if fq is not None and isinstance(fq.op, O.FakeQuant):
            in_quant = (fq.op.scale, fq.op.bits, fq.op.signed)
            out_scale = (out_scale * np.float32(fq.op.scale)).astype(np.float32)
    bias = node.inputs[2].data.astype(np.float32) if len(node.inputs) > 2 else None  # type: ignore[union-attr]
    assert node.mapping is not None  # node_plan checked it
    mapping = replace(node.mapping, cycles=plan.cycles)
    return CrossbarLayer(
        name=node.name, op=node.op.kind,
        input=node.inputs[0].name, output=node.output.name, in_shape=xs, out_shape=ys,
        kernel=conv.kernel, stride=conv.stride, dilation=conv.dilation, pads=conv.pads,
        groups=g, mapping=mapping, windows=plan.windows_hw, tiles=tiles,
        slice_weights=target.slice_weights(node.wquant.bits if node.wquant else None),
        out_scale=out_scale, bias=bias,
        in_quant=in_quant, lowrank=node.lowrank, weight_params=int(w.size),
        lower_bound_cycles=lower_bound_cycles(plan.geom, plan.slices, target.rows, target.cols))


def _block_diagonal(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]], array: int,
                    group: int, row_tile: int, col_tile: int, target: CrossbarTarget,
                    name: str) -> Tile:
    """One array holding `parts` (rows, cols, cells, taps; rows and columns already name
    absolute channels) on its block diagonal: rows and columns are concatenated, cells off
    the diagonal blocks are zero, so each piece only sees its own inputs (group packing, the
    planner's pieces from any group or chunk)."""
    if len(parts) == 1:
        r, c, cells, taps = parts[0]
        return Tile(array, group, row_tile, col_tile, r, c, cells, taps)
    rows = np.concatenate([p[0] for p in parts])
    cols = np.concatenate([p[1] for p in parts])
    if len(rows) > target.rows or len(cols) > target.cols:
        raise VerifyError(f"layer {name!r}: {len(parts)} pieces do not fit one "
                          f"{target.name} array")
    cells = np.zeros((len(rows), len(cols)), dtype=parts[0][2].dtype)
    r0 = c0 = 0
    for r, c, block, _ in parts:
        cells[r0:r0 + len(r), c0:c0 + len(c)] = block
        r0, c0 = r0 + len(r), c0 + len(c)
    return Tile(array, group, row_tile, col_tile, rows, cols, cells, sum(p[3] for p in parts))


def _cells(levels: np.ndarray | SlicedLevels, oc0: int, rows: np.ndarray, cols: np.ndarray,
           sh: int, sw: int, dh: int, dw: int, kh: int, kw: int) -> tuple[np.ndarray, int]:
    """cells[r, k] = level of slice s of W[oc, c, ky, kx] where the row's PW position minus the
    column's pixel origin is kernel tap (ky, kx); zero where it is no tap. Also returns the
    number of cells that hold a tap (the mapped cells of the utilization figure).

    The flat index of (s, oc, c, ky, kx) in `levels` is a row term plus a column term (the
    tap offsets ky_num = py - oy*sh and kx_num = px - ox*sw are differences of a row and a
    column value), so one (R, C) addition and two range checks replace a five-way gather;
    this runs once per tile (97,408 calls for VGG-11 on 128x128 arrays)."""
    _, n_oc, n_c, _, _ = levels.shape
    taps = kh * kw
    big = levels.size >= 1 << 31
    it = np.int64 if big else np.int32
    r_c, r_y, r_x = (rows[:, i].astype(it) for i in range(3))
    k_oc, k_y, k_x, k_s = (cols[:, i].astype(it) for i in range(4))
    ky_num = r_y[:, None] - (k_y * sh)[None, :]
    kx_num = r_x[:, None] - (k_x * sw)[None, :]
    # 0 <= ky_num < kh*dh in one unsigned comparison (a negative wraps to a huge value)
    ut = np.uint64 if big else np.uint32
    ok = ky_num.view(ut) < kh * dh
    ok &= kx_num.view(ut) < kw * dw
    col_base = ((k_s * n_oc + oc0 + k_oc) * n_c) * taps
    if dh == 1 and dw == 1:
        flat = (r_c * taps + r_y * kw + r_x)[:, None] + (col_base - k_y * sh * kw
                                                         - k_x * sw)[None, :]
    else:
        ok &= (ky_num % dh == 0) & (kx_num % dw == 0)
        flat = (r_c * taps)[:, None] + col_base[None, :] + (ky_num // dh) * kw + kx_num // dw
    np.putmask(flat, ~ok, 0)  # any valid index; the cell is zeroed below
    cells = (levels.take(flat) if isinstance(levels, SlicedLevels)
             else levels.reshape(-1).take(flat))
    np.putmask(cells, ~ok, 0)
    return cells, int(np.count_nonzero(ok))


def _limit(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"{name}={raw!r} must be a positive integer")
    return int(raw)


def check_program_size(graph: Graph, target: CrossbarTarget) -> None:
    """Refuse, before any array is allocated, a program that would not fit in memory or on
    disk: more than IMCC_MAX_TILES tiles (default 2^20; `--target 1x1` on ResNet-20 asks for
    a million single-cell arrays) or a tile of more than IMCC_MAX_TILE_CELLS cells (default
    2^26; the emitter needs about 50 bytes per cell while it fills one, and a 65536x65536
    target lets a single window cover a whole feature map)."""
    max_tiles = _limit("IMCC_MAX_TILES", 1 << 20)
    max_cells = _limit("IMCC_MAX_TILE_CELLS", 1 << 26)
    tiles = 0
    for node in graph.crossbar_nodes():
        plan = node_plan(node, target)
        tiles += plan.tiles
        gp = plan.group_pack
        cells = (max(map(len, plan.row_maps())) * gp) * (max(map(len, plan.col_maps())) * gp)
        if cells > max_cells:
            raise UsageError(f"layer {node.name!r}: one array of its {target.name} layout "
                             f"holds {cells:,} cells, more than imcc materializes per array "
                             f"({max_cells:,})", "choose a smaller --target (or raise "
                             "IMCC_MAX_TILE_CELLS)")
    if tiles > max_tiles:
        raise UsageError(f"the program needs {tiles:,} arrays of {target.name}, more than "
                         f"imcc writes ({max_tiles:,})", "choose a larger --target (or "
                         "raise IMCC_MAX_TILES)")


def emit_program(graph: Graph, target: CrossbarTarget, model: str = "") -> Program:
    check_program_size(graph, target)
    quantized = any(n.wquant is not None for n in graph.crossbar_nodes())
    steps: list[CrossbarLayer | DigitalStep] = []
    fused: set[str] = set()
    for node in graph.nodes:
        if isinstance(node.op, O.FakeQuant) and node.output.users and \
                all(u.op.crossbar for u in node.output.users) and \
                node.output not in graph.outputs:
            fused.add(node.output.name)
    n_arrays = 0
    for node in graph.nodes:
        if node.op.crossbar:
            layer = emit_layer(node, target, quantized and node.wquant is not None, n_arrays)
            if layer.input in fused:
                fq = node.inputs[0].producer
                assert fq is not None
                layer.input = fq.inputs[0].name
            n_arrays += len(layer.tiles)
            steps.append(layer)
        elif node.output.name not in fused:
            consts = {v.name: v.data for v in node.inputs if v.data is not None}
            steps.append(DigitalStep(node.name, node.op, [v.name for v in node.inputs],
                                     [o.name for o in node.outputs], consts))
    return Program(
        model=model,
        target={"rows": target.rows, "cols": target.cols, "weight_bits": target.weight_bits,
                "cell_bits": target.cell_bits, "act_bits": target.act_bits,
                "dac_bits": target.dac_bits, "adc_bits": target.adc_bits},
        quantized=quantized,
        inputs=[(v.name, v.type.shape) for v in graph.inputs],
        outputs=[v.name for v in graph.outputs], steps=steps, n_arrays=n_arrays)


__all__ = ["emit_program", "emit_layer"]
