"""`imcc sweep`: rows, agreement with `imcc compile`, determinism across process counts,
the CSV and the Pareto plot, accuracy with --data, and option errors."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import chip_text, make_model
from onnx import helper

from imcc.compiler import CompileOptions, compile_model
from imcc.dataset import bundled_example_data
from imcc.errors import UsageError
from imcc.passes.lowrank import LowRankPass
from imcc.report.sweep import BASE_COLUMNS, TOP1_COLUMN, pareto_front
from imcc.report.units import log_axis
from imcc.sweep import SweepSpec, plan_sweep, split_list
from imcc.targets.crossbar import CrossbarTarget

# One BLAS thread per process (the sweep's own workers get this anyway): the in-process
# -j 1 run would otherwise be slowed several times by OpenBLAS's spinning threads.
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
TARGETS, RANKS, GROUPS, MAPPINGS = "64x64,128x128", "none,m/2", "1,4", "im2col,auto"
SWEEP = ["sweep", "resnet20", "--targets", TARGETS, "--ranks", RANKS, "--groups", GROUPS,
         "--mappings", MAPPINGS]


def imcc(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imcc.cli", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=600)


def read_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quantized sweep, run once with two worker processes."""
    root = tmp_path_factory.mktemp("sweep")
    proc = imcc(root, *SWEEP, "-j", "2", "-o", "sweep.csv", "--plot", "pareto.html")
    assert proc.returncode == 0, proc.stderr
    return root


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`imcc compile` of one configuration the sweeps below also cover."""
    root = tmp_path_factory.mktemp("compiled")
    proc = imcc(root, "compile", "resnet20", "--target", "128x128", "--rank", "m/2",
                "--groups", "4", "--mapping", "auto", "-o", "c")
    assert proc.returncode == 0, proc.stderr
    return root / "c"


@pytest.mark.slow  # a ResNet-20 sweep
def test_rows_order_and_dedup(swept: Path) -> None:
    rows = read_rows(swept / "sweep.csv")
    # Rank none ignores groups: one groups=1 row per (target, mapping), not two.
    expected = [(t, r, g, m) for t in TARGETS.split(",") for r in RANKS.split(",")
                for g in (["1"] if r == "none" else GROUPS.split(","))
                for m in MAPPINGS.split(",")]
    assert [(r["target"], r["rank"], r["groups"], r["mapping"]) for r in rows] == expected
    assert len(rows) == 12


@pytest.mark.slow  # a ResNet-20 sweep
def test_csv_columns_and_values(swept: Path) -> None:
    text = (swept / "sweep.csv").read_text()
    header, *_ = text.splitlines()
    assert tuple(header.split(",")) == BASE_COLUMNS  # no accuracy column without --data
    for r in read_rows(swept / "sweep.csv"):
        assert int(r["total_cycles"]) > 0 and int(r["n_arrays"]) > 0 and int(r["params"]) > 0
        assert float(r["energy_pj"]) > 0 and float(r["latency_ns"]) > 0
        # the CSV's 6 significant digits
        assert float(r["speedup"]) == pytest.approx(int(r["im2col_cycles"])
                                                    / int(r["total_cycles"]), rel=1e-5)
        if r["rank"] == "none":
            assert (r["factorized_layers"], r["mean_rel_error"]) == ("0", "")
        else:
            assert int(r["factorized_layers"]) > 0 and 0 < float(r["mean_rel_error"]) < 1


@pytest.mark.slow  # a ResNet-20 sweep
def test_auto_never_needs_more_cycles_than_im2col(swept: Path) -> None:
    rows = read_rows(swept / "sweep.csv")
    by_key: dict[tuple[str, str, str], dict[str, int]] = {}
    for r in rows:
        by_key.setdefault((r["target"], r["rank"], r["groups"]), {})[r["mapping"]] = \
            int(r["total_cycles"])
        if r["mapping"] == "im2col":
            assert r["total_cycles"] == r["im2col_cycles"]
    assert len(by_key) == 6
    for key, cyc in by_key.items():
        assert cyc["auto"] <= cyc["im2col"], key
    # Parallel windows pay off on 128x128 arrays for every network here.
    assert all(cyc["auto"] < cyc["im2col"] for (t, _, _), cyc in by_key.items()
               if t == "128x128")


def assert_row_equals_report(row: dict[str, str], rep: dict[str, Any]) -> None:
    assert int(row["total_cycles"]) == rep["total_cycles"]
    assert int(row["im2col_cycles"]) == rep["im2col_cycles"]
    assert int(row["n_arrays"]) == rep["n_arrays"]
    assert int(row["params"]) == rep["weight_params"]
    # Same passes, same floating-point operations: equal to the last bit, not approximately.
    assert float(row["energy_pj"]) == pytest.approx(rep["total_energy_pj"], rel=1e-5)
    assert float(row["latency_ns"]) == pytest.approx(rep["total_latency_ns"], rel=1e-5)
    errors = [la["rel_error"] for la in rep["layers"] if la.get("role") == "R"]
    assert int(row["factorized_layers"]) == len(errors) == rep["lowrank"]["factorized_layers"]
    assert float(row["mean_rel_error"]) == pytest.approx(sum(errors) / len(errors), rel=1e-5)


@pytest.mark.slow  # a ResNet-20 sweep
def test_rows_equal_imcc_compile(swept: Path, compiled: Path) -> None:
    rep = json.loads((compiled / "report.json").read_text())
    (row,) = [r for r in read_rows(swept / "sweep.csv") if (r["target"], r["rank"],
              r["groups"], r["mapping"]) == ("128x128", "m/2", "4", "auto")]
    assert_row_equals_report(row, rep)


# A pipeline the flags cannot build (method=max), with a per-layer rank in the text.
PIPELINE = ("fold-bn,lowrank{rank=m/4,groups=2,layer_ranks={/layer3/layer3.2/conv2/Conv=3}},"
            "quantize{first_last_bits=8,method=max},map{strategy=vw-sdk}")


@pytest.mark.slow  # ResNet-20 sweeps
def test_sweep_with_passes_equals_imcc_compile(tmp_path: Path) -> None:
    """-p: every row runs the given pipeline; only the targets vary."""
    proc = imcc(tmp_path, "sweep", "resnet20", "--targets", "32x32,64x64", "-p", PIPELINE,
                "-j", "1", "-o", "p.csv")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "p.csv")
    assert [(r["target"], r["rank"], r["groups"], r["mapping"]) for r in rows] == \
        [("32x32", "m/4", "2", "vw-sdk"), ("64x64", "m/4", "2", "vw-sdk")]
    proc = imcc(tmp_path, "compile", "resnet20", "--target", "64x64", "-p", PIPELINE,
                "-o", "c")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "c" / "report.json").read_text())
    assert rep["pipeline"].startswith("fold-bn,lowrank{rank=m/4,groups=2,layer_ranks="
                                      "{/layer3/layer3.2/conv2/Conv=3},")
    assert_row_equals_report(rows[1], rep)
    proc = imcc(tmp_path, "sweep", "resnet20", "-p", PIPELINE, "--ranks", "m/2", "-o", "x.csv")
    assert proc.returncode == 2 and "--ranks cannot be combined" in proc.stderr


def test_lowrank_report_json_round_trips(compiled: Path) -> None:
    from imcc.report.model import Report

    text = (compiled / "report.json").read_text()
    typed = Report.from_json(json.loads(text))
    assert typed.lowrank is not None and typed.lowrank.factorized_layers > 0
    assert json.dumps(typed.to_json(), indent=1) + "\n" == text


def test_same_csv_in_process_and_with_workers(swept: Path, tmp_path: Path) -> None:
    proc = imcc(tmp_path, *SWEEP, "-j", "1", "-o", "one.csv", "--json")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "one.csv").read_bytes() == (swept / "sweep.csv").read_bytes()
    doc = json.loads(proc.stdout)
    assert {k: doc[k] for k in ("format", "format_version", "command", "model")} == {
        "format": "imcc-sweep", "format_version": 1, "command": "sweep", "model": "resnet20"}
    rows = doc["rows"]
    assert [r["total_cycles"] for r in rows] == [int(r["total_cycles"])
                                           for r in read_rows(swept / "sweep.csv")]
    assert set(rows[0]) == set(BASE_COLUMNS)


@pytest.mark.slow  # a ResNet-20 sweep
def test_plot_is_self_contained_svg(swept: Path) -> None:
    page = (swept / "pareto.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    for banned in ("<script", "<link", "<img", "<iframe", "@import", "url(", "http:",
                   "https:", " src=", " href="):
        assert banned not in page, banned
    svgs = re.findall(r"<svg\b.*?</svg>", page, flags=re.S)
    assert len(svgs) == 1
    svg = ET.fromstring(svgs[0])  # well-formed markup
    markers = [g for g in svg.iter("g") if g.find("title") is not None]
    assert len(markers) == 12  # one marker (with a hover title) per configuration
    assert "Pareto-optimal configurations" in page
    # Every row on the front is highlighted in the table, and the front is non-empty.
    assert page.count('<tr class="front">') >= 2


@pytest.mark.slow  # a ResNet-20 sweep
def test_top1_with_data_matches_imcc_simulate(compiled: Path, tmp_path: Path) -> None:
    data = str(bundled_example_data())
    proc = imcc(tmp_path, "sweep", "resnet20", "--targets", "128x128", "--ranks", "m/2",
                "--groups", "4", "--mappings", "auto", "--data", data, "--limit", "40",
                "-o", "acc.csv", "--plot", "acc.html")
    assert proc.returncode == 0, proc.stderr
    (row,) = read_rows(tmp_path / "acc.csv")
    assert TOP1_COLUMN in row
    proc = imcc(tmp_path, "simulate", str(compiled), "--data", data, "--limit", "40", "--json")
    assert proc.returncode == 0, proc.stderr
    sim = json.loads(proc.stdout)
    assert float(row[TOP1_COLUMN]) == pytest.approx(sim["ort_compiled_top1"], rel=1e-5)
    assert sim["ort_compiled_top1"] == sim["compiled_top1"]
    assert "float model" in (tmp_path / "acc.html").read_text()


def tiny_model(path: Path) -> Path:
    """conv 3x3 -> relu -> conv 3x3 -> relu -> global pool -> flatten -> gemm, on 4x8x8."""
    rng = np.random.default_rng(0)

    def w(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    m = make_model(
        [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 4),
         helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1] * 4),
         helper.make_node("Relu", ["c2"], ["r2"]),
         helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)],
        [("x", ["N", 4, 8, 8])], ["y"],
        {"w1": w(8, 4, 3, 3), "b1": w(8), "w2": w(8, 8, 3, 3), "b2": w(8), "fw": w(10, 8),
         "fb": w(10)})
    path.write_bytes(m.SerializeToString())
    return path


def test_small_model_sweep_rows_equal_compile(tmp_path: Path) -> None:
    """The sweep end to end on a tiny network (fast; the ResNet-20 sweeps above are slow):
    rows in order, each equal to compiling that configuration."""
    model = tiny_model(tmp_path / "tiny.onnx")
    proc = imcc(tmp_path, "sweep", str(model), "--targets", "16x16,32x32", "--ranks",
                "none,2", "--groups", "1,2", "--mappings", "im2col,auto", "-j", "1",
                "-o", "s.csv")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "s.csv")
    assert [(r["target"], r["rank"], r["groups"], r["mapping"]) for r in rows] == [
        (t, r, g, m) for t in ("16x16", "32x32") for r, g in
        (("none", "1"), ("2", "1"), ("2", "2")) for m in ("im2col", "auto")]
    for row in rows:
        size = CrossbarTarget.parse_shape(row["target"])
        rep = compile_model(str(model), CompileOptions(
            target=CrossbarTarget(*size), mapping=row["mapping"],
            lowrank=LowRankPass(rank=row["rank"], groups=int(row["groups"])))).report
        assert int(row["total_cycles"]) == rep["total_cycles"], row
        assert int(row["im2col_cycles"]) == rep["im2col_cycles"], row
        assert int(row["n_arrays"]) == rep["n_arrays"], row
        assert int(row["params"]) == rep["weight_params"], row
        assert float(row["energy_pj"]) == pytest.approx(rep["total_energy_pj"], rel=1e-5), row
        assert float(row["latency_ns"]) == pytest.approx(rep["total_latency_ns"], rel=1e-5), row
        assert int(row["factorized_layers"]) == (0 if row["rank"] == "none" else 1), row


@pytest.mark.parametrize(("args", "needle"), [
    (["--targets", "64by64"], "64by64"),
    (["--ranks", "none,m/0"], "m/0"),
    (["--mappings", "im2col,diagonal"], "diagonal"),
    (["--groups", "1,,4"], "--groups"),
    (["--jobs", "0"], "--jobs"),
    (["--layer-rank", "nope"], "NAME=SPEC"),
    (["--layer-rank", "/conv1/Conv=m/0"], "divisor"),
    (["-p", "fold-bn,map"], "--no-quantize cannot be combined"),
])
def test_bad_options_exit_2_with_one_line(tmp_path: Path, args: list[str],
                                          needle: str) -> None:
    proc = imcc(tmp_path, "sweep", "resnet20", "--no-quantize", *args, "-o", "x.csv")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imcc: error:") and needle in lines[0]
    assert not (tmp_path / "x.csv").exists()


# ------------------------------------------------------------------ library, in-process


def spec(**kw: Any) -> SweepSpec:
    base: dict[str, Any] = dict(model="resnet20", targets=("64x64",), ranks=("none",),
                                groups=("1",), mappings=("auto",))
    base.update(kw)
    return SweepSpec(**base)


@pytest.mark.parametrize("kw", [
    dict(targets=()), dict(targets=("0x64",)), dict(targets=("64x64", " 64X64 ")),
    dict(ranks=("m/2", "m / 2")), dict(ranks=("half",)), dict(ranks=("-3",)),
    dict(groups=("0",)), dict(groups=("two",)), dict(mappings=("auto", "AUTO")),
    dict(weight_bits=0), dict(cell_bits=8), dict(first_last_bits=1), dict(calib_limit=0),
    dict(limit=5), dict(skip=-1),
])
def test_plan_rejects_bad_values(kw: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        plan_sweep(spec(**kw))


def test_plan_with_policy_and_layer_rank(tmp_path: Path) -> None:
    f = tmp_path / "policy.json"
    f.write_text(json.dumps({"rank": "m/4", "groups": 2,
                             "layers": {"/layer1/layer1.0/conv1/Conv": "none"}}))
    # No --ranks/--groups: the policy's rank and groups, once per target and mapping.
    configs = plan_sweep(spec(targets=("64x64", "128x128"), ranks=None, groups=None,
                              mappings=("auto",), policy=f))
    assert [(c.target.name, c.rank, c.groups) for c in configs] == \
        [("64x64", "m/4", 2), ("128x128", "m/4", 2)]
    lr = configs[0].options.lowrank
    assert lr.layer_ranks == {"/layer1/layer1.0/conv1/Conv": "none"}
    # Listed ranks and groups override the policy's, as --rank/--groups do in compile.
    configs = plan_sweep(spec(ranks=("m/2", "m/8"), groups=("4",), policy=f,
                              layer_rank=("/linear/Gemm=2",)))
    assert [(c.rank, c.groups) for c in configs] == [("m/2", 4), ("m/8", 4)]
    assert configs[0].options.lowrank.layer_ranks == {"/layer1/layer1.0/conv1/Conv": "none",
                                                      "/linear/Gemm": "2"}
    # Rank none keeps the policy's m/4, like `imcc compile --policy f --rank none`.
    with pytest.raises(UsageError, match="same configuration"):
        plan_sweep(spec(ranks=("none", "m/4"), policy=f))


def test_plan_layer_rank_makes_groups_matter_for_rank_none() -> None:
    configs = plan_sweep(spec(ranks=("none",), groups=("1", "4"),
                              layer_rank=("/layer2/layer2.0/conv2/Conv=m/2",)))
    assert [(c.rank, c.groups) for c in configs] == [("none", 1), ("none", 4)]
    assert all(c.options.lowrank.active for c in configs)
    assert len({c.front_key for c in configs}) == 2


def test_plan_passes_varies_only_targets() -> None:
    configs = plan_sweep(spec(targets=("64x64", "128x128"), ranks=None, groups=None,
                              mappings=None, passes=PIPELINE))
    assert [(c.target.name, c.rank, c.groups, c.mapping) for c in configs] == \
        [("64x64", "m/4", 2, "vw-sdk"), ("128x128", "m/4", 2, "vw-sdk")]
    assert configs[0].front_key == configs[1].front_key  # one front for both targets
    for kw in (dict(mappings=("auto",)), dict(groups=("1",)), dict(first_last_bits=8),
               dict(layer_rank=("/linear/Gemm=2",))):
        with pytest.raises(UsageError):
            plan_sweep(spec(**{"ranks": None, "groups": None, "mappings": None,
                               "passes": PIPELINE, **kw}))


def test_plan_dedups_rank_none_and_keeps_list_order() -> None:
    configs = plan_sweep(spec(targets=("128x128", "32x64"), ranks=("m/4", "none", "8"),
                              groups=("2", "1"), mappings=("im2col", "vw-sdk")))
    got = [(c.target.name, c.rank, c.groups, c.mapping) for c in configs]
    assert got[:6] == [("128x128", "m/4", 2, "im2col"), ("128x128", "m/4", 2, "vw-sdk"),
                       ("128x128", "m/4", 1, "im2col"), ("128x128", "m/4", 1, "vw-sdk"),
                       ("128x128", "none", 1, "im2col"), ("128x128", "none", 1, "vw-sdk")]
    assert len(configs) == 2 * (2 + 2 * 2 * 2)
    assert [c.index for c in configs] == list(range(len(configs)))


def test_split_list() -> None:
    assert split_list(" 64x64, 128x128 ", "--targets") == ("64x64", "128x128")
    for bad in ("", " ", "a,", ",a", "a,,b"):
        with pytest.raises(UsageError):
            split_list(bad, "--targets")


def test_pareto_front() -> None:
    cycles = [100, 200, 200, 300, 50, 300]
    error = [0.5, 0.2, 0.3, 0.2, 0.9, 0.0]
    assert pareto_front(cycles, error, higher_is_better=False) == [
        True, True, False, False, True, True]
    acc = [0.5, 0.8, 0.8, 0.9, 0.1, 0.9]
    assert pareto_front(cycles, acc, higher_is_better=True) == [
        True, True, True, True, True, True]
    assert pareto_front([10, 10], [0.5, 0.5], higher_is_better=True) == [True, True]


@pytest.mark.parametrize(("lo", "hi"), [(11_745, 57_857), (10_321, 165_380), (1, 1e9),
                                        (14_593, 14_593), (14_000, 15_000)])
def test_log_axis_covers_the_data_with_few_ticks(lo: float, hi: float) -> None:
    ticks, a, b = log_axis(lo, hi)
    assert a <= lo and hi <= b
    assert 2 <= len(ticks) <= 8
    assert ticks == sorted(ticks) and all(a <= t <= b for t in ticks)


SMALL_CHIP = chip_text(name='"small"', arrays_per_core=8, cores=4,
                       transfer_bits_per_ns=4.0)


def test_sweep_over_chips_rows_equal_compile(tmp_path: Path) -> None:
    """--chips x --chip-arrays: one row per chip size after each configuration, each equal
    to `imcc compile --chip C --chip-arrays N`; the same CSV with two worker processes."""
    from imcc.compiler import options_from_flags
    from imcc.report.sweep import CHIP_COLUMNS

    model = tiny_model(tmp_path / "tiny.onnx")
    chip = tmp_path / "small.toml"
    chip.write_text(SMALL_CHIP)
    args = ["sweep", str(model), "--ranks", "none", "--mappings", "im2col,auto", "--chips",
            str(chip), "--chip-arrays", "10,20,40", "--chip-batch", "4"]
    proc = imcc(tmp_path, *args, "-j", "1", "-o", "s.csv")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "s.csv")
    assert list(rows[0]) == [*BASE_COLUMNS, *CHIP_COLUMNS]
    # the chip's 16x16 arrays are the default target
    assert [(r["target"], r["mapping"], r["chip_arrays"]) for r in rows] == [
        ("16x16", m, n) for m in ("im2col", "auto") for n in ("10", "20", "40")]
    for row in rows:
        c = compile_model(str(model), options_from_flags(
            target=CrossbarTarget(16, 16), mapping=row["mapping"], chip=str(chip),
            chip_arrays=int(row["chip_arrays"]), chip_batch=4)).report["chip"]
        assert row["chip"] == str(chip)
        assert int(row["arrays_used"]) == c["arrays_used"] <= int(row["chip_arrays"])
        assert int(row["segments"]) == c["segments"]
        # the CSV holds 6 significant digits (docs/reports.md, units)
        assert float(row["throughput_ips"]) == pytest.approx(c["throughput_ips"], rel=1e-5)
        assert float(row["chip_latency_ns"]) == pytest.approx(c["latency_ns"], rel=1e-5)
        assert float(row["chip_energy_pj"]) == pytest.approx(c["energy_per_inference_pj"], rel=1e-5)
        assert float(row["write_energy_pj"]) == pytest.approx(c["write_energy_pj"], rel=1e-5)
        assert float(row["area_mm2"]) == pytest.approx(c["area_mm2"], rel=1e-5)
        assert float(row["tops_per_w"]) == pytest.approx(c["tops_per_w"], rel=1e-5)
    assert int(rows[0]["segments"]) > 1 and float(rows[0]["write_energy_pj"]) > 0
    assert int(rows[2]["segments"]) == 1 and float(rows[2]["write_energy_pj"]) == 0
    proc = imcc(tmp_path, *args, "-j", "2", "-o", "s2.csv")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "s2.csv").read_bytes() == (tmp_path / "s.csv").read_bytes()


def test_plan_chip_dimensions() -> None:
    configs = plan_sweep(spec(targets=None, chips=("isaac", "pimcomp-arch-a"),
                              chip_arrays=("100", "200")))
    assert [(c.target.name, c.chip, c.chip_arrays) for c in configs] == [
        ("128x128", "isaac", 100), ("128x128", "isaac", 200),
        ("128x128", "pimcomp-arch-a", 100), ("128x128", "pimcomp-arch-a", 200)]
    assert len({c.back_key for c in configs}) == 1  # one map pass for all four
    assert [c.chip_arrays for c in plan_sweep(spec(targets=None, chips=("isaac",)))] == [16128]
    assert [c.target.name for c in plan_sweep(spec(targets=None))] == ["64x64", "128x128"]


@pytest.mark.parametrize(("kw", "needle"), [
    (dict(chip_arrays=("10",)), "--chip-arrays needs --chips"),
    (dict(chip_batch=4), "--chip-batch needs --chips"),
    (dict(chips=("isaac",)), "chip isaac has 128x128 arrays but the target is 64x64"),
    (dict(targets=None, chips=("isaac", "isaac")), "--chips: 'isaac' repeats"),
    (dict(targets=None, chips=("isaac",), chip_arrays=("10", "0")), "must be >= 1"),
    (dict(targets=None, chips=("isaac",), chip_arrays=("10", "010")), "repeats"),
    (dict(targets=None, chips=("isaac",), chip_batch=0), "--chip-batch must be"),
])
def test_plan_rejects_bad_chip_options(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(UsageError, match=re.escape(needle)):
        plan_sweep(spec(**kw))
