"""A program read from disk is validated before it runs: every tampering below is refused
with a DataError (exit 4) naming the problem, never run with wrapped indices or NaN."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_model, per_tile_layout
from onnx import helper

from imcc.compiler import CompileOptions, compile_graph, write_outputs
from imcc.errors import DataError
from imcc.frontend import import_proto
from imcc.sim.simulator import simulate
from imcc.targets.crossbar import CrossbarTarget
from imcc.targets.program_io import read_program


@pytest.fixture(scope="module")
def outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    m = make_model([helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1] * 4, name="c1"),
                    helper.make_node("Relu", ["a"], ["r"], name="relu"),
                    helper.make_node("Conv", ["r", "w2", "b2"], ["y"], strides=[2, 2],
                                     name="c2")],
                   [("x", ["N", 3, 8, 8])], ["y"],
                   {"w1": rng.normal(size=(6, 3, 3, 3)).astype(np.float32),
                    "w2": rng.normal(size=(4, 6, 3, 3)).astype(np.float32),
                    "b2": rng.normal(size=(4,)).astype(np.float32)})
    res = compile_graph(import_proto(m, "t"),
                        CompileOptions(target=CrossbarTarget(32, 32), mapping="vw-sdk"), "t")
    return write_outputs(res, tmp_path_factory.mktemp("prog") / "out")


def tampered(src: Path, dst: Path, doc_edit: Callable[[dict[str, Any]], None] | None = None,
             array_edit: Callable[[dict[str, np.ndarray]], None] | None = None) -> Path:
    dst.mkdir()
    doc = json.loads((src / "program.json").read_text())
    arrays = dict(np.load(src / "arrays.npz"))
    if doc_edit:
        doc_edit(doc)
    if array_edit:
        array_edit(arrays)
    (dst / "program.json").write_text(json.dumps(doc))
    np.savez(dst / "arrays.npz", **arrays)
    return dst


def xbar(doc: dict[str, Any], k: int = 0) -> dict[str, Any]:
    return [s for s in doc["steps"] if s["kind"] == "crossbar"][k]


def set_(d: dict[str, Any], key: str, v: Any) -> None:
    d[key] = v


def first_layer_key(doc: dict[str, Any], k: int = 0) -> str:
    """The arrays.npz prefix of crossbar layer k's tiles (its first tile's rows and columns
    come first in `.rows` / `.cols`, its cells first in `.cells`)."""
    return xbar(doc, k)["arrays_key"]


def arr(key_of: Callable[[], str], part: str, fn: Callable[[np.ndarray], np.ndarray]
        ) -> Callable[[dict[str, np.ndarray]], None]:
    def edit(a: dict[str, np.ndarray]) -> None:
        k = f"{key_of()}.{part}"
        a[k] = fn(a[k].copy())
    return edit


def _neg_row(r: np.ndarray) -> np.ndarray:
    r[0, 0] = -1
    return r


def _big_col(c: np.ndarray) -> np.ndarray:
    c[0, 0] = 99
    return c


def _nan(c: np.ndarray) -> np.ndarray:
    c = c.astype(np.float32)
    c[0] = np.nan
    return c


def _hundred(c: np.ndarray) -> np.ndarray:
    c[0] = 100
    return c


DOC_CASES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "zero windows": (lambda d: xbar(d)["window_loop"].__setitem__("windows", [0, 4]),
                     "window loop"),
    "huge windows": (lambda d: xbar(d)["window_loop"].__setitem__("windows", [1000, 1000]),
                     "window loop"),
    "negative stride": (lambda d: set_(xbar(d), "stride", [-1, 1]), "stride"),
    "zero pw": (lambda d: xbar(d)["mapping"].__setitem__("pw", [0, 1]), "pw"),
    "pads 1e5": (lambda d: set_(xbar(d), "pads", [100000] * 4), "out_shape"),
    "wrong in_shape": (lambda d: set_(xbar(d), "in_shape", [3, 9, 8]), "out_shape"),
    "undefined input": (lambda d: set_(xbar(d, 1), "input", "nowhere"), "nowhere"),
    "cycles lie": (lambda d: set_(xbar(d), "cycles", 1), "cycles"),
    "slice weights": (lambda d: xbar(d)["post"].__setitem__("slice_weights", [1, 2, 4, 8]),
                      "slice_weights"),
}


@pytest.mark.parametrize("name", list(DOC_CASES))
def test_tampered_documents_are_refused(outdir: Path, tmp_path: Path, name: str) -> None:
    edit, needle = DOC_CASES[name]
    d = tampered(outdir, tmp_path / "t", doc_edit=edit)
    with pytest.raises(DataError, match=needle) as info:
        read_program(d)
    assert "\n" not in str(info.value)


def test_tampered_arrays_are_refused(outdir: Path, tmp_path: Path) -> None:
    doc = json.loads((outdir / "program.json").read_text())
    key = first_layer_key(doc)
    cases = [
        (arr(lambda: key, "rows", _neg_row), "outside"),
        (arr(lambda: key, "cols", _big_col), "outside"),
        (arr(lambda: key, "cells", _nan), "NaN|finite|integer"),
        (arr(lambda: key, "cells", _hundred), "levels"),
        (arr(lambda: key, "cells", lambda c: c[:-1]), "cells holds"),
        (arr(lambda: key, "cells", lambda c: c.reshape(1, -1)), "cells holds"),
        (arr(lambda: key, "rows", lambda r: r[:-1]), "rows has"),
        (arr(lambda: key, "cols", lambda c: np.concatenate([c, c[:1]])), "cols has"),
        (lambda a: a.__setitem__(f"{key.split('.')[0]}.out_scale", np.ones(2, np.float32)),
         "out_scale"),
    ]
    for n, (edit, needle) in enumerate(cases):
        d = tampered(outdir, tmp_path / f"t{n}", array_edit=edit)
        with pytest.raises(DataError, match=needle):
            read_program(d)


def test_the_untampered_program_reads_and_runs(outdir: Path, tmp_path: Path) -> None:
    d = tampered(outdir, tmp_path / "same")  # rewritten, unchanged
    prog = read_program(d)
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    sim = simulate(prog, {"x": x})
    assert np.all(np.isfinite(sim.outputs["y"]))


def test_format_2_per_tile_members_are_still_read(outdir: Path, tmp_path: Path) -> None:
    """A program in the per-tile layout of formats /1 and /2 reads to the same tiles as the
    /3 file it came from, and its tiles are checked the same way."""
    new = read_program(outdir)
    old = read_program(per_tile_layout(outdir, tmp_path / "v2"))
    for a, b in zip(new.crossbar_layers(), old.crossbar_layers(), strict=True):
        assert len(a.tiles) == len(b.tiles) > 0
        for ta, tb in zip(a.tiles, b.tiles, strict=True):
            for part in ("rows", "cols", "cells"):
                assert np.array_equal(getattr(ta, part), getattr(tb, part))
                assert getattr(ta, part).dtype == getattr(tb, part).dtype
    doc = json.loads((tmp_path / "v2" / "program.json").read_text())
    key = xbar(doc)["tiles"][0]["arrays_key"]
    bad = tampered(tmp_path / "v2", tmp_path / "v2bad",
                   array_edit=arr(lambda: key, "cells", lambda c: c[:, :-1]))
    with pytest.raises(DataError, match="cells must be"):
        read_program(bad)


def test_arrays_npz_has_three_members_per_layer(outdir: Path) -> None:
    doc = json.loads((outdir / "program.json").read_text())
    names = set(np.load(outdir / "arrays.npz").files)
    for k in range(2):
        key = first_layer_key(doc, k)
        assert {f"{key}.{p}" for p in ("rows", "cols", "cells")} <= names
    assert not any(".t0" in n for n in names)
