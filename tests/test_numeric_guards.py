"""Wrong numbers are never reported as success: vanishing activations, absurd weights
(issue 13, numeric guards)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_model
from onnx import helper

from imcc.compiler import CompileOptions, compile_graph
from imcc.errors import DataError, ModelError
from imcc.frontend import import_proto


def chain(scale: float, weight: float = 1.0, muls: int = 2) -> object:
    nodes = [helper.make_node("Mul", [f"v{i}", "k"], [f"v{i + 1}"], name=f"mul{i}")
             for i in range(muls)]
    nodes.append(helper.make_node("Conv", [f"v{muls}", "w"], ["y"], name="conv"))
    return make_model(nodes, [("v0", ["N", 2, 4, 4])], ["y"],
                      {"k": np.array(scale, np.float32),
                       "w": np.full((2, 2, 1, 1), weight, np.float32)})


def test_vanishing_activations_are_a_clear_error() -> None:
    g = import_proto(chain(1e-20), "vanish")  # inputs ~1e-40: below float32's normal range
    with pytest.raises(DataError, match=r"%v2 .*activation scale comes out as"):
        compile_graph(g, CompileOptions(), "vanish")


def test_overflowing_activations_are_a_clear_error() -> None:
    g = import_proto(chain(1e30), "overflow")
    with pytest.raises(DataError, match="NaN or infinity"):
        compile_graph(g, CompileOptions(), "overflow")


@pytest.mark.parametrize("quantize", [True, False])
def test_absurd_weights_are_refused(quantize: bool) -> None:
    g = import_proto(chain(1.0, weight=3e38), "big")
    with pytest.raises(ModelError, match="weights up to 3e\\+38"):
        compile_graph(g, CompileOptions(quantize=quantize), "big")


def test_ordinary_chains_still_compile() -> None:
    g = import_proto(chain(0.5), "ok")
    res = compile_graph(g, CompileOptions(), "ok")
    assert res.report["total_cycles"] > 0


@pytest.mark.parametrize("target,needle", [((8192, 8192), "cells"), ((1, 1), "arrays")])
def test_impossible_program_sizes_are_refused_before_allocation(monkeypatch, target,
                                                                 needle) -> None:
    from imcc.errors import UsageError
    from imcc.targets.crossbar import CrossbarTarget

    monkeypatch.setenv("IMCC_MAX_TILE_CELLS", str(1 << 12))
    monkeypatch.setenv("IMCC_MAX_TILES", "64")
    w = np.random.default_rng(0).normal(size=(16, 8, 3, 3)).astype(np.float32)
    m = make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 4)],
                   [("x", ["N", 8, 16, 16])], ["y"], {"w": w})
    g = import_proto(m, "big")
    with pytest.raises(UsageError, match=needle):
        compile_graph(g, CompileOptions(target=CrossbarTarget(*target)), "big")
