"""Energy and latency of a compiled crossbar program: a read-only analysis (DESIGN.md s. 7).

Every (window, tile) computing cycle of a crossbar layer applies the layer's input bits in
`P = ceil(in_bits / dac_bits)` phases. With `r` active rows and `c` active columns in the
tile, one cycle costs

    E_cycle = P * (r * e_row + r * c * e_cell + c * (E_adc(B) + e_shift_add))
    E_adc(B) = e_adc_8b * adc_scale_per_bit ** (B - 8)

and takes `P * max(t_read, ceil(c / n_adc) / f_adc)`: the array read and the conversion of
its columns by the `n_adc` ADCs it shares overlap, so the slower one sets the phase time.

Buffer traffic. Per window the controller fetches every distinct input element the
window's tiles read -- the union of the tiles' row maps, keyed by (group, c, dy, dx) -- once,
at `in_bits` bits; tiles of the same window reuse it. This is where SDK / VW-SDK save: a
parallel window covering i x j output pixels fetches its (Kh+(i-1)s) x (Kw+(j-1)s) patch
once instead of i*j overlapping Kh x Kw patches. Padding positions inside a window are
counted as fetched (the conservative choice: a controller that synthesises zeros would
fetch fewer). No reuse between windows is assumed. Each output element is written once,
requantized to the target's `act_bits` (the width the next layer reads); partial sums of
row tiles accumulate in the shift-add registers and are not buffer traffic.

Latency model: serial. Arrays are activated one (window, tile) cycle at a time, the same
conservative model as the cycle count (DESIGN.md s. 3), so a layer's latency is the sum of
its cycle latencies and the program's latency is the sum over crossbar layers. Digital
steps between crossbar layers (ReLU, Add, pooling) are not costed.

`in_bits` is the layer's own input quantization width when the program is quantized
(`CrossbarLayer.in_quant`), else the target's `act_bits`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from imcc.analysis.tech import TechProfile
from imcc.errors import UsageError
from imcc.report.units import BREAKDOWN_KEYS
from imcc.targets.crossbar import CrossbarTarget
from imcc.targets.program import CrossbarLayer, Program


@dataclass(frozen=True)
class LayerEnergy:
    """Energy (pJ) and latency (ns) of one crossbar layer. `breakdown` sums to `energy_pj`."""

    name: str
    energy_pj: float
    latency_ns: float
    breakdown: dict[str, float]
    phases: int               # input-bit phases per cycle
    inputs_per_window: int    # distinct input elements fetched per window
    buffer_bits: int          # total bits read from and written to the buffer

    def to_dict(self) -> dict[str, object]:
        """The per-layer keys of report.json."""
        return {"energy_pj": self.energy_pj, "latency_ns": self.latency_ns,
                "energy_breakdown": dict(self.breakdown)}


@dataclass(frozen=True)
class EnergyReport:
    tech: str
    adc_bits: int
    layers: list[LayerEnergy]
    total_energy_pj: float
    total_latency_ns: float

    @property
    def breakdown(self) -> dict[str, float]:
        """Whole-program energy per component (pJ)."""
        return {k: float(sum(layer.breakdown[k] for layer in self.layers))
                for k in BREAKDOWN_KEYS}

    def layer(self, name: str) -> LayerEnergy:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


def _layer_in_bits(layer: CrossbarLayer, target: CrossbarTarget) -> int:
    return layer.in_quant[1] if layer.in_quant is not None else target.act_bits


def _distinct_inputs(layer: CrossbarLayer) -> int:
    """Distinct (group, c, dy, dx) elements one window reads over all of its tiles."""
    tiles = [t for t in layer.tiles if t.rows.shape[0]]
    if not tiles:
        return 0
    # One mixed-radix integer per row, built tile by tile (a stacked (rows, 4) int64 copy
    # of VGG-11's classifier is 100 MB), then a 1-D unique (np.unique(axis=0) sorts rows
    # as structured values: seconds on an ImageNet-sized layer).
    lo = np.min([t.rows.min(axis=0) for t in tiles], axis=0).astype(np.int64)
    hi = np.max([t.rows.max(axis=0) for t in tiles], axis=0).astype(np.int64)
    g_lo, g_hi = min(t.group for t in tiles), max(t.group for t in tiles)
    radix = hi - lo + 1
    keys = []
    for t in tiles:
        key = np.full(t.rows.shape[0], t.group - g_lo, np.int64)
        for col in range(t.rows.shape[1]):
            key = key * radix[col] + (t.rows[:, col].astype(np.int64) - lo[col])
        keys.append(key)
    assert (g_hi - g_lo + 1) * int(np.prod(radix)) < 1 << 62  # no overflow of the keys
    return int(np.unique(np.concatenate(keys)).shape[0])


def analyze_layer(layer: CrossbarLayer, target: CrossbarTarget, tech: TechProfile,
                  adc_bits: int) -> LayerEnergy:
    """Energy and latency of one crossbar layer; see the module docstring for the model."""
    in_bits = _layer_in_bits(layer, target)
    phases = math.ceil(in_bits / target.dac_bits)
    windows = layer.n_windows
    # Per-tile activity as arrays; one layer has at most a few hundred tiles, and every
    # window activates the same tiles, so per-layer sums times the window count suffice.
    r = np.array([t.rows.shape[0] for t in layer.tiles], dtype=np.float64)
    c = np.array([t.cols.shape[0] for t in layer.tiles], dtype=np.float64)
    scale = float(windows * phases)
    cells = scale * float(np.sum(r * c)) * tech.e_cell_fj * 1e-3
    rows = scale * float(np.sum(r)) * tech.e_row_pj
    adc = scale * float(np.sum(c)) * tech.e_adc_pj(adc_bits)
    shift_add = scale * float(np.sum(c)) * tech.e_shift_add_pj

    n_in = _distinct_inputs(layer)
    n_out = math.prod(layer.out_shape)
    buffer_bits = windows * n_in * in_bits + n_out * target.act_bits
    buffer = buffer_bits * tech.e_buffer_pj_per_bit

    conv_ns = np.ceil(c / tech.n_adc_per_array) / tech.f_adc_ghz
    latency = scale * float(np.sum(np.maximum(tech.t_read_ns, conv_ns)))

    # In the order (and with the keys) of BREAKDOWN_KEYS.
    breakdown = {"cells": cells, "row_drivers": rows, "adc": adc, "shift_add": shift_add,
                 "buffer": float(buffer)}
    return LayerEnergy(name=layer.name, energy_pj=float(sum(breakdown.values())),
                       latency_ns=latency, breakdown=breakdown, phases=phases,
                       inputs_per_window=n_in, buffer_bits=int(buffer_bits))


def analyze_energy(program: Program, target: CrossbarTarget, tech: TechProfile,
                   adc_bits: int | None = None) -> EnergyReport:
    """Energy and latency of every crossbar layer of `program` on `target` with the costs of
    `tech`. `adc_bits` overrides `target.adc_bits` for the ADC cost (a what-if knob).

    Assumes serial execution: one array activation at a time, as in the cycle count, so
    latencies add over (window, tile) cycles and over layers."""
    bits = target.adc_bits if adc_bits is None else adc_bits
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise UsageError(f"adc-bits must be an integer in [1, 16], got {bits!r}")
    layers = [analyze_layer(layer, target, tech, bits) for layer in program.crossbar_layers()]
    return EnergyReport(tech=tech.name, adc_bits=bits, layers=layers,
                        total_energy_pj=float(sum(layer.energy_pj for layer in layers)),
                        total_latency_ns=float(sum(layer.latency_ns for layer in layers)))
