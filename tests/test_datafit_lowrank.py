"""Data-aware low-rank (imcc.passes.datafit reduced-rank regression, lowrank{method}) and
the quantize pass's refit of low-rank pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_lowrank import factorized, feeds, make_net, make_weights

import imcc.passes.quantize as quantize_mod
from imcc.compiler import CompileOptions, compile_graph, write_outputs
from imcc.dataset import Dataset
from imcc.errors import UsageError
from imcc.ir import Graph, verify
from imcc.ir.interp import run_outputs
from imcc.ir.records import LowRankRecord
from imcc.passes.base import CompileContext
from imcc.passes.datafit import (
    RIDGE,
    equalize_channels,
    fit_data,
    fit_objective,
    lsq_refit,
    reduced_rank_fit,
)
from imcc.passes.lowrank import LowRankPass, grouped_lowrank
from imcc.passes.pipeline import parse_pipeline
from imcc.passes.quantize import QuantizePass
from imcc.report.model import Report
from imcc.report.render import to_markdown
from imcc.sim.evaluate import evaluate


def assemble(r: np.ndarray, lw: np.ndarray, groups: int) -> np.ndarray:
    """A = [L_1 R_1 ... L_g R_g] (m x n) from reduced_rank_fit's layout."""
    k = r.shape[0] // groups
    return np.concatenate([lw[:, i * k:(i + 1) * k] @ r[i * k:(i + 1) * k]
                           for i in range(groups)], axis=1)


