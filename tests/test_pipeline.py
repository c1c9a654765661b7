"""Textual pipelines (`-p`): parsing, errors, equivalence with the default flags, the
`pipeline` text of the report (round trip), and the driver's protocol checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_model
from onnx import helper

import imcc.compiler
from imcc import cli
from imcc.compiler import CompileOptions, compile_graph, compile_model, options_from_flags
from imcc.errors import UsageError
from imcc.frontend import import_proto
from imcc.passes.base import CompileContext
from imcc.passes.fold_bn import FoldBatchNorm
from imcc.passes.lowrank import LowRankPass
from imcc.passes.map import MapPass
from imcc.passes.pipeline import parse_pipeline, pipeline_spec
from imcc.passes.quantize import QuantizePass
from imcc.targets.crossbar import CrossbarTarget

T = CrossbarTarget(64, 64)


def test_parse_sets_typed_fields():
    ps = parse_pipeline("fold-bn,lowrank{rank=m/8, groups=4, include_first_last=true},"
                        "quantize{weight_bits=6,act_bits=5,first_last_bits=none},"
                        "map{strategy=vw-sdk}")
    assert [p.name for p in ps] == ["fold-bn", "lowrank", "quantize", "map"]
    lr, q, m = ps[1], ps[2], ps[3]
    assert isinstance(lr, LowRankPass) and (lr.rank, lr.groups, lr.include_first_last) == \
        ("m/8", 4, True)
    assert isinstance(q, QuantizePass) and (q.weight_bits, q.act_bits, q.first_last_bits) == \
        (6, 5, None)
    assert isinstance(m, MapPass) and m.strategy == "vw-sdk"


@pytest.mark.parametrize("spec,match", [
    ("fold-bn,nope,map", "unknown pass 'nope'"),
    ("lowrank{rnk=2},map", "unknown option 'rnk'"),
    ("quantize{weight_bits=four},map", "cannot be set"),
    ("fold-bn,quantize", "must end with the map pass"),
    ("lowrank{rank=m/2,map", "unbalanced"),
    ("lowrank{rank=m/0},map", "divisor"),
    ("map{strategy=diagonal}", "im2col"),
    ("fold-bn,,map", "empty pass name"),
    ("lowrank{rank=m/2,rank=m/4},map", "given twice"),
    ("lowrank{layer_ranks=/conv1/Conv=2},map", "per-layer table"),
    ("lowrank{layer_ranks={/conv1/Conv}},map", "not name=value"),
    ("lowrank{layer_ranks={a=2,a=4}},map", "given twice"),
    ("lowrank{layer_groups={a=two}},map", "cannot be set"),
    ("lowrank{layer_ranks={a=m/0}},map", "divisor"),
])
def test_bad_pipelines(spec, match):
    with pytest.raises(UsageError, match=match):
        parse_pipeline(spec)


@pytest.mark.slow  # compiles ResNet-20 twice
def test_pipeline_equals_flags():
    spec = "fold-bn,lowrank{rank=m/2,groups=4},map{strategy=vw-sdk}"
    a = compile_model("resnet20", CompileOptions(target=T, pipeline=parse_pipeline(spec)))
    b = compile_model("resnet20", CompileOptions(target=T, mapping="vw-sdk", quantize=False,
                                                 lowrank=LowRankPass(rank="m/2", groups=4)))
    ra, rb = dict(a.report), dict(b.report)
    assert ra.pop("passes") == rb.pop("passes") == ["fold-bn", "lowrank", "map"]
    assert ra["pipeline"] == ("fold-bn,lowrank{rank=m/2,groups=4,layer_ranks={},"
                              "layer_groups={},include_first_last=false,include_linear=false},"
                              "map{strategy=vw-sdk}")
    assert json.dumps(ra, sort_keys=True) == json.dumps(rb, sort_keys=True)
    keys = list(a.report)
    assert keys.index("pipeline") == keys.index("passes") + 1


def test_per_layer_tables_are_spelled_in_braces():
    (lr, _) = parse_pipeline("lowrank{rank=m/2, layer_ranks={/conv1/Conv=m/4, /linear/Gemm=2},"
                             "layer_groups={/conv1/Conv=1}},map")
    assert isinstance(lr, LowRankPass)
    assert lr.layer_ranks == {"/conv1/Conv": "m/4", "/linear/Gemm": "2"}
    assert lr.layer_groups == {"/conv1/Conv": 1}
    assert lr.spec() == ("lowrank{rank=m/2,groups=1,layer_ranks={/conv1/Conv=m/4,/linear/Gemm=2},"
                         "layer_groups={/conv1/Conv=1},include_first_last=false,"
                         "include_linear=false}")
    assert parse_pipeline("lowrank{layer_ranks={}},map")[0] == LowRankPass()


def test_names_that_cannot_be_spelled_are_refused():
    with pytest.raises(UsageError, match="cannot be written"):
        LowRankPass(layer_ranks={"a,b": "2"}).spec()


POLICY = {"rank": "m/4", "groups": 2, "include_linear": True,
          "layers": {"/layer1/layer1.0/conv1/Conv": {"rank": "m/8", "groups": 4},
                     "/conv1/Conv": "none"}}

# Flag sets of `imcc compile` (the keyword arguments `imcc.api.compile` passes on).
FLAG_SETS: list[dict[str, Any]] = [
    {},
    {"mapping": "im2col"}, {"mapping": "sdk"}, {"mapping": "vw-sdk"},
    {"rank": "m/2"}, {"rank": "m/8", "groups": 4}, {"rank": "3", "groups": 2},
    {"rank": "m/2", "include_first_last": True},
    {"layer_ranks": {"/conv1/Conv": "m/4", "/layer2/layer2.1/conv2/Conv": "5"}},
    {"rank": "m/2", "groups": 4, "layer_ranks": {"/conv1/Conv": "m/4"}},
    {"first_last_bits": 8}, {"first_last_bits": 8, "rank": "m/2", "mapping": "vw-sdk"},
    {"quantize": False}, {"quantize": False, "rank": "m/4", "groups": 4},
    {"policy": "file"}, {"policy": "file", "rank": "m/2", "include_first_last": True},
    {"policy": "file", "layer_ranks": {"/linear/Gemm": "2"}, "groups": 8},
]


@pytest.mark.parametrize("flags", FLAG_SETS, ids=lambda f: ",".join(f"{k}={v}" for k, v in
                                                                     f.items()) or "default")
@pytest.mark.parametrize("target", [CrossbarTarget(), CrossbarTarget(64, 32, weight_bits=6,
                                                                     act_bits=5)])
def test_every_default_pipeline_round_trips(flags: dict[str, Any], target: CrossbarTarget,
                                            tmp_path: Path):
    flags = dict(flags)
    if flags.get("policy") == "file":
        f = tmp_path / "policy.json"
        f.write_text(json.dumps(POLICY))
        flags["policy"] = LowRankPass.policy_from_file(f)
    passes = options_from_flags(target=target, **flags).passes()
    text = pipeline_spec(passes)
    again = parse_pipeline(text)
    assert again == passes
    assert pipeline_spec(again) == text
    # -p with the written text builds the same options as the flags.
    assert options_from_flags(target=target, passes=text).passes() == passes


def tiny_graph():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], name="c1", kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="c2", kernel_shape=[1, 1])]
    inits = {"w1": rng.normal(size=(8, 4, 3, 3)).astype(np.float32),
             "w2": rng.normal(size=(6, 8, 1, 1)).astype(np.float32)}
    return import_proto(make_model(nodes, [("x", ["N", 4, 6, 6])], ["y"], inits), "t")


def test_pipeline_without_map_is_a_usage_error():
    with pytest.raises(UsageError, match="no 'map' pass"):
        compile_graph(tiny_graph(), CompileOptions(pipeline=[FoldBatchNorm()]), "t")
    with pytest.raises(UsageError, match="must end with the map pass"):
        options_from_flags(target=CrossbarTarget(), passes="fold-bn,quantize")


@pytest.mark.parametrize("verify_each", [False, True])
def test_verify_once_or_after_every_pass(monkeypatch, verify_each: bool):
    calls: list[int] = []
    real = imcc.compiler.verify
    monkeypatch.setattr(imcc.compiler, "verify", lambda g: (calls.append(1), real(g)))
    opts = CompileOptions(target=CrossbarTarget(16, 16), verify_each=verify_each)
    res = compile_graph(tiny_graph(), opts, "t")
    n_passes = len(res.report["passes"])
    assert res.report["passes"] == ["fold-bn", "quantize", "map"]
    assert len(calls) == (n_passes + 1 if verify_each else 1)


def test_debug_flag_sets_verify_each(monkeypatch):
    """`imcc --debug compile` asks the API for the IR verifier after every pass."""
    from typer.testing import CliRunner

    import imcc.api

    seen: list[bool] = []

    def fake_compile(model: str, **kw: Any) -> Any:
        seen.append(kw["verify_each"])
        raise imcc.api.UsageError("stop here")

    monkeypatch.setattr(imcc.api, "compile", fake_compile)
    for args in (["compile", "m.onnx"], ["--debug", "compile", "m.onnx"]):
        res = CliRunner().invoke(cli.app, args)
        assert isinstance(res.exception, imcc.api.UsageError), res.output
    assert seen == [False, True]


def test_policy_and_flags_combine_without_mutation(tmp_path: Path):
    f = tmp_path / "policy.json"
    f.write_text(json.dumps(POLICY))
    policy = LowRankPass.policy_from_file(f)
    before = LowRankPass.policy_from_file(f)
    opts = options_from_flags(target=CrossbarTarget(), policy=policy, rank="m/2",
                              layer_ranks={"/linear/Gemm": "2"}, include_first_last=True)
    assert policy == before  # the loaded policy is not changed
    lr = opts.lowrank
    assert (lr.rank, lr.groups, lr.include_first_last, lr.include_linear) == \
        ("m/2", 2, True, True)
    assert lr.layer_ranks == {"/layer1/layer1.0/conv1/Conv": "m/8", "/conv1/Conv": "none",
                              "/linear/Gemm": "2"}
    assert lr.layer_groups == {"/layer1/layer1.0/conv1/Conv": 4}
    with pytest.raises(UsageError, match="divisor"):
        options_from_flags(target=CrossbarTarget(), policy=policy, rank="m/0")


def test_context_is_what_passes_read():
    x = np.zeros((2, 4, 6, 6), np.float32)
    ctx = CompileOptions(target=T, calib=x).context()
    assert ctx == CompileContext(target=T) and ctx.calib is x



@pytest.mark.parametrize(("spec", "problem", "reordered"), [
    ("fold-bn,quantize,lowrank{rank=m/2},map", "lowrank cannot run after quantize",
     "fold-bn,lowrank{rank=m/2},quantize,map"),
    ("fold-bn,map,quantize", "quantize cannot run after map", "fold-bn,quantize,map"),
    ("quantize,fold-bn,map", "fold-bn cannot run after quantize", "fold-bn,quantize,map"),
    ("fold-bn,fold-bn,map", "fold-bn is given twice", None),
    ("lowrank{rank=m/2},lowrank{rank=m/4},map", "lowrank is given twice", None),
])
def test_an_illegal_pass_order_is_refused_with_the_legal_order(
        spec: str, problem: str, reordered: str | None) -> None:
    with pytest.raises(UsageError) as exc:
        parse_pipeline(spec)
    text = str(exc.value)
    assert problem in text and "fold-bn, lowrank, quantize, map" in text
    if reordered:
        assert f"reordered: {reordered}" in text
        parse_pipeline(reordered)  # the suggestion is legal


def test_illegal_pipeline_on_the_command_line_exits_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "imcc.cli", "compile", "resnet20", "-p",
                           "fold-bn,quantize,lowrank{rank=m/2},map", "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "lowrank cannot run after quantize" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_pass_contracts_are_declared_per_pass() -> None:
    from imcc.passes import REGISTRY

    for cls in REGISTRY.values():
        assert cls.contract.ensures and cls.contract.why, cls.name
