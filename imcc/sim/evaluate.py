"""Run a compiled output directory's program on data and check it against onnxruntime.

`ort_agreement` is the fraction of inputs whose argmax equals onnxruntime's on
compiled.onnx; `max_abs_diff` the largest output difference; accuracies use the labels.
`cycles_per_image` is what the simulator executed, not what the report claims.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError

from imcc.dataset import Dataset
from imcc.errors import DataError
from imcc.fileio import verify_output
from imcc.sim.simulator import SimResult, Simulator
from imcc.targets.program_io import read_program
from imcc.threads import session_threads


class OnnxRuntimeRejected(RuntimeError):
    """onnxruntime refused a model imcc wrote itself: a bug in imcc, not in the user's
    input, so it is not an ImccError and the CLI reports an internal error (exit 70)."""


def ort_session(path: Path | str | bytes, name: str | None = None,
                threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime session that runs the model as written (`name`: how messages call
    it when `path` is the model's bytes), on `threads` intra-op threads (default
    `imcc.threads.session_threads()`: what BLAS is told to use)."""
    opts = ort.SessionOptions()
    # compiled.onnx states its arithmetic exactly: integer-level convs, then Mul(scale) and
    # Add(bias). onnxruntime's graph optimizers would rewrite it (QDQ transformers
    # re-quantize weights; ConvMulFusion/ConvAddFusion fold the scale into non-integer
    # weights), which moves 4-bit activations across rounding ties. Run it as written.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    opts.intra_op_num_threads = session_threads() if threads is None else threads
    try:
        src = path if isinstance(path, bytes) else str(path)
        return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        where = name or ("the model" if isinstance(path, bytes) else str(path))
        raise OnnxRuntimeRejected(f"onnxruntime cannot load {where}, written by imcc "
                                  f"({exc})") from exc


def _output_model(path: Path) -> bytes:
    """An ONNX file of a compile output directory, checked to be what `imcc compile`
    wrote. A missing, undecodable or foreign file is the directory's fault (DataError,
    exit 4); a file imcc wrote that onnxruntime then refuses is imcc's (see
    `OnnxRuntimeRejected`)."""
    hint = "re-run `imcc compile` to write it again"
    if not path.is_file():
        raise DataError(f"{path}: missing from the compiled output", hint)
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except DecodeError as exc:
        raise DataError(f"{path}: the compiled output is corrupt (not a readable ONNX "
                        "model)", hint) from exc
    if model.producer_name != "imcc" or not model.graph.node:
        raise DataError(f"{path}: the compiled output is corrupt (not an ONNX model written "
                        "by imcc)", hint)
    return data


def ort_run(sess: ort.InferenceSession, x: np.ndarray, batch: int = 100) -> np.ndarray:
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]
    step = fixed if isinstance(fixed, int) and fixed > 0 else batch
    return np.concatenate([sess.run(None, {name: x[a:a + step]})[0]
                           for a in range(0, len(x), step)])


def evaluate(outdir: str | Path, data: Dataset, adc_bits: int | None = None,
             progress: Callable[[int], None] | None = None, max_memory: int | None = None
             ) -> tuple[dict[str, Any], SimResult]:
    """Simulate `data` (in chunks within `max_memory` bytes, see `Simulator`) and compare
    with onnxruntime on compiled.onnx (and float.onnx for the float accuracy)."""
    d = Path(outdir)
    verify_output(d, ("program.json", "arrays.npz", "compiled.onnx", "float.onnx"))
    program = read_program(d)
    if len(program.inputs) != 1 or len(program.outputs) != 1:
        raise DataError("simulate supports models with one input and one output")
    in_name = program.inputs[0][0]
    dac = int(program.target.get("dac_bits", 1))
    sim = Simulator(program, adc_bits=adc_bits, dac_bits=dac,
                    max_memory=max_memory).run({in_name: data.x}, progress)
    y = sim.outputs[program.outputs[0]]
    y_ort, y_float = (ort_run(ort_session(_output_model(d / f), str(d / f)), data.x)
                      for f in ("compiled.onnx", "float.onnx"))
    flat = y.reshape(len(y), -1)
    res: dict[str, Any] = {
        "images": len(data),
        "adc_bits": adc_bits,
        "ort_agreement": float(np.mean(flat.argmax(1) == y_ort.reshape(len(y), -1).argmax(1))),
        "max_abs_diff": float(np.abs(y - y_ort).max()),
        "cycles_per_image": sim.cycles_per_image,
        "report_cycles": program.total_cycles,
    }
    if data.labels is not None:
        res["float_top1"] = float(np.mean(y_float.reshape(len(y), -1).argmax(1) == data.labels))
        res["compiled_top1"] = float(np.mean(flat.argmax(1) == data.labels))
        res["ort_compiled_top1"] = float(np.mean(y_ort.reshape(len(y), -1).argmax(1)
                                                 == data.labels))
    return res, sim
