"""The mapping planner: the per-layer lower bound, element-granular pieces shared between
groups and chunks (auto only), and L mapped on its own when cheaper. Every planner layout
is checked by brute force (each product in exactly one activation, zeros elsewhere, every
tile fits) and simulated against onnxruntime."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
from conftest import make_model, ort_run
from cycle_oracle import check_counted_cycles, check_pieces, tap_products
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from imcc.compiler import CompileOptions, compile_graph, write_outputs
from imcc.frontend import import_proto
from imcc.ir.annotations import Strategy
from imcc.passes.base import CompileContext
from imcc.passes.map import MapPass
from imcc.sim.simulator import simulate
from imcc.targets.cost import L_ALONE, best_mapping, best_pair_mapping
from imcc.targets.crossbar import CrossbarTarget
from imcc.targets.emit import emit_program
from imcc.targets.program_io import read_program
from imcc.targets.tiling import (
    LayerGeom,
    biclique_plan,
    column_bound_cycles,
    complete_column_bound,
    complete_pixels,
    im2col_plan,
    lower_bound_cycles,
    min_field,
    node_geometry,
    packed_plan,
    patch_plan,
    planned_plan,
    pw_plan,
    row_bound_cycles,
    segment_plan,
    strip_plan,
)

# ------------------------------------------------------------------------ the lower bound


def test_lower_bound_hand_values():
    g = LayerGeom.from_conv(16, 16, 1, (3, 3), (1, 1), (1, 1), (32, 32))
    # F = 144 -> 2 row passes of 128; 32*32*16 outputs * 4 slices * 2 / 128 columns
    assert lower_bound_cycles(g, 4, 128, 128) == 1024
    # 64 rows x 256 columns: ceil(144 / 64) = 3 passes, 256 columns per activation
    assert column_bound_cycles(g, 4, 64, 256) == 16384 * 4 * 3 // 256
    # ... but an inner input element has 9 pixels x 16 channels x 4 slices = 576 readers,
    # 3 activations' worth of 256 columns: the row bound, over the 34 x 34 padded
    # positions (readers per axis 1, 2, 3 x 30, 2, 1), is ceil(16 * 3076 / 64) = 769
    assert row_bound_cycles(g, 4, 64, 256) == lower_bound_cycles(g, 4, 64, 256) == 769
    # 4 groups: F = 36 fits one pass, whatever the packing
    g4 = LayerGeom.from_conv(16, 16, 4, (3, 3), (1, 1), (1, 1), (32, 32))
    assert lower_bound_cycles(g4, 4, 128, 128) == 512
    # a linear layer 64 -> 10 on one position, 8 slices: one column pass of 80 columns
    assert lower_bound_cycles(LayerGeom.from_linear(64, 10), 8, 128, 128) == 1


def test_min_field_holds_for_every_pixel_set():
    """The isoperimetric bound of the complete-column refinement, against every set of
    pixels of a 3 x 4 grid (4,095 sets) for kernels up to 3x3, strides and dilations 1, 2:
    the receptive fields of n pixels never cover fewer positions than `min_field(n)`, and
    the bound is reached for the sets it is tight on (a 2 x 2 block of a 3x3 kernel, 16)."""
    from itertools import product
    cells = [(y, x) for y in range(3) for x in range(4)]
    for kh, kw, sh, sw, dh, dw in product((1, 2, 3), (1, 3), (1, 2), (1, 2), (1, 2), (1,)):
        # each pixel's field as a bit set of input positions; a set's field is the union of
        # its pixels' (built from the set without its lowest pixel: one OR per set)
        pos: dict[tuple[int, int], int] = {}
        one = [sum(1 << pos.setdefault((y * sh + ty * dh, x * sw + tx * dw), len(pos))
                   for ty in range(kh) for tx in range(kw)) for y, x in cells]
        fields = [0] * (1 << len(cells))
        least: dict[int, int] = {}
        for mask in range(1, 1 << len(cells)):
            low = mask & -mask
            fields[mask] = fields[mask ^ low] | one[low.bit_length() - 1]
            n, f = mask.bit_count(), fields[mask].bit_count()
            least[n] = min(least.get(n, f), f)
        for n, f in least.items():
            assert min_field(kh, kw, sh, sw, dh, dw, n) <= f, (kh, kw, sh, sw, dh, dw, n, f)
    assert min_field(3, 3, 1, 1, 1, 1, 4) == 16 and min_field(3, 3, 1, 1, 1, 1, 5) == 19
    assert min_field(3, 3, 2, 2, 1, 1, 2) == 15


def test_complete_column_bound_hand_values():
    """ResNet-20's g8 m/16 stage-1 R half (8 groups of 2 -> 1 channels, 3x3 on
    32x32, S = 4) on 32x32 arrays: F = 18 <= 32 rows; 16 rows of one group drive at most a
    2 x 2 block of complete pixels (4 x 4 positions x 2 channels = 32 rows), so an activation
    holds at most h = 4 pixels x 4 slices = 16 complete columns, and
    cycles >= ceil(2 * 32768 / (32 + 16)) = 1366 (the column bound: 1024)."""
    g = LayerGeom.from_conv(16, 8, 8, (3, 3), (1, 1), (1, 1), (32, 32))
    assert complete_pixels(g, 32) == 4
    assert column_bound_cycles(g, 4, 32, 32) == 1024
    assert complete_column_bound(g, 4, 32, 32) == lower_bound_cycles(g, 4, 32, 32) == 1366
    # F > rows: the refinement does not apply; a wide enough h: the column bound stands
    big = LayerGeom.from_conv(64, 8, 2, (3, 3), (1, 1), (1, 1), (8, 8))
    assert complete_column_bound(big, 4, 32, 32) == 0
    wide = LayerGeom.from_conv(16, 16, 4, (3, 3), (1, 1), (1, 1), (32, 32))
    assert lower_bound_cycles(wide, 4, 128, 128) == column_bound_cycles(wide, 4, 128, 128)


# Exact optima of tiny layers, one group, 3x3 with padding 1, S = 4, on 32x32 arrays:
# (IC_g, OC_g, stride, output map side, least activations). From
# scripts/exact_layer_optimum.py, an integer program (HiGHS) over every assignment of the
# layer's products to activations, each activation any <= 32 rows and <= 32 columns (so
# below every layout imcc can emit): 8 -> 1 on 2x2 and 4 -> 2 stride 2 on 2x2, 3x3: one
# activation fewer is infeasible and the planner reaches the value; 8 -> 1 on 3x3: the
# program's proved optimum, one below the planner's 8.
EXACT_OPTIMA = [(8, 1, 1, 2, 4), (8, 1, 1, 3, 7), (4, 2, 2, 2, 4), (4, 2, 2, 3, 7)]


def test_bound_meets_exact_optima_of_tiny_layers():
    """The bound is never above the true optimum, and on these layers, where the column
    bound is 2 to 5, the row bound reaches it."""
    for icg, ocg, stride, m, opt in EXACT_OPTIMA:
        g = LayerGeom(ic=icg, oc=ocg, groups=1, kh=3, kw=3, sh=stride, sw=stride, dh=1, dw=1,
                      ho=m, wo=m)
        assert column_bound_cycles(g, 4, 32, 32) < opt
        assert lower_bound_cycles(g, 4, 32, 32) == row_bound_cycles(g, 4, 32, 32) == opt
        assert best_mapping(g, "auto", 32, 32, 4)[1].cycles >= opt


@st.composite
def geoms(draw: st.DrawFn) -> LayerGeom:
    g = draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return LayerGeom(ic=g * draw(st.integers(1, 5)), oc=g * draw(st.integers(1, 5)), groups=g,
                     kh=kh, kw=kw, sh=draw(st.integers(1, 2)), sw=draw(st.integers(1, 2)),
                     dh=draw(st.integers(1, 2)), dw=draw(st.integers(1, 2)),
                     ho=draw(st.integers(1, 9)), wo=draw(st.integers(1, 9)))


arrays = st.tuples(st.integers(4, 96), st.integers(4, 96), st.sampled_from([1, 2, 4, 8]))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(geoms(), arrays, st.integers(1, 12))
def test_no_plan_is_below_the_lower_bound(g, arr, m):
    """Every layout the tiling model, the search or the planner produces is at or above the
    bound (the column bound and its complete-column refinement): channel-granular (with and
    without group packing), pieces for any k, strips, patches, and the searches' choices
    for every request, single layers and low-rank pairs (segments included)."""
    rows, cols, s = arr
    lb = lower_bound_cycles(g, s, rows, cols)
    plans = [im2col_plan(g, rows, cols, s, pack) for pack in (False, True)]
    for i in range(1, 4):
        for j in range(1, 4):
            plans += [p for pack in (False, True) if (p := pw_plan(g, i, j, rows, cols, s, pack))]
            plans += [packed_plan(g, i, j, rows, cols, s, k) for k in (1, 2, 3)
                      if k <= min(rows, cols)]
            if g.dh == g.dw == 1:
                plans += [strip_plan(g, i, j, rows, cols, s, ax) for ax in ("x", "y")]
            plans += [patch_plan(g, i, j, rows, cols, s, (u, v)) for u in (1, 2) for v in (1, 3)]
            plans += [biclique_plan(g, i, j, rows, cols, s, b) for b in (1, 2, 4)]
            plans += [segment_plan(g, i, j, rows, cols, s, ax) for ax in ("x", "y")
                      if (g.kw if ax == "x" else g.kh) <= rows]
            plans.append(planned_plan(g, i, j, rows, cols, s))
    plans += [best_mapping(g, req, rows, cols, s)[1] for req in ("im2col", "sdk", "vw-sdk",
                                                                  "auto")]
    assert all(p.cycles >= lb for p in plans)
    lg = LayerGeom.from_conv(g.oc, m, 1, (1, 1), (1, 1), (1, 1), (g.ho, g.wo))
    for req in ("im2col", "sdk", "vw-sdk", "auto"):
        _, pr, _, pl = best_pair_mapping(g, lg, req, rows, cols, s)
        assert pr.cycles >= lb and pl.cycles >= lower_bound_cycles(lg, s, rows, cols)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(geoms(), arrays)
def test_row_bound_counts_every_elements_readers(g, arr):
    """The row bound restated product by product: every (output pixel, tap) names the padded
    input position it reads; an input element of a position read by `n` pixels has
    `n * OC_g * S` products, at most `cols` of them per activation, so it is a row of
    `ceil(n * OC_g * S / cols)` activations, at most `rows` rows each."""
    rows, cols, s = arr
    readers = Counter((py * g.sh + ty * g.dh, px * g.sw + tx * g.dw)
                      for py in range(g.ho) for px in range(g.wo)
                      for ty in range(g.kh) for tx in range(g.kw))
    row_slots = g.ic * sum(-(-n * g.oc_g * s // cols) for n in readers.values())
    assert row_bound_cycles(g, s, rows, cols) == -(-row_slots // rows)


# --------------------------------------------------------- pieces: brute-force checking


def conv_model(ic, oc, kh, kw, hw, stride, pad, dil, group, seed=0):
    rng = np.random.default_rng(seed)
    # Weights away from 0, so that every weight's cell in the float program is non-zero.
    w = rng.uniform(0.5, 1.5, size=(oc, ic // group, kh, kw)) * rng.choice([-1, 1],
                                                                          (oc, ic // group,
                                                                           kh, kw))
    inits = {"w": w.astype(np.float32), "b": rng.normal(size=(oc,)).astype(np.float32)}
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", kernel_shape=[kh, kw],
                            strides=[stride, stride], pads=[pad] * 4, group=group,
                            dilations=[dil, dil])
    return make_model([node], [("x", ["N", ic, hw, hw])], ["y"], inits)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(icg=st.integers(1, 4), ocg=st.integers(1, 4), g=st.integers(1, 4),
       kh=st.integers(1, 3), kw=st.integers(1, 3), hw=st.integers(3, 8),
       stride=st.integers(1, 2), pad=st.integers(0, 1), dil=st.integers(1, 2),
       i=st.integers(1, 3), j=st.integers(1, 4), k=st.integers(-1, 4),
       rows=st.sampled_from([8, 16, 24, 32]), cols=st.sampled_from([8, 16, 32]))
def test_pieces_cover_every_product_exactly_once(icg, ocg, g, kh, kw, hw, stride, pad, dil,
                                                 i, j, k, rows, cols):
    """Any pieces layout (window i x j, k pieces per array; k = 0 / -1: strips along x / y
    when the layer is undilated) as emitted: every tile fits, every
    (input, output, slice) product lies on exactly one tap cell, every other cell is 0, the
    program computes the conv, and it executes exactly the cycles the plan costs."""
    if hw + 2 * pad < (max(kh, kw) - 1) * dil + 1:
        return
    m = conv_model(icg * g, ocg * g, kh, kw, hw, stride, pad, dil, g)
    tgt = CrossbarTarget(rows=rows, cols=cols, weight_bits=4, cell_bits=1)
    graph = MapPass().run(import_proto(m, "t"), CompileContext(target=tgt)).graph
    (node,) = graph.crossbar_nodes()
    geom = node_geometry(node)
    if k <= 0:
        if dil > 1:
            return
        plan = strip_plan(geom, i, j, rows, cols, tgt.slices_for(4), "x" if k == 0 else "y")
    else:
        plan = packed_plan(geom, i, j, rows, cols, tgt.slices_for(4), k)
    check_emitted_plan(m, graph, node, plan, tgt, icg * g, hw, i * j)


def check_emitted_plan(m, graph, node, plan, tgt, ic, hw, n_pix):
    """Emit `plan` for the one conv of `graph` and check it by brute force (every tile
    fits, every product on exactly one tap cell, zeros elsewhere), by simulation against
    onnxruntime, and by the cycles it executes."""
    rows, cols = tgt.rows, tgt.cols
    node.mapping = plan.choice()
    prog = emit_program(graph, tgt)
    (layer,) = prog.crossbar_layers()
    assert layer.cycles == plan.cycles == check_pieces(layer, rows, cols)
    # The float program keeps each weight in slice 0 (the others are 0): with weights away
    # from 0, each slice-0 product is exactly one non-zero cell and no other cell is set.
    keys, nonzero = tap_products(layer)
    s = len(layer.slice_weights)
    assert np.all(keys[nonzero] % s == 0)
    assert len(np.unique(keys[nonzero])) == nonzero.sum() == layer.weight_params * n_pix
    assert sum(int(np.count_nonzero(t.cells)) for t in layer.tiles) == nonzero.sum()
    x = np.random.default_rng(1).normal(size=(2, ic, hw, hw)).astype(np.float32)
    sim = simulate(prog, {"x": x})
    np.testing.assert_allclose(sim.outputs["y"], ort_run(m, {"x": x})[0], rtol=1e-4, atol=1e-4)
    check_counted_cycles(prog, sim.cycles)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(icg=st.integers(1, 5), ocg=st.integers(1, 3), g=st.integers(1, 4),
       kh=st.integers(1, 3), kw=st.integers(1, 3), hw=st.integers(3, 8),
       stride=st.integers(1, 2), pad=st.integers(0, 1), dil=st.integers(1, 2),
       i=st.integers(1, 4), j=st.integers(1, 5), u=st.integers(1, 3), v=st.integers(1, 3),
       rows=st.sampled_from([8, 12, 16, 32]), cols=st.sampled_from([8, 16, 20, 32]))
def test_patches_cover_every_product_exactly_once(icg, ocg, g, kh, kw, hw, stride, pad, dil,
                                                  i, j, u, v, rows, cols):
    """Any patch layout (window i x j, u x v read offsets per patch, pieces of all groups
    packed into bins), dilated and strided layers included, passes the same brute-force,
    simulation and cycle checks; its bins fit the array and hold every piece once."""
    if hw + 2 * pad < (max(kh, kw) - 1) * dil + 1:
        return
    m = conv_model(icg * g, ocg * g, kh, kw, hw, stride, pad, dil, g)
    tgt = CrossbarTarget(rows=rows, cols=cols, weight_bits=4, cell_bits=1)
    graph = MapPass().run(import_proto(m, "t"), CompileContext(target=tgt)).graph
    (node,) = graph.crossbar_nodes()
    plan = patch_plan(node_geometry(node), i, j, rows, cols, tgt.slices_for(4), (u, v))
    bins = plan.bins()
    pieces = [p for b in bins for p in b]
    assert len(bins) == plan.tiles and len(set(pieces)) == len(pieces)
    maps = plan.piece_maps()
    assert len(pieces) == g * len(maps)
    for b in bins:
        assert sum(len(maps[(rt, ct)][0]) for _, rt, ct in b) <= rows
        assert sum(len(maps[(rt, ct)][1]) for _, rt, ct in b) <= cols
    check_emitted_plan(m, graph, node, plan, tgt, icg * g, hw, i * j)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(icg=st.integers(1, 6), ocg=st.integers(1, 3), g=st.integers(1, 3),
       kh=st.integers(1, 3), kw=st.integers(1, 3), hw=st.integers(3, 8),
       stride=st.integers(1, 2), pad=st.integers(0, 1), dil=st.integers(1, 2),
       i=st.integers(1, 4), j=st.integers(1, 4), b=st.integers(1, 5),
       rows=st.sampled_from([6, 8, 16, 32]), cols=st.sampled_from([8, 16, 32]))
def test_dense_blocks_cover_every_product_exactly_once(icg, ocg, g, kh, kw, hw, stride, pad,
                                                       dil, i, j, b, rows, cols):
    """Any dense-block layout (window i x j, blocks of up to b pixels, all groups' pieces
    packed into bins), dilated and strided layers included: brute-force cover, simulation
    against onnxruntime and cycle checks, and every cell of every piece holds a weight."""
    if hw + 2 * pad < (max(kh, kw) - 1) * dil + 1:
        return
    m = conv_model(icg * g, ocg * g, kh, kw, hw, stride, pad, dil, g)
    tgt = CrossbarTarget(rows=rows, cols=cols, weight_bits=4, cell_bits=1)
    graph = MapPass().run(import_proto(m, "t"), CompileContext(target=tgt)).graph
    (node,) = graph.crossbar_nodes()
    plan = biclique_plan(node_geometry(node), i, j, rows, cols, tgt.slices_for(4), b)
    bins = plan.bins()
    pieces = [p for bn in bins for p in bn]
    assert len(bins) == plan.tiles and len(set(pieces)) == len(pieces)
    check_emitted_plan(m, graph, node, plan, tgt, icg * g, hw, i * j)
    (layer,) = emit_program(graph, tgt).crossbar_layers()
    # dense: the products the tiles hold are all their pieces' cells (float program: slice 0)
    s = len(layer.slice_weights)
    assert sum(int(np.count_nonzero(t.cells)) for t in layer.tiles) * s == \
        sum(len(r) * len(c) for r, c in plan.piece_maps().values()) * g


@settings(max_examples=40, deadline=None, derandomize=True)
@given(icg=st.integers(1, 6), ocg=st.integers(1, 3), g=st.integers(1, 3),
       kh=st.integers(1, 3), kw=st.integers(1, 3), hw=st.integers(3, 8),
       stride=st.integers(1, 2), pad=st.integers(0, 1), dil=st.integers(1, 2),
       i=st.integers(1, 5), j=st.integers(1, 5), axis=st.sampled_from(["x", "y"]),
       rows=st.sampled_from([3, 8, 12, 32]), cols=st.sampled_from([4, 8, 20, 32]))
def test_segments_cover_every_product_exactly_once(icg, ocg, g, kh, kw, hw, stride, pad, dil,
                                                   i, j, axis, rows, cols):
    """Any segments layout (window i x j, either axis, channel chunks and column cuts
    included, all groups' pieces packed into bins), dilated and strided layers included:
    the bins fit and hold every piece once, and the brute-force cover, simulation against
    onnxruntime and cycle checks pass."""
    if hw + 2 * pad < (max(kh, kw) - 1) * dil + 1 or (kw if axis == "x" else kh) > rows:
        return
    m = conv_model(icg * g, ocg * g, kh, kw, hw, stride, pad, dil, g)
    tgt = CrossbarTarget(rows=rows, cols=cols, weight_bits=4, cell_bits=1)
    graph = MapPass().run(import_proto(m, "t"), CompileContext(target=tgt)).graph
    (node,) = graph.crossbar_nodes()
    plan = segment_plan(node_geometry(node), i, j, rows, cols, tgt.slices_for(4), axis)
    bins = plan.bins()
    pieces = [p for b in bins for p in b]
    assert len(bins) == plan.tiles and len(set(pieces)) == len(pieces)
    maps = plan.piece_maps()
    assert len(pieces) == g * len(maps)
    for b in bins:
        assert sum(len(maps[(rt, ct)][0]) for _, rt, ct in b) <= rows
        assert sum(len(maps[(rt, ct)][1]) for _, rt, ct in b) <= cols
    check_emitted_plan(m, graph, node, plan, tgt, icg * g, hw, i * j)


def test_segments_beat_patches():
    """ResNet-20's g4 m/16 stage-2 R half (4 groups of 8 -> 2 channels, 3x3 on 16x16,
    S = 4) on 32x32 arrays: segments over the whole map take 800 activations (a full
    piece: 8 channels x 4 offsets of one input row, times 4 pixel segments of 2 adjacent
    pixels; each column takes 3 activations, one per input row it reads); the best patch
    or strip layout took 896 and the bound is 772."""
    g = LayerGeom.from_conv(32, 8, 4, (3, 3), (1, 1), (1, 1), (16, 16))
    assert segment_plan(g, 16, 16, 32, 32, 4, "x").cycles == 800
    choice, best = best_mapping(g, "auto", 32, 32, 4)
    assert best.cycles == 800 and choice.segments == best.segments != ""
    assert lower_bound_cycles(g, 4, 32, 32) == 772


def test_dense_blocks_reach_the_bound():
    """WRN16-4's g4 m/16 stage-1 R half (4 groups of 16 -> 4 channels, 3x3 on 32x32, S = 4)
    on 32x32 arrays: 2 x 2 windows of dense blocks take 10 arrays per group for 4 pixels,
    10,240 cycles = the column bound (a column's 144 products in 4 full passes and a half);
    the best whole-channel or patch layout takes 12,288."""
    g = LayerGeom.from_conv(64, 16, 4, (3, 3), (1, 1), (1, 1), (32, 32))
    plan = biclique_plan(g, 2, 2, 32, 32, 4, 2)
    assert plan.tiles == 40 and plan.cycles == 10240 == lower_bound_cycles(g, 4, 32, 32)
    choice, best = best_mapping(g, "auto", 32, 32, 4)
    assert best.cycles == 10240 and choice.bicliques == best.bicliques >= 1
    others = [planned_plan(g, i, j, 32, 32, 4) for i in (1, 2, 4) for j in (1, 2, 4)]
    assert min(p.cycles for p in others if not p.bicliques) == 12288


# ------------------------------------------------------------------ auto and the planner


def test_planner_beats_channel_granular_layouts():
    """2 groups of 8 -> 4 channels, 3x3, 8x8 outputs on 32x32 arrays: a 1x2 window reads
    8 x 3 x 4 = 96 input elements per group; whole channels fill 32 rows with 2 channels
    (24 rows), element-granular pieces fill all 32."""
    g = LayerGeom.from_conv(16, 8, 2, (3, 3), (1, 1), (1, 1), (8, 8))
    wins = [pw_plan(g, i, j, 32, 32, 4, True) for i in range(1, 9) for j in range(1, 9)]
    today = min(p.cycles for p in [im2col_plan(g, 32, 32, 4, True), *wins] if p is not None)
    choice, plan = best_mapping(g, "auto", 32, 32, 4)
    assert plan.pieces >= 1 and choice.pieces == plan.pieces
    assert lower_bound_cycles(g, 4, 32, 32) <= plan.cycles < today
    # explicit requests keep the literature's layouts
    for req in ("im2col", "sdk", "vw-sdk"):
        assert best_mapping(g, req, 32, 32, 4)[0].pieces == 0


@settings(max_examples=25, deadline=None, derandomize=True)
@given(icg=st.integers(1, 8), ocg=st.integers(1, 8), g=st.integers(2, 8), hw=st.integers(4, 8),
       stride=st.integers(1, 2), size=st.sampled_from([16, 32]))
def test_auto_planner_programs_are_exact(icg, ocg, g, hw, stride, size):
    """Grouped convs compiled with auto, quantized: the program read back from disk equals
    onnxruntime on compiled.onnx, and executes the cycles the report states."""
    m = conv_model(icg * g, ocg * g, 3, 3, hw, stride, 1, 1, g, seed=icg + ocg)
    x = np.random.default_rng(2).normal(size=(4, icg * g, hw, hw)).astype(np.float32)
    compile_auto_exact(m, x, size)


def compile_auto_exact(m, x, size):
    """`m` compiled with auto on `size x size` arrays, quantized and calibrated on `x`; the
    program read back from disk (returned) must be bit-exact with onnxruntime."""
    tgt = CrossbarTarget(rows=size, cols=size, weight_bits=4, cell_bits=1)
    res = compile_graph(import_proto(m, "t"), CompileOptions(target=tgt, mapping="auto",
                                                             calib=x, verify_each=True), "t")
    return check_bit_exact(res, x)


def check_bit_exact(res, x, tmp=None):
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        out = write_outputs(res, Path(d) / "out")
        prog = read_program(out)
        sim = simulate(prog, {"x": x})
        (name,) = prog.outputs
        ref = ort_run(out / "compiled.onnx", {"x": x})[0]
    # compiled.onnx runs the crossbar arithmetic on integer levels: float rounding only
    # (bit for bit on this platform, as the end-to-end ResNet-20 test states).
    assert np.abs(sim.outputs[name] - ref).max() <= 1e-5
    check_counted_cycles(prog, sim.cycles)
    assert sim.cycles_per_image == res.report["total_cycles"]
    return prog


def pair_model(ic, k, m, g, hw, seed=0):
    """A model that arrived factorized: grouped 3x3 conv (R, g*k outputs) -> 1x1 conv (L)."""
    rng = np.random.default_rng(seed)
    inits = {"wr": rng.normal(size=(g * k, ic // g, 3, 3)).astype(np.float32),
             "wl": rng.normal(size=(m, g * k, 1, 1)).astype(np.float32),
             "bl": rng.normal(size=(m,)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "wr"], ["a"], kernel_shape=[3, 3], pads=[1] * 4,
                              group=g, name="R"),
             helper.make_node("Conv", ["a", "wl", "bl"], ["y"], kernel_shape=[1, 1], name="L")]
    return make_model(nodes, [("x", ["N", ic, hw, hw])], ["y"], inits)


def test_l_on_its_own_is_cheaper_and_exact():
    """16 -> 8 channels in 8 groups (rank 1 per group), then 8 -> 16, on 5x5 and 32x32
    arrays: R's best window is 2x5 (48 cycles), which costs L 60 cycles (3 windows, the
    third half past the map); L alone (im2col) costs 50."""
    ic, k, m, g, hw = 16, 1, 16, 8, 5
    tgt = CrossbarTarget(rows=32, cols=32, weight_bits=4, cell_bits=1)
    rg = LayerGeom.from_conv(ic, g * k, g, (3, 3), (1, 1), (1, 1), (hw, hw))
    lg = LayerGeom.from_conv(g * k, m, 1, (1, 1), (1, 1), (1, 1), (hw, hw))
    cr, pr, cl, pl = best_pair_mapping(rg, lg, "auto", 32, 32, 4)
    assert cl.reason.startswith(L_ALONE) and pr.pw != pl.pw
    assert (pr.cycles, pl.cycles) == (48, 50)
    shared = best_pair_mapping(rg, lg, "vw-sdk", 32, 32, 4)
    assert pr.cycles + pl.cycles < shared[1].cycles + shared[3].cycles
    x = np.random.default_rng(3).normal(size=(4, ic, hw, hw)).astype(np.float32)
    res = compile_graph(import_proto(pair_model(ic, k, m, g, hw), "t"),
                        CompileOptions(target=tgt, mapping="auto", calib=x, verify_each=True),
                        "t")
    prog = check_bit_exact(res, x)
    by_name = {layer.name: layer for layer in prog.crossbar_layers()}
    assert by_name["R"].pw == pr.pw and by_name["L"].pw == pl.pw
    assert by_name["L"].mapping.reason.startswith(L_ALONE)
    assert by_name["L"].mapping.strategy is Strategy.IM2COL
    assert res.report["total_cycles"] == pr.cycles + pl.cycles


def test_program_records_and_checks_the_bound():
    """Each emitted layer records its bound; a program read from disk whose bound is not the
    layer's, or whose tiles fall below it (products nobody computes), is refused."""
    import pytest

    from imcc.errors import DataError
    from imcc.targets.program_check import check_program

    m = conv_model(16, 8, 3, 3, 8, 1, 1, 1, 2)
    tgt = CrossbarTarget(rows=32, cols=32, weight_bits=4, cell_bits=1)
    graph = MapPass().run(import_proto(m, "t"), CompileContext(target=tgt)).graph
    prog = emit_program(graph, tgt)
    (layer,) = prog.crossbar_layers()
    g = LayerGeom.from_conv(16, 8, 2, (3, 3), (1, 1), (1, 1), (8, 8))
    assert layer.lower_bound_cycles == lower_bound_cycles(g, 4, 32, 32) <= layer.cycles
    check_program(prog)
    layer.lower_bound_cycles += 1
    with pytest.raises(DataError, match="not the layer's bound"):
        check_program(prog)
    layer.lower_bound_cycles -= 1
    layer.tiles = layer.tiles[:1]
    layer.mapping = replace(layer.mapping, cycles=None)
    prog.n_arrays = 1
    with pytest.raises(DataError, match="below the layer's lower bound"):
        check_program(prog)


