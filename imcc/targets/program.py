"""The crossbar program: what each array holds, which inputs drive its rows, what its columns
produce, the window loop, and the digital work between crossbar layers.

This module is the in-memory form; `imcc.targets.program_io` writes and reads the on-disk
format documented in docs/program-format.md.

Semantics of one crossbar layer (the simulator is the executable version):

    for each window (wy, wx) in range(windows_h) x range(windows_w):      # the window loop
        origin = (wy * step_h, wx * step_w)            # in the padded input of this layer
        for each tile t:                                # one computing cycle per (window, tile)
            v[r] = xpad[group_offset + rows[r].c, origin + rows[r].(dy, dx)]
            col = v @ cells                             # the array's column sums (ADC)
            for each column k with cols[k] = (oc, py, px, s):
                acc[oc, wy * i + py, wx * j + px] += slice_weight[s] * col[k]
    y = acc * out_scale[oc] + bias[oc]                  # digital post-processing

Output pixels a window computes past the layer's output size are discarded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from imcc.ir.annotations import LowRank, MappingChoice
from imcc.ir.ops import Op

FORMAT = "imcc-program/3"
# Formats read_program accepts, oldest first: /1 has no placement section (read as
# placement None); /1 and /2 store three arrays.npz members per tile, /3 three per layer.
READABLE_FORMATS = ("imcc-program/1", "imcc-program/2", FORMAT)


def bit_slice(q: np.ndarray, weight_bits: int, cell_bits: int) -> np.ndarray:
    """Split integer weights into S = ceil(weight_bits / cell_bits) cell levels, least
    significant slice first (new leading axis). Two's complement over S * cell_bits bits;
    the top slice stores the negated signed top digit, so with shift-add weights
    `CrossbarTarget.slice_weights()` (top one negative) `sum_k w_k * level_k == q`.
    For 1-bit cells every level is 0 or 1.

    Works in the narrowest integer type holding S * cell_bits bits (truncating to it keeps
    the low bits, which are all that two's complement slicing reads) and writes each slice
    straight into the int8 result: no int64 temporaries (VGG-11's 133M weights; int8 ones
    for up to 7 bits, W4 on 1-bit cells)."""
    s = -(-weight_bits // cell_bits)
    total = s * cell_bits
    work = (np.int8 if total <= 7 else np.int16 if total <= 15 else np.int32 if total <= 31
            else np.int64)
    a = np.asarray(q)
    if not np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.int64)
    u = a.astype(work) & work((1 << total) - 1)
    mask = work((1 << cell_bits) - 1)
    levels = np.empty((s,) + a.shape, np.int8)
    shifted = np.empty_like(u)
    for k in range(s):
        np.right_shift(u, k * cell_bits, out=shifted)
        np.bitwise_and(shifted, mask, out=levels[k], casting="unsafe")
    # Top slice: the signed top digit, negated (its shift-add weight is negative).
    np.bitwise_and(shifted, mask, out=shifted)
    half, full = 1 << (cell_bits - 1), 1 << cell_bits
    if full > np.iinfo(work).max:  # 7-bit cells in int8: the top digit's range needs more
        shifted = shifted.astype(np.int16)
    top = np.where(shifted >= half, shifted - full, shifted)
    np.negative(top, out=levels[-1], casting="unsafe")
    return levels


def bit_slice_at(q: np.ndarray, s: np.ndarray, weight_bits: int, cell_bits: int
                 ) -> np.ndarray:
    """`bit_slice(q, weight_bits, cell_bits)[s[i], i]` elementwise: the level of slice
    `s[i]` of `q[i]` (same shapes), without slicing every weight."""
    n = -(-weight_bits // cell_bits)
    u = np.asarray(q).astype(np.int64) & ((1 << (n * cell_bits)) - 1)
    d = (u >> (np.asarray(s, np.int64) * cell_bits)) & ((1 << cell_bits) - 1)
    top = np.asarray(s) == n - 1
    d = np.where(top & (d >= 1 << (cell_bits - 1)), d - (1 << cell_bits), d)
    return np.where(top, -d, d).astype(np.int8)


@dataclass(eq=False)
class Tile:
    """One array's contents. `rows[r] = (c, dy, dx)`: the input element (channel, offset from
    the window origin in the padded input) that drives row r. `cols[k] = (oc, py, px, s)`:
    column k adds slice s of output channel oc at pixel (py, px) of the parallel window.
    `cells[r, k]` is the level (integer; float in an unquantized program)."""

    array: int
    group: int
    row_tile: int
    col_tile: int
    rows: np.ndarray   # (R, 3) int32
    cols: np.ndarray   # (C, 4) int32
    cells: np.ndarray  # (R, C) int8 levels, or float32 weights when unquantized
    taps: int = 0      # cells that hold a weight slice (the rest of the R x C block is zero)

    @property
    def used_cells(self) -> int:
        return int(self.rows.shape[0] * self.cols.shape[0])


@dataclass(eq=False)
class CrossbarLayer:
    name: str
    op: str                      # "Conv" or "Linear"
    input: str                   # value names
    output: str
    in_shape: tuple[int, ...]    # per sample: (C, H, W); Linear: (..., K)
    out_shape: tuple[int, ...]   # per sample: (OC, Ho, Wo); Linear: (..., N)
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]
    groups: int
    mapping: MappingChoice
    windows: tuple[int, int]     # windows along H and W
    tiles: list[Tile]
    slice_weights: list[int]     # shift-add weight per slice index
    out_scale: np.ndarray        # (OC,) float32: in_scale * w_scale[oc]; ones when unquantized
    bias: np.ndarray | None      # (OC,) float32
    in_quant: tuple[float, int, bool] | None = None  # (scale, bits, signed) of the input
    lowrank: LowRank | None = None
    weight_params: int = 0
    # Activations no layout of this layer can go below on the target's arrays
    # (imcc.targets.tiling.lower_bound_cycles); 0 when unknown.
    lower_bound_cycles: int = 0

    @property
    def pw(self) -> tuple[int, int]:
        return self.mapping.pw

    @property
    def n_windows(self) -> int:
        return self.windows[0] * self.windows[1]

    @property
    def cycles(self) -> int:
        """Computing cycles: (window, tile) activations the window loop executes."""
        return self.n_windows * len(self.tiles)


@dataclass(eq=False)
class DigitalStep:
    """An op between crossbar layers, run by the digital periphery (numpy semantics of the op).
    `inputs` name values; constant operands are in `consts` under their value names."""

    name: str
    op: Op
    inputs: list[str]
    outputs: list[str]
    consts: dict[str, np.ndarray] = field(default_factory=dict)


Step = CrossbarLayer | DigitalStep


@dataclass(frozen=True)
class Replica:
    """One copy of a crossbar layer's tiles on the chip: tile `t` of the layer sits on
    physical array `arrays[t]`, and this copy computes the windows `[start, stop)` of the
    layer's window loop (row-major window order)."""

    arrays: tuple[int, ...]
    start: int
    stop: int


