"""DESIGN.md section 3's closed-form cycle formulas, written independently of imcc's tiling
model so that tests can check the simulator's counted activations against them.

The planner's layouts (`mapping.pieces >= 1`: element-granular pieces shared between
groups and chunks) have no closed form; for them the oracle checks the emitted tiles by
brute force instead (`check_pieces`): every tile fits the array, every product the layer
needs (group, input channel, kernel tap, output channel, window pixel, slice) lies on some
(row, column) pair of some tile whose positions make it that tap, none lies on two such
pairs with a non-zero cell, and no layout is below the lower bound
`ceil(Ho*Wo*OC*S*ceil(Kh*Kw*IC_g/AR)/AC)`; the cycles are then windows x tiles counted."""

from __future__ import annotations

from math import ceil, prod

import numpy as np

from imcc.targets.program import CrossbarLayer, Program


def _dims(layer: CrossbarLayer) -> tuple[int, int, int, int]:
    if layer.op == "Conv":
        return layer.in_shape[0], layer.out_shape[0], layer.out_shape[1], layer.out_shape[2]
    return layer.in_shape[-1], layer.out_shape[-1], prod(layer.in_shape[:-1]), 1


def tap_products(layer: CrossbarLayer) -> tuple[np.ndarray, np.ndarray]:
    """Per (tile, row, column) pair that is a kernel tap of its column's pixel in the same
    group: the product's key (c, ky, kx, oc, py, px, s) as one integer, and whether the
    cell holds a non-zero level."""
    ic, oc, _, _ = _dims(layer)
    g = layer.groups
    icg, ocg = ic // g, oc // g
    kh, kw = layer.kernel
    sh, sw = layer.stride
    dh, dw = layer.dilation
    i, j = layer.mapping.pw
    s = len(layer.slice_weights)
    keys, nonzero = [], []
    for t in layer.tiles:
        r, c = t.rows.astype(np.int64), t.cols.astype(np.int64)
        same = (r[:, 0:1] // icg) == (c[None, :, 0] // ocg)
        ky_num = r[:, 1:2] - c[None, :, 1] * sh
        kx_num = r[:, 2:3] - c[None, :, 2] * sw
        ok = same & (ky_num % dh == 0) & (kx_num % dw == 0) & (ky_num >= 0) & (kx_num >= 0) \
            & (ky_num // dh < kh) & (kx_num // dw < kw)
        ri, ci = np.nonzero(ok)
        ky, kx = ky_num[ri, ci] // dh, kx_num[ri, ci] // dw
        key = (((((r[ri, 0] * kh + ky) * kw + kx) * oc + c[ci, 0]) * i + c[ci, 1]) * j
               + c[ci, 2]) * s + c[ci, 3]
        keys.append(key)
        nonzero.append(t.cells[ri, ci] != 0)
    return np.concatenate(keys), np.concatenate(nonzero)


def check_pieces(layer: CrossbarLayer, rows: int, cols: int) -> int:
    """The brute-force check of a planner layer (module docstring); returns its cycles."""
    ic, oc, ho, wo = _dims(layer)
    g = layer.groups
    icg = ic // g
    kh, kw = layer.kernel
    i, j = layer.mapping.pw
    s = len(layer.slice_weights)
    for t in layer.tiles:
        assert t.rows.shape[0] <= rows and t.cols.shape[0] <= cols, "a tile overflows"
    keys, nonzero = tap_products(layer)
    need = ic * kh * kw * (oc // g) * i * j * s  # every (c, tap, oc of c's group, pixel, s)
    assert len(np.unique(keys)) == need, "some product lies in no activation"
    _, counts = np.unique(keys[nonzero], return_counts=True)
    assert counts.size == 0 or counts.max() == 1, "a product lies in two activations"
    cycles = ceil(ho / i) * ceil(wo / j) * len(layer.tiles)
    assert cycles >= ceil(ho * wo * oc * s * ceil(kh * kw * icg / rows) / cols)
    return cycles


def oracle_cycles(layer: CrossbarLayer, rows: int, cols: int) -> int:
    """Cycles per sample of an emitted layer for its recorded mapping, from the formulas:
    im2col `Ho*Wo * groups * ceil(Kh*Kw*IC_g / AR) * ceil(OC_g*S / AC)`; a parallel window
    `ceil(Ho/i)*ceil(Wo/j) * groups * ceil(IC_g/ICt) * ceil(OC_g/OCt)`; with `gp` groups
    packed on one array's block diagonal, `groups` becomes `ceil(groups/gp)`."""
    if layer.mapping.pieces:
        return check_pieces(layer, rows, cols)
    ic, oc, ho, wo = _dims(layer)
    g = layer.groups
    icg, ocg = ic // g, oc // g
    kh, kw = layer.kernel
    s = len(layer.slice_weights)
    gsets = ceil(g / layer.mapping.group_pack)
    i, j = layer.mapping.pw
    if layer.mapping.strategy.value == "im2col":
        return ho * wo * gsets * ceil(kh * kw * icg / rows) * ceil(ocg * s / cols)
    pwh = (kh - 1) * layer.dilation[0] + 1 + (i - 1) * layer.stride[0]
    pww = (kw - 1) * layer.dilation[1] + 1 + (j - 1) * layer.stride[1]
    ict = min(icg, rows // (pwh * pww))
    oct_ = min(ocg, cols // (i * j * s))
    assert ict > 0 and oct_ > 0, "an infeasible window was emitted"
    return ceil(ho / i) * ceil(wo / j) * gsets * ceil(icg / ict) * ceil(ocg / oct_)


def check_counted_cycles(program: Program, counted: dict[str, int]) -> None:
    """The simulator's counted activations equal the oracle for every layer, and equal the
    cycles the program (and so the report) declares."""
    rows, cols = program.target["rows"], program.target["cols"]
    layers = program.crossbar_layers()
    assert set(counted) == {layer.name for layer in layers}
    for layer in layers:
        want = oracle_cycles(layer, rows, cols)
        assert counted[layer.name] == want, (layer.name, counted[layer.name], want)
        assert layer.cycles == want
