"""DESIGN.md section 3's closed-form cycle formulas, written independently of imcc's tiling
model so that tests can check the simulator's counted activations against them."""

from __future__ import annotations

from math import ceil, prod

from imcc.targets.program import CrossbarLayer, Program


def oracle_cycles(layer: CrossbarLayer, rows: int, cols: int) -> int:
    """Cycles per sample of an emitted layer for its recorded mapping, from the formulas:
    im2col `Ho*Wo * groups * ceil(Kh*Kw*IC_g / AR) * ceil(OC_g*S / AC)`; a parallel window
    `ceil(Ho/i)*ceil(Wo/j) * groups * ceil(IC_g/ICt) * ceil(OC_g/OCt)`; with `gp` groups
    packed on one array's block diagonal, `groups` becomes `ceil(groups/gp)`."""
    if layer.op == "Conv":
        ic, (oc, ho, wo) = layer.in_shape[0], layer.out_shape
    else:
        ic, oc = layer.in_shape[-1], layer.out_shape[-1]
        ho, wo = prod(layer.in_shape[:-1]), 1
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
