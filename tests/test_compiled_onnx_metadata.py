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


@pytest.mark.parametrize("quantize", [False, True])
def test_streamed_onnx_is_the_same_model(quantize: bool) -> None:
    """write_onnx (the large initializers appended as further occurrences of the graph
    field) reads back as to_onnx's model: same nodes, metadata and initializers (the large
    ones last), valid for the checker, and onnxruntime computes the same outputs bit for
    bit. float.onnx and compiled.onnx are written this way."""
    import io

    import numpy as np
    import onnxruntime as ort
    from conftest import make_model
    from onnx import helper

    from imcc.compiler import CompileOptions, compile_graph, compiled_onnx_bytes
    from imcc.frontend import import_proto
    from imcc.ir.onnx_export import STREAM_BYTES, serialize, to_onnx, write_onnx
    from imcc.targets.crossbar import CrossbarTarget

    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(64, 3, 3, 3)).astype(np.float32)          # small
    w2 = rng.normal(size=(128, 64, 3, 3)).astype(np.float32) * 0.05  # streamed
    assert w1.nbytes < STREAM_BYTES <= w2.nbytes // (1 if not quantize else 4)
    m = make_model([helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1] * 4),
                    helper.make_node("Relu", ["a"], ["r"]),
                    helper.make_node("Conv", ["r", "w2", "b2"], ["y"], pads=[1] * 4)],
                   [("x", ["N", 3, 8, 8])], ["y"],
                   {"w1": w1, "w2": w2, "b2": rng.normal(size=(128,)).astype(np.float32)})
    graph = import_proto(m, "t")
    if quantize:
        res = compile_graph(graph, CompileOptions(target=CrossbarTarget(128, 128)), "t")
        graph = res.graph
        streamed, whole = compiled_onnx_bytes(res), res.float_graph_bytes
        assert onnx.load_from_string(streamed).metadata_props  # the stamp survives
        streamed_float = io.BytesIO()
        write_onnx(import_proto(m, "t"), streamed_float)
        assert streamed_float.getvalue() == whole  # float.onnx: written before the passes
        whole = serialize(graph)
    else:
        buf = io.BytesIO()
        write_onnx(graph, buf)
        streamed, whole = buf.getvalue(), serialize(graph)
    a, b = to_onnx(graph), onnx.load_from_string(streamed)
    onnx.checker.check_model(b)
    assert [n.SerializeToString() for n in a.graph.node] == \
        [n.SerializeToString() for n in b.graph.node]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in b.graph.initializer}
    assert len(inits) == len(b.graph.initializer) == len(a.graph.initializer)
    for t in a.graph.initializer:
        want = onnx.numpy_helper.to_array(t)
        assert inits[t.name].dtype == want.dtype and np.array_equal(inits[t.name], want)
    big = [t.name for t in b.graph.initializer if t.raw_data and len(t.raw_data) >= STREAM_BYTES]
    assert big and b.graph.initializer[-1].name == big[-1]
    x = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    ya = ort.InferenceSession(whole, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    yb = ort.InferenceSession(streamed, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert np.array_equal(ya[0], yb[0])