def test_auto_patches_program_is_exact():
    """ResNet-20's g2 m/16 stage-1 R shape (2 groups of 8 -> 1 channels) on a 16x16 map
    and 32x32 arrays: auto takes patches of 2x2 read offsets on the whole map, 260 cycles =
    the row bound (strips, the layout before patches, take 288); the quantized program
    read back from disk equals onnxruntime on compiled.onnx and executes the cycles it
    reports."""
    m = conv_model(16, 2, 3, 3, 16, 1, 1, 1, 2)
    x = np.random.default_rng(4).normal(size=(2, 16, 16, 16)).astype(np.float32)
    prog = compile_auto_exact(m, x, 32)
    (layer,) = prog.crossbar_layers()
    assert layer.mapping.patch == (2, 2) and layer.mapping.pieces == 1
    g = LayerGeom.from_conv(16, 2, 2, (3, 3), (1, 1), (1, 1), (16, 16))
    today = min(p.cycles for p in [im2col_plan(g, 32, 32, 4, True)] + [
        pw_plan(g, i, j, 32, 32, 4, True) or im2col_plan(g, 32, 32, 4, True)
        for i in range(1, 17) for j in range(1, 17)])
    strips = min(strip_plan(g, i, 16, 32, 32, 4, "x").cycles for i in range(1, 17))
    assert layer.lower_bound_cycles == layer.cycles == 260 < strips == 288 < today