@dataclass(frozen=True)
class LayerPlace:
    """Where a crossbar layer runs: its segment and its replicas."""

    layer: str
    segment: int
    replicas: tuple[Replica, ...]


@dataclass(frozen=True)
class Load:
    """Programming array `array` with tile `tile` of crossbar layer `layer`."""

    array: int
    layer: str
    tile: int


@dataclass(frozen=True)
class SegmentPlace:
    """A run of consecutive crossbar layers that sit on the chip together. `loads` are the
    array writes done before the segment runs (in this order); arrays keep their contents
    from earlier segments otherwise."""

    index: int
    layers: tuple[str, ...]
    loads: tuple[Load, ...]


@dataclass(frozen=True)
class Placement:
    """The program on a chip of `arrays` physical arrays (ids `0 .. arrays - 1`): segments
    in execution order and every crossbar layer's replicas. Execution: for each segment in
    order, apply its loads, then run its layers' steps (digital steps run between them as
    in `Program.steps`); within a segment no array holds two tiles."""

    chip: str
    arrays: int
    batch: int                          # images run per weight load when segmented
    segments: tuple[SegmentPlace, ...]
    layers: tuple[LayerPlace, ...]

    def layer(self, name: str) -> LayerPlace:
        for lp in self.layers:
            if lp.layer == name:
                return lp
        raise KeyError(name)


@dataclass(eq=False)
class Program:
    model: str
    target: dict[str, int]
    quantized: bool
    inputs: list[tuple[str, tuple[int | None, ...]]]
    outputs: list[str]
    steps: list[Step]
    n_arrays: int = 0
    placement: Placement | None = None  # with --chip: where every tile runs

    def crossbar_layers(self) -> list[CrossbarLayer]:
        return [s for s in self.steps if isinstance(s, CrossbarLayer)]

    @property
    def total_cycles(self) -> int:
        return sum(layer.cycles for layer in self.crossbar_layers())
