"""`imcc sweep` on dask.distributed (`--scheduler`) and the streamed, resumable CSV
(`--resume`): a cluster's rows equal the serial sweep's, and an interrupted sweep resumed
writes the same CSV as an uninterrupted one."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
from test_sweep import tiny_model

from imcc.errors import DataError, UsageError
from imcc.report.sweep import to_csv
from imcc.sweep import SweepSpec, run_sweep, sweep_to_csv
from imcc.sweep_log import settings_path

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


class Stop(Exception):
    """Raised by a progress callback to interrupt a sweep after some rows."""


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def tiny_spec(model: Path, **kw: object) -> SweepSpec:
    base: dict[str, object] = dict(model=str(model), targets=("16x16", "32x32"),
                                   ranks=("none", "2"), groups=("1", "2"),
                                   mappings=("im2col", "auto"))
    base.update(kw)
    return SweepSpec(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def serial_csv(model: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The uninterrupted serial sweep's CSV."""
    dest = tmp_path_factory.mktemp("serial") / "s.csv"
    sweep_to_csv(tiny_spec(model), dest, jobs=1)
    return dest.read_text()


def need_distributed() -> ModuleType:
    """dask.distributed, or a skip on a machine without the optional extra. In CI (the `CI`
    variable set, as .ci/run and GitHub Actions do) a missing extra is a failure, so the
    cluster tests cannot be skipped silently."""
    try:
        import distributed
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI must install '.[test,distributed]' (README, .ci/run)")
        pytest.skip("needs the optional extra: pip install -e '.[test,distributed]'")
    return distributed


def stop_after(k: int) -> object:
    def progress(done: int, _total: int, _note: str) -> None:
        if done >= k:
            raise Stop
    return progress


def test_serial_csv_is_the_result_in_configuration_order(model: Path, serial_csv: str
                                                         ) -> None:
    assert serial_csv == to_csv(run_sweep(tiny_spec(model), jobs=1))
    assert len(serial_csv.splitlines()) == 1 + 12


def test_local_cluster_with_two_workers_equals_serial(model: Path, serial_csv: str,
                                                      tmp_path: Path) -> None:
    distributed = need_distributed()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  protocol="tcp", host="127.0.0.1", dashboard_address=None,
                                  silence_logs=40) as cluster:
        seen: list[str] = []
        dest = tmp_path / "d.csv"
        result = sweep_to_csv(tiny_spec(model), dest, scheduler=cluster.scheduler_address,
                              progress=lambda done, total, note: seen.append(note))
        # the cluster ran them: one task per front and one per row, computed on workers
        prefixes = cluster.scheduler.task_prefixes
        computed = {name: prefixes[name].all_durations.get("compute", 0.0) > 0
                    for name in ("imcc-front", "imcc-row") if name in prefixes}
    assert dest.read_text() == serial_csv
    assert len(result.rows) == 12 and len(seen) == 1 + 12
    assert computed == {"imcc-front": True, "imcc-row": True}


def test_interrupted_then_resumed_equals_uninterrupted(model: Path, serial_csv: str,
                                                       tmp_path: Path) -> None:
    dest = tmp_path / "r.csv"
    with pytest.raises(Stop):
        sweep_to_csv(tiny_spec(model), dest, jobs=1, progress=stop_after(5))
    lines = dest.read_text().splitlines(keepends=True)
    assert len(lines) == 1 + 5  # header + the rows finished before the interruption
    assert set(lines) <= set(serial_csv.splitlines(keepends=True))
    # A kill in the middle of a write leaves a partial last line: it is dropped.
    with open(dest, "a") as f:
        f.write("32x32,2,2,au")
    resumed: list[int] = []

    def count(done: int, _total: int, note: str) -> None:
        resumed.append(done)

    sweep_to_csv(tiny_spec(model), dest, jobs=1, progress=count, resume=True)
    assert dest.read_text() == serial_csv
    assert resumed[0] == 5 and resumed[-1] == 12 and len(resumed) == 1 + 7  # 7 rows ran
    # Resuming a complete sweep runs nothing and rewrites the same bytes.
    sweep_to_csv(tiny_spec(model), dest, jobs=1, progress=stop_after(13), resume=True)
    assert dest.read_text() == serial_csv


def test_resume_may_add_configurations(model: Path, serial_csv: str, tmp_path: Path
                                       ) -> None:
    dest = tmp_path / "a.csv"
    sweep_to_csv(tiny_spec(model, targets=("16x16",)), dest, jobs=1)
    ran: list[str] = []
    sweep_to_csv(tiny_spec(model), dest, jobs=1, resume=True,
                 progress=lambda d, t, note: ran.append(note))
    assert dest.read_text() == serial_csv
    assert all(n.startswith("32x32") for n in ran[1:]) and len(ran) == 1 + 6


