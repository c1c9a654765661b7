"""Shared fixtures: small ONNX graphs built in the test, the bundled data, ORT runners, and
the ResNet-20 compiles several test modules need (session-scoped: each is compiled once)."""

from __future__ import annotations

import os

# One BLAS thread per process, set before numpy is first imported (the CLI subprocesses the
# tests start inherit it; setdefault keeps a value the caller chose). The compiles are many
# small matrix products, and on a small busy machine OpenBLAS's spinning worker threads
# cost more CPU than they save.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import pytest  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import imcc  # noqa: E402
from imcc.compiler import (  # noqa: E402
    CompileOptions,
    CompileResult,
    compile_model,
    write_outputs,
)
from imcc.dataset import load_npz  # noqa: E402

EXAMPLES = Path(imcc.__file__).parent / "examples"
ASSETS = Path(__file__).parent / "assets"
RESNET20 = EXAMPLES / "resnet20.onnx"
RESNET20_DYNAMO = ASSETS / "resnet20_dynamo.onnx"
CIFAR = EXAMPLES / "cifar10_test_500.npz"


def make_model(nodes: list[onnx.NodeProto], inputs: list[tuple[str, list[int | str]]],
               outputs: list[str], inits: dict[str, np.ndarray], opset: int = 17
               ) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def ort_run(model: onnx.ModelProto | bytes | Path, feeds: dict[str, np.ndarray]
            ) -> list[np.ndarray]:
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else \
        str(model) if isinstance(model, Path) else model
    from imcc.sim.evaluate import ort_session

    return ort_session(src).run(None, feeds)


def per_tile_layout(src: Path, dst: Path, fmt: str = "imcc-program/2") -> Path:
    """Rewrite the program in `src` (format /3: three arrays.npz members per layer) into
    `dst` in the older per-tile layout of formats /1 and /2 (`sNNN.tTTTT.{rows,cols,cells}`
    named by each tile's `arrays_key`); for /1 without the placement key."""
    import json

    doc = json.loads((src / "program.json").read_text())
    arrays = dict(np.load(src / "arrays.npz"))
    for step in doc["steps"]:
        if step["kind"] != "crossbar":
            continue
        key = step.pop("arrays_key")
        rows, cols, cells = (arrays.pop(f"{key}.{p}") for p in ("rows", "cols", "cells"))
        r0 = c0 = k0 = 0
        for ti, t in enumerate(step["tiles"]):
            r, c = t["rows_used"], t["cols_used"]
            tk = f"{key}.t{ti:04d}"
            arrays[f"{tk}.rows"], arrays[f"{tk}.cols"] = rows[r0:r0 + r], cols[c0:c0 + c]
            arrays[f"{tk}.cells"] = cells[k0:k0 + r * c].reshape(r, c)
            t["arrays_key"] = tk
            r0, c0, k0 = r0 + r, c0 + c, k0 + r * c
    doc["format"] = fmt
    if fmt == "imcc-program/1":
        del doc["placement"]
    dst.mkdir(parents=True)
    (dst / "program.json").write_text(json.dumps(doc))
    np.savez(dst / "arrays.npz", **arrays)
    return dst


def report_layer(name: str, **kw: Any) -> dict[str, Any]:
    """One layer of a report.json dict (every key of imcc-report/1), overridden by `kw`."""
    base: dict[str, Any] = {
        "name": name, "op": "Conv", "shape": "16x32x32 -> 16x32x32, k3x3 s1",
        "mapping": "vw-sdk", "pw": [2, 3], "n_parallel": 6, "group_pack": 1, "conv_groups": 1,
        "row_tiles": 2, "col_tiles": 1, "tiles": 2, "windows": 176, "cycles": 352,
        "im2col_cycles": 1024, "lower_bound_cycles": 320, "utilization": 0.42,
        "mapping_note": None, "rank": None,
        "groups": None, "rel_error": None, "pair": None, "role": None, "params_before": None,
        "params_after": None, "weight_params": 2304, "slices": 4, "input_bits": 4,
        "energy_pj": 1.5e6, "latency_ns": 2.0e5,
        "energy_breakdown": {"cells": 1e5, "row_drivers": 2e5, "adc": 1e6, "shift_add": 5e4,
                             "buffer": 1.5e5},
    }
    base.update(kw)
    return base


