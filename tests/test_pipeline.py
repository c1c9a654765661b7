"""Textual pipelines (`-p`): parsing, errors, and equivalence with the default flags."""

from __future__ import annotations

import json

import pytest

from imcc.compiler import CompileOptions, compile_model
from imcc.errors import UsageError
from imcc.passes.lowrank import LowRankPass
from imcc.passes.map import MapPass
from imcc.passes.pipeline import parse_pipeline
from imcc.passes.quantize import QuantizePass
from imcc.targets.crossbar import CrossbarTarget

T = CrossbarTarget(64, 64)


def test_parse_sets_typed_fields():
    ps = parse_pipeline("fold-bn,lowrank{rank=m/8, groups=4, include_first_last=true},"
                        "quantize{weight_bits=6,act_bits=5,first_last_bits=none},"
                        "map{strategy=vw-sdk}", T)
    assert [p.name for p in ps] == ["fold-bn", "lowrank", "quantize", "map"]
    lr, q, m = ps[1], ps[2], ps[3]
    assert isinstance(lr, LowRankPass) and (lr.rank, lr.groups, lr.include_first_last) == \
        ("m/8", 4, True)
    assert isinstance(q, QuantizePass) and (q.weight_bits, q.act_bits, q.first_last_bits) == \
        (6, 5, None)
    assert isinstance(m, MapPass) and m.strategy == "vw-sdk" and m.target == T


@pytest.mark.parametrize("spec,match", [
    ("fold-bn,nope,map", "unknown pass 'nope'"),
    ("lowrank{rnk=2},map", "unknown option 'rnk'"),
    ("quantize{weight_bits=four},map", "cannot be set"),
    ("fold-bn,quantize", "must end with the map pass"),
    ("lowrank{rank=m/2,map", "unbalanced"),
    ("lowrank{rank=m/0},map", "divisor"),
    ("map{strategy=diagonal}", "im2col"),
    ("fold-bn,,map", "empty pass name"),
])
def test_bad_pipelines(spec, match):
    with pytest.raises(UsageError, match=match):
        parse_pipeline(spec, T)


@pytest.mark.slow  # compiles ResNet-20 twice
def test_pipeline_equals_flags():
    spec = "fold-bn,lowrank{rank=m/2,groups=4},map{strategy=vw-sdk}"
    a = compile_model("resnet20", CompileOptions(target=T, pipeline=parse_pipeline(spec, T)))
    b = compile_model("resnet20", CompileOptions(target=T, mapping="vw-sdk", quantize=False,
                                                 lowrank=LowRankPass(rank="m/2", groups=4)))
    ra, rb = dict(a.report), dict(b.report)
    assert ra.pop("passes") == rb.pop("passes") == ["fold-bn", "lowrank", "map"]
    assert json.dumps(ra, sort_keys=True) == json.dumps(rb, sort_keys=True)