@pytest.mark.parametrize("change", [dict(weight_bits=8), dict(no_quantize=True),
                                    dict(tech="neurosim")])
def test_resume_refuses_different_settings(model: Path, tmp_path: Path,
                                           change: dict[str, object]) -> None:
    dest = tmp_path / "x.csv"
    with pytest.raises(Stop):
        sweep_to_csv(tiny_spec(model), dest, jobs=1, progress=stop_after(2))
    before = dest.read_bytes()
    kw = {("quantize" if k == "no_quantize" else k): (not v if k == "no_quantize" else v)
          for k, v in change.items()}
    with pytest.raises(UsageError, match="different settings"):
        sweep_to_csv(tiny_spec(model, **kw), dest, jobs=1, resume=True)
    assert dest.read_bytes() == before


def test_resume_checks_the_model_file(model: Path, tmp_path: Path) -> None:
    dest = tmp_path / "m.csv"
    sweep_to_csv(tiny_spec(model, targets=("16x16",), ranks=("none",)), dest, jobs=1)
    other = tiny_model(tmp_path / "tiny.onnx")
    other.write_bytes(other.read_bytes() + b"\n")  # a different file (trailing junk byte)
    with pytest.raises(UsageError, match="model_sha256"):
        sweep_to_csv(replace(tiny_spec(model, targets=("16x16",), ranks=("none",)),
                             model=str(other)), dest, jobs=1, resume=True)


def test_resume_refuses_foreign_or_broken_csvs(model: Path, tmp_path: Path) -> None:
    spec = tiny_spec(model, targets=("16x16",), ranks=("none",))
    dest = tmp_path / "f.csv"
    dest.write_text("a,b\n1,2\n")
    with pytest.raises(UsageError, match="settings record"):
        sweep_to_csv(spec, dest, jobs=1, resume=True)
    sweep_to_csv(spec, dest, jobs=1)
    good = dest.read_text()
    dest.write_text("target,rank\n" + good.split("\n", 1)[1])
    with pytest.raises(UsageError, match="columns"):
        sweep_to_csv(spec, dest, jobs=1, resume=True)
    dest.write_text(good.replace("16x16,none,1,im2col,", "16x16,none,1,im2col,many,"))
    with pytest.raises(DataError, match="cells"):
        sweep_to_csv(spec, dest, jobs=1, resume=True)
    dest.write_text(good)
    # rows of a configuration this sweep does not run: a different sweep's CSV
    with pytest.raises(UsageError, match="does not run"):
        sweep_to_csv(replace(spec, mappings=("auto",)), dest, jobs=1, resume=True)
    settings_path(dest).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(UsageError, match="different settings"):
        sweep_to_csv(spec, dest, jobs=1, resume=True)


def test_resume_without_a_csv_starts_afresh(model: Path, tmp_path: Path) -> None:
    dest = tmp_path / "new.csv"
    spec = tiny_spec(model, targets=("16x16",), ranks=("none",))
    sweep_to_csv(spec, dest, jobs=1, resume=True)
    rows = list(csv.DictReader(io.StringIO(dest.read_text())))
    assert [r["mapping"] for r in rows] == ["im2col", "auto"]


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imcc.cli", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


def test_cli_scheduler_local_and_resume(model: Path, serial_csv: str, tmp_path: Path) -> None:
    need_distributed()
    args = ["sweep", str(model), "--targets", "16x16,32x32", "--ranks", "none,2", "--groups",
            "1,2", "--mappings", "im2col,auto"]
    proc = run_cli(tmp_path, *args, "--scheduler", "local", "-j", "2", "-o", "c.csv")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "c.csv").read_text() == serial_csv
    proc = run_cli(tmp_path, *args, "--weight-bits", "8", "--resume", "-o", "c.csv")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "different settings" in proc.stderr and "weight_bits 4 -> 8" in proc.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (["--scheduler", " "], "--scheduler"),
    (["--scheduler", "tcp://127.0.0.1:9", "-j", "2"], "--jobs"),
])
def test_cli_scheduler_usage_errors(model: Path, tmp_path: Path, args: list[str],
                                    needle: str) -> None:
    proc = run_cli(tmp_path, "sweep", str(model), "--targets", "16x16", *args, "-o", "e.csv")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert not (tmp_path / "e.csv").exists()


def test_scheduler_without_dask_is_a_clear_error(model: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    dest = tmp_path / "n.csv"
    spec = tiny_spec(model, targets=("16x16",), ranks=("none",))
    with pytest.raises(UsageError, match="needs dask.distributed") as info:
        sweep_to_csv(spec, dest, scheduler="local")
    assert "imcc[distributed]" in (info.value.hint or "")
    assert not dest.exists()
    sweep_to_csv(spec, dest, jobs=2)  # the process pool needs no dask
    assert len(dest.read_text().splitlines()) == 1 + 2
