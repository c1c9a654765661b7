"""Outputs never destroy a user's files, never stay half-written, and two writers of one
output directory do not race (issue 13, part 1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_model
from onnx import helper, save

from imcc.errors import Interrupted, OutputError
from imcc.fileio import OUTPUT_STAMP, atomic_dir
from imcc.report.progress import without_progress

IMCC = [sys.executable, "-m", "imcc.cli"]


def tiny_model(path: Path) -> Path:
    import numpy as np

    w = np.ones((2, 2, 1, 1), np.float32)
    save(make_model([helper.make_node("Conv", ["x", "w"], ["y"])], [("x", ["N", 2, 3, 3])],
                    ["y"], {"w": w}), str(path))
    return path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IMCC, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name
                  or p.name.endswith(".lock"))


def test_a_directory_with_a_report_json_is_not_replaced(tmp_path: Path) -> None:
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "report.json").write_text("{}")
    (thesis / "chapters" / "ch1.tex").write_text("x")
    m = tiny_model(tmp_path / "m.onnx")
    r = run("compile", str(m), "-o", str(thesis), cwd=tmp_path)
    assert r.returncode == 5, r.stderr
    assert "was not written by imcc" in r.stderr and len(without_progress(r.stderr)) == 1
    assert (thesis / "chapters" / "ch1.tex").read_text() == "x"
    assert leftovers(tmp_path) == []


def test_an_imcc_output_is_replaced_but_never_the_model_inside_it(tmp_path: Path) -> None:
    out = tmp_path / "prev"
    m = tiny_model(tmp_path / "m.onnx")
    assert run("compile", str(m), "-o", str(out), cwd=tmp_path).returncode == 0
    assert (out / OUTPUT_STAMP).is_file()
    assert run("compile", str(m), "-o", str(out), cwd=tmp_path).returncode == 0  # replaced
    inside = out / "mymodel.onnx"
    inside.write_bytes(m.read_bytes())
    r = run("compile", str(inside), "-o", str(out), cwd=tmp_path)
    assert r.returncode == 5 and "would delete it" in r.stderr, r.stderr
    assert inside.read_bytes() == m.read_bytes()
    assert leftovers(tmp_path) == []


def test_interrupted_writes_leave_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with pytest.raises(Interrupted), atomic_dir(dest) as tmp:
        (tmp / "report.json").write_text("{}")
        raise Interrupted(signal.SIGTERM)
    assert not dest.exists() and leftovers(tmp_path) == []


def test_a_second_writer_fails_fast(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with atomic_dir(dest) as tmp:
        (tmp / "a").write_text("1")
        with pytest.raises(OutputError, match="another imcc process"):
            with atomic_dir(dest):
                pass
    assert (dest / "a").read_text() == "1" and leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_clean_up_and_exit_128_plus_signal(tmp_path: Path, sig: int) -> None:
    """Killed while it works: one line, exit 128 + signal, no temporary directory."""
    p = subprocess.Popen([*IMCC, "compile", "resnet20", "-o", str(tmp_path / "out")],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    # Prefer to hit the write phase (a temporary directory exists); else any time after start.
    seen_tmp = False
    time.sleep(0.5)
    while time.monotonic() < deadline and p.poll() is None:
        if any(".tmp-" in n for n in os.listdir(tmp_path)):
            seen_tmp = True
            break
        time.sleep(0.002)
    if p.poll() is not None:
        pytest.skip("the compile finished before it could be interrupted")
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err
    assert "interrupted by" in err and len(without_progress(err)) == 1, err
    assert leftovers(tmp_path) == [] and not (tmp_path / "out").exists(), seen_tmp


def test_long_output_names(tmp_path: Path) -> None:
    ok = tmp_path / ("a" * 250)  # legal, but its temporary and lock files must stay legal too
    with atomic_dir(ok) as tmp:
        (tmp / "f").write_text("1")
    assert (ok / "f").is_file() and leftovers(tmp_path) == []
    with pytest.raises(OutputError, match="unusable output path"):
        with atomic_dir(tmp_path / ("b" * 300)):
            pass


def test_a_swapped_compiled_onnx_is_refused(tmp_path: Path) -> None:
    """A compiled.onnx with other weights used to pass with agreement 0.0 and exit 0."""
    import numpy as np

    m = tiny_model(tmp_path / "m.onnx")
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("compile", str(m), "-o", str(a), cwd=tmp_path).returncode == 0
    w = np.full((2, 2, 1, 1), -3.0, np.float32)
    save(make_model([helper.make_node("Conv", ["x", "w"], ["y"])], [("x", ["N", 2, 3, 3])],
                    ["y"], {"w": w}), str(tmp_path / "m2.onnx"))
    assert run("compile", str(tmp_path / "m2.onnx"), "-o", str(b), cwd=tmp_path).returncode == 0
    x = np.random.default_rng(0).normal(size=(4, 2, 3, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    ok = run("simulate", str(a), "--data", str(tmp_path / "d.npz"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    (a / "compiled.onnx").write_bytes((b / "compiled.onnx").read_bytes())
    r = run("simulate", str(a), "--data", str(tmp_path / "d.npz"), cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    assert "compiled.onnx of the compiled output changed since imcc wrote it" in r.stderr


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_a_signal_as_the_temporary_is_created_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The signal lands right after the temporary entry exists, before its name is stored
    (the window a fast `kill` hits): the clean-up must still find and remove it."""
    import imcc.fileio as fileio
    from imcc.fileio import atomic_write_bytes

    real = fileio._create

    def create_then_signal(p: Path, directory: bool) -> None:
        real(p, directory)
        os.kill(os.getpid(), signal.SIGTERM)  # handled at once, before the caller resumes

    def on_signal(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    monkeypatch.setattr(fileio, "_create", create_then_signal)
    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        with pytest.raises(Interrupted):
            if kind == "dir":
                with atomic_dir(tmp_path / "out") as tmp:
                    (tmp / "report.json").write_text("{}")
            else:
                atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        signal.signal(signal.SIGTERM, old)
    assert leftovers(tmp_path) == [] and not (tmp_path / "out").exists()
    assert not (tmp_path / "f.bin").exists()
