"""GPTQ-style weight quantization (imcc.passes.datafit) and quantize{weight_method}."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from imcc.ir.annotations import level_dtype
from imcc.passes.datafit import InputStats, bias_delta, gptq_quantize
from imcc.passes.pipeline import parse_pipeline
from imcc.passes.quantize import QuantizePass, dequantize_weight, quantize_weight


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 6), n=st.integers(1, 12), p=st.integers(1, 40),
       bits=st.integers(2, 5), seed=st.integers(0, 10_000), corr=st.booleans())
def test_gptq_output_error_never_exceeds_rtn(m, n, p, bits, seed, corr):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((m, n)).astype(np.float32)
    x = rng.standard_normal((p, n))
    if corr:  # correlated inputs, where error feedback matters
        x = x @ rng.standard_normal((n, n))
    x = x.astype(np.float32).astype(np.float64)
    stats = InputStats([x.T @ x], [x.mean(axis=0)], p)
    wq, _ = gptq_quantize(w, bits, stats)
    rtn = quantize_weight(w, bits)
    err_g = np.sum(((w.astype(np.float64) - dequantize_weight(wq)) @ x.T) ** 2)
    err_r = np.sum(((w.astype(np.float64) - dequantize_weight(rtn)) @ x.T) ** 2)
    assert err_g <= err_r * (1 + 1e-6) + 1e-9
    qmax = (1 << (bits - 1)) - 1
    assert wq.q.dtype == level_dtype(bits) and np.abs(wq.q).max() <= qmax


def test_gptq_beats_rtn_on_correlated_inputs():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 32)).astype(np.float32)
    x = rng.standard_normal((500, 32)) @ rng.standard_normal((32, 32))
    stats = InputStats([x.T @ x], [x.mean(axis=0)], 500)
    wq, how = gptq_quantize(w, 4, stats)
    d_g = (w - dequantize_weight(wq)) @ x.T
    d_r = (w - dequantize_weight(quantize_weight(w, 4))) @ x.T
    assert how != "rtn" and np.sum(d_g ** 2) < 0.8 * np.sum(d_r ** 2)


def test_bias_delta_is_mean_output_error():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 5))
    w2 = w + 0.1 * rng.standard_normal((3, 5))
    x = rng.standard_normal((20, 5)) + 1.0
    stats = InputStats([x.T @ x], [x.mean(axis=0)], 20)
    np.testing.assert_allclose(bias_delta(w, w2, stats), ((w - w2) @ x.T).mean(axis=1))


def test_weight_method_spec_round_trip_and_default_spec_unchanged():
    assert QuantizePass().spec() == \
        "quantize{weight_bits=4,act_bits=4,first_last_bits=none,method=mse}"
    for wm in ("rtn", "gptq"):
        p = QuantizePass(weight_method=wm)
        assert f"weight_method={wm}" in p.spec()
        assert parse_pipeline(p.spec() + ",map")[0] == p
