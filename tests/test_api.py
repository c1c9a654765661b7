"""The Python API (`imcc.compile`, `imcc.simulate`, `imcc.check`): typed results, the
same checks as the CLI, clamped-rank warnings, named bundled inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imcc
from imcc.errors import DataError, UsageError
from imcc.report.model import Report


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> imcc.CompiledModel:
    """ResNet-20 unquantized on 128x128 (the fastest full compile), written to a directory."""
    out = tmp_path_factory.mktemp("api") / "r20"
    return imcc.compile("resnet20", quantize=False, output=out)


def test_compile_returns_the_typed_report_it_wrote(small: imcc.CompiledModel) -> None:
    assert small.outdir is not None and (small.outdir / "report.json").is_file()
    written = json.loads((small.outdir / "report.json").read_text())
    assert small.report == Report.from_json(written)
    assert small.cycles == written["total_cycles"] == sum(la.cycles for la in small.report.layers)
    assert small.energy_pj == written["total_energy_pj"]
    assert small.model == "resnet20" and small.warnings == ()
    assert "warnings" not in written


def test_compile_without_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 small: imcc.CompiledModel) -> None:
    monkeypatch.chdir(tmp_path)
    res = imcc.compile("resnet20", quantize=False, write=False)
    assert res.outdir is None and not any(tmp_path.iterdir())
    assert res.cycles == small.cycles
    with pytest.raises(UsageError, match="wrote no output"):
        imcc.simulate(res)


@pytest.mark.parametrize("rank, requested", [("1000", "1000 -> 16"), ("m/100", "0 -> 1")])
def test_a_clamped_rank_is_a_warning_in_the_result_and_report(rank: str, requested: str
                                                              ) -> None:
    res = imcc.compile("resnet20", rank=rank, quantize=False, write=False)
    (w,) = res.warnings
    assert f"rank {rank} clamped on 18 layers" in w and f"{requested} on layer1.0/conv1" in w
    assert res.report.to_json()["warnings"] == [w]
    assert Report.from_json(res.report.to_json()).warnings == (w,)


def test_options_are_checked_before_the_model_is_read(tmp_path: Path) -> None:
    missing = tmp_path / "no-such.onnx"
    with pytest.raises(UsageError, match="64by64"):
        imcc.compile(missing, target="64by64")
    with pytest.raises(UsageError, match="calib-limit"):
        imcc.compile(missing, calib_limit=0)


def test_simulate_a_compiled_result(small: imcc.CompiledModel) -> None:
    sim = imcc.simulate(small, data="cifar10", limit=4)
    assert sim.images == 4 and sim.matches_onnxruntime is True and sim.mismatch is None
    assert sim.cycles_per_image == sim.report_cycles == small.cycles
    assert sim.compiled_top1 is not None and 0 <= sim.compiled_top1 <= 1
    assert set(sim.outputs) and all(len(v) == 4 for v in sim.outputs.values())
    again = imcc.simulate(small.outdir, limit=4)  # a directory; the default data
    assert again.to_json() == sim.to_json()


def test_check_an_outdir_and_refuse_compile_options(small: imcc.CompiledModel,
                                                    tmp_path: Path) -> None:
    budget = tmp_path / "b.toml"
    budget.write_text(f'[budget]\ncycles = {small.cycles}\n[budget.layers."conv1"]\n'
                      f"cycles = {small.report.layers[0].cycles - 1}\n")
    res = imcc.check(small.outdir, budget)
    assert not res.passed
    assert [i.passed for i in res.result.items] == [True, False]
    assert imcc.check(small, budget).result.to_dict() == res.result.to_dict()
    with pytest.raises(UsageError, match=r"already compiled.*\(target\)"):
        imcc.check(small.outdir, budget, target="64x64")
    with pytest.raises(UsageError, match="unknown option targte"):
        imcc.check(small.outdir, budget, targte="64x64")


def test_check_a_model_writes_nothing_without_output(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     small: imcc.CompiledModel) -> None:
    monkeypatch.chdir(tmp_path)
    budget = tmp_path / "b.toml"
    budget.write_text(f"[budget]\ncycles = {small.cycles}\n")
    res = imcc.check("resnet20", budget, quantize=False)
    assert res.passed and res.outdir is None
    assert [p.name for p in tmp_path.iterdir()] == ["b.toml"]


def test_examples_name_the_bundled_inputs() -> None:
    ex = {e.name: e for e in imcc.list_examples()}
    assert {"resnet20": "model", "cifar10": "data"} == {k: v.kind for k, v in ex.items()}
    assert all(e.path.is_file() and e.description for e in ex.values())


def test_a_bad_data_name_is_a_data_error(small: imcc.CompiledModel) -> None:
    with pytest.raises(DataError, match="cifar100: no such file"):
        imcc.simulate(small, data="cifar100")


def test_parse_input_shapes() -> None:
    from imcc.api import parse_input_shapes

    assert parse_input_shapes(["input=1x3x64x64", "2x5"]) == {"input": (1, 3, 64, 64),
                                                               "": (2, 5)}
    for bad in ("input=1x0x3", "input=", "x=a", "1x3x"):
        with pytest.raises(UsageError, match="expected NAME=DIMS"):
            parse_input_shapes([bad])
    with pytest.raises(UsageError, match="given twice"):
        parse_input_shapes(["a=1", "a=2"])
