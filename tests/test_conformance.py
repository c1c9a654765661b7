"""ONNX conformance: every backend node test case of an op imcc claims either matches after
compile (unquantized) + crossbar simulation, or is refused at import/compile time with a
message naming the unsupported construct. See tests/conformance/runner.py and
docs/conformance.md (regenerate with `python scripts/conformance_report.py`)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import onnx
import pytest
from conformance.runner import (
    CROSSBAR_OPS,
    Case,
    Outcome,
    extra_cases,
    onnx_cases,
    render_conformance,
    run_case,
    summary,
)

from imcc.targets.crossbar import CrossbarTarget

CONFORMANCE = Path(__file__).resolve().parent.parent / "docs" / "conformance.md"


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    with warnings.catch_warnings():
        # ONNX's Cast cases overflow float8 on purpose while generating their data.
        warnings.simplefilter("ignore", RuntimeWarning)
        return onnx_cases() + extra_cases()


@pytest.fixture(scope="module")
def outcomes(cases: list[Case]) -> list[Outcome]:
    return [run_case(c) for c in cases]


def test_every_case_matches_or_is_refused(outcomes: list[Outcome],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():  # the counts belong in the CI log even when the test passes
        print("\n" + summary(outcomes))
    bad = [f"{o.case} [{o.status}]: {o.detail}" for o in outcomes
           if o.status not in ("matched", "refused")]
    assert not bad, "cases that neither match nor are refused:\n" + "\n".join(bad)
    for o in outcomes:
        if o.status == "refused":
            # The reason names the node (by op type) or the graph input at fault.
            assert re.search(rf"\b{o.op} node\b|graph input", o.detail), (o.case, o.detail)


def test_crossbar_ops_and_their_attributes_are_covered(outcomes: list[Outcome]) -> None:
    """The mapped ops must not quietly degrade into refusals: every Conv case (strides,
    pads, auto_pad, dilations, groups) matches, and Gemm/MatMul match except for the
    documented constructs (transA, a batch-varying bias, non-constant/batched weights)."""
    matched = {o.case for o in outcomes if o.status == "matched"}
    conv = [o for o in outcomes if o.op == "Conv"]
    assert conv and all(o.status == "matched" for o in conv), \
        [(o.case, o.detail) for o in conv if o.status != "matched"]
    for name in ("test_gemm_alpha", "test_gemm_beta", "test_gemm_transposeB",
                 "test_gemm_default_scalar_bias", "test_gemm_default_no_bias",
                 "test_matmul_2d", "imcc_gemm_transB_alpha_beta_tiled", "imcc_matmul_3d_tiled"):
        assert name in matched, name
    refused = {o.case: o.detail for o in outcomes if o.status == "refused"}
    assert "transA" in refused["test_gemm_transposeA"]
    # Parallel-window mappings were exercised, not only im2col.
    used = set().union(*(o.strategies for o in outcomes if o.op in CROSSBAR_OPS))
    assert {"im2col", "sdk", "vw-sdk"} <= used, used


def test_conformance_doc_is_current(outcomes: list[Outcome]) -> None:
    text = CONFORMANCE.read_text() if CONFORMANCE.is_file() else ""
    m = re.search(r"\(onnx ([^)]+)\)", text)
    if m and m.group(1) != onnx.__version__:
        pytest.skip(f"docs/conformance.md was generated with onnx {m.group(1)}, "
                    f"this is onnx {onnx.__version__}")
    assert text == render_conformance(outcomes), \
        "docs/conformance.md is stale: run python scripts/conformance_report.py"


def test_single_slice_unquantized_layout(cases: list[Case]) -> None:
    """--no-quantize with cell-bits == weight-bits (one column per weight)."""
    t = CrossbarTarget(rows=8, cols=8, weight_bits=4, cell_bits=4)
    runs = (("im2col", t), ("auto", t))
    res = [run_case(c, runs) for c in cases if c.op in CROSSBAR_OPS]
    bad = [f"{o.case}: {o.detail}" for o in res if o.status not in ("matched", "refused")]
    assert not bad, "\n".join(bad)
