"""The tiling model: how one crossbar layer is cut into array tiles, and what that costs.

This module is the single implementation of the layout that the `map` pass searches over
(`imcc.targets.cost`), the emitter materializes (`imcc.targets.emit`) and the simulator
executes (`imcc.sim.simulator`, which takes the window extent from here). A `TilePlan`
fixes a layer's layout; its `cycles` is the number of (window, array tile) activations
the emitted program performs, and the emitter refuses a program whose tile count differs.

Notation (DESIGN.md section 3): a layer has `groups` groups of `IC_g` input and `OC_g`
output channels, a `kh x kw` kernel with stride `(sh, sw)` and dilation `(dh, dw)`, and an
`ho x wo` output over the padded input. A weight takes `S` adjacent columns (bit slices).

- **im2col** (`pw = 1x1`): a group's unrolled kernel, rows `(c, ky*dh, kx*dw)` channel
  major, is cut into row tiles of `ict = min(kh*kw*IC_g, rows)` elements, its columns
  `(oc, s)` into column tiles of `oct = min(OC_g*S, cols)` elements.
- **parallel window** `i x j`: a window reads `PWh x PWw` input pixels per channel
  (`window_extent`) and holds the kernel `N = i*j` times, shifted, in its columns. A row
  tile holds `ict = min(IC_g, rows // (PWh*PWw))` whole channels, a column tile
  `oct = min(OC_g, cols // (N*S))` whole output channels (either 0: infeasible).
- **group packing** (`group_pack = gp > 1`): when one group's whole block fits one tile,
  `gp` groups share an array on its block diagonal.

`tiles = ceil(groups / gp) * row_tiles * col_tiles`, `windows = ceil(ho/i) * ceil(wo/j)`,
`cycles = windows * tiles`. The closed forms of DESIGN.md are kept, independently, as the
test oracle (tests/test_cost.py, tests/test_sim_vs_ort_property.py).

**Pieces and bins** (the planner's layout, `pieces = k >= 1`, used by `auto` only, see
`planned_plan`): a group's rows for window `i x j` are its `IC_g * P` input elements
`(c, dy, dx)` (channel major, `P` the window positions some tap reads), its columns the
`OC_g * N * S` output columns `(oc, py, px, s)`. Both are cut at element granularity into
row chunks of `ict` elements and column chunks of `oct` columns (not whole channels); a
*piece* is one (group, row chunk, column chunk) block. `k` pieces share one array on its
block diagonal (rows and columns concatenated, cells outside each piece's own block 0),
so a piece may come from any group or chunk; `ict <= rows // k` and `oct <= cols // k`
make any `k` pieces fit. Pieces are taken in (group, row chunk, column chunk) order, `k`
per array: `tiles = ceil(groups * row_tiles * col_tiles / k)`. `k = 1` is element-granular
tiling without sharing; `pw = 1x1` is element-granular im2col.

**Strips** (`strip = "x"` or `"y"`, one piece per array, undilated layers): the rows of a
group are ordered by their offset along the strip axis first (`dx` for "x"), then channel,
then the other offset, and cut into chunks of `rows` elements. A chunk then spans a short
range of offsets along that axis, and only the window pixels whose taps read one of them
(a range `[lo, hi]` along the axis, every pixel across it) get columns in its tiles:
`(oc, py, px, s)` for those pixels, cut into chunks of `cols`. Each (row, column) product
lies in exactly one tile (the row is in one chunk, and that chunk has every column that
reads it), so a wide window no longer costs every column one activation per row chunk of
the whole window: `tiles = groups * sum over chunks of ceil(columns(chunk) / cols)`.

**Patches** (`patch = (u, v)`, `pieces = 1`, any layer): the window's read offsets along
each axis are cut into runs of `u` (height) and `v` (width) consecutive offsets; a patch
is one run along each axis, and its rows are the group's `IC_g * (its offsets)` input
elements `(c, dy, dx)`, channel major, cut into chunks of `rows` elements. Its columns are
`(oc, py, px, s)` for exactly the window pixels some tap of which reads an offset of the
patch (an input-side sub-patch times every output pixel whose field touches it), cut into
chunks of `cols`. A piece is one (group, patch row chunk, column chunk) block; each
(row, column) product lies in exactly one piece, since the row is in one chunk of one
patch and that patch has every column that reads it. Pieces of any group, patch or chunk
are then packed into arrays (**bins**, block-diagonal: the rows and the columns of the
pieces of a bin each total at most `rows` / `cols`) by first-fit decreasing over the piece
shapes (`_pack`): `tiles` = the number of bins. Cells of a bin outside its pieces' own
blocks are 0, so each piece still sees only its own inputs.

**Dense blocks** (`bicliques = b`, `pieces = 1`, windows of at most `BICLIQUE_MAX_PIXELS`
pixels): the window's (pixel, read position) incidences are covered by disjoint blocks
`P x Q`, every pixel of `Q` reading every position of `P` (`_bicliques`, greedy and
deterministic), at most `a = rows // IC_g` positions and `b` pixels each. A block's rows are
`IC_g x P` (channel major, chunks of `rows`), its columns `(oc, pixel, s)` for `Q` (chunks
of `cols`); every cell of a block holds a weight, and every product lies in exactly one
block because every incidence does. Pieces are packed into bins as for patches. With
`b = cols // (OC_g * S)` a block fills an array: e.g. 16 channels -> 4 (S = 4) per group,
3x3, on 32x32 arrays, a 2 x 2 window takes 10 arrays for its 4 pixels (2.5 per pixel, the
column bound's `ceil(144 / 32) * 16 / 32`), where any window of whole-channel or
whole-patch pieces takes 3 per pixel.

**Segments** (`segments = "x"` or `"y"`, `pieces = 1`, any layer): a column's fan-in is
cut along the input rows (for "x"; columns for "y") it reads: a *pixel segment* is one
window pixel's products with one read offset `y` of the other axis, `IC_g x k_w` input
elements (all its taps along the run axis). For each `y`, the window pixels reading it
(`n(y)` of them across, every pixel along the run axis) give a sequence of columns
`(oc, py, px, s)`, run-axis pixel major, then `py`, `oc`, `s`; it is cut greedily into
pieces of at most `cols` consecutive columns whose run-axis pixels' taps, times a chunk of
`cc = min(IC_g, rows // k_w)` channels, fit `rows`. A piece's rows are those channels at
`y` times the union of its pixels' run-axis taps, so every product of each of its columns
with input row `y` lies in it, and in no other piece (a column's products with `y` are in
the one piece holding that column for `y` and that channel chunk). Several pixels'
segments share rows: e.g. 4 groups of 8 -> 2 channels (S = 4), 3x3, on 32x32 arrays, a
piece takes the 8 channels of 4 adjacent offsets of one input row (32 rows) and 4 pixel
segments from 2 adjacent pixels (32 columns, 24 products each), so each column takes
exactly `ceil(72 / 32) = 3` activations, where patches need 4. Pieces are packed into bins
as for patches.

**Lower bound** (`lower_bound_cycles`). Dense weights, no data-dependent skipping. Each
output column of the layer, one (output pixel, output channel, bit slice) of the
`Ho*Wo*OC*S` there are, is a sum of its fan-in `F = Kh*Kw*IC_g` products (a group only
reads its own `IC_g` channels). In the program format a column of one activation adds into
exactly one output (its `(oc, py, px, s)` at that window) and sums at most `rows` products
(one per array row), so every output column needs at least `ceil(F / rows)` column
activations. One activation reads at most `cols` columns. Hence for any layout

    cycles >= ceil(Ho*Wo*OC * S * ceil(F / rows) / cols).

Rows and columns enter separately, so the bound holds for non-square arrays; groups enter
only through `F` (packing groups shares arrays, it cannot shorten a column's sum). A
parallel window does not escape it: its columns still each add into one output, and the
pixels it computes past the output only add activations. This is `column_bound_cycles`.

**Complete-column refinement** (`complete_column_bound`, when `F <= rows`). Then every
output column needs at least one column activation; call it *complete* when one column of
one activation sums all its `F` products (`n_c = 1`), and let `n_c >= 2` for the others.
A complete column's activation drives every input element of its pixel's receptive field
in its group, so for the set `Q` of (pixel, group) pairs with a complete column in one
activation, its rows hold `sum over groups IC_g * |field(Q_g)|` distinct input elements,
at most `rows`. At most `OC_g * S` output columns share a (pixel, group), so one
activation holds at most `h = min(cols, OC_g * S * pmax)` complete columns, `pmax` the
most pixels any such `Q` can have. With `y` complete columns of the `N = Ho*Wo*OC*S`:
`cycles * cols >= sum n_c >= y + 2 (N - y)` and `y <= cycles * h`, hence

    cycles >= ceil(2 N / (cols + h)),

above the column bound exactly when `h < cols`. `pmax` needs the least receptive field
`n` pixels can have (`min_field`, a discrete isoperimetric bound): along one axis, `n`
distinct pixels with stride `s`, `k` taps and dilation `d` read at least
`k + (n - 1) * g` offsets, `g = min(k, s)` when `d = 1` (each further pixel, being at
least one step right of the last, adds its `min(k, s)` rightmost taps), `g = 1` otherwise
(it adds at least its last tap). Dilating `Q` first along x line by line (`m_y` lines),
then along y (over `m_x' >= g_x * m_x + k_w - g_x` lines, `m_x` the distinct x of `Q`):
`|field(Q)| >= g_y (g_x n + (k_w - g_x) m_y) + (k_h - g_y)(g_x m_x + k_w - g_x)`, and the
same with the axes swapped; `m_x m_y >= n`, so the least of the larger of the two over
all such `(m_x, m_y)` bounds every `Q` of `n` pixels (tests/test_planner.py checks it
against every pixel set of small grids). `pmax` is then a knapsack over the groups (each
group a set of `n_g` pixels costing `IC_g * min_field(n_g)` rows). As for the column
bound, products with padded inputs count (the program's windows read the padded input).

**Row bound** (`row_bound_cycles`, the column bound transposed; any `F`). An input element
`e = (c, y, x)` of the padded input is read by `K_e = r_y(y) * r_x(x) * OC_g * S` output
columns of its group, `r_y(y)` the output rows `py` with `y = py*sh + ty*dh` for some tap
`ty` (likewise `r_x`); each such column holds one product of `e`. A product sits in a cell
of an activation whose rows include `e` and whose columns include its column; one
activation has at most `cols` columns, so it holds at most `cols` products of `e`, and `e`
is a row of at least `ceil(K_e / cols)` activations. One activation has at most `rows`
rows, hence

    cycles >= ceil(IC * sum over positions (y, x) of ceil(r_y(y) r_x(x) OC_g S / cols) / rows).

It is the tighter one where few channels per group make a position's readers outnumber a
column's products per row pass: e.g. 2 groups of 8 -> 1 (S = 4), 3x3 on 32x32, on 32x32
arrays: an inner element has `K_e = 9 * 4 = 36 > 32` readers, so it takes two
activations' rows; 1,028 cycles, where the column bound gives 768 and the planner's
patches reach 1,028. Padded positions count, as for the other two (they are read by the
windows; positions no pixel reads, `r = 0`, are not counted).
`lower_bound_cycles` is the largest of the three.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from imcc.errors import UsageError
from imcc.ir import Node, Strategy, VerifyError
from imcc.ir.annotations import MappingChoice
from imcc.ir.ops import Conv, Linear
from imcc.targets.crossbar import CrossbarTarget


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def window_extent(kernel: tuple[int, int], stride: tuple[int, int],
                  dilation: tuple[int, int], pw: tuple[int, int]) -> tuple[int, int]:
    """Input pixels (PWh, PWw) per channel that an `i x j` parallel window reads."""
    return ((kernel[0] - 1) * dilation[0] + 1 + (pw[0] - 1) * stride[0],
            (kernel[1] - 1) * dilation[1] + 1 + (pw[1] - 1) * stride[1])


# The simulator multiplies a window's unrolled input by one dense (K, N) matrix per group
# (K: the window's input elements, N: its output columns; imcc.sim.simulator). The planner's
# pieces make a window as cheap as its packing, so unbounded it takes a whole feature map as
# one window where that packs a few arrays tighter (SqueezeNet 1.1's 64->16 1x1 conv on
# 55x55 at 128x128: 1,513 cycles as one 55x55 window, whose matrix has 9.4e9 entries and
# cannot be simulated, against 1,540 as 1x55 windows). Planner windows stay within this.
MAX_WINDOW_MATRIX = 1 << 26


def window_matrix_entries(g: LayerGeom, i: int, j: int) -> int:
    """Entries of the simulator's matrices for an `i x j` window of `g` (at most: a dilated
    kernel reads fewer offsets than its extent)."""
    pwh, pww = window_extent((g.kh, g.kw), (g.sh, g.sw), (g.dh, g.dw), (i, j))
    return g.groups * (pwh * pww * (g.ic // g.groups)) * (i * j * (g.oc // g.groups))


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
        return window_extent((self.kh, self.kw), (self.sh, self.sw), (self.dh, self.dw), (i, j))

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


# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class TilePlan:
    """One layer's layout on `rows x cols` arrays (see the module docstring).

    `ict`/`oct` is the capacity of a full tile: unrolled weight rows / columns for im2col
    (element granularity), input / output channels for a parallel window (each channel
    takes PWh*PWw rows / N*S columns). `row_tiles`/`col_tiles` are per group.
    """

    geom: LayerGeom
    strategy: Strategy
    pw: tuple[int, int]
    slices: int
    ict: int
    oct: int
    group_pack: int = 1
    # 0: the channel-granular layout above; k >= 1: the planner's element-granular pieces,
    # k per array (module docstring, "Pieces and bins").
    pieces: int = 0
    # "" (pieces cut channel-major) or "x" / "y": strips, pieces cut along the window's
    # width / height, each with only the columns of the pixels it feeds ("Strips").
    strip: str = ""
    # (0, 0), or (u, v) with pieces = 1: patches of u x v read offsets, their pieces packed
    # into bins by first-fit decreasing ("Patches").
    patch: tuple[int, int] = (0, 0)
    # 0, or b >= 1 with pieces = 1: dense blocks of up to b window pixels times the input
    # positions all of them read, pieces packed into bins ("Dense blocks").
    bicliques: int = 0
    # "" or "x" / "y" with pieces = 1: segments, a column's fan-in cut by the input rows
    # ("x") or columns ("y") it reads, pieces packed into bins ("Segments").
    segments: str = ""

    @property
    def is_packed(self) -> bool:
        """Patches, dense blocks or segments: pieces of any shape, packed by `_pack`."""
        return self.patch != (0, 0) or self.bicliques > 0 or bool(self.segments)

    def _shapes(self) -> tuple[tuple[tuple[int, int], int], ...]:
        if self.segments:
            return segment_shapes(self.geom, self.pw, self.segments, self.ict, self.oct,
                                  self.slices)
        if self.bicliques:
            return biclique_shapes(self.geom, self.pw, self.bicliques, self.ict, self.oct,
                                   self.slices)
        return patch_shapes(self.geom, self.pw, self.patch, self.ict, self.oct, self.slices)

    @property
    def is_im2col(self) -> bool:
        return self.strategy is Strategy.IM2COL

    @property
    def groups(self) -> int:
        return self.geom.groups

    @property
    def extent(self) -> tuple[int, int]:
        return self.geom.pw_extent(*self.pw)

    @property
    def windows_hw(self) -> tuple[int, int]:
        return cdiv(self.geom.ho, self.pw[0]), cdiv(self.geom.wo, self.pw[1])

    @property
    def windows(self) -> int:
        h, w = self.windows_hw
        return h * w

    @property
    def row_units(self) -> int:
        """What a group's rows are cut in: unrolled elements (im2col, pieces) or channels."""
        g = self.geom
        if self.pieces:
            return g.ic_g * position_count(g, self.pw)
        return g.kh * g.kw * g.ic_g if self.is_im2col else g.ic_g

    @property
    def col_units(self) -> int:
        """What a group's columns are cut in: (oc, [pixel,] slice) columns (im2col, pieces)
        or output channels."""
        g = self.geom
        if self.pieces:
            return g.oc_g * self.pw[0] * self.pw[1] * self.slices
        return g.oc_g * self.slices if self.is_im2col else g.oc_g

    @property
    def row_tiles(self) -> int:
        return cdiv(self.row_units, self.ict)

    @property
    def col_tiles(self) -> int:
        return cdiv(self.col_units, self.oct)

    @property
    def arrays_per_group_set(self) -> int:
        return self.row_tiles * self.col_tiles

    @cached_property
    def tiles(self) -> int:
        """Array tiles of the whole layer (all groups)."""
        if self.strip:
            return self.groups * int((-(-self._strip_cols() // self.oct)).sum())
        if self.is_packed:
            return sum(n for n, _ in _pack(self._shapes(), self.ict, self.oct))
        if self.pieces:
            return cdiv(self.groups * self.row_tiles * self.col_tiles, self.pieces)
        return cdiv(self.groups, self.group_pack) * self.row_tiles * self.col_tiles

    @property
    def cycles(self) -> int:
        """(window, array tile) activations per sample."""
        return self.windows * self.tiles

    def choice(self, reason: str = "", strategy: Strategy | None = None) -> MappingChoice:
        """The IR annotation recording this plan (and its expected cycles)."""
        return MappingChoice(strategy or self.strategy, self.pw, reason=reason,
                             group_pack=self.group_pack, cycles=self.cycles,
                             pieces=self.pieces, strip=self.strip, patch=self.patch,
                             bicliques=self.bicliques, segments=self.segments)

    # -- the maps the emitter writes (group-relative channels)

    def positions(self) -> np.ndarray:
        """(P, 2) window offsets (dy, dx) some kernel tap of some window pixel reads, in
        row-major order; the other positions of the PWh x PWw window stay undriven."""
        g = self.geom
        if self.is_im2col and not self.pieces:
            yy, xx = np.meshgrid(np.arange(g.kh) * g.dh, np.arange(g.kw) * g.dw, indexing="ij")
            return np.stack([yy.ravel(), xx.ravel()], 1)
        pwh, pww = self.extent
        used = np.zeros((pwh, pww), bool)
        for py in range(self.pw[0]):
            for px in range(self.pw[1]):
                used[py * g.sh:py * g.sh + (g.kh - 1) * g.dh + 1:g.dh,
                     px * g.sw:px * g.sw + (g.kw - 1) * g.dw + 1:g.dw] = True
        return np.argwhere(used)

    def row_maps(self) -> list[np.ndarray]:
        """Per row tile, its rows `(c, dy, dx)` (input channel within the group, offset
        from the window origin), `row_tiles` of them."""
        if self.is_packed:
            return [r for r, _ in self._patch_layout]
        pos = self.positions()
        if self.strip:
            rows_all = self._strip_rows()
            return [rows_all[a:a + self.ict] for a in range(0, len(rows_all), self.ict)]
        if self.is_im2col or self.pieces:
            c = np.repeat(np.arange(self.geom.ic_g), len(pos))
            rows_all = np.column_stack([c, np.tile(pos, (self.geom.ic_g, 1))])
            return [rows_all[a:a + self.ict] for a in range(0, len(rows_all), self.ict)]
        out = []
        for c0 in range(0, self.geom.ic_g, self.ict):
            cs = np.arange(c0, min(self.geom.ic_g, c0 + self.ict))
            out.append(np.column_stack([np.repeat(cs, len(pos)), np.tile(pos, (len(cs), 1))]))
        return out

    def col_maps(self) -> list[np.ndarray]:
        """Per column tile, its columns `(oc, py, px, s)` (output channel within the group,
        pixel of the window, bit slice), `col_tiles` of them."""
        g, s = self.geom, self.slices
        if self.is_packed:
            return [c for _, cs in self._patch_layout for c in cs]
        if self.pieces:
            grid = np.meshgrid(np.arange(g.oc_g), np.arange(self.pw[0]), np.arange(self.pw[1]),
                               np.arange(s), indexing="ij")
            cols_all = np.stack([a.ravel() for a in grid], 1)
            return [cols_all[a:a + self.oct] for a in range(0, len(cols_all), self.oct)]
        if self.is_im2col:
            o, sl = np.meshgrid(np.arange(g.oc_g), np.arange(s), indexing="ij")
            zeros = np.zeros(o.size, np.int64)
            cols_all = np.stack([o.ravel(), zeros, zeros, sl.ravel()], 1)
            return [cols_all[a:a + self.oct] for a in range(0, len(cols_all), self.oct)]
        out = []
        i, j = self.pw
        for o0 in range(0, g.oc_g, self.oct):
            grid = np.meshgrid(np.arange(o0, min(g.oc_g, o0 + self.oct)), np.arange(i),
                               np.arange(j), np.arange(s), indexing="ij")
            out.append(np.stack([a.ravel() for a in grid], 1))
        return out

    def group_sets(self) -> list[range]:
        """The groups sharing each array (block-diagonally when more than one); channel-
        granular plans only."""
        gp = self.group_pack
        return [range(a, min(a + gp, self.groups)) for a in range(0, self.groups, gp)]

    # -- strips ("Strips" in the module docstring)

    def _strip_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """The read offsets along the strip axis and along the other axis, sorted."""
        g = self.geom
        ys = np.asarray(_offsets(self.pw[0], g.sh, g.kh, g.dh))
        xs = np.asarray(_offsets(self.pw[1], g.sw, g.kw, g.dw))
        return (xs, ys) if self.strip == "x" else (ys, xs)

    def _strip_rows(self) -> np.ndarray:
        """All of a group's rows `(c, dy, dx)`, strip-axis offset major, then channel."""
        along, other = self._strip_axes()
        grid = np.meshgrid(along, np.arange(self.geom.ic_g), other, indexing="ij")
        a, c, o = (v.ravel() for v in grid)
        return np.stack([c, o, a] if self.strip == "x" else [c, a, o], 1)

    @cached_property
    def _strip_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """Per row tile, the range [lo, hi] of window pixels along the strip axis that some
        of its rows feed (its strip-axis offsets run from along[first] to along[last])."""
        g = self.geom
        along, other = self._strip_axes()
        n_pix, stride, k, d = (self.pw[1], g.sw, g.kw, g.dw) if self.strip == "x" else \
            (self.pw[0], g.sh, g.kh, g.dh)
        block = g.ic_g * len(other)
        n = block * len(along)
        starts = np.arange(0, n, self.ict)
        ends = np.minimum(starts + self.ict, n) - 1
        lo_off, hi_off = along[starts // block], along[ends // block]
        # pixel p reads offsets p*stride + [0, (k-1)*d]; no dilation (see strip_plan)
        lo = np.maximum(0, -((-(lo_off - (k - 1) * d)) // stride))
        hi = np.minimum(n_pix - 1, hi_off // stride)
        return lo, hi

    def _strip_cols(self) -> np.ndarray:
        """Per row tile, how many columns its pixels take (before column chunks)."""
        other = self.pw[0] if self.strip == "x" else self.pw[1]
        lo, hi = self._strip_pixels
        return (hi - lo + 1) * (self.geom.oc_g * other * self.slices)

    def _strip_col_map(self, lo: int, hi: int) -> np.ndarray:
        i, j = self.pw
        py, px = (np.arange(i), np.arange(lo, hi + 1)) if self.strip == "x" else \
            (np.arange(lo, hi + 1), np.arange(j))
        grid = np.meshgrid(np.arange(self.geom.oc_g), py, px, np.arange(self.slices),
                           indexing="ij")
        return np.stack([a.ravel() for a in grid], 1)

    def piece_maps(self) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
        """(row tile, column tile) -> its (rows, columns), group-relative: the blocks the
        emitter places. For strips a column tile is a chunk of its row tile's columns."""
        if self.is_packed:
            return {(rt, ct): (r, c) for rt, (r, cs) in enumerate(self._patch_layout)
                    for ct, c in enumerate(cs)}
        rmaps = self.row_maps()
        if self.strip:
            out = {}
            for rt, (lo, hi) in enumerate(zip(*self._strip_pixels, strict=True)):
                cols_all = self._strip_col_map(int(lo), int(hi))
                for ct, a in enumerate(range(0, len(cols_all), self.oct)):
                    out[(rt, ct)] = (rmaps[rt], cols_all[a:a + self.oct])
            return out
        cmaps = self.col_maps()
        return {(rt, ct): (r, c) for rt, r in enumerate(rmaps) for ct, c in enumerate(cmaps)}

    def bins(self) -> list[list[tuple[int, int, int]]]:
        """The arrays of the layer, in emission order: for each, its pieces `(group, row
        tile, column tile)`, placed on its block diagonal in this order."""
        if self.is_packed:
            return self._patch_bins()
        if self.strip:
            chunks = [cdiv(int(n), self.oct) for n in self._strip_cols()]
            return [[(gi, rt, ct)] for gi in range(self.groups)
                    for rt, n in enumerate(chunks) for ct in range(n)]
        if self.pieces:
            all_pieces = [(gi, rt, ct) for gi in range(self.groups)
                          for rt in range(self.row_tiles) for ct in range(self.col_tiles)]
            k = self.pieces
            return [all_pieces[a:a + k] for a in range(0, len(all_pieces), k)]
        return [[(gi, rt, ct) for gi in gs] for gs in self.group_sets()
                for rt in range(self.row_tiles) for ct in range(self.col_tiles)]


    # -- patches ("Patches" in the module docstring)

    @cached_property
    def _patch_layout(self) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        """Per (patch, row chunk), patches row-major then chunks in order: its rows
        `(c, dy, dx)` and its column chunks `(oc, py, px, s)`, group-relative."""
        g = self.geom
        out = []
        if self.segments:
            for c0, ch, fixed, lo, hi in _segment_blocks(g, self.pw, self.segments, self.ict,
                                                         self.oct, self.slices):
                out.append(self._segment_piece(c0, ch, fixed, lo, hi))
            return out
        if self.bicliques:
            for pos, pix in _bicliques(g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, self.pw,
                                       max(1, self.ict // g.ic_g), self.bicliques):
                pa, pp = np.asarray(pos, np.int64), np.asarray(pix, np.int64)
                rows_all = np.column_stack([np.repeat(np.arange(g.ic_g), len(pa)),
                                            np.tile(pa, (g.ic_g, 1))])
                b_grid = np.meshgrid(np.arange(g.oc_g), np.arange(len(pp)),
                                     np.arange(self.slices), indexing="ij")
                o, q, sl = (a.ravel() for a in b_grid)
                cols_all = np.column_stack([o, pp[q, 0], pp[q, 1], sl])
                cols = [cols_all[a:a + self.oct] for a in range(0, len(cols_all), self.oct)]
                out += [(rows_all[a:a + self.ict], cols)
                        for a in range(0, len(rows_all), self.ict)]
            return out
        u, v = self.patch
        for oy, py in _axis_patches(self.pw[0], g.sh, g.kh, g.dh, u):
            for ox, px in _axis_patches(self.pw[1], g.sw, g.kw, g.dw, v):
                r_grid = np.meshgrid(np.arange(g.ic_g), oy, ox, indexing="ij")
                rows_all = np.stack([a.ravel() for a in r_grid], 1)
                c_grid = np.meshgrid(np.arange(g.oc_g), py, px, np.arange(self.slices),
                                     indexing="ij")
                cols_all = np.stack([a.ravel() for a in c_grid], 1)
                cols = [cols_all[a:a + self.oct] for a in range(0, len(cols_all), self.oct)]
                out += [(rows_all[a:a + self.ict], cols)
                        for a in range(0, len(rows_all), self.ict)]
        return out

    def _segment_piece(self, c0: int, ch: int, fixed: int, lo: int, hi: int
                       ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One segments piece: columns `lo:hi` of the column sequence of read offset
        `fixed` (module docstring, "Segments") and the rows they read there."""
        g, S = self.geom, self.slices
        (n_a, s_a, k_a, d_a), (_, s_r, k_r, d_r) = _segment_axes(g, self.pw, self.segments)
        readers = np.asarray(_readers_of(n_a, s_a, k_a, d_a, fixed), np.int64)
        q = len(readers) * g.oc_g * S
        k = np.arange(lo, hi)
        run_pix, rem = k // q, k % q
        across = readers[rem // (g.oc_g * S)]
        oc, sl = (rem // S) % g.oc_g, rem % S
        run = np.unique((run_pix[:, None] * s_r + np.arange(k_r)[None, :] * d_r).ravel())
        c = np.repeat(np.arange(c0, c0 + ch), len(run))
        r = np.tile(run, ch)
        f = np.full(len(c), fixed)
        if self.segments == "x":
            rows_all = np.column_stack([c, f, r])
            cols_all = np.column_stack([oc, across, run_pix, sl])
        else:
            rows_all = np.column_stack([c, r, f])
            cols_all = np.column_stack([oc, run_pix, across, sl])
        return rows_all, [cols_all]

    def _patch_bins(self) -> list[list[tuple[int, int, int]]]:
        """The bins of `_pack` filled with the actual pieces: the pieces of each shape, in
        (group, row tile, column tile) order, go to the bins asking for that shape in bin
        order. The shapes counted here are `patch_shapes`'s (checked)."""
        queues: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        blocks = self._patch_layout
        for gi in range(self.groups):
            for rt, (r, cs) in enumerate(blocks):
                for ct, c in enumerate(cs):
                    queues.setdefault((len(r), len(c)), []).append((gi, rt, ct))
        shapes = self._shapes()
        if {k: len(q) for k, q in queues.items()} != dict(shapes):
            raise VerifyError("packed pieces disagree with their counted shapes")
        at = dict.fromkeys(queues, 0)
        out = []
        for n, content in _pack(shapes, self.ict, self.oct):
            for _ in range(n):
                one = []
                for shape, k in content:
                    one += queues[shape][at[shape]:at[shape] + k]
                    at[shape] += k
                out.append(one)
        return out


@lru_cache(maxsize=8192)
def _axis_patches(n: int, stride: int, k: int, d: int, u: int
                  ) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """Along one axis of an `n`-pixel window: the read offsets (`_offsets`) cut into runs of
    `u` consecutive ones, each with the window pixels some tap of which reads one of them."""
    offs = _offsets(n, stride, k, d)
    out = []
    for a in range(0, len(offs), u):
        run = offs[a:a + u]
        # pixel p reads offset r through tap t when r = p*stride + t*d: solved per (r, t),
        # O(u*k) a run rather than a scan of every pixel (windows can be 1000 wide)
        pix = tuple(sorted({(r - t * d) // stride for r in run for t in range(k)
                            if r >= t * d and (r - t * d) % stride == 0
                            and (r - t * d) // stride < n}))
        out.append((tuple(run), pix))
    return tuple(out)


@lru_cache(maxsize=4096)
def _bicliques(kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pw: tuple[int, int],
               a: int, b: int) -> tuple[tuple[tuple[tuple[int, int], ...],
                                        tuple[tuple[int, int], ...]], ...]:
    """Dense blocks of an `i x j` window ("Dense blocks" in the module docstring): a cover
    of its (pixel, read position) incidences by disjoint blocks `P x Q`, every pixel of `Q`
    reading every position of `P`, `|P| <= a`, `|Q| <= b`. Greedy, in rounds: pixels in
    row-major order each seed a set, grown (up to `b`) by the pixel sharing the most of
    their still uncovered positions (ties: the earliest) while at least `a` are shared;
    each set of two or more pixels takes its shared positions in runs of `a` (sorted), and
    those incidences are covered. When a round covers nothing, every pixel's remaining
    positions become blocks of that pixel alone, in runs of `a`."""
    i, j = pw
    pixels = [(py, px) for py in range(i) for px in range(j)]
    rem = {p: {(p[0] * sh + ty * dh, p[1] * sw + tx * dw) for ty in range(kh)
               for tx in range(kw)} for p in pixels}
    out: list[tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]] = []
    while b > 1:
        todo = [p for p in pixels if rem[p]]
        covered = False
        while todo:
            grp = [todo.pop(0)]
            common = set(rem[grp[0]])
            while len(grp) < b and todo:
                shared = [len(common & rem[q]) for q in todo]
                best = max(shared)
                if best < a:
                    break
                q = todo.pop(shared.index(best))  # the earliest of the ties
                grp.append(q)
                common &= rem[q]
            take = sorted(common)[:len(common) // a * a] if len(grp) > 1 else []
            for t in range(0, len(take), a):
                out.append((tuple(take[t:t + a]), tuple(grp)))
            for q in grp:
                rem[q] -= set(take)
            covered |= bool(take)
        if not covered:
            break
    for p in pixels:
        left = sorted(rem[p])
        out += [(tuple(left[t:t + a]), (p,)) for t in range(0, len(left), a)]
    return tuple(out)


@lru_cache(maxsize=8192)
def biclique_shapes(g: LayerGeom, pw: tuple[int, int], b: int, rows: int, cols: int, S: int
                    ) -> tuple[tuple[tuple[int, int], int], ...]:
    """The pieces of a dense-block layout counted by shape, like `patch_shapes`."""
    a = max(1, rows // g.ic_g)
    shapes: dict[tuple[int, int], int] = {}
    for pos, pix in _bicliques(g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, pw, a, b):
        for rs, rn in _chunks(g.ic_g * len(pos), rows):
            for cs, cn in _chunks(g.oc_g * len(pix) * S, cols):
                shapes[(rs, cs)] = shapes.get((rs, cs), 0) + rn * cn * g.groups
    return tuple(sorted(shapes.items()))


def _segment_axes(g: LayerGeom, pw: tuple[int, int], axis: str
                  ) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """(pixels, stride, taps, dilation) of the across axis (the fixed read offset) and of
    the run axis, for segments along `axis`."""
    y, x = (pw[0], g.sh, g.kh, g.dh), (pw[1], g.sw, g.kw, g.dw)
    return (y, x) if axis == "x" else (x, y)


@lru_cache(maxsize=8192)
def _readers_of(n: int, stride: int, k: int, d: int, offset: int) -> tuple[int, ...]:
    """The pixels `p < n` some tap of which reads `offset` along one axis, ascending."""
    return tuple(p for p in range(n) for t in range(k) if p * stride + t * d == offset)


@lru_cache(maxsize=4096)
def _segment_blocks(g: LayerGeom, pw: tuple[int, int], axis: str, rows: int, cols: int,
                    S: int) -> tuple[tuple[int, int, int, int, int], ...]:
    """The pieces of a segments layout ("Segments" in the module docstring), in order:
    (first channel, channels, read offset across, first and end column of its sequence)."""
    (n_a, s_a, k_a, d_a), (n_r, s_r, k_r, d_r) = _segment_axes(g, pw, axis)
    cc = min(g.ic_g, rows // k_r)
    if cc < 1:
        raise VerifyError(f"segments along {axis}: {k_r} taps do not fit {rows} rows")
    out = []
    for c0 in range(0, g.ic_g, cc):
        ch = min(cc, g.ic_g - c0)
        # the most run-axis pixels whose taps, times `ch` channels, fit the rows
        w = 1
        while w < n_r and ch * len(_offsets(w + 1, s_r, k_r, d_r)) <= rows:
            w += 1
        for fixed in _offsets(n_a, s_a, k_a, d_a):
            q = len(_readers_of(n_a, s_a, k_a, d_a, fixed)) * g.oc_g * S
            lo, total = 0, n_r * q
            while lo < total:
                hi = min(lo + cols, min(n_r, lo // q + w) * q)
                out.append((c0, ch, fixed, lo, hi))
                lo = hi
    return tuple(out)


@lru_cache(maxsize=8192)
def segment_shapes(g: LayerGeom, pw: tuple[int, int], axis: str, rows: int, cols: int,
                   S: int) -> tuple[tuple[tuple[int, int], int], ...]:
    """The pieces of a segments layout counted by shape, like `patch_shapes`."""
    (n_a, s_a, k_a, d_a), (_, s_r, k_r, d_r) = _segment_axes(g, pw, axis)
    shapes: dict[tuple[int, int], int] = {}
    for _, ch, fixed, lo, hi in _segment_blocks(g, pw, axis, rows, cols, S):
        q = len(_readers_of(n_a, s_a, k_a, d_a, fixed)) * g.oc_g * S
        n_pix = (hi - 1) // q - lo // q + 1
        key = (ch * len(_offsets(n_pix, s_r, k_r, d_r)), hi - lo)
        shapes[key] = shapes.get(key, 0) + g.groups
    return tuple(sorted(shapes.items()))


def _chunks(n: int, cap: int) -> list[tuple[int, int]]:
    """`n` elements cut into chunks of `cap`: [(size, how many)]."""
    full, rem = divmod(n, cap)
    return [(s, c) for s, c in ((cap, full), (rem, 1 if rem else 0)) if c]


@lru_cache(maxsize=8192)
def patch_shapes(g: LayerGeom, pw: tuple[int, int], patch: tuple[int, int], rows: int,
                 cols: int, S: int) -> tuple[tuple[tuple[int, int], int], ...]:
    """The pieces of a patch layout counted by shape: ((rows, cols), how many), sorted. The
    per-axis patches are counted separately and combined (a patch's rows and columns are
    products of one factor per axis), so this costs O(distinct axis patches^2)."""
    def axis(n: int, stride: int, k: int, d: int, u: int) -> dict[tuple[int, int], int]:
        out: dict[tuple[int, int], int] = {}
        for offs, pix in _axis_patches(n, stride, k, d, u):
            key = (len(offs), len(pix))
            out[key] = out.get(key, 0) + 1
        return out

    ys = axis(pw[0], g.sh, g.kh, g.dh, patch[0])
    xs = axis(pw[1], g.sw, g.kw, g.dw, patch[1])
    shapes: dict[tuple[int, int], int] = {}
    for (uy, ny), cy in ys.items():
        for (vx, nx), cx in xs.items():
            for rs, rn in _chunks(g.ic_g * uy * vx, rows):
                for cs, cn in _chunks(g.oc_g * ny * nx * S, cols):
                    shapes[(rs, cs)] = shapes.get((rs, cs), 0) + rn * cn * cy * cx * g.groups
    return tuple(sorted(shapes.items()))


def _pack(shapes: tuple[tuple[tuple[int, int], int], ...], rows: int, cols: int
          ) -> list[tuple[int, tuple[tuple[tuple[int, int], int], ...]]]:
    """First-fit decreasing of pieces (by shape, widest first, then tallest) into bins of
    `rows x cols` whose pieces sit on the block diagonal (rows add up, columns add up).
    Bins are kept as kinds: (how many bins, their content ((shape, pieces of it), ...)),
    in the order they were opened; a kind that only partly takes a shape splits. Every
    piece must fit an empty bin."""
    kinds: list[list] = []  # [n bins, rows used, cols used, content]
    for (r, c), n in sorted(shapes, key=lambda sc: (-sc[0][1], -sc[0][0])):
        if r > rows or c > cols or r < 1 or c < 1:
            raise VerifyError(f"a {r}x{c} piece does not fit a {rows}x{cols} array")
        idx = 0
        while n and idx < len(kinds):
            nb, ru, cu, content = kinds[idx]
            f = min((rows - ru) // r, (cols - cu) // c)
            if f <= 0:
                idx += 1
                continue
            full, rem = divmod(min(n, nb * f), f)
            new = []
            if full:
                new.append([full, ru + f * r, cu + f * c, content + (((r, c), f),)])
            if rem:
                new.append([1, ru + rem * r, cu + rem * c, content + (((r, c), rem),)])
            if nb - full - (1 if rem else 0):
                new.append([nb - full - (1 if rem else 0), ru, cu, content])
            n -= full * f + rem
            kinds[idx:idx + 1] = new
            idx += len(new)
        if n:
            f = min(rows // r, cols // c)
            full, rem = divmod(n, f)
            if full:
                kinds.append([full, f * r, f * c, (((r, c), f),)])
            if rem:
                kinds.append([1, rem * r, rem * c, (((r, c), rem),)])
    return [(k[0], k[3]) for k in kinds]


@lru_cache(maxsize=4096)
def _offsets(n: int, stride: int, k: int, d: int) -> tuple[int, ...]:
    """The offsets `p*stride + t*d` (`p < n`, `t < k`) some tap of an n-pixel window reads
    along one axis, sorted."""
    return tuple(sorted({p * stride + t * d for p in range(n) for t in range(k)}))


def position_count(g: LayerGeom, pw: tuple[int, int]) -> int:
    """How many window positions (dy, dx) some tap of some pixel of an `i x j` window reads
    (`len(TilePlan.positions())`): the read set is a product of one set per axis."""
    return len(_offsets(pw[0], g.sh, g.kh, g.dh)) * len(_offsets(pw[1], g.sw, g.kw, g.dw))


def column_bound_cycles(g: LayerGeom, S: int, rows: int, cols: int) -> int:
    """The column bound (module docstring, "Lower bound"):
    `ceil(Ho*Wo*OC * S * ceil(F / rows) / cols)`, `F = Kh*Kw*IC_g`."""
    _check_array(rows, cols, S)
    fan_in = g.kh * g.kw * g.ic_g
    return cdiv(g.ho * g.wo * g.oc * S * cdiv(fan_in, rows), cols)


def _axis_gain(k: int, s: int, d: int) -> int:
    """Offsets each further pixel along one axis adds to the read set, at least."""
    return min(k, s) if d == 1 else 1


@lru_cache(maxsize=4096)
def min_field(kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, n: int) -> int:
    """A lower bound on how many input positions the receptive fields of `n >= 1` distinct
    output pixels cover together (module docstring, "Complete-column refinement")."""
    gy, gx = _axis_gain(kh, sh, dh), _axis_gain(kw, sw, dw)
    best = None
    for mx in range(1, n + 1):
        my = cdiv(n, mx)  # larger m_y only raises both expressions
        a = gy * (gx * n + (kw - gx) * my) + (kh - gy) * (gx * mx + kw - gx)
        b = gx * (gy * n + (kh - gy) * mx) + (kw - gx) * (gy * my + kh - gy)
        v = max(a, b)
        best = v if best is None or v < best else best
    assert best is not None
    return best


# Row budgets above this skip the refinement's knapsack (the column bound alone stays valid).
_REFINE_MAX_ROWS = 4096


@lru_cache(maxsize=4096)
def complete_pixels(g: LayerGeom, rows: int) -> int:
    """`pmax`: the most (pixel, group) pairs whose receptive fields (in their own groups)
    one activation of `rows` rows can drive completely, by `min_field` and a knapsack over
    at most `groups` groups (each group's pixels cost `IC_g * min_field(n)` rows)."""
    def cost(n: int) -> int:
        return g.ic_g * min_field(g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, n)

    items = []
    n = 1
    while cost(n) <= rows:
        items.append((n, cost(n)))
        n += 1
    if not items:
        return 0
    sets = min(g.groups, rows // items[0][1])
    best = [0] * (rows + 1)  # best[r]: most pixels within r rows, with the sets used so far
    for _ in range(sets):
        nxt = best[:]
        for r in range(rows + 1):
            for n, c in items:
                if c > r:
                    break
                if best[r - c] + n > nxt[r]:
                    nxt[r] = best[r - c] + n
        best = nxt
    return best[rows]


def complete_column_bound(g: LayerGeom, S: int, rows: int, cols: int) -> int:
    """The complete-column refinement `ceil(2 N / (cols + h))` (module docstring); 0 where
    it does not apply (`F > rows`, or more than `_REFINE_MAX_ROWS` rows)."""
    _check_array(rows, cols, S)
    if g.kh * g.kw * g.ic_g > rows or rows > _REFINE_MAX_ROWS:
        return 0
    h = min(cols, g.oc_g * S * complete_pixels(g, rows))
    return cdiv(2 * g.ho * g.wo * g.oc * S, cols + h)


def lower_bound_cycles(g: LayerGeom, S: int, rows: int, cols: int) -> int:
    """Activations no layout of this layer on `rows x cols` arrays can go below (module
    docstring, "Lower bound"): the largest of `column_bound_cycles`,
    `complete_column_bound` and `row_bound_cycles`."""
    return max(column_bound_cycles(g, S, rows, cols), complete_column_bound(g, S, rows, cols),
               row_bound_cycles(g, S, rows, cols))


def _readers(n: int, stride: int, k: int, d: int) -> np.ndarray:
    """Per input coordinate along one axis (the padded input, from the first read offset
    to the last), how many of `n` output pixels read it through some tap."""
    r = np.zeros((n - 1) * stride + (k - 1) * d + 1, np.int64)
    for t in range(k):
        r[t * d:t * d + (n - 1) * stride + 1:stride] += 1
    return r


@lru_cache(maxsize=4096)
def row_bound_cycles(g: LayerGeom, S: int, rows: int, cols: int) -> int:
    """The row bound (module docstring, "Row bound"):
    `ceil(IC * sum over positions of ceil(r_y r_x OC_g S / cols) / rows)`."""
    _check_array(rows, cols, S)
    ry = np.bincount(_readers(g.ho, g.sh, g.kh, g.dh))
    rx = np.bincount(_readers(g.wo, g.sw, g.kw, g.dw))
    # positions counted by (readers along y, readers along x); r = 0 is never read
    a = np.arange(len(ry))[:, None] * np.arange(len(rx))[None, :]
    per_pos = -(-(a * g.oc_g * S) // cols)
    return cdiv(g.ic * int((ry[:, None] * rx[None, :] * per_pos).sum()), rows)


def _check_array(rows: int, cols: int, slices: int) -> None:
    for name, v in (("rows", rows), ("cols", cols), ("S", slices)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise UsageError(f"{name} must be a positive integer, got {v!r}")


def _packed(p: TilePlan, rows_g: int, cols_g: int, rows: int, cols: int) -> TilePlan:
    """Group packing: when one group's whole block (`rows_g` x `cols_g`) fits a single tile,
    `gp = min(groups, rows // rows_g, cols // cols_g)` groups share an array on its block
    diagonal. An extension beyond DESIGN.md's per-group formula, used by `auto` only."""
    if p.groups < 2 or p.row_tiles != 1 or p.col_tiles != 1:
        return p
    gp = min(p.groups, rows // rows_g, cols // cols_g)
    if gp < 2:
        return p
    return TilePlan(p.geom, p.strategy, p.pw, p.slices, p.ict, p.oct, group_pack=gp)


def im2col_plan(g: LayerGeom, rows: int, cols: int, S: int, pack: bool = False) -> TilePlan:
    """Element-granular im2col: always feasible (a tile may even split one weight's slices).
    `pack`: allow group packing."""
    _check_array(rows, cols, S)
    k_rows, k_cols = g.kh * g.kw * g.ic_g, g.oc_g * S
    p = TilePlan(g, Strategy.IM2COL, (1, 1), S, ict=min(k_rows, rows), oct=min(k_cols, cols))
    return _packed(p, k_rows, k_cols, rows, cols) if pack else p


def pw_plan(g: LayerGeom, i: int, j: int, rows: int, cols: int, S: int,
            pack: bool = False) -> TilePlan | None:
    """An `i x j` parallel window at channel granularity, or None if one channel's window
    does not fit the rows or one output channel's N*S columns do not fit the columns.
    Labelled SDK when square, VW-SDK otherwise (the search relabels by request)."""
    _check_array(rows, cols, S)
    if not (isinstance(i, int) and isinstance(j, int) and i >= 1 and j >= 1):
        raise UsageError(f"parallel window must be positive integers, got {i}x{j}")
    pwh, pww = g.pw_extent(i, j)
    ict = min(g.ic_g, rows // (pwh * pww))
    oct_ = min(g.oc_g, cols // (i * j * S))
    if ict == 0 or oct_ == 0:
        return None
    p = TilePlan(g, Strategy.SDK if i == j else Strategy.VW_SDK, (i, j), S, ict, oct_)
    return _packed(p, g.ic_g * pwh * pww, g.oc_g * i * j * S, rows, cols) if pack else p


def strip_plan(g: LayerGeom, i: int, j: int, rows: int, cols: int, S: int, axis: str,
               strategy: Strategy | None = None) -> TilePlan:
    """The planner's strips for window `i x j` along `axis` ("x": width, "y": height): rows
    ordered strip-axis offset major and cut into chunks of `rows` elements, each chunk with
    only the columns of the window pixels it feeds, cut into chunks of `cols`. Undilated
    layers only."""
    _check_array(rows, cols, S)
    if axis not in ("x", "y") or g.dh != 1 or g.dw != 1:
        raise VerifyError(f"strips along {axis!r} need an undilated layer and axis x or y")
    n_rows = g.ic_g * position_count(g, (i, j))
    if strategy is None:
        strategy = Strategy.IM2COL if (i, j) == (1, 1) else \
            Strategy.SDK if i == j else Strategy.VW_SDK
    return TilePlan(g, strategy, (i, j), S, ict=min(n_rows, rows), oct=cols, pieces=1,
                    strip=axis)


def packed_plan(g: LayerGeom, i: int, j: int, rows: int, cols: int, S: int, k: int,
                strategy: Strategy | None = None) -> TilePlan:
    """The planner's layout for window `i x j` (`1 x 1`: im2col) with `k` pieces per array:
    row chunks of `min(IC_g*P, rows // k)` elements, column chunks of
    `min(OC_g*N*S, cols // k)` columns (module docstring, "Pieces and bins")."""
    _check_array(rows, cols, S)
    if not (isinstance(k, int) and 1 <= k <= min(rows, cols)):
        raise VerifyError(f"{k} pieces per array do not fit a {rows}x{cols} array")
    n_rows = g.ic_g * position_count(g, (i, j))
    n_cols = g.oc_g * i * j * S
    if strategy is None:
        strategy = Strategy.IM2COL if (i, j) == (1, 1) else \
            Strategy.SDK if i == j else Strategy.VW_SDK
    return TilePlan(g, strategy, (i, j), S, ict=min(n_rows, rows // k),
                    oct=min(n_cols, cols // k), pieces=k)


def patch_plan(g: LayerGeom, i: int, j: int, rows: int, cols: int, S: int,
               patch: tuple[int, int], strategy: Strategy | None = None) -> TilePlan:
    """The planner's patches for window `i x j` (`1 x 1`: im2col): runs of `patch = (u, v)`
    read offsets per axis, pieces packed into bins (module docstring, "Patches")."""
    _check_array(rows, cols, S)
    u, v = patch
    if not all(isinstance(a, int) and not isinstance(a, bool) and a >= 1 for a in (u, v)):
        raise VerifyError(f"patch {u}x{v} must be positive integers")
    if strategy is None:
        strategy = Strategy.IM2COL if (i, j) == (1, 1) else \
            Strategy.SDK if i == j else Strategy.VW_SDK
    return TilePlan(g, strategy, (i, j), S, ict=rows, oct=cols, pieces=1, patch=(u, v))


def biclique_plan(g: LayerGeom, i: int, j: int, rows: int, cols: int, S: int, b: int,
                  strategy: Strategy | None = None) -> TilePlan:
    """The planner's dense blocks of up to `b` pixels for window `i x j` (module docstring,
    "Dense blocks")."""
    _check_array(rows, cols, S)
    if not (isinstance(b, int) and not isinstance(b, bool) and b >= 1):
        raise VerifyError(f"dense blocks of {b!r} pixels must be a positive integer")
    if strategy is None:
        strategy = Strategy.IM2COL if (i, j) == (1, 1) else \
            Strategy.SDK if i == j else Strategy.VW_SDK
    return TilePlan(g, strategy, (i, j), S, ict=rows, oct=cols, pieces=1, bicliques=b)


def segment_plan(g: LayerGeom, i: int, j: int, rows: int, cols: int, S: int, axis: str,
                 strategy: Strategy | None = None) -> TilePlan:
    """The planner's segments along `axis` ("x": runs along the width at one input row,
    "y": along the height) for window `i x j` (module docstring, "Segments"). Raises
    VerifyError when one pixel's taps along the run axis do not fit the rows."""
    _check_array(rows, cols, S)
    if axis not in ("x", "y"):
        raise VerifyError(f"segments along {axis!r}: the axis must be x or y")
    if (g.kw if axis == "x" else g.kh) > rows:
        raise VerifyError(f"segments along {axis}: a pixel's taps do not fit {rows} rows")
    if strategy is None:
        strategy = Strategy.IM2COL if (i, j) == (1, 1) else \
            Strategy.SDK if i == j else Strategy.VW_SDK
    return TilePlan(g, strategy, (i, j), S, ict=rows, oct=cols, pieces=1, segments=axis)


# Dense blocks are searched on windows of at most this many pixels (the greedy cover is
# quadratic in them).
BICLIQUE_MAX_PIXELS = 16


# The patch runs `planned_plan` tries per axis (1..PATCH_MAX offsets; a run as long as the
# axis's read offsets is the whole window along it).
PATCH_MAX = 4


def _best_patch(g: LayerGeom, i: int, j: int, rows: int, cols: int, S: int
                ) -> TilePlan | None:
    """The cheapest patch layout at window `i x j` over `u, v <= PATCH_MAX` (ties: smaller
    u, then v); None when none is cheaper than the whole window as one patch."""
    ny = min(PATCH_MAX, len(_offsets(i, g.sh, g.kh, g.dh)))
    nx = min(PATCH_MAX, len(_offsets(j, g.sw, g.kw, g.dw)))
    best: tuple[int, tuple[int, int]] | None = None
    for u in range(1, ny + 1):
        for v in range(1, nx + 1):
            tiles = sum(n for n, _ in _pack(patch_shapes(g, (i, j), (u, v), rows, cols, S),
                                            rows, cols))
            if best is None or tiles < best[0]:
                best = (tiles, (u, v))
    return None if best is None else patch_plan(g, i, j, rows, cols, S, best[1])


@lru_cache(maxsize=8192)
def planned_plan(g: LayerGeom, i: int, j: int, rows: int, cols: int, S: int) -> TilePlan:
    """The cheapest `packed_plan` for window `i x j` over the pieces per array `k` (ties:
    the smaller k). Only the distinct chunk sizes `(rows // k, cols // k)` are tried, the
    largest k of each (more sharing for the same chunks): O(sqrt(rows) + sqrt(cols)).
    Strips, patches, dense blocks and segments at the same window replace it when strictly
    cheaper (in that order)."""
    _check_array(rows, cols, S)
    n_rows = g.ic_g * position_count(g, (i, j))
    n_cols = g.oc_g * i * j * S
    best: tuple[int, int] | None = None
    k, top = 1, min(rows, cols)
    while k <= top:
        k = min(rows // (rows // k), cols // (cols // k), top)  # largest k, same chunks
        rt = cdiv(n_rows, min(n_rows, rows // k))
        ct = cdiv(n_cols, min(n_cols, cols // k))
        tiles = cdiv(g.groups * rt * ct, k)
        if best is None or tiles < best[0]:
            best = (tiles, k)
        if g.groups * rt * ct <= k:
            break  # every piece already shares one array
        k += 1
    assert best is not None
    plan = packed_plan(g, i, j, rows, cols, S, best[1])
    if g.dh == 1 and g.dw == 1:
        for axis in ("x", "y"):
            if (j if axis == "x" else i) > 1:
                sp = strip_plan(g, i, j, rows, cols, S, axis)
                if sp.tiles < plan.tiles:
                    plan = sp
    pp = _best_patch(g, i, j, rows, cols, S)
    if pp is not None and pp.tiles < plan.tiles:
        plan = pp
    if 1 < i * j <= BICLIQUE_MAX_PIXELS:
        bp = biclique_plan(g, i, j, rows, cols, S, max(1, cols // (g.oc_g * S)))
        if bp.tiles < plan.tiles:
            plan = bp
    for axis in ("x", "y"):
        if (g.kw if axis == "x" else g.kh) <= rows:
            sg = segment_plan(g, i, j, rows, cols, S, axis)
            if sg.tiles < plan.tiles:
                plan = sg
    return plan


def clear_plan_caches() -> None:
    """Empty the planner's memo caches, so that the next search runs cold (benchmarks and
    the docs tables time searches this way; identical layers of one network share them)."""
    for f in (planned_plan, patch_shapes, _axis_patches, _offsets, min_field, complete_pixels,
              biclique_shapes, _bicliques, row_bound_cycles, _readers_of,
              _segment_blocks, segment_shapes):
        f.cache_clear()


def plan_for(g: LayerGeom, choice: MappingChoice, rows: int, cols: int, S: int) -> TilePlan:
    """The plan a recorded `MappingChoice` stands for (what the emitter lays out). Raises
    VerifyError when the choice does not fit the array or its group packing is not one
    the model allows."""
    if choice.pieces:
        if choice.group_pack != 1:
            raise VerifyError("a planner layout (pieces per array) has no group packing")
        if choice.segments:
            if choice.pieces != 1 or choice.strip or choice.patch != (0, 0) \
                    or choice.bicliques:
                raise VerifyError("segments take pieces = 1, no strip, patch or dense blocks")
            return segment_plan(g, *choice.pw, rows, cols, S, choice.segments,
                                choice.strategy)
        if choice.patch != (0, 0) or choice.bicliques:
            if choice.pieces != 1 or choice.strip or (choice.patch != (0, 0)
                                                      and choice.bicliques):
                raise VerifyError("patches or dense blocks take pieces = 1 and no strip")
            if choice.bicliques:
                return biclique_plan(g, *choice.pw, rows, cols, S, choice.bicliques,
                                     choice.strategy)
            return patch_plan(g, *choice.pw, rows, cols, S, choice.patch, choice.strategy)
        if choice.strip:
            if choice.pieces != 1:
                raise VerifyError("strips take one piece per array")
            return strip_plan(g, *choice.pw, rows, cols, S, choice.strip, choice.strategy)
        return packed_plan(g, *choice.pw, rows, cols, S, choice.pieces, choice.strategy)
    if choice.strategy is Strategy.IM2COL:
        plan: TilePlan | None = im2col_plan(g, rows, cols, S, pack=choice.group_pack > 1)
    else:
        plan = pw_plan(g, *choice.pw, rows, cols, S, pack=choice.group_pack > 1)
        if plan is not None:
            plan = TilePlan(plan.geom, choice.strategy, plan.pw, S, plan.ict, plan.oct,
                            plan.group_pack)
    if plan is None:
        raise VerifyError(f"parallel window {choice.pw[0]}x{choice.pw[1]} does not fit a "
                          f"{rows}x{cols} array")
    if plan.group_pack != choice.group_pack:
        raise VerifyError(f"group packing {choice.group_pack} recorded, the tiling model "
                          f"allows {plan.group_pack} on a {rows}x{cols} array")
    return plan


# --------------------------------------------------------------- IR nodes -> geometry


def node_geometry(node: Node) -> LayerGeom:
    """The tiling geometry of a crossbar node (Conv or Linear), per sample. A Linear is a
    1x1 conv whose map is `positions x 1`, `positions` being the product of the dimensions
    between batch and features (1 for a (batch, features) input)."""
    op = node.op
    if isinstance(op, Conv):
        x_shape = node.inputs[0].type.shape
        w = node.inputs[1]
        out_shape = node.output.type.shape
        return LayerGeom.from_conv(
            ic=int(x_shape[1]),  # type: ignore[arg-type]
            oc=int(w.type.shape[0]),  # type: ignore[arg-type]
            groups=op.group, kernel=op.kernel, stride=op.stride, dilation=op.dilation,
            out_hw=(int(out_shape[2]), int(out_shape[3])))  # type: ignore[arg-type]
    if isinstance(op, Linear):
        x_shape = node.inputs[0].type.shape
        w_shape = node.inputs[1].type.shape
        positions = 1
        for d in x_shape[1:-1]:
            positions *= int(d)  # type: ignore[arg-type]
        return LayerGeom.from_linear(int(w_shape[1]), int(w_shape[0]),  # type: ignore[arg-type]
                                     positions=max(1, positions))
    raise VerifyError(f"{node.name}: {op.kind} is not a crossbar op")


def node_slices(node: Node, target: CrossbarTarget) -> int:
    """Columns per weight of this layer: its own quantized width (e.g. an 8-bit first
    layer), else the target's."""
    return target.slices_for(node.wquant.bits if node.wquant else target.weight_bits)


def node_plan(node: Node, target: CrossbarTarget) -> TilePlan:
    """The plan of a mapped crossbar node on `target`, checked against the cycles the map
    pass recorded: the cost it minimized must be the cost the program will have."""
    choice = node.mapping
    if choice is None:
        raise UsageError(f"layer {node.name!r} has no mapping; run the map pass first")
    try:
        plan = plan_for(node_geometry(node), choice, target.rows, target.cols,
                        node_slices(node, target))
    except VerifyError as exc:
        raise VerifyError(f"layer {node.name!r}: {exc}") from exc
    if choice.cycles is not None and choice.cycles != plan.cycles:
        raise VerifyError(f"layer {node.name!r}: the map pass costed {choice.cycles} cycles, "
                          f"the tiling of its {plan.slices}-slice weights on "
                          f"{target.rows}x{target.cols} has {plan.cycles}")
    return plan


__all__ = ["LayerGeom", "TilePlan", "cdiv", "window_extent", "MAX_WINDOW_MATRIX",
           "window_matrix_entries", "im2col_plan", "pw_plan",
           "packed_plan", "strip_plan", "patch_plan", "patch_shapes", "biclique_plan",
           "biclique_shapes", "segment_plan", "segment_shapes", "planned_plan",
           "position_count", "lower_bound_cycles", "column_bound_cycles",
           "complete_column_bound", "row_bound_cycles", "min_field", "clear_plan_caches",
           "plan_for",
           "node_geometry", "node_slices", "node_plan"]
