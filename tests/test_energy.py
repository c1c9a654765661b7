"""Energy/latency analysis on hand-built crossbar programs, and tech-profile loading."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from imcc.analysis.energy import BREAKDOWN_KEYS, analyze_energy
from imcc.analysis.tech import BUILTIN_TECHS, TechProfile, load_tech
from imcc.errors import DataError, UsageError
from imcc.ir.annotations import MappingChoice, Strategy
from imcc.targets.crossbar import CrossbarTarget
from imcc.targets.program import CrossbarLayer, Program, Tile

TARGET = CrossbarTarget()  # 128x128, 4-bit weights on 1-bit cells, 4-bit acts, 1-bit DAC
ISAAC = load_tech("isaac")


def make_tile(rows: list[tuple[int, int, int]], n_cols: int, group: int = 0,
              array: int = 0) -> Tile:
    r = np.array(rows, dtype=np.int32).reshape(-1, 3)
    cols = np.array([(k // 4, 0, 0, k % 4) for k in range(n_cols)], dtype=np.int32)
    cols = cols.reshape(-1, 4)
    return Tile(array=array, group=group, row_tile=0, col_tile=0, rows=r, cols=cols,
                cells=np.zeros((r.shape[0], cols.shape[0]), dtype=np.int8))


def make_layer(tiles: list[Tile], windows: tuple[int, int], out_shape: tuple[int, ...],
               pw: tuple[int, int] = (1, 1), name: str = "conv",
               in_quant: tuple[float, int, bool] | None = None) -> CrossbarLayer:
    strategy = Strategy.IM2COL if pw == (1, 1) else Strategy.VW_SDK
    return CrossbarLayer(
        name=name, op="Conv", input="x", output="y", in_shape=(1, 6, 6), out_shape=out_shape,
        kernel=(3, 3), stride=(1, 1), dilation=(1, 1), pads=(0, 0, 0, 0), groups=1,
        mapping=MappingChoice(strategy, pw), windows=windows, tiles=tiles,
        slice_weights=TARGET.slice_weights(), out_scale=np.ones(out_shape[0], np.float32),
        bias=None, in_quant=in_quant)


def program(*layers: CrossbarLayer) -> Program:
    return Program(model="t", target={}, quantized=True, inputs=[("x", (1, 1, 6, 6))],
                   outputs=["y"], steps=list(layers))


def patch(h: int, w: int, c: int = 0) -> list[tuple[int, int, int]]:
    return [(c, dy, dx) for dy in range(h) for dx in range(w)]


def im2col_3x3() -> CrossbarLayer:
    """3x3 conv, 1 input and 1 output channel, 4x4 output, im2col: 16 windows x 1 tile of
    9 rows x 4 slice columns."""
    return make_layer([make_tile(patch(3, 3), 4)], windows=(4, 4), out_shape=(1, 4, 4))


def sdk_2x2() -> CrossbarLayer:
    """The same conv with a 2x2 parallel window: 4 windows x 1 tile of 16 rows (the 4x4
    input patch) x 16 columns (4 pixels x 4 slices)."""
    tile = make_tile(patch(4, 4), 16)
    tile.cols = np.array([(0, py, px, s) for py in range(2) for px in range(2)
                          for s in range(4)], dtype=np.int32)
    return make_layer([tile], windows=(2, 2), out_shape=(1, 4, 4), pw=(2, 2))


def tech(**overrides: float) -> TechProfile:
    base = dict(vars(ISAAC))
    base.update(overrides)
    return TechProfile(**base)


# ---------------------------------------------------------------- the energy model

def test_cycle_energy_matches_hand_computation() -> None:
    rep = analyze_energy(program(im2col_3x3()), TARGET, ISAAC)
    (layer,) = rep.layers
    p, r, c, windows = 4, 9, 4, 16  # P = ceil(4 / 1)
    assert layer.phases == p
    bd = layer.breakdown
    assert bd["row_drivers"] == pytest.approx(windows * p * r * 0.417)
    assert bd["cells"] == pytest.approx(windows * p * r * c * 1.8e-3)
    assert bd["adc"] == pytest.approx(windows * p * c * 1.67)
    assert bd["shift_add"] == pytest.approx(windows * p * c * 0.021)
    e_cycle = p * (r * 0.417 + r * c * 1.8e-3 + c * (1.67 + 0.021))
    assert windows * e_cycle == pytest.approx(layer.energy_pj - bd["buffer"])
    # buffer: 9 inputs x 4 bits per window x 16 windows, plus 16 outputs x 4 bits
    assert layer.buffer_bits == 16 * 9 * 4 + 16 * 4
    assert bd["buffer"] == pytest.approx(layer.buffer_bits * 0.08)
    assert sum(bd.values()) == pytest.approx(layer.energy_pj)
    assert set(bd) == set(BREAKDOWN_KEYS)
    assert rep.total_energy_pj == pytest.approx(layer.energy_pj)


def test_latency_serial_read_bound_and_adc_bound(tmp_path: Path) -> None:
    rep = analyze_energy(program(im2col_3x3()), TARGET, ISAAC)
    # ISAAC: max(100 ns, ceil(4 / 1) / 1.28 GS/s) = 100 ns per phase, 4 phases, 16 cycles
    assert rep.layers[0].latency_ns == pytest.approx(16 * 4 * 100.0)
    assert rep.total_latency_ns == pytest.approx(6400.0)
    # ADC-bound: 4 columns on 1 ADC at 0.5 GS/s = 8 ns > 1 ns read
    fast = tech(t_read_ns=1.0, n_adc_per_array=1, f_adc_ghz=0.5)
    assert analyze_energy(program(im2col_3x3()), TARGET, fast).total_latency_ns == \
        pytest.approx(16 * 4 * 8.0)
    # two ADCs halve the conversion time
    two = tech(t_read_ns=1.0, n_adc_per_array=2, f_adc_ghz=0.5)
    assert analyze_energy(program(im2col_3x3()), TARGET, two).total_latency_ns == \
        pytest.approx(16 * 4 * 4.0)


def test_layers_and_tiles_add_up_serially() -> None:
    two_tiles = make_layer([make_tile(patch(3, 3), 4), make_tile(patch(3, 3), 4, array=1)],
                           windows=(4, 4), out_shape=(2, 4, 4), name="two")
    rep = analyze_energy(program(im2col_3x3(), two_tiles), TARGET, ISAAC)
    assert rep.layers[1].latency_ns == pytest.approx(2 * rep.layers[0].latency_ns)
    assert rep.total_latency_ns == pytest.approx(3 * rep.layers[0].latency_ns)
    assert rep.total_energy_pj == pytest.approx(sum(la.energy_pj for la in rep.layers))
    assert rep.layer("two") is rep.layers[1]
    assert sum(rep.breakdown.values()) == pytest.approx(rep.total_energy_pj)


def test_doubling_columns_doubles_adc_energy() -> None:
    one = make_layer([make_tile(patch(3, 3), 8)], windows=(4, 4), out_shape=(2, 4, 4))
    two = make_layer([make_tile(patch(3, 3), 16)], windows=(4, 4), out_shape=(4, 4, 4))
    e1 = analyze_energy(program(one), TARGET, ISAAC).layers[0].breakdown
    e2 = analyze_energy(program(two), TARGET, ISAAC).layers[0].breakdown
    assert e2["adc"] == pytest.approx(2 * e1["adc"])
    assert e2["shift_add"] == pytest.approx(2 * e1["shift_add"])
    assert e2["cells"] == pytest.approx(2 * e1["cells"])
    assert e2["row_drivers"] == pytest.approx(e1["row_drivers"])  # same rows driven


def test_sdk_fetches_fewer_input_bits_than_im2col() -> None:
    im2col = analyze_energy(program(im2col_3x3()), TARGET, ISAAC).layers[0]
    sdk = analyze_energy(program(sdk_2x2()), TARGET, ISAAC).layers[0]
    assert im2col.inputs_per_window == 9
    assert sdk.inputs_per_window == 16
    out_bits = 16 * 4
    assert im2col.buffer_bits == 9 * 16 * 4 + out_bits    # 144 input fetches
    assert sdk.buffer_bits == 16 * 4 * 4 + out_bits       # 64 input fetches
    assert sdk.breakdown["buffer"] < im2col.breakdown["buffer"]


def test_distinct_inputs_union_over_tiles_keyed_by_group() -> None:
    # Column tiles of one window re-read the same rows: fetched once.
    same = make_layer([make_tile(patch(3, 3), 4), make_tile(patch(3, 3), 4)],
                      windows=(1, 1), out_shape=(2, 1, 1))
    # Row tiles read disjoint channels: both fetched.
    split = make_layer([make_tile(patch(3, 3, c=0), 4), make_tile(patch(3, 3, c=1), 4)],
                       windows=(1, 1), out_shape=(1, 1, 1))
    # Same group-relative channel in two groups: two distinct input channels.
    grouped = make_layer([make_tile(patch(3, 3), 4, group=0),
                          make_tile(patch(3, 3), 4, group=1)],
                         windows=(1, 1), out_shape=(2, 1, 1))
    got = [analyze_energy(program(la), TARGET, ISAAC).layers[0].inputs_per_window
           for la in (same, split, grouped)]
    assert got == [9, 18, 18]


def test_layer_input_bits_set_the_phases() -> None:
    eight = make_layer([make_tile(patch(3, 3), 4)], windows=(4, 4), out_shape=(1, 4, 4),
                       in_quant=(0.1, 8, False))
    four = analyze_energy(program(im2col_3x3()), TARGET, ISAAC).layers[0]
    e8 = analyze_energy(program(eight), TARGET, ISAAC).layers[0]
    assert e8.phases == 8
    assert e8.breakdown["adc"] == pytest.approx(2 * four.breakdown["adc"])
    assert e8.latency_ns == pytest.approx(2 * four.latency_ns)
    dac2 = CrossbarTarget(dac_bits=2)
    assert analyze_energy(program(im2col_3x3()), dac2, ISAAC).layers[0].phases == 2


def test_adc_energy_grows_with_adc_bits() -> None:
    prog = program(im2col_3x3())
    adc = [analyze_energy(prog, TARGET, ISAAC, adc_bits=b).layers[0].breakdown["adc"]
           for b in (4, 6, 8, 10)]
    assert adc == sorted(adc) and len(set(adc)) == 4
    assert adc[3] / adc[2] == pytest.approx(1.18 ** 2)
    assert analyze_energy(prog, CrossbarTarget(adc_bits=6), ISAAC).layers[0].breakdown[
        "adc"] == pytest.approx(adc[1])
    assert analyze_energy(prog, TARGET, ISAAC, adc_bits=6).adc_bits == 6
    with pytest.raises(UsageError):
        analyze_energy(prog, TARGET, ISAAC, adc_bits=0)


def test_neurosim_is_cheaper_than_isaac() -> None:
    prog = program(im2col_3x3(), sdk_2x2())
    isaac = analyze_energy(prog, TARGET, ISAAC)
    neuro = analyze_energy(prog, TARGET, load_tech("neurosim"))
    assert neuro.total_energy_pj < isaac.total_energy_pj
    assert neuro.breakdown["adc"] < isaac.breakdown["adc"] / 30
    assert neuro.tech == "neurosim" and isaac.tech == "isaac"


def test_resnet_sized_program() -> None:
    # ~ResNet-20 scale: 21 layers, up to 36 full tiles each, 1024 windows. (Its speed is
    # part of `imcc compile`, measured by benchmarks/bench_compile.py, not asserted here.)
    layers = [make_layer([make_tile(patch(3, 3, c=c % 14) * 14, 128, array=t)
                          for t in range(36)], windows=(32, 32), out_shape=(64, 32, 32),
                         name=f"l{i}") for i, c in enumerate(range(21))]
    rep = analyze_energy(program(*layers), TARGET, ISAAC)
    assert len(rep.layers) == 21 and math.isfinite(rep.total_energy_pj)


# ---------------------------------------------------------------- tech profiles

def test_builtin_profiles_load_with_provenance() -> None:
    assert BUILTIN_TECHS == ("isaac", "neurosim")
    assert load_tech() == ISAAC
    assert (ISAAC.t_read_ns, ISAAC.e_adc_8b_pj, ISAAC.e_row_pj, ISAAC.e_cell_fj,
            ISAAC.e_shift_add_pj, ISAAC.e_buffer_pj_per_bit) == (100.0, 1.67, 0.417, 1.8,
                                                                 0.021, 0.08)
    neuro = load_tech("neurosim")
    assert ISAAC.e_adc_8b_pj / neuro.e_adc_8b_pj == pytest.approx(40, rel=0.05)
    for t in (ISAAC, neuro):
        assert t.source and isinstance(t.n_adc_per_array, int)
        assert t.e_adc_pj(8) == t.e_adc_8b_pj


def _write_tech(tmp_path: Path, text: str) -> str:
    p = tmp_path / "mytech.toml"
    p.write_text(text)
    return str(p)


def _tech_text(**overrides: object) -> str:
    values: dict[str, object] = {k: v for k, v in vars(ISAAC).items()}
    values.update(name="mine", source="test")
    values.update(overrides)
    lines = []
    for k, v in values.items():
        if v is None:
            continue
        if isinstance(v, bool):
            lines.append(f"{k} = {str(v).lower()}")
        elif isinstance(v, str):
            lines.append(f'{k} = "{v}"')
        else:
            lines.append(f"{k} = {v!r}")
    return "\n".join(lines) + "\n"


def test_custom_tech_file_is_honoured(tmp_path: Path) -> None:
    t = load_tech(_write_tech(tmp_path, _tech_text(e_adc_8b_pj=3.34, n_adc_per_array=2)))
    assert t.name == "mine" and t.e_adc_8b_pj == 3.34 and t.n_adc_per_array == 2
    prog = program(im2col_3x3())
    a = analyze_energy(prog, TARGET, ISAAC).layers[0].breakdown["adc"]
    b = analyze_energy(prog, TARGET, t).layers[0].breakdown["adc"]
    assert b == pytest.approx(2 * a)
    # integers are accepted where floats are expected
    assert load_tech(_write_tech(tmp_path, _tech_text(t_read_ns=50))).t_read_ns == 50.0


@pytest.mark.parametrize(("text", "needle"), [
    ("name = \"x\"\nt_read_ns = = 3\n", "malformed TOML"),
    (_tech_text(e_dac_pj=1.0), "unknown key e_dac_pj"),
    (_tech_text(e_cell_fj=None), "missing key e_cell_fj"),
    (_tech_text(e_row_pj=-0.4), "key e_row_pj must be >= 0"),
    (_tech_text(f_adc_ghz=0.0), "key f_adc_ghz must be > 0"),
    (_tech_text(t_read_ns="fast"), "key t_read_ns must be a number"),
    (_tech_text(n_adc_per_array=1.5), "key n_adc_per_array must be an integer"),
    (_tech_text(e_adc_8b_pj=True), "key e_adc_8b_pj must be a number"),
    (_tech_text(name=""), "key name must be a non-empty string"),
    (_tech_text(adc_scale_per_bit=float("nan")), "must be finite"),
], ids=["malformed", "unknown", "missing", "negative", "zero-rate", "string", "float-int",
        "bool", "empty-name", "nan"])
def test_bad_tech_files_raise_data_error(tmp_path: Path, text: str, needle: str) -> None:
    path = _write_tech(tmp_path, text)
    with pytest.raises(DataError) as exc:
        load_tech(path)
    msg = str(exc.value)
    assert needle in msg and path in msg and "\n" not in msg
    assert exc.value.exit_code == 4


def test_unknown_tech_name_lists_builtins(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="isaac, neurosim"):
        load_tech("isaak")
    with pytest.raises(DataError, match="no such file"):
        load_tech(str(tmp_path))  # a directory is not a tech file
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match="not UTF-8"):
        load_tech(str(bad))