def chip_text(**overrides: object) -> str:
    """A chip TOML file's text: a one-core chip of 16x16 arrays with round numbers (2 pJ
    per cell write, 50 ns per row, 1 bit per ns between cores); `overrides` replace keys
    (a value None drops the key)."""
    values: dict[str, object] = {
        "name": '"test"', "source": '"hand-made"', "rows": 16, "cols": 16,
        "arrays_per_core": 1000, "cores": 1, "adcs_per_array": 1,
        "transfer_bits_per_ns": 1.0, "write_energy_pj_per_cell": 2.0,
        "write_ns_per_row": 50.0, "endurance_writes": 1e6, "area_array_mm2": 0.001,
        "area_adc_mm2": 0.002, "area_buffer_mm2": 0.1, "area_core_periphery_mm2": 0.2,
        "batch": 1}
    values.update(overrides)
    return "".join(f"{k} = {v}\n" for k, v in values.items() if v is not None)


def report_dict() -> dict[str, Any]:
    """A complete two-layer report.json dict with energy and a low-rank half."""
    return {
        "format": "imcc-report/1", "imcc_version": "0.1.0", "model": "resnet20",
        "target": {"rows": 128, "cols": 128, "weight_bits": 4, "cell_bits": 1, "act_bits": 4,
                   "dac_bits": 1, "adc_bits": 8, "tech": "isaac"},
        "quantized": True, "calibration": "synthetic", "mapping": "auto",
        "total_cycles": 1376, "lower_bound_cycles": 1344, "im2col_cycles": 2048,
        "speedup": 2048 / 1376, "n_arrays": 3,
        "n_crossbar_layers": 2, "weight_params": 4608,
        "total_energy_pj": 3.0e6, "total_latency_ns": 4.0e5,
        "energy_breakdown": {"cells": 2e5, "row_drivers": 4e5, "adc": 2e6, "shift_add": 1e5,
                             "buffer": 3e5},
        "adc_bits": 8,
        "layers": [
            report_layer("/conv1/Conv", mapping="im2col", pw=None, n_parallel=1, row_tiles=1,
                  tiles=1, windows=1024, cycles=1024, lower_bound_cycles=1024),
            report_layer("/l<b>&|x", rank=8, groups=4, rel_error=0.125, pair="/l", role="R"),
        ],
        "passes": ["fold-bn", "lowrank", "quantize", "map"],
    }


@pytest.fixture(scope="session")
def cifar() -> tuple[np.ndarray, np.ndarray]:
    ds = load_npz(CIFAR, "input", (None, 3, 32, 32))
    assert ds.labels is not None
    return ds.x, ds.labels


@pytest.fixture(scope="session")
def calib(cifar: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Calibration images for the ResNet-20 compiles: the first 32 CIFAR-10 test images
    (the e2e tests evaluate on others)."""
    return cifar[0][:32]


@pytest.fixture(scope="session")
def resnet20_w4a4_im2col(calib: np.ndarray) -> CompileResult:
    """ResNet-20, W4A4 on 128x128 arrays, im2col, calibrated on `calib`. Read-only."""
    return compile_model("resnet20", CompileOptions(mapping="im2col", calib=calib))


@pytest.fixture(scope="session")
def resnet20_float_auto(tmp_path_factory: pytest.TempPathFactory
                        ) -> tuple[Path, CompileResult]:
    """ResNet-20 unquantized, `auto` on 128x128 arrays (what `imcc compile resnet20
    --no-quantize -o DIR` writes), with its output directory. Read-only."""
    res = compile_model("resnet20", CompileOptions(quantize=False))
    return write_outputs(res, tmp_path_factory.mktemp("r20-float-auto") / "r20"), res
