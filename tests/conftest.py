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
