"""Functional simulator: the executable definition of the program semantics
(see `imcc.targets.program`).

For each crossbar layer and each tile it gathers every window's row inputs through the row
map (one fancy-index over the padded input), multiplies by the cell levels (the column sums
an ideal ADC reads), optionally models a `adc_bits` ADC per bit-serial input phase, shift-adds
the slices and scatters the results through the column map. Digital steps run their op's
numpy semantics. Cycles are counted while executing: one per (window, tile) activation
performed (`SimResult.cycles`), independently of the cycle figures the program declares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from imcc.errors import DataError
from imcc.ir.ops import FakeQuant
from imcc.targets.program import CrossbarLayer, DigitalStep, Program
from imcc.targets.tiling import window_extent

EXACT_F32 = 1 << 24  # integer sums below this are exact in float32


@dataclass
class _TilePlan:
    rows: slice | np.ndarray   # the tile's rows within the layer's unrolled window inputs
    cells: np.ndarray          # (R, C) levels in the compute dtype
    combine: np.ndarray        # (C, U) shift-add weights onto the tile's distinct outputs
    fused: np.ndarray          # cells @ combine: the ideal-ADC tile, slices added up
    outs: slice | np.ndarray   # the distinct outputs within a window's (OC, i, j) block


@dataclass
class _LayerPlan:
    layer: CrossbarLayer
    padded: tuple[int, int, int]        # (C, Hp, Wp) including the window overhang
    positions: list[tuple[int, int]]    # PW offsets (dy, dx) the rows use, in unrolled order
    tiles: list[_TilePlan]
    dtype: type


@dataclass
class SimResult:
    outputs: dict[str, np.ndarray]
    cycles: dict[str, int] = field(default_factory=dict)  # per layer, per image

    @property
    def cycles_per_image(self) -> int:
        return sum(self.cycles.values())


def _as_conv_input(layer: CrossbarLayer, x: np.ndarray) -> np.ndarray:
    if layer.op == "Conv":
        return x
    b, k = x.shape[0], x.shape[-1]
    return np.moveaxis(x.reshape(b, -1, k), 2, 1)[..., None]  # (B, K, positions, 1)


def _range_or_index(ids: np.ndarray) -> slice | np.ndarray:
    """A slice when the indices are consecutive (a cheap view), else the index array."""
    if len(ids) and np.array_equal(ids, np.arange(ids[0], ids[0] + len(ids))):
        return slice(int(ids[0]), int(ids[0]) + len(ids))
    return ids


def _plan(layer: CrossbarLayer, quantized: bool) -> _LayerPlan:
    if layer.op == "Conv":
        c, h, w = layer.in_shape
    else:
        c, h, w = layer.in_shape[-1], int(np.prod(layer.in_shape[:-1], dtype=np.int64)), 1
    t, left, b, r = layer.pads
    (i, j), (nwh, nww) = layer.pw, layer.windows
    sh, sw = layer.stride
    kh, kw = layer.kernel
    dh, dw = layer.dilation
    pwh, pww = window_extent((kh, kw), (sh, sw), (dh, dw), (i, j))
    hp = max(t + h + b, (nwh - 1) * i * sh + pwh)
    wp = max(left + w + r, (nww - 1) * j * sw + pww)
    # The window inputs are unrolled once per layer as (channel, PW position) columns; each
    # tile's row map then selects its rows from that (usually a contiguous slice).
    positions = sorted({(int(dy), int(dx)) for tl in layer.tiles for dy, dx in tl.rows[:, 1:]})
    pos_id = {p: k for k, p in enumerate(positions)}
    # |integer sum| bound per output of a window: row tiles of the same outputs add up in
    # `acc`, so the bound is over the whole layer's fan-in, not per tile.
    per_out = np.zeros(layer.out_scale.shape[0] * i * j)
    plans = []
    for tile in layer.tiles:
        rows, cols = tile.rows.astype(np.int64), tile.cols.astype(np.int64)
        ids = rows[:, 0] * len(positions) + np.array([pos_id[(int(a), int(b_))]
                                                      for a, b_ in rows[:, 1:]], dtype=np.int64)
        uniq, inv = np.unique(cols[:, :3], axis=0, return_inverse=True)
        combine = np.zeros((len(cols), len(uniq)))
        combine[np.arange(len(cols)), inv.ravel()] = np.asarray(layer.slice_weights)[cols[:, 3]]
        outs = (uniq[:, 0] * i + uniq[:, 1]) * j + uniq[:, 2]
        plans.append((tile, _range_or_index(ids), combine, _range_or_index(outs)))
        np.add.at(per_out, outs, np.abs(tile.cells.astype(np.float64) @ combine).sum(axis=0))
    bound = float(per_out.max(initial=0))
    xmax = 1 << (layer.in_quant[1] if layer.in_quant else 0)
    exact32 = quantized and bound * xmax < EXACT_F32
    dtype = np.float32 if (exact32 or not quantized) else np.float64
    tiles = [_TilePlan(rsel, tile.cells.astype(dtype), comb.astype(dtype),
                       (tile.cells.astype(np.float64) @ comb).astype(dtype), osel)
             for tile, rsel, comb, osel in plans]
    return _LayerPlan(layer, (c, hp, wp), positions, tiles, dtype)


def _adc(colsum: np.ndarray, full_scale: float, bits: int) -> np.ndarray:
    """A `bits` ADC spanning [-full_scale, full_scale]: clip, then round to its step."""
    levels = (1 << bits) - 1
    if full_scale <= levels / 2:
        return colsum  # every integer column sum is representable: the ADC is lossless
    step = 2 * full_scale / levels
    return np.rint(np.clip(colsum, -full_scale, full_scale) / step) * step


class Simulator:
    """Runs a `Program`. Plans (index arrays) are built once and reused across batches."""

    def __init__(self, program: Program, adc_bits: int | None = None, dac_bits: int = 1,
                 batch: int = 50) -> None:
        self.program = program
        self.adc_bits = adc_bits
        self.dac_bits = dac_bits
        self.batch = batch
        self.plans = {s.name: _plan(s, program.quantized) for s in program.crossbar_layers()}

    def run(self, feeds: dict[str, np.ndarray],
            progress: Callable[[int], None] | None = None) -> SimResult:
        n = next(iter(feeds.values())).shape[0]
        outs: dict[str, list[np.ndarray]] = {o: [] for o in self.program.outputs}
        cycles: dict[str, int] = {}
        for a in range(0, n, self.batch):
            part = {k: v[a:a + self.batch] for k, v in feeds.items()}
            res = self._run_batch(part, cycles)
            for o in outs:
                outs[o].append(res[o])
            if progress is not None:
                progress(min(self.batch, n - a))
        nb = -(-n // self.batch)
        return SimResult({k: np.concatenate(v) for k, v in outs.items()},
                         {k: c // nb for k, c in cycles.items()})

    def _run_batch(self, feeds: dict[str, np.ndarray], cycles: dict[str, int]
                   ) -> dict[str, np.ndarray]:
        env: dict[str, np.ndarray] = {k: np.asarray(v, np.float32) for k, v in feeds.items()}
        for step in self.program.steps:
            if isinstance(step, DigitalStep):
                ins = [step.consts[i] if i in step.consts else env[i] for i in step.inputs]
                env[step.outputs[0]] = step.op.compute(*ins)
            else:
                env[step.output] = self._crossbar(self.plans[step.name], env[step.input], cycles)
        return {o: env[o] for o in self.program.outputs}

    def _crossbar(self, plan: _LayerPlan, x: np.ndarray, cycles: dict[str, int]) -> np.ndarray:
        layer = plan.layer
        if tuple(x.shape[1:]) != tuple(layer.in_shape):
            # Only a program edited by hand gets here (read_program checks the rest).
            raise DataError(f"program: layer {layer.name!r} declares input shape "
                            f"{list(layer.in_shape)} but receives {list(x.shape[1:])}")
        xb = _as_conv_input(layer, x)
        if layer.in_quant is not None:
            scale, bits, signed = layer.in_quant
            xb = FakeQuant(scale, bits, signed).quantize(xb)
        b = xb.shape[0]
        c, hp, wp = plan.padded
        t, left = layer.pads[0], layer.pads[1]
        xp: np.ndarray = np.zeros((b, c, hp, wp), plan.dtype)
        xp[:, :, t:t + xb.shape[2], left:left + xb.shape[3]] = xb
        (i, j), (nwh, nww) = layer.pw, layer.windows
        sy, sx = i * layer.stride[0], j * layer.stride[1]
        # unrolled[b, window, channel * P + p] = xp[b, channel, origin + positions[p]]
        unrolled = np.stack([xp[:, :, dy:dy + (nwh - 1) * sy + 1:sy, dx:dx + (nww - 1) * sx + 1:sx]
                             for dy, dx in plan.positions], axis=2)   # (B, C, P, nwh, nww)
        unrolled = unrolled.transpose(0, 3, 4, 1, 2).reshape(b, nwh * nww, -1)
        oc = layer.out_scale.shape[0]
        acc = np.zeros((b, nwh * nww, oc * i * j), plan.dtype)
        executed = 0
        for tp in plan.tiles:
            xg = unrolled[:, :, tp.rows]                          # (B, windows, R)
            if self.adc_bits is None:
                # Ideal ADC: the column sums are exact, so shift-adding them after the
                # array equals multiplying by the slice-combined cells.
                contrib = xg @ tp.fused
            else:
                contrib = self._adc_phases(xg, tp.cells, layer) @ tp.combine
            acc[:, :, tp.outs] += contrib
            # One activation per window this tile was actually driven with (the gathered
            # inputs' window axis), counted from the work done, not from the program.
            executed += xg.shape[1]
        cycles[layer.name] = cycles.get(layer.name, 0) + executed
        acc6 = acc.reshape(b, nwh, nww, oc, i, j).transpose(0, 3, 1, 4, 2, 5)
        ho, wo = (layer.out_shape[1], layer.out_shape[2]) if layer.op == "Conv" else \
            (int(np.prod(layer.out_shape[:-1], dtype=np.int64)), 1)
        # The digital post-processing in float32, in compiled.onnx's order: the integer sum
        # (exact in float32 below 2^24) times the scale, then plus the bias.
        y = acc6.reshape(b, oc, nwh * i, nww * j)[:, :, :ho, :wo].astype(np.float32)
        y = y * layer.out_scale.reshape(1, -1, 1, 1).astype(np.float32)
        if layer.bias is not None:
            y = y + layer.bias.reshape(1, -1, 1, 1).astype(np.float32)
        if layer.op == "Conv":
            return y
        return np.moveaxis(y[..., 0], 1, 2).reshape((b,) + tuple(layer.out_shape))

    def _adc_phases(self, xg: np.ndarray, cells: np.ndarray, layer: CrossbarLayer) -> np.ndarray:
        """Apply inputs bit-serially (dac_bits per phase, two's complement when signed) and
        convert each phase's column sums with the ADC before the digital shift-add."""
        assert self.adc_bits is not None
        if layer.in_quant is None:
            # Unquantized inputs have no bit planes: the ADC sees the analog sum once.
            fs = float(np.abs(xg).max(initial=0) * np.abs(cells).sum(axis=0).max(initial=0))
            return _adc(xg @ cells, fs, self.adc_bits)
        _, bits, signed = layer.in_quant
        phases = -(-bits // self.dac_bits)
        u = xg.astype(np.int64) & ((1 << (phases * self.dac_bits)) - 1)
        mask = (1 << self.dac_bits) - 1
        fs = float(mask * np.abs(cells).sum(axis=0).max(initial=0))
        out = np.zeros(xg.shape[:2] + (cells.shape[1],), np.float64)
        for p in range(phases):
            plane = ((u >> (p * self.dac_bits)) & mask).astype(cells.dtype)
            weight = float(1 << (p * self.dac_bits))
            if signed and p == phases - 1:
                top = 1 << (self.dac_bits - 1)
                plane = np.where(plane >= top, plane - (1 << self.dac_bits), plane).astype(
                    cells.dtype)
            out += weight * _adc(plane @ cells, fs, self.adc_bits)
        return out


def simulate(program: Program, feeds: dict[str, np.ndarray], adc_bits: int | None = None,
             progress: Callable[[int], None] | None = None) -> SimResult:
    dac = int(program.target.get("dac_bits", 1))
    return Simulator(program, adc_bits=adc_bits, dac_bits=dac).run(feeds, progress)
