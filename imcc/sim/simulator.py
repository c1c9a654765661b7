"""Functional simulator: the executable definition of the program semantics
(see `imcc.targets.program`).

A crossbar layer runs in three steps per batch chunk:

1. **Unroll.** The quantized input is placed, once, into a zero-padded channels-last buffer
   and every window's inputs are copied out of a strided view of it in one pass: the
   unrolled matrix `U[g, (b, window), (dy, dx, c)]` holds, for each group `g` of the layer,
   the input levels that the rows of that group's tiles are driven with. The row maps are
   folded into the layer's matrices at plan time (precomputed once per layer), so no
   per-tile gather runs at simulation time.
2. **Arrays.** With an ideal ADC the column sums of a tile are exact, so shift-adding them
   after the array equals multiplying by the slice-combined cells; the tiles of a group
   (row tiles, column tiles) only add into distinct or shared outputs, so their combined
   cells are summed into one matrix per group and the whole layer is one GEMM per group
   over all windows of the chunk. Quantized levels and integer sums below 2^24 are exact in
   float32 in any summation order (the plan checks the bound and falls back to float64).
   With a `adc_bits` ADC that is not lossless for some tile, each tile's columns stay
   separate (one merged matrix of all tiles' columns): each input bit plane is multiplied
   once for all tiles, every column sum is converted by its tile's ADC, and the phases and
   slices are shift-added afterwards.
3. **Post.** The integer sums are scaled and biased in float32 (compiled.onnx's order) and
   written back channels-first.

Cycles are counted while executing: every tile folded into a group's matrix is activated
once by every window row of that group's unrolled input, so a layer executes
`unrolled windows x tiles` activations per sample (`SimResult.cycles`), counted from the
matrices actually multiplied, independently of the figure the program declares.

Placed programs (`--chip`, a `Placement`). The simulator executes the placement as well:
per batch chunk it applies each segment's loads when the segment's first layer runs
(tracking which layer tile every physical array holds), checks before a layer runs that
every array each replica uses holds that replica's tile, and counts every replica's
activations, `(stop - start) x tiles` per sample for the windows `[start, stop)` it serves
(`SimResult.replica_cycles`). The windows of all replicas are still computed by the
layer's one GEMM: replicas hold identical copies of the same tiles and their window
ranges partition the window loop (checked), so every window's column sums are those of the
replica that serves it and one product over all windows equals the replicas' products.

Memory: the batch is processed in chunks sized so that one layer's padded input, unrolled
windows and outputs for one chunk fit `max_memory` bytes (default: a quarter of the
machine's RAM); values are freed after their last use. The plan holds one float32 matrix
per layer and group (quantized programs: integer levels, built directly in float32); the
per-column matrices of the ADC path are built only when an ADC that is not lossless runs,
since they grow with a layer's rows times all its tiles' columns.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from imcc.errors import DataError, UsageError
from imcc.ir.ops import FakeQuant
from imcc.targets.program import CrossbarLayer, DigitalStep, Program, Tile
from imcc.targets.tiling import window_extent

EXACT_F32 = 1 << 24  # integer sums below this are exact in float32
MIB = 1 << 20
# Chunks are also kept near this working set per layer, when the budget allows more: the
# unrolled windows then stay in the processor's caches between the copy and the GEMM
# (measured on ResNet-20: 500-image chunks ran 3x slower than 8-16-image chunks).
CACHE_BYTES = 8 * MIB


def _physical_memory() -> int:
    """The machine's RAM in bytes (4 GiB when it does not tell)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def default_max_memory() -> int:
    """The default simulation memory budget in bytes: a quarter of the physical RAM
    (1 GiB when the machine does not tell)."""
    return max(_physical_memory() // 4, 64 * MIB)


@dataclass
class _Axis:
    """The window offsets one unrolled axis covers: `start + step * k`, `k < count`."""

    start: int
    step: int
    count: int

    @staticmethod
    def of(values: set[int]) -> _Axis:
        v = sorted(values)
        if len(v) == 1:
            return _Axis(v[0], 1, 1)
        step = v[1] - v[0]
        if all(b - a == step for a, b in zip(v, v[1:], strict=False)):
            return _Axis(v[0], step, len(v))
        return _Axis(v[0], 1, v[-1] - v[0] + 1)  # irregular: unroll the whole range

    def index(self, d: np.ndarray) -> np.ndarray:
        return (d - self.start) // self.step


@dataclass
class _Piece:
    """The part of one tile that lies in one group: its rows' K indices in that group's
    unrolled input (for the tile's input range)."""

    tile: int
    group: int
    k: np.ndarray          # (R',) rows' positions along K


@dataclass
class _AdcBlock:
    """The columns of one group's tiles that sum the same rows (an im2col / SDK row tile:
    every column tile of it; otherwise one tile's part), side by side. Only these rows are
    multiplied, so the ADC path costs the crossbar's cells, not K x all columns."""

    group: int
    k: np.ndarray           # (R,) the rows' positions along the group's K
    cells: np.ndarray       # (R, C) levels, compute dtype
    full_scale: np.ndarray  # (C,) the range of each column's tile per unit input
    col_tile: np.ndarray    # (C,) the tile of each column
    order: np.ndarray       # (C,) the columns sorted by the output column they add onto
    weight: np.ndarray      # (C,) their shift-add (slice) weights, in that order
    starts: np.ndarray      # (U,) where each output column's run starts, in that order
    outs: np.ndarray        # (U,) the output columns (along N) of the runs

    def combine(self, conv: np.ndarray, out: np.ndarray) -> None:
        """out[:, n] += sum of weight x converted column over the columns adding onto n."""
        out[:, self.outs] += np.add.reduceat(conv[:, self.order] * self.weight,
                                             self.starts, axis=1)


@dataclass
class _AdcPlan:
    """The per-column form of a layer's tiles, for an ADC that is not lossless."""

    blocks: list[_AdcBlock]
    pieces: list[_Piece]
    n_tiles: int

    def bytes_per_window(self) -> int:
        """Working bytes per window row of the largest block: its gathered input and
        levels, its column sums, converted sums and weighted sums."""
        return max((b.cells.shape[0] * 8 + b.cells.shape[1] * 24 for b in self.blocks),
                   default=0)


@dataclass
class _LayerPlan:
    layer: CrossbarLayer
    groups: int                          # G: groups computed as separate GEMMs (1 = dense)
    padded: tuple[int, int, int]         # (Hp, Wp, C) of the channels-last padded input
    ay: _Axis                            # unrolled offsets dy
    ax: _Axis                            # unrolled offsets dx
    weights: np.ndarray                  # (G, K, N) slice-combined cells, K = (dy, dx, c_g)
    dtype: type                          # compute dtype
    tiles_per_group: list[int]           # tiles folded into each group's matrix
    tile_fs: np.ndarray                  # (tiles,) each tile's ADC range per unit input
    lossless: dict[tuple[int, int], bool] = field(default_factory=dict)
    # The per-column form, built on first use: only an ADC that is not lossless needs it,
    # and it holds every tile's columns apart (quadratic in a big layer's size).
    _adc: _AdcPlan | None = None

    @property
    def adc(self) -> _AdcPlan:
        if self._adc is None:
            self._adc = _adc_plan(self)
        return self._adc

    @property
    def k(self) -> int:
        return int(self.weights.shape[1])

    @property
    def n(self) -> int:
        return int(self.weights.shape[2])

    def bytes_per_sample(self, adc: bool) -> int:
        """Peak working memory of this layer per sample: padded input, unrolled windows,
        GEMM output and float32 result (with the per-column sums of the ADC path)."""
        hp, wp, c = self.padded
        nwin = self.layer.n_windows
        item = np.dtype(self.dtype).itemsize
        b = hp * wp * c * item + self.groups * nwin * (self.k + 2 * self.n) * item
        b += int(np.prod(self.layer.out_shape)) * 4
        if adc:
            b += self.groups * nwin * (self.adc.bytes_per_window() + self.n * 8)
        return b


@dataclass
class SimResult:
    outputs: dict[str, np.ndarray]
    cycles: dict[str, int] = field(default_factory=dict)  # per layer, per image
    chunk: int = 0                                         # samples per batch chunk
    # Placed programs: per layer, the activations of each replica, per image.
    replica_cycles: dict[str, list[int]] = field(default_factory=dict)

    @property
    def placed_cycles_per_image(self) -> int | None:
        """The activations the replicas executed per image (None: not a placed program)."""
        return sum(map(sum, self.replica_cycles.values())) if self.replica_cycles else None

    @property
    def cycles_per_image(self) -> int:
        return sum(self.cycles.values())


def _conv_geometry(layer: CrossbarLayer) -> tuple[int, int, int]:
    if layer.op == "Conv":
        c, h, w = layer.in_shape
        return int(c), int(h), int(w)
    return int(layer.in_shape[-1]), int(np.prod(layer.in_shape[:-1], dtype=np.int64)), 1


def _plan(layer: CrossbarLayer, quantized: bool) -> _LayerPlan:
    c, h, w = _conv_geometry(layer)
    t, left, b, r = layer.pads
    (i, j), (nwh, nww) = layer.pw, layer.windows
    sh, sw = layer.stride
    pwh, pww = window_extent(layer.kernel, layer.stride, layer.dilation, (i, j))
    hp = max(t + h + b, (nwh - 1) * i * sh + pwh)
    wp = max(left + w + r, (nww - 1) * j * sw + pww)
    oc = int(layer.out_scale.shape[0])
    offsets = [np.unique(np.concatenate([tl.rows[:, k] for tl in layer.tiles]))
               for k in (1, 2)]
    ay, ax = (_Axis.of({int(d) for d in o}) for o in offsets)
    sl = np.asarray(layer.slice_weights, np.float64)
    # The layer splits into its conv groups when no cell links an input channel of one
    # group to an output channel of another (packed tiles hold several groups on their
    # block diagonal, with zeros elsewhere). Otherwise one dense matrix (G = 1).
    g = int(layer.groups)
    if g > 1:
        for tile in layer.tiles:
            rg = tile.rows[:, 0].astype(np.int64) // (c // g)
            cgp = tile.cols[:, 0].astype(np.int64) // (oc // g)
            if np.any(tile.cells[rg[:, None] != cgp[None, :]]):
                g = 1
                break
    cg, ocg = c // g, oc // g
    kdim, ndim = ay.count * ax.count * cg, i * j * ocg
    tiles_per_group = [0] * g
    # Quantized: every entry is an integer weight level (|level| < 2^16), exact in float32
    # however the tiles' slices add up; unquantized weights are summed in float64 and
    # rounded once.
    need = g * kdim * ndim * (4 if quantized else 8)
    if need > _physical_memory():
        # Only a program from an older imcc or edited by hand gets here: the planner keeps
        # its windows' matrices within MAX_WINDOW_MATRIX.
        raise DataError(f"program: layer {layer.name!r}: simulating its {i}x{j} window takes "
                        f"a {need / (1 << 30):,.1f} GiB matrix, more than this machine's "
                        "memory", "recompile the model with this imcc")
    wts = np.zeros((g, kdim, ndim), np.float32 if quantized else np.float64)
    for tile, gi, rsel, csel in _pieces(layer, cg, ocg):
        krow, ncol, slw = _piece_maps(layer, tile, rsel, csel, ay, ax, cg, ocg, sl)
        # Shift-add the tile's slice columns onto its output columns (one small product
        # with a 0/1 matrix), then add the block into the group's matrix.
        outs, inv = np.unique(ncol, return_inverse=True)
        onehot = np.zeros((len(ncol), len(outs)))
        onehot[np.arange(len(ncol)), inv] = slw
        block = tile.cells[np.ix_(rsel, csel)].astype(np.float64) @ onehot
        if len(np.unique(krow)) == len(krow):
            wts[gi][np.ix_(krow, outs)] += block
        else:  # a row index twice in one tile: add.at adds both
            np.add.at(wts[gi], (krow[:, None], outs[None, :]), block)
    for tile in layer.tiles:
        rg = tile.rows[:, 0].astype(np.int64) // cg
        tiles_per_group[int(rg.min()) if len(rg) else 0] += 1
    tile_fs = np.array([float(np.abs(t.cells.astype(np.float64)).sum(axis=0).max(initial=0))
                        for t in layer.tiles])
    xmax = 1 << (layer.in_quant[1] if layer.in_quant else 0)
    bound = max((float(np.abs(w).sum(axis=0, dtype=np.float64).max(initial=0)) for w in wts),
                default=0.0)
    exact32 = quantized and bound * xmax < EXACT_F32
    dtype = np.float32 if (exact32 or not quantized) else np.float64
    return _LayerPlan(layer, g, (hp, wp, c), ay, ax, wts.astype(dtype, copy=False), dtype,
                      tiles_per_group, tile_fs)


def _pieces(layer: CrossbarLayer, cg: int, ocg: int
            ) -> Iterator[tuple[Tile, int, np.ndarray, np.ndarray]]:
    """Each tile's part in each group: (tile, group, its rows there, its columns there)."""
    for tile in layer.tiles:
        if not len(tile.rows):
            continue
        rg = tile.rows[:, 0].astype(np.int64) // cg
        cgp = tile.cols[:, 0].astype(np.int64) // ocg
        for gi in np.unique(np.concatenate([rg, cgp])):
            yield tile, int(gi), np.nonzero(rg == gi)[0], np.nonzero(cgp == gi)[0]


def _piece_maps(layer: CrossbarLayer, tile: Tile, rsel: np.ndarray, csel: np.ndarray,
                ay: _Axis, ax: _Axis, cg: int, ocg: int, sl: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A piece's rows' positions along K, its columns' output columns along N and their
    shift-add weights."""
    j = layer.pw[1]
    rows, cols = tile.rows[rsel].astype(np.int64), tile.cols[csel].astype(np.int64)
    krow = (ay.index(rows[:, 1]) * ax.count + ax.index(rows[:, 2])) * cg + rows[:, 0] % cg
    ncol = (cols[:, 1] * j + cols[:, 2]) * ocg + cols[:, 0] % ocg
    return krow, ncol, sl[cols[:, 3]]


def _adc_plan(plan: _LayerPlan) -> _AdcPlan:
    """Every group's tile parts, those reading the same rows joined into one block, with
    their columns' shift-add weights. A tile's ADC range is its largest column's sum of
    |levels| (per unit of input)."""
    layer, g = plan.layer, plan.groups
    c, oc = plan.padded[2], int(layer.out_scale.shape[0])
    cg, ocg = c // g, oc // g
    sl = np.asarray(layer.slice_weights, np.float64)
    index = {id(t): ti for ti, t in enumerate(layer.tiles)}
    pieces: list[_Piece] = []
    parts: dict[tuple[int, bytes],
                list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}
    for tile, gi, rsel, csel in _pieces(layer, cg, ocg):
        krow, ncol, slw = _piece_maps(layer, tile, rsel, csel, plan.ay, plan.ax, cg, ocg, sl)
        ti = index[id(tile)]
        pieces.append(_Piece(ti, gi, krow))
        # A row index twice in one part (the planner's pieces of one group on a tile's
        # block diagonal reading the same input) is gathered twice: both rows are summed.
        parts.setdefault((gi, krow.tobytes()), []).append(
            (ti, krow, tile.cells[np.ix_(rsel, csel)], ncol, slw))
    blocks = []
    for (gi, _), group_parts in sorted(parts.items(), key=lambda kv: kv[0][0]):
        k = group_parts[0][1]
        cells: np.ndarray = np.concatenate([p[2] for p in group_parts], axis=1).astype(plan.dtype)
        ncol = np.concatenate([p[3] for p in group_parts])
        slw = np.concatenate([p[4] for p in group_parts])
        col_tile = np.concatenate([np.full(p[2].shape[1], p[0], np.int64)
                                   for p in group_parts])
        order = np.argsort(ncol, kind="stable")
        sorted_n = ncol[order]
        starts = np.flatnonzero(np.r_[True, sorted_n[1:] != sorted_n[:-1]])
        blocks.append(_AdcBlock(gi, k, cells, plan.tile_fs[col_tile], col_tile, order,
                                slw[order], starts, sorted_n[starts]))
    return _AdcPlan(blocks, pieces, len(layer.tiles))


def _adc(colsum: np.ndarray, full_scale: np.ndarray | float, bits: int) -> np.ndarray:
    """A `bits` ADC spanning [-full_scale, full_scale]: clip, then round to its step. Where
    every integer column sum is representable (full_scale <= levels / 2) it is lossless."""
    levels = (1 << bits) - 1
    fs = np.asarray(full_scale, np.float64)
    step = np.where(fs > 0, 2 * fs / levels, 1.0)
    conv = np.rint(np.clip(colsum, -fs, fs) / step) * step
    return np.where(fs <= levels / 2, colsum, conv)


class Simulator:
    """Runs a `Program`. Plans (merged matrices) are built once and reused across batches.

    `batch` caps the samples per chunk; `max_memory` (bytes) bounds one layer's working
    set for a chunk (default `default_max_memory()`); the chunk is the smaller of both."""

    def __init__(self, program: Program, adc_bits: int | None = None, dac_bits: int = 1,
                 batch: int | None = None, max_memory: int | None = None) -> None:
        if max_memory is not None and max_memory < 1:
            raise UsageError(f"the memory budget must be positive, got {max_memory} bytes")
        self.program = program
        self.adc_bits = adc_bits
        self.dac_bits = dac_bits
        self.batch = batch
        self.max_memory = default_max_memory() if max_memory is None else int(max_memory)
        self.plans = {s.name: _plan(s, program.quantized) for s in program.crossbar_layers()}
        pl = program.placement
        # The segment each placed layer opens (its loads run before it) and its replicas.
        self._opens = {} if pl is None else {seg.layers[0]: seg for seg in pl.segments
                                             if seg.layers}
        self._replicas = {} if pl is None else {lp.layer: lp.replicas for lp in pl.layers}
        # Last step reading each value: values are freed after it (outputs are kept).
        self._last_use: dict[str, int] = {}
        for si, step in enumerate(program.steps):
            ins = step.inputs if isinstance(step, DigitalStep) else [step.input]
            for v in ins:
                self._last_use[v] = si

    def bytes_per_sample(self) -> int:
        """The largest working set of one layer for one sample, in bytes (the chunk sizing
        rule: chunk = max_memory // this)."""
        adc = self.adc_bits is not None
        return max((p.bytes_per_sample(adc and not self._lossless(p))
                    for p in self.plans.values()), default=1)

    def chunk_size(self, n: int) -> int:
        """Samples per chunk: as many as fit `max_memory` and `CACHE_BYTES` (at least one),
        at most `batch`."""
        per = max(1, self.bytes_per_sample())
        chunk = max(1, min(self.max_memory, CACHE_BYTES) // per)
        if self.batch is not None:
            chunk = min(chunk, self.batch)
        return max(1, min(chunk, n))

    def run(self, feeds: dict[str, np.ndarray],
            progress: Callable[[int], None] | None = None) -> SimResult:
        n = next(iter(feeds.values())).shape[0]
        # Inputs that do not share one leading (batch) axis cannot be cut into chunks.
        same = len({np.shape(v)[0] if np.ndim(v) else -1 for v in feeds.values()}) == 1
        chunk = self.chunk_size(n) if same else max(n, 1)
        outs: dict[str, list[np.ndarray]] = {o: [] for o in self.program.outputs}
        cycles: dict[str, int] = {}
        replica_cycles: dict[str, list[int]] = {}
        for a in range(0, n, chunk):
            part = {k: v[a:a + chunk] for k, v in feeds.items()} if same else feeds
            res = self._run_batch(part, cycles, replica_cycles)
            for o in outs:
                outs[o].append(res[o])
            if progress is not None:
                progress(min(chunk, n - a))
        nb = max(1, -(-n // chunk))
        return SimResult({k: np.concatenate(v) for k, v in outs.items()},
                         {k: c // nb for k, c in cycles.items()}, chunk,
                         {k: [c // nb for c in v] for k, v in replica_cycles.items()})

    def _run_batch(self, feeds: dict[str, np.ndarray], cycles: dict[str, int],
                   replica_cycles: dict[str, list[int]]) -> dict[str, np.ndarray]:
        env: dict[str, np.ndarray] = {k: np.asarray(v, np.float32) for k, v in feeds.items()}
        held: dict[int, tuple[str, int]] = {}  # physical array -> (layer, tile) it holds
        keep = set(self.program.outputs)
        for si, step in enumerate(self.program.steps):
            if isinstance(step, DigitalStep):
                ins = [step.consts[i] if i in step.consts else env[i] for i in step.inputs]
                env[step.outputs[0]] = step.op.compute(*ins)
                names = step.inputs
            else:
                if self._replicas:
                    self._run_placed(step, held, replica_cycles)
                env[step.output] = self._crossbar(self.plans[step.name], env[step.input], cycles)
                names = [step.input]
            for v in names:
                if self._last_use.get(v) == si and v not in keep and v in env:
                    del env[v]
        return {o: env[o] for o in self.program.outputs}

    def _run_placed(self, layer: CrossbarLayer, held: dict[int, tuple[str, int]],
                    replica_cycles: dict[str, list[int]]) -> None:
        """Apply the loads of the segment `layer` opens, check that every replica's arrays
        hold its tiles, and add each replica's activations per sample (summed over chunks,
        like `cycles`)."""
        seg = self._opens.get(layer.name)
        if seg is not None:
            for ld in seg.loads:
                held[ld.array] = (ld.layer, ld.tile)
        counts = replica_cycles.setdefault(layer.name, [0] * len(self._replicas[layer.name]))
        for r, rep in enumerate(self._replicas[layer.name]):
            for t, a in enumerate(rep.arrays):
                if held.get(a) != (layer.name, t):
                    # read_program refuses this; only a program built in memory gets here
                    raise DataError(f"program: array {a} does not hold tile {t} of "
                                    f"{layer.name!r} when replica {r} runs")
            counts[r] += (rep.stop - rep.start) * len(rep.arrays)

    def _lossless(self, plan: _LayerPlan) -> bool:
        """Whether the ideal path computes this layer exactly: always with an ideal ADC;
        with an `adc_bits` ADC when the layer's inputs are integer levels and every column
        sum of every input phase on every tile is representable (the ADC loses nothing)."""
        if self.adc_bits is None:
            return True
        if plan.layer.in_quant is None:
            return False
        key = (self.adc_bits, self.dac_bits)
        if key not in plan.lossless:
            levels = (1 << self.adc_bits) - 1
            mask = (1 << self.dac_bits) - 1
            plan.lossless[key] = bool(np.all(mask * plan.tile_fs <= levels / 2))
        return plan.lossless[key]

    def _unroll(self, plan: _LayerPlan, x: np.ndarray) -> np.ndarray:
        """(G, B * windows, K) window inputs, K = (dy, dx, c within the group)."""
        layer = plan.layer
        if layer.op == "Conv":
            xc = x
        else:
            bsz, k = x.shape[0], x.shape[-1]
            xc = np.moveaxis(x.reshape(bsz, -1, k), 2, 1)[..., None]  # (B, K, positions, 1)
        if layer.in_quant is not None:
            scale, bits, signed = layer.in_quant
            xc = FakeQuant(scale, bits, signed).quantize(xc)
        bsz = xc.shape[0]
        hp, wp, c = plan.padded
        t, left = layer.pads[0], layer.pads[1]
        xp: np.ndarray = np.zeros((bsz, hp, wp, c), plan.dtype)
        xp[:, t:t + xc.shape[2], left:left + xc.shape[3], :] = xc.transpose(0, 2, 3, 1)
        (i, j), (nwh, nww) = layer.pw, layer.windows
        sy, sx = i * layer.stride[0], j * layer.stride[1]
        ay, ax, g = plan.ay, plan.ax, plan.groups
        s0, s1, s2, s3 = xp.strides
        # view[b, wy, wx, ky, kx, g, c] = xp[b, wy*sy + dy(ky), wx*sx + dx(kx), g*cg + c]
        view = np.lib.stride_tricks.as_strided(
            xp[:, ay.start:, ax.start:, :],
            shape=(bsz, nwh, nww, ay.count, ax.count, g, c // g),
            strides=(s0, sy * s1, sx * s2, ay.step * s1, ax.step * s2, (c // g) * s3, s3),
            writeable=False)
        if g == 1:
            return view.reshape(1, bsz * nwh * nww, -1)   # the one copy of the windows
        return np.ascontiguousarray(view.transpose(5, 0, 1, 2, 3, 4, 6)).reshape(
            g, bsz * nwh * nww, -1)

    def _crossbar(self, plan: _LayerPlan, x: np.ndarray, cycles: dict[str, int]) -> np.ndarray:
        layer = plan.layer
        if tuple(x.shape[1:]) != tuple(layer.in_shape):
            # Only a program edited by hand gets here (read_program checks the rest).
            raise DataError(f"program: layer {layer.name!r} declares input shape "
                            f"{list(layer.in_shape)} but receives {list(x.shape[1:])}")
        bsz = x.shape[0]
        u = self._unroll(plan, x)
        del x
        if self._lossless(plan):
            # Ideal ADC: exact column sums, shift-added after the array = one GEMM by the
            # slice-combined cells of all tiles of the group.
            acc = u[0] @ plan.weights[0] if plan.groups == 1 else np.matmul(u, plan.weights)
        else:
            acc = self._adc_phases(plan, u, bsz)
        # Every tile folded into group g's matrix was driven by every window row of u[g].
        windows = u.shape[1] // bsz
        executed = sum(windows * nt for nt in plan.tiles_per_group)
        cycles[layer.name] = cycles.get(layer.name, 0) + executed
        del u
        return self._post(plan, acc, bsz)

    def _post(self, plan: _LayerPlan, acc: np.ndarray, bsz: int) -> np.ndarray:
        """Scale and bias in float32 (the integer sum, exact below 2^24, times the scale,
        then plus the bias: compiled.onnx's order). The result is returned channels-first
        as a view of channels-last memory: numpy's semantics do not depend on the memory
        layout, elementwise digital steps keep it, and the next crossbar layer, which reads
        channels-last, then copies contiguous rows."""
        layer = plan.layer
        (i, j), (nwh, nww) = layer.pw, layer.windows
        g = plan.groups
        oc = int(layer.out_scale.shape[0])
        ocg = oc // g
        y = acc.astype(np.float32, copy=False).reshape(g, bsz, nwh, nww, i, j, ocg)
        y *= layer.out_scale.astype(np.float32).reshape(g, 1, 1, 1, 1, 1, ocg)
        if layer.bias is not None:
            y += layer.bias.astype(np.float32).reshape(g, 1, 1, 1, 1, 1, ocg)
        # (g, b, wy, wx, py, px, o) -> (b, wy, py, wx, px, g, o): a view when i == 1, g == 1
        nhwc = y.transpose(1, 2, 4, 3, 5, 0, 6).reshape(bsz, nwh * i, nww * j, oc)
        if layer.op == "Conv":
            ho, wo = layer.out_shape[1], layer.out_shape[2]
            return nhwc[:, :ho, :wo, :].transpose(0, 3, 1, 2)
        positions = int(np.prod(layer.out_shape[:-1], dtype=np.int64))
        return nhwc[:, :positions, 0, :].reshape((bsz,) + tuple(layer.out_shape))

    def _adc_phases(self, plan: _LayerPlan, u: np.ndarray, bsz: int) -> np.ndarray:
        """Apply inputs bit-serially (dac_bits per phase, two's complement when signed),
        convert every tile's column sums of each phase with that tile's ADC, then shift-add
        phases and slices. All tiles of a group are multiplied at once (their columns kept
        apart, each summing only its own rows)."""
        assert self.adc_bits is not None
        ap = plan.adc
        layer = plan.layer
        out = np.zeros((plan.groups, u.shape[1], plan.n), np.float64)
        if layer.in_quant is None:
            # Unquantized inputs have no bit planes: the ADC sees the analog sum once, over
            # a range set per sample by the largest input magnitude the tile is driven with
            # (per sample, so results do not depend on how the batch is chunked).
            windows = u.shape[1] // bsz
            amax = np.abs(u).reshape(plan.groups, bsz, windows, -1).max(axis=2)  # (G, B, K)
            tmax = np.zeros((bsz, ap.n_tiles + 1))
            for pc in ap.pieces:
                tmax[:, pc.tile] = np.maximum(tmax[:, pc.tile],
                                              amax[pc.group][:, pc.k].max(axis=1, initial=0))
            for blk in ap.blocks:
                fs = tmax[:, blk.col_tile] * blk.full_scale                     # (B, C)
                cs = (u[blk.group][:, blk.k] @ blk.cells).astype(np.float64)
                conv = _adc(cs.reshape(bsz, windows, -1), fs[:, None, :], self.adc_bits)
                blk.combine(conv.reshape(bsz * windows, -1), out[blk.group])
            return out
        _, bits, signed = layer.in_quant
        phases = -(-bits // self.dac_bits)
        total = phases * self.dac_bits
        mask = (1 << self.dac_bits) - 1
        for blk in ap.blocks:
            levels = u[blk.group][:, blk.k].astype(np.int32) & ((1 << total) - 1)
            fs = mask * blk.full_scale                                          # (C,)
            acc = np.zeros((u.shape[1], blk.cells.shape[1]), np.float64)
            for p in range(phases):
                plane = (levels >> (p * self.dac_bits)) & mask
                if signed and p == phases - 1:
                    top = 1 << (self.dac_bits - 1)
                    plane = np.where(plane >= top, plane - (1 << self.dac_bits), plane)
                cs = (plane.astype(plan.dtype) @ blk.cells).astype(np.float64)
                acc += float(1 << (p * self.dac_bits)) * _adc(cs, fs, self.adc_bits)
            blk.combine(acc, out[blk.group])
        return out


def simulate(program: Program, feeds: dict[str, np.ndarray], adc_bits: int | None = None,
             progress: Callable[[int], None] | None = None,
             max_memory: int | None = None) -> SimResult:
    dac = int(program.target.get("dac_bits", 1))
    return Simulator(program, adc_bits=adc_bits, dac_bits=dac,
                     max_memory=max_memory).run(feeds, progress)