def test_auto_segments_program_is_exact():
    """ResNet-20's g4 m/16 stage-3 R shape (4 groups of 8 -> 2 channels) on an 8x8 map and
    32x32 arrays: auto takes segments along the height on a 4x8 window, 208 cycles (the
    best patch layout on windows of 1, 2, 4 or 8 per side takes 256, the bound is 196); the
    quantized program read back from disk is bit-exact with onnxruntime and executes its
    cycles."""
    m = conv_model(32, 8, 3, 3, 8, 1, 1, 1, 4)
    x = np.random.default_rng(5).normal(size=(2, 32, 8, 8)).astype(np.float32)
    prog = compile_auto_exact(m, x, 32)
    (layer,) = prog.crossbar_layers()
    assert layer.mapping.segments == "y" and layer.mapping.pw == (4, 8)
    g = LayerGeom.from_conv(32, 8, 4, (3, 3), (1, 1), (1, 1), (8, 8))
    patches = min(patch_plan(g, i, j, 32, 32, 4, (u, v)).cycles for i in (1, 2, 4, 8)
                  for j in (1, 2, 4, 8) for u in range(1, 5) for v in range(1, 5))
    assert layer.lower_bound_cycles == 196 < layer.cycles == 208 < patches == 256


def test_auto_dense_blocks_program_is_exact():
    """4 groups of 16 -> 4 channels, 3x3 on 6x6, 32x32 arrays: auto takes dense blocks on
    2x2 windows (360 cycles = the column bound); the quantized program read back from disk
    equals onnxruntime on compiled.onnx and executes the cycles it reports."""
    m = conv_model(64, 16, 3, 3, 6, 1, 1, 1, 4)
    x = np.random.default_rng(5).normal(size=(2, 64, 6, 6)).astype(np.float32)
    prog = compile_auto_exact(m, x, 32)
    (layer,) = prog.crossbar_layers()
    assert layer.mapping.bicliques == 2 and layer.pw == (2, 2)
    assert layer.cycles == layer.lower_bound_cycles == 360