def problem(seed: int, p: int, n: int, m: int, noise: float = 0.3, corr: bool = True
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patches X (p x n), a weight W (m x n) and targets Y = X W^T + noise: the setting of a
    layer whose inputs come from an already compressed network."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((p, n))
    if corr:
        x = x @ rng.standard_normal((n, n)) * np.exp(rng.uniform(-2, 2, n))
    w = rng.standard_normal((m, n))
    y = x @ w.T + noise * rng.standard_normal((p, m)) * np.abs(x @ w.T).mean()
    return x, w, y


def closed_form(x: np.ndarray, y: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Rank-k reduced-rank regression, textbook form on the explicitly augmented problem
    ([X; sqrt(lam) I], [Y; 0]): least-squares map B, then projection onto the top-k left
    singular vectors of its fitted outputs B Xa^T."""
    n = x.shape[1]
    xa = np.vstack([x, np.sqrt(lam) * np.eye(n)])
    ya = np.vstack([y, np.zeros((n, y.shape[1]))])
    b = np.linalg.lstsq(xa, ya, rcond=None)[0].T          # m x n
    u = np.linalg.svd(b @ xa.T, full_matrices=False)[0][:, :k]
    return u @ u.T @ b


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 10), m=st.integers(1, 8),
       k=st.integers(1, 8), ridge=st.sampled_from([0.0, 1e-3, 0.5]))
def test_one_group_rrr_equals_closed_form(seed: int, n: int, m: int, k: int, ridge: float
                                          ) -> None:
    k = min(k, m, n)
    x, _, y = problem(seed, 40, n, m)
    d = fit_data(x, y)
    lam = ridge * float(np.mean(np.diag(d.cov)))
    r, lw, f = reduced_rank_fit(d, 1, k, ridge=lam)
    want = closed_form(x, y, k, lam)
    f_want = fit_objective(want, d, lam)
    assert f == pytest.approx(f_want, rel=1e-7, abs=1e-9 * d.yy)
    # The optimum is unique when the k-th and (k+1)-th singular values differ (generic).
    np.testing.assert_allclose(assemble(r, lw, 1), want, rtol=1e-5,
                               atol=1e-6 * np.abs(want).max())
    # Gauge: orthonormal L.
    np.testing.assert_allclose(lw.T @ lw, np.eye(k), atol=1e-8)


def test_rrr_is_input_whitened_svd_when_targets_are_linear() -> None:
    # Y = X W^T exactly: the data-weighted optimum is the SVD of W G (G: Cholesky factor of
    # the input covariance), mapped back by G^-1 -- the special case the issue names.
    x, w, _ = problem(3, 200, 6, 5)
    y = x @ w.T
    d = fit_data(x, y)
    r, lw, _ = reduced_rank_fit(d, 1, 2, ridge=0.0)
    g = np.linalg.cholesky(d.cov)
    u, s, vt = np.linalg.svd(w @ g)
    want = (u[:, :2] * s[:2]) @ vt[:2] @ np.linalg.inv(g)
    np.testing.assert_allclose(assemble(r, lw, 1), want, rtol=1e-6, atol=1e-8)


@st.composite
def grouped_cases(draw: st.DrawFn) -> tuple[int, int, int, int, int, bool]:
    g = draw(st.sampled_from([1, 2, 3, 4]))
    ng = draw(st.integers(1, 5))
    m = draw(st.integers(1, 8))
    k = draw(st.integers(1, min(m, ng)))
    return draw(st.integers(0, 10_000)), g, ng * g, m, k, draw(st.booleans())


@settings(max_examples=40, deadline=None)
@given(case=grouped_cases())
def test_theorem1_on_the_data_weighted_error(case: tuple[int, int, int, int, int, bool]
                                             ) -> None:
    # Grouped error <= ungrouped error at the same k, for the data-weighted objective.
    seed, g, n, m, k, corr = case
    x, _, y = problem(seed, 60, n, m, corr=corr)
    d = fit_data(x, y)
    lam = RIDGE * float(np.mean(np.diag(d.cov)))
    f1 = reduced_rank_fit(d, 1, k, ridge=lam)[2]
    fg = reduced_rank_fit(d, g, k, ridge=lam)[2]
    assert fg <= f1 * (1 + 1e-9) + 1e-12 * d.yy


@settings(max_examples=40, deadline=None)
@given(case=grouped_cases())
def test_rrr_never_worse_than_plain_svd(case: tuple[int, int, int, int, int, bool]) -> None:
    seed, g, n, m, k, corr = case
    x, w, y = problem(seed, 60, n, m, corr=corr)
    d = fit_data(x, y)
    lam = RIDGE * float(np.mean(np.diag(d.cov)))
    r0, l0, _ = grouped_lowrank(w, g, k)
    f_svd = fit_objective(assemble(r0, l0, g), d, lam)
    r, lw, f = reduced_rank_fit(d, g, k, ridge=lam)
    assert f <= f_svd * (1 + 1e-9) + 1e-12 * d.yy
    assert f == pytest.approx(fit_objective(assemble(r, lw, g), d, lam), rel=1e-9, abs=1e-9)


def test_rrr_beats_plain_svd_on_correlated_inputs() -> None:
    # Not just "never worse": on uneven inputs the data-weighted error drops a lot.
    for g in (1, 2, 4):
        x, w, y = problem(11, 400, 16, 12, noise=0.05)
        d = fit_data(x, y)
        r0, l0, _ = grouped_lowrank(w, g, 2)
        e_svd = fit_objective(assemble(r0, l0, g), d) / d.yy
        r, lw, _ = reduced_rank_fit(d, g, 2)
        e_rrr = fit_objective(assemble(r, lw, g), d) / d.yy
        assert e_rrr < 0.5 * e_svd, (g, e_rrr, e_svd)


def test_lsq_refit_is_least_squares_with_an_intercept() -> None:
    rng = np.random.default_rng(5)
    z = rng.standard_normal((50, 4)) + 2.0
    t = z @ rng.standard_normal((4, 3)) + 0.7 + 0.1 * rng.standard_normal((50, 3))
    w, c = lsq_refit(z, t, ridge=0.0)
    sol = np.linalg.lstsq(np.hstack([z, np.ones((50, 1))]), t, rcond=None)[0]
    np.testing.assert_allclose(w, sol[:4].T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(c, sol[4], rtol=1e-8, atol=1e-10)


def test_equalize_channels_keeps_the_product_and_equalizes_rms() -> None:
    x, _, y = problem(2, 300, 8, 6)
    d = fit_data(x, y)
    r, lw, _ = reduced_rank_fit(d, 2, 3)
    r2, l2 = equalize_channels(d, 2, r, lw)
    np.testing.assert_allclose(assemble(r2, l2, 2), assemble(r, lw, 2), rtol=1e-9,
                               atol=1e-12)
    z = np.concatenate([x[:, :4] @ r2[:3].T, x[:, 4:] @ r2[3:].T], axis=1)
    rms = np.sqrt((z ** 2).mean(axis=0))
    np.testing.assert_allclose(rms, rms.max(), rtol=1e-9)


# ---------------------------------------------------------------------------- the pass


def calib(n: int = 16) -> np.ndarray:
    return feeds(seed=4, n=n)["x"]


def test_method_auto_is_svd_without_data_and_unchanged() -> None:
    weights = make_weights()
    g = make_net(weights)
    res = LowRankPass(rank="m/2", groups=2).run(g, CompileContext())
    (record,) = res.records
    assert isinstance(record, LowRankRecord) and record.method == "svd"
    for d in record.decisions:
        if d.factorized:
            assert d.method == "svd" and d.data_error is None
    # The factors are exactly the plain per-group SVD, as before method existed.
    r_name, l_name = factorized(g)["conv2"]
    r0, l0, err = grouped_lowrank(weights["conv2.weight"], 2, 8)
    np.testing.assert_array_equal(g.node(r_name).inputs[1].data, r0)
    np.testing.assert_array_equal(g.node(l_name).inputs[1].data, l0)
    assert g.node(l_name).inputs[2].data is weights["conv2.bias"] or \
        np.array_equal(g.node(l_name).inputs[2].data, weights["conv2.bias"])
    assert next(d for d in record.decisions if d.layer == "conv2").rel_error == err


def test_method_data_records_errors_and_beats_svd_on_calibration_data() -> None:
    weights = make_weights()
    ctx = CompileContext(calib=calib())
    out: dict[str, LowRankRecord] = {}
    graphs = {}
    for method in ("svd", "data"):
        g = make_net(weights)
        (rec,) = LowRankPass(rank="m/4", groups=2, method=method).run(g, ctx).records
        assert isinstance(rec, LowRankRecord)
        verify(g)
        out[method], graphs[method] = rec, g
    assert out["data"].method == "data" and out["svd"].method == "svd"
    for method, rec in out.items():
        fac = [d for d in rec.decisions if d.factorized]
        assert fac and all(d.method == method and d.data_error is not None
                           and d.rel_error is not None for d in fac)
    # conv2 sees the same (float) input under both methods: the data fit's error is lower.
    e = {m: next(d for d in out[m].decisions if d.layer == "conv2").data_error for m in out}
    assert e["data"] < e["svd"]
    # And the whole network's output on the calibration data is closer to the float one.
    (want,) = run_outputs(make_net(weights), {"x": calib()})
    err = {m: float(np.linalg.norm(run_outputs(graphs[m], {"x": calib()})[0] - want))
           for m in graphs}
    assert err["data"] < err["svd"]


def test_method_data_without_calibration_data_is_an_error() -> None:
    with pytest.raises(UsageError, match="calibration data"):
        LowRankPass(rank="m/2", method="data").run(make_net(make_weights()),
                                                   CompileContext())
    with pytest.raises(UsageError, match="unknown"):
        LowRankPass(rank="m/2", method="pca")


def test_method_spec_round_trip_and_default_spec_unchanged() -> None:
    p = LowRankPass(rank="m/2", groups=4)
    assert "method" not in p.spec()
    for method in ("svd", "data"):
        q = LowRankPass(rank="m/2", groups=4, method=method)
        assert f"method={method}" in q.spec()
        assert parse_pipeline(q.spec() + ",map")[0] == q


# ------------------------------------------------------------- quantize: low-rank pairs


def _quantized(weights: dict[str, np.ndarray], x: np.ndarray) -> Graph:
    g = make_net(weights)
    ctx = CompileContext(calib=x)
    LowRankPass(rank="m/4", groups=2, include_first_last=True, method="data").run(g, ctx)
    QuantizePass(weight_method="gptq").run(g, ctx)
    verify(g)
    return g


def test_gptq_refits_l_against_the_float_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    weights = make_weights()
    x = calib(32)
    factorized_float = make_net(weights)
    LowRankPass(rank="m/4", groups=2, include_first_last=True, method="data").run(
        factorized_float, CompileContext(calib=x))
    (want,) = run_outputs(factorized_float, {"x": x})
    g = _quantized(weights, x)
    for _, l_name in factorized(g).values():
        lnode = g.node(l_name)
        assert lnode.wquant is not None and lnode.inputs[1].name.endswith("_fit_q")
    (got,) = run_outputs(g, {"x": x})
    # Without the refit (L only GPTQ-quantized on its input) the output error is larger.
    monkeypatch.setattr(quantize_mod, "_refit_pair_half", lambda *a: None)
    (plain,) = run_outputs(_quantized(weights, x), {"x": x})
    assert np.linalg.norm(got - want) < np.linalg.norm(plain - want)


def test_refit_pairs_simulate_bit_exact_with_onnxruntime(tmp_path: Path) -> None:
    weights = make_weights()
    opts = CompileOptions(calib=calib(32), first_last_bits=8,
                          lowrank=LowRankPass(rank="m/4", groups=2, include_first_last=True))
    res = compile_graph(make_net(weights), opts, "net")
    out = write_outputs(res, tmp_path / "out")
    m, _ = evaluate(out, Dataset(calib(8), None, "test"))
    assert m["matches_onnxruntime"] and m["max_abs_diff"] == 0.0
    # auto resolves to data with calibration data: the report says so per pair and in total.
    rep = Report.from_json(res.report)
    pipeline = rep.pipeline or ""
    lowrank_spec = pipeline[pipeline.index("lowrank{"):pipeline.index("quantize{")]
    assert "method" not in lowrank_spec  # auto: the default spec text is unchanged
    assert rep.lowrank is not None and rep.lowrank.method == "data"
    halves = [la for la in rep.layers if la.role is not None]
    assert halves and all(la.lowrank_method == "data" and la.data_error is not None
                          and 0 <= la.data_error < 1 for la in halves)
    assert "data err" in to_markdown(rep)
    assert Report.from_json(rep.to_json()) == rep


# ------------------------------------------------------------------------ the flag


def test_lowrank_method_flag() -> None:
    from imcc.compiler import options_from_flags
    from imcc.targets.crossbar import CrossbarTarget

    t = CrossbarTarget(128, 128)
    assert options_from_flags(target=t, rank="m/2").lowrank.method == "auto"
    assert options_from_flags(target=t, rank="m/2",
                              lowrank_method="svd").lowrank.method == "svd"
    with pytest.raises(UsageError, match="--lowrank-method"):
        options_from_flags(target=t, passes="fold-bn,map", lowrank_method="svd")
    with pytest.raises(UsageError, match="unknown"):
        options_from_flags(target=t, rank="m/2", lowrank_method="pca")


def test_lowrank_method_data_needs_calib(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import imcc.cli

    monkeypatch.setattr(sys, "argv", ["imcc", "compile", "resnet20", "--rank", "m/2",
                                      "--lowrank-method", "data", "-o", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exc:
        imcc.cli.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--lowrank-method data" in err and "--calib" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_without_calibration_data_the_report_says_svd_and_rtn() -> None:
    from imcc.report.terminal import summary_lines

    opts = CompileOptions(lowrank=LowRankPass(rank="m/4", groups=2))
    rep = Report.from_json(compile_graph(make_net(make_weights()), opts, "net").report)
    assert rep.calibration == "synthetic" and rep.weight_method == "rtn"
    assert rep.lowrank is not None and rep.lowrank.method == "svd"
    halves = [la for la in rep.layers if la.role is not None]
    assert halves and all(la.lowrank_method == "svd" and la.data_error is None
                          for la in halves)
    text = "\n".join(summary_lines(rep))
    assert "per-group SVD of the weights" in text and "rounded to nearest" in text
    with_data = CompileOptions(calib=calib(16), lowrank=LowRankPass(rank="m/4", groups=2))
    rep2 = Report.from_json(compile_graph(make_net(make_weights()), with_data, "net").report)
    assert rep2.weight_method == "gptq" and rep2.lowrank is not None \
        and rep2.lowrank.method == "data"
    assert "fitted on the calibration data" in "\n".join(summary_lines(rep2))
