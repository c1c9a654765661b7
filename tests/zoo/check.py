"""Compile a model in one mode and check its crossbar program, as the zoo tests and
scripts/limits_table.py do.

Modes: ``float`` (`--no-quantize`): the simulated program must equal onnxruntime on the
*original* model to float rounding (argmax agreement 100%, max |diff| within
`FLOAT_ROUNDING` times the largest |output|). ``quantized`` (the default pipeline): it must
equal onnxruntime on compiled.onnx the same way. In both, the
executed (window, tile) activations per image must equal the report's cycles. Inputs are
seeded standard-normal samples at the model's own input size; a dynamic batch takes them
all at once, a static batch of 1 one by one.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx

import imcc
from imcc.dataset import Dataset
from imcc.errors import ImccError
from imcc.sim.evaluate import FLOAT_ROUNDING, ort_session

MODES = ("float", "quantized")


@dataclass(frozen=True)
class Outcome:
    mode: str
    status: str                 # passed | refused | mismatch | unchecked (all-zero reference)
    reason: str = ""            # the refusal or the mismatch, one line
    max_diff: float = float("nan")
    tolerance: float = float("nan")
    agreement: float = float("nan")
    report_cycles: int = 0
    executed_cycles: int = 0
    scale: float = float("nan")  # the largest |output| of the reference


def model_input(model: onnx.ModelProto) -> tuple[str, list[int | None]]:
    inits = {t.name for t in model.graph.initializer}
    v = next(i for i in model.graph.input if i.name not in inits)
    return v.name, [d.dim_value if d.HasField("dim_value") else None
                    for d in v.type.tensor_type.shape.dim]


def random_inputs(model: onnx.ModelProto, n: int, seed: int = 0) -> np.ndarray:
    _, shape = model_input(model)
    rest = [d if d is not None else 1 for d in shape[1:]]
    return np.random.default_rng(seed).standard_normal((n, *rest)).astype(np.float32)


def ort_reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """onnxruntime on ``model``, one sample at a time when the batch is fixed at 1."""
    name, shape = model_input(model)
    sess = ort_session(model.SerializeToString())
    if shape and shape[0] == 1:
        return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    return np.asarray(sess.run(None, {name: x})[0])


def check(path: Path, mode: str, n: int = 2, seed: int = 0,
          workdir: Path | None = None) -> Outcome:
    """Compile ``path`` in ``mode`` and check its program (see the module docstring)."""
    model = onnx.load(str(path))
    x = random_inputs(model, n, seed)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        try:
            res = imcc.compile(path, quantize=mode == "quantized", output=Path(tmp) / "out")
            sim = imcc.simulate(res, data=Dataset(x, None, "random"))
        except ImccError as exc:
            return Outcome(mode, "refused", exc.message.splitlines()[0])
    cycles = dict(report_cycles=sim.report_cycles, executed_cycles=sim.cycles_per_image)
    y = np.asarray(sim.saved["simulated"]).reshape(n, -1)
    # Unquantized: against the export itself; quantized: against compiled.onnx, which is
    # what the program was compiled from (imcc simulate's own comparison).
    ref = (ort_reference(model, x) if mode == "float"
           else np.asarray(sim.saved["onnxruntime"])).reshape(n, -1)
    diff = float(np.abs(y - ref).max())
    # Relative to the outputs' scale, not to max(1, scale) as `imcc simulate` judges: random
    # weights can leave logits of 1e-9, where an absolute 1e-4 would check nothing.
    scale = float(np.abs(ref).max())
    tol = FLOAT_ROUNDING * scale
    agree = float(np.mean(y.argmax(1) == ref.argmax(1)))
    ok = agree == 1.0 and diff <= tol and (mode == "float" or sim.matches_onnxruntime is True)
    what = "the original model" if mode == "float" else "compiled.onnx"
    out = Outcome(mode, "passed" if ok else "mismatch",
                  "" if ok else f"vs {what}: agreement {100 * agree:.1f}%, max abs diff "
                                f"{diff:.3g} (tolerance {tol:.3g})",
                  diff, tol, agree, scale=scale, **cycles)
    if scale == 0:  # e.g. an untrained ViT's zero-initialized head: nothing was compared
        return replace(out, status="unchecked", reason="the reference output is all zeros")
    if out.status == "passed" and out.report_cycles != out.executed_cycles:
        return replace(out, status="mismatch",
                       reason=f"executed {out.executed_cycles} cycles per image, "
                              f"the report says {out.report_cycles}")
    return out
