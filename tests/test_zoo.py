"""The model zoo as tests (issue 11): torchvision classifiers as PyTorch's two exporters
wrote them (TorchScript, opset 17, dynamic batch; dynamo, opset 20, batch 1), shipped as
stripped graphs (tests/assets/zoo, made by scripts/strip_zoo.py from the exports of
/work/shared/tools/export_small_zoo.py: random weights, seed 0) whose weights are
regenerated at load (tests/zoo/assets.py). Each export is compiled in both modes and its
crossbar program simulated: unquantized it equals onnxruntime on the export itself,
quantized it equals onnxruntime on compiled.onnx, and the executed cycles equal the
report's (tests/zoo/check.py)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from zoo.assets import MAX_KEPT, is_stripped, resize, restore
from zoo.check import MODES, check

ZOO = Path(__file__).parent / "assets" / "zoo"
CNNS = ["mnasnet0_5", "mobilenet_v3_small", "shufflenet_v2_x0_5", "squeezenet1_1"]
# SqueezeNet (under a second a run) stays in the fast subset; the others are slow.
EXPORTS = [pytest.param(f"{m}{s}", marks=() if m == "squeezenet1_1" else pytest.mark.slow)
           for m in CNNS for s in ("", "_dynamo")]
# The exports take 224x224 images; the tests feed 32x32 ones (the graphs compute their
# shapes from the input, and 32 is the smallest size all five down-samplings leave >= 1),
# except where the exporter hard-coded the sizes: dynamo's channel-shuffle reshapes
# (1, 2, 24, 28, 28) in ShuffleNet.
NATIVE = {"shufflenet_v2_x0_5_dynamo"}
# The TorchScript ViT unquantized (dynamic batch merged with the heads) stays in the fast
# subset; the other three take a few seconds each.
VIT = [pytest.param(m, mode, marks=() if (m, mode) == ("vit_tiny", "float") else
                    pytest.mark.slow)
       for m in ("vit_tiny", "vit_tiny_dynamo") for mode in MODES]


def _load(name: str, tmp_path: Path) -> Path:
    m = restore(onnx.load(str(ZOO / f"{name}.onnx")))
    if name not in NATIVE:
        m = resize(m, 32, 32)
    p = tmp_path / f"{name}.onnx"
    onnx.save(m, str(p))
    return p


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", EXPORTS)
def test_cnn_export(name: str, mode: str, tmp_path: Path) -> None:
    o = check(_load(name, tmp_path), mode, n=2, workdir=tmp_path)
    assert o.status == "passed", o.reason
    assert o.scale > 0 and o.agreement == 1.0 and o.max_diff <= o.tolerance
    assert o.report_cycles == o.executed_cycles > 0


@pytest.mark.parametrize(("name", "mode"), VIT)
def test_vit_export(name: str, mode: str, tmp_path: Path) -> None:
    """torchvision's ViT as both exporters write it: attention moves the batch to axis 1
    and merges it with the heads ((B, T, C) -> (T, B*heads, d) -> (B*heads, T, d)), which
    the importer tracks per value; the two activation x activation MatMuls are digital."""
    o = check(_vit(name, tmp_path), mode, n=2, workdir=tmp_path)
    assert o.status == "passed", o.reason
    assert o.scale > 0 and o.agreement == 1.0 and o.max_diff <= o.tolerance
    assert o.report_cycles == o.executed_cycles > 0


# Swin (scripts/export_zoo.py: embed 32, depths 2-2, 4x4 windows, 64x64 input): windows
# folded into the batch, shifted windows (roll as Slice + Concat), attention masks and the
# relative position bias. Its all-zero tensors were redrawn before export.
SWIN = [pytest.param(m, mode, marks=() if (m, mode) == ("swin_small_custom", "float") else
                     pytest.mark.slow)
        for m in ("swin_small_custom", "swin_small_custom_dynamo") for mode in MODES]


@pytest.mark.parametrize(("name", "mode"), SWIN)
def test_swin_export(name: str, mode: str, tmp_path: Path) -> None:
    p = tmp_path / f"{name}.onnx"
    onnx.save(restore(onnx.load(str(ZOO / f"{name}.onnx"))), str(p))  # at its 64x64
    o = check(p, mode, n=2, workdir=tmp_path)
    assert o.status == "passed", o.reason
    assert o.scale > 0 and o.agreement == 1.0 and o.max_diff <= o.tolerance
    assert o.report_cycles == o.executed_cycles > 0


def _vit(name: str, tmp_path: Path) -> Path:
    p = tmp_path / f"{name}.onnx"
    # 32x32 already; the zero-initialized head and class token drawn at the other
    # weights' scale, so the logits are not all 0.
    onnx.save(restore(onnx.load(str(ZOO / f"{name}.onnx")), zeros=0.05), str(p))
    return p


def test_assets_are_stripped_exports_restored_deterministically() -> None:
    """Every large float tensor is stripped (the files stay small), everything else is the
    export verbatim, and regeneration is byte-identical for a seed and differs across
    seeds."""
    for p in sorted(ZOO.glob("*.onnx")):
        m = onnx.load(str(p))
        # (the TorchScript Swin's 2,320 nodes with their scope names take 430 KiB)
        assert p.stat().st_size < 512 << 10, p.name
        assert m.producer_name == "pytorch" and len(m.graph.node) > 50, p.name
        stripped = [t for t in m.graph.initializer if is_stripped(t)]
        assert stripped, p.name
        assert all(not t.raw_data and not t.float_data for t in stripped)
        kept = [t for t in m.graph.initializer if not is_stripped(t)]
        assert all(t.data_type != onnx.TensorProto.FLOAT or
                   len(onnx.numpy_helper.to_array(t).reshape(-1)) <= MAX_KEPT for t in kept)
    m = onnx.load(str(ZOO / "squeezenet1_1.onnx"))
    a, b, c = restore(m), restore(m), restore(m, seed=1)
    assert a.SerializeToString() == b.SerializeToString() != c.SerializeToString()
    assert [n.SerializeToString() for n in a.graph.node] == \
        [n.SerializeToString() for n in m.graph.node]
    onnx.checker.check_model(a)


def test_vit_mac_share(tmp_path: Path) -> None:
    """The TorchScript ViT (4 blocks, 65 tokens of 128 channels): hand-counted MACs per
    image. Crossbars: the 4x4 patch embedding 8*8*128*48, per block QKV 65*128*384, output
    projection 65*128*128 and the MLP 2*65*128*256, the head 128*10. Digital: per block the
    scores and attention x values, 65*65*128 each; neither is ever a crossbar layer."""
    import imcc

    res = imcc.compile(_vit("vit_tiny", tmp_path), quantize=False, output=tmp_path / "out")
    macs = res.report.macs
    assert macs is not None
    digital = [o for o in macs.ops if o.unit == "digital"]
    assert [(o.op, o.macs) for o in digital] == [("MatMul", 65 * 65 * 128)] * 8
    assert {o.name for o in digital}.isdisjoint(la.name for la in res.report.layers)
    assert {la.op for la in res.report.layers} == {"Conv", "Linear"}
    block = 65 * 128 * 384 + 65 * 128 * 128 + 2 * 65 * 128 * 256
    assert macs.crossbar == 8 * 8 * 128 * 48 + 4 * block + 128 * 10 == 34_473_216
    assert macs.digital == 8 * 65 * 65 * 128 == 4_326_400
    assert f"{macs.crossbar_share:.4f}" == "0.8885"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_tiny", "vit_tiny_dynamo"])
def test_vit_lowrank_linear_is_bit_exact(name: str, tmp_path: Path) -> None:
    """Group low-rank on every Linear of the ViT (include_linear), quantized: the program
    equals compiled.onnx bit for bit and executes the cycles the report states."""
    import numpy as np
    from zoo.check import random_inputs

    import imcc
    from imcc.dataset import Dataset

    path = _vit(name, tmp_path)
    res = imcc.compile(path, output=tmp_path / "out", passes="fold-bn, lowrank{rank=m/4, "
                       "groups=2, include_linear=true}, quantize, map")
    assert res.report.lowrank is not None and res.report.lowrank.factorized_layers == 16
    x = random_inputs(onnx.load(str(path)), 2)
    sim = imcc.simulate(res, data=Dataset(x, None, "random"))
    y, ref = np.asarray(sim.saved["simulated"]), np.asarray(sim.saved["onnxruntime"])
    assert sim.matches_onnxruntime is True and np.abs(ref).max() > 0
    assert float(np.abs(y - ref).max()) == 0.0
    assert sim.cycles_per_image == sim.report_cycles == res.report.total_cycles
