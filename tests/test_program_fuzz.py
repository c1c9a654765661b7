"""Mutated programs: reading and simulating a program.json / arrays.npz with one field or
one array element changed either refuses it (DataError) or runs it to finite outputs, never
crashes with another exception or reads out of range (issue 13, part 8). A whole output
directory with a mutated file is refused by its stamp (tests/test_outputs_safe.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_program_check import outdir  # noqa: F401 - the compiled fixture

from imcc.errors import DataError
from imcc.sim.simulator import simulate
from imcc.targets.program_io import read_program

X = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)


def _int_fields(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _int_fields(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _int_fields(v, path + (i,))
    elif isinstance(doc, int) and not isinstance(doc, bool):
        out.append(path)
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


def _run(d: Path) -> None:
    try:
        prog = read_program(d)
        res = simulate(prog, {prog.inputs[0][0]: X})
    except DataError:
        return
    for y in res.outputs.values():
        assert np.all(np.isfinite(y))


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(0, 10**6), value=st.sampled_from([-1, 0, 1, 2, 7, 1000, 10**9]))
def test_mutated_json_fields(outdir: Path, tmp_path_factory: pytest.TempPathFactory,  # noqa: F811
                             pick: int, value: int) -> None:
    doc = json.loads((outdir / "program.json").read_text())
    fields = _int_fields(doc)
    _set(doc, fields[pick % len(fields)], value)
    d = tmp_path_factory.mktemp("m")
    (d / "program.json").write_text(json.dumps(doc))
    (d / "arrays.npz").write_bytes((outdir / "arrays.npz").read_bytes())
    _run(d)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(0, 10**6), where=st.integers(0, 10**6),
       value=st.sampled_from([-(2**31), -5, -1, 2, 100, 2**20, float("nan"), 1e38]))
def test_mutated_array_elements(outdir: Path, tmp_path_factory: pytest.TempPathFactory,  # noqa: F811
                                pick: int, where: int, value: float) -> None:
    arrays = dict(np.load(outdir / "arrays.npz"))
    key = sorted(arrays)[pick % len(arrays)]
    a = arrays[key].copy()
    if a.size == 0:
        return
    flat = a.reshape(-1)
    if a.dtype.kind in "iu" and not np.isfinite(value):
        return
    if a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        value = int(min(max(value, info.min), info.max))  # the extremes the dtype holds
    with np.errstate(over="ignore"):
        flat[where % flat.size] = value
    arrays[key] = a
    d = tmp_path_factory.mktemp("a")
    (d / "program.json").write_text((outdir / "program.json").read_text())
    np.savez(d / "arrays.npz", **arrays)
    _run(d)
