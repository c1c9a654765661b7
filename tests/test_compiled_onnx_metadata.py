"""compiled.onnx says how to run it: metadata_props with the input normalization, imcc
version, target and pipeline; the README's onnxruntime snippet runs on the bundled model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from test_simulate_gate import compiled  # noqa: F401  (module fixture: a small model)

from imcc import __version__

ROOT = Path(__file__).resolve().parent.parent


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def test_metadata_of_a_model_without_known_normalization(
        compiled: tuple[Path, Path]) -> None:  # noqa: F811
    out = compiled[0]
    meta = metadata(out / "compiled.onnx")
    rep = json.loads((out / "report.json").read_text())
    assert meta == {"imcc.input_normalization": "none", "imcc.version": __version__,
                    "imcc.target": "128x128 weight_bits=4 cell_bits=1 act_bits=4 dac_bits=1 "
                                   "adc_bits=8 tech=isaac",
                    "imcc.pipeline": rep["pipeline"]}


@pytest.mark.slow  # uses the ResNet-20 compile
def test_readme_snippet_runs_compiled_onnx_on_the_bundled_model(
        resnet20_float_auto: tuple[Path, object]) -> None:
    outdir = resnet20_float_auto[0]
    norm = json.loads(metadata(outdir / "compiled.onnx")["imcc.input_normalization"])
    assert norm["mean"] == [0.485, 0.456, 0.406] and norm["std"] == [0.229, 0.224, 0.225]
    readme = (ROOT / "README.md").read_text()
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", readme, re.S)
               if "imcc.input_normalization" in c]
    code = re.sub(r"(?m)^  ", "", code)  # the snippet sits in a list item
    assert '"resnet20.imcc/compiled.onnx"' in code
    code = code.replace('"resnet20.imcc/compiled.onnx"', repr(str(outdir / "compiled.onnx")))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    top1 = float(proc.stdout.split("top-1:")[1])
    assert top1 >= 0.85  # the float network: about 90% (raw 0..255 input gives about 11%)
