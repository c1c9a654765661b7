"""Run a compiled output directory's program on data and check it against onnxruntime.

`ort_agreement` is the fraction of inputs whose argmax equals onnxruntime's on
compiled.onnx; `max_abs_diff` the largest output difference; accuracies use the labels.
`cycles_per_image` is what the simulator executed, not what the report claims. The ADC is
the one the program was compiled for unless overridden; when it is ideal or lossless the
comparison is exact (`matches_onnxruntime`), otherwise the difference is only reported.
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
from imcc.targets.program import Program
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


# onnxruntime's batches are kept near this working set (and within the simulator's
# budget): VGG-11 at 224x224 holds ~27 MB of activations per image, so one batch of 64
# images took 4.4 GB (ResNet-20's 100-image batches stay as they were).
ORT_BATCH_BYTES = 256 << 20
ORT_MAX_BATCH = 100


def ort_batch(program: Program, max_memory: int | None = None) -> int:
    """Images per onnxruntime run: its working set estimated as twice the largest crossbar
    layer's input plus output (float32) per image, within ORT_BATCH_BYTES and
    `max_memory`; 1 to ORT_MAX_BATCH."""
    per = max((4 * 2 * (int(np.prod(la.in_shape)) + int(np.prod(la.out_shape)))
               for la in program.crossbar_layers()), default=1)
    budget = ORT_BATCH_BYTES if max_memory is None else min(ORT_BATCH_BYTES, max_memory)
    return max(1, min(ORT_MAX_BATCH, budget // per))


# Outputs that differ from onnxruntime's by less than this fraction of the largest output
# magnitude (at least 1) differ only by float rounding (e.g. a float model's summation order).
FLOAT_ROUNDING = 1e-4
ADC_COMPILED = -1  # `evaluate(adc_bits=ADC_COMPILED)`: the width the program was compiled for


def adc_lossless(program: Program, adc_bits: int, dac_bits: int) -> bool:
    """Whether an `adc_bits` ADC reads every column sum of `program` exactly, so that the
    simulation equals an ideal-ADC one: every layer has integer (quantized) inputs and every
    tile's full scale fits the ADC's levels (the simulator's ADC then passes sums through)."""
    levels = (1 << adc_bits) - 1
    mask = (1 << dac_bits) - 1
    for layer in program.crossbar_layers():
        if layer.in_quant is None:
            return False  # analog sums: the ADC model quantizes them
        for tile in layer.tiles:
            full = np.abs(tile.cells.astype(np.float64)).sum(axis=0).max(initial=0)
            if mask * float(full) > levels / 2:
                return False
    return True


def _nonfinite(name: str, y: np.ndarray) -> str | None:
    bad = int(np.size(y) - np.count_nonzero(np.isfinite(y)))
    return None if bad == 0 else f"{bad} of {np.size(y)} {name} output values are NaN or inf"


# The arrays `imcc simulate --save-outputs` writes: the program's outputs, onnxruntime's on
# compiled.onnx for the same inputs, and the data's labels when it has them.
SAVED_OUTPUT_KEYS: tuple[str, ...] = ("simulated", "onnxruntime", "labels")


def evaluate(outdir: str | Path, data: Dataset, adc_bits: int | None = ADC_COMPILED,
             progress: Callable[[int], None] | None = None, max_memory: int | None = None,
             arrays: dict[str, np.ndarray] | None = None
             ) -> tuple[dict[str, Any], SimResult]:
    """Simulate `outdir`'s program on `data` and compare it with onnxruntime on
    compiled.onnx. `adc_bits`: `ADC_COMPILED` (default) models the ADC width the program was
    compiled for, an integer another width (an override), None an ideal ADC. An ADC that is
    lossless for the program is simulated as ideal. When the comparison is exact (an ideal or
    lossless ADC), ``matches_onnxruntime`` says whether the program agreed on every input
    and its outputs differ by float rounding at most; with a lossy ADC the program differs
    from compiled.onnx by design and the difference is reported, not judged. Non-finite
    outputs raise `DataError`, so a result never holds NaN or inf. The batch runs in
    chunks within `max_memory` bytes (see `Simulator`). A dict passed as `arrays` receives
    the compared outputs under the keys of `SAVED_OUTPUT_KEYS` (``simulated``,
    ``onnxruntime``, and ``labels`` when the data has labels), as `--save-outputs` saves
    them."""
    d = Path(outdir)
    verify_output(d, ("program.json", "arrays.npz", "compiled.onnx", "float.onnx"))
    program = read_program(d)
    if len(program.inputs) != 1 or len(program.outputs) != 1:
        raise DataError("simulate supports models with one input and one output")
    in_name = program.inputs[0][0]
    dac = int(program.target.get("dac_bits", 1))
    compiled_adc = int(program.target.get("adc_bits", 8))
    # An unquantized (--no-quantize) program has no integer inputs for an ADC to convert:
    # by default it reads exact sums; an explicit width still models an analog ADC.
    default = compiled_adc if program.quantized else None
    bits = default if adc_bits == ADC_COMPILED else adc_bits
    lossless = bits is None or adc_lossless(program, bits, dac)
    sim = Simulator(program, adc_bits=None if lossless else bits, dac_bits=dac,
                    max_memory=max_memory).run(
        {in_name: data.x}, progress)
    y = sim.outputs[program.outputs[0]]
    batch = ort_batch(program, max_memory)
    report_cycles = program.total_cycles
    del program  # its tiles' cells: VGG-11's are 532 MB, not needed by onnxruntime

    def run_file(f: str) -> np.ndarray:
        return ort_run(ort_session(_output_model(d / f), str(d / f)), data.x, batch)

    y_ort = run_file("compiled.onnx")
    # float.onnx only serves float_top1: without labels it is checked to be the output's
    # (a DataError otherwise), not run.
    if data.labels is not None:
        y_float: np.ndarray | None = run_file("float.onnx")
    else:
        _output_model(d / "float.onnx")
        y_float = None
    for name, arr in (("simulated", y), ("onnxruntime", y_ort)):
        problem = _nonfinite(name, arr)
        if problem:
            raise DataError(f"simulation failed: {problem} (a non-finite result is never a "
                            "success)", hint="check the data's scale (mean/std) and the model's "
                                             "weights")
    if arrays is not None:
        arrays.update({"simulated": y, "onnxruntime": y_ort})
        if data.labels is not None:
            arrays["labels"] = data.labels
    flat = y.reshape(len(y), -1)
    agreement = float(np.mean(flat.argmax(1) == y_ort.reshape(len(y), -1).argmax(1)))
    max_diff = float(np.abs(y - y_ort).max()) if y.size else 0.0
    tol = FLOAT_ROUNDING * max(1.0, float(np.abs(y_ort).max(initial=0)))
    exact = agreement == 1.0 and max_diff <= tol
    res: dict[str, Any] = {
        "images": len(data),
        "adc_bits": bits,
        "adc_bits_compiled": compiled_adc,
        "adc_override": bits != compiled_adc,
        "adc_lossless": lossless,
        "ort_agreement": agreement,
        "max_abs_diff": max_diff,
        "float_rounding_tolerance": tol,
        "compared_exactly": lossless,
        "matches_onnxruntime": exact if lossless else None,
        "mismatch": None if (exact or not lossless) else (
            f"agreement with onnxruntime {100 * agreement:.2f}% (expected 100%), max abs diff "
            f"{max_diff:.3g} (float rounding allows {tol:.3g})"),
        "cycles_per_image": sim.cycles_per_image,
        "report_cycles": report_cycles,
    }
    if sim.placed_cycles_per_image is not None:
        # What the replicas of the placed program executed (imcc-program/2 with --chip).
        res["placed_cycles_per_image"] = sim.placed_cycles_per_image
    if data.labels is not None:
        assert y_float is not None
        res["float_top1"] = float(np.mean(y_float.reshape(len(y), -1).argmax(1) == data.labels))
        res["compiled_top1"] = float(np.mean(flat.argmax(1) == data.labels))
        res["ort_compiled_top1"] = float(np.mean(y_ort.reshape(len(y), -1).argmax(1)
                                                 == data.labels))
    return res, sim
