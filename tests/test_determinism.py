"""Determinism: compiling the bundled ResNet-20 twice, in separate processes with different
PYTHONHASHSEED values (set/dict iteration order), gives byte-identical output files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "quantized": [],
    "lowrank_m2_g4": ["--rank", "m/2", "--groups", "4"],
}


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_compile_is_byte_identical_across_hash_seeds(tmp_path: Path, name: str) -> None:
    procs = []
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        out = tmp_path / f"seed{seed}"
        # Both runs at once: the machine has two cores and each run is single-threaded
        # Python for most of its time.
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "imcc.cli", "compile", "resnet20", *CONFIGS[name],
             "-o", str(out), "--json"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr.decode()
    a, b = _files(tmp_path / "seed1"), _files(tmp_path / "seed4242")
    assert sorted(a) == [".imcc-output", "arrays.npz", "compiled.onnx", "float.onnx",
                         "program.json", "report.json"]
    assert sorted(a) == sorted(b)
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, f"{name}: files differ between hash seeds: {differ}"
