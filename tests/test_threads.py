"""Thread pinning: the command line's default, the user's environment, `--threads`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from threadpoolctl import threadpool_info

from imcc.threads import THREAD_VARS, limit_threads, pin_default_threads, session_threads

PROBE = ("import os, imcc.threads as t; t.pin_default_threads(); "
         "print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['OMP_NUM_THREADS'])")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    return {**env, **extra}


def test_default_pins_one_thread_and_respects_the_user() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], env=_env(), capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["1", "1"]
    probe = PROBE.replace("os.environ['OMP_NUM_THREADS']", "os.environ.get('OMP_NUM_THREADS')")
    out = subprocess.run([sys.executable, "-c", probe], env=_env(OPENBLAS_NUM_THREADS="3"),
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["3", "None"]


def test_limit_threads_sets_blas_and_sessions_and_restores(monkeypatch) -> None:
    for v in THREAD_VARS:
        monkeypatch.delenv(v, raising=False)
    import numpy  # noqa: F401 - loads OpenBLAS

    with limit_threads(1) as n:
        assert n == 1 and session_threads() == 1
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    assert all(v not in os.environ for v in THREAD_VARS)
    with limit_threads(None) as n:
        assert n == session_threads()


def test_pin_default_threads_leaves_a_set_environment(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    pin_default_threads()
    assert "OPENBLAS_NUM_THREADS" not in os.environ


@pytest.mark.parametrize("opt", [["--threads", "-1"], ["--max-memory", "0"]])
def test_bad_simulate_options_are_usage_errors(tmp_path, opt) -> None:
    r = subprocess.run([sys.executable, "-m", "imcc.cli", "simulate", str(tmp_path), *opt],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
