"""Data-aware weight fitting for crossbar layers: input statistics, GPTQ-style rounding.

A crossbar layer computes, per input-channel group ``g`` (ONNX Conv ``group``; one group for
an ungrouped Conv or a Linear), ``y = W_g x`` for every *patch* ``x`` (the im2col column:
``IC_g*Kh*Kw`` values in ``W.reshape(OC, -1)`` order, zeros where the window covers the
padding). With ``X_g`` the patches the layer reads on the calibration images, the statistics
used here are the input Gram matrix ``H_g = X_g^T X_g`` (float64) and the mean patch
``mu_g``; ``||(W - W') X||_F^2 = sum_g tr(D_g H_g D_g^T)`` with ``D = W - W'``, so the
layer-output error of any candidate weight follows from ``H`` without the patches.

**Weight quantization** (``gptq_quantize``), symmetric per output channel like
`imcc.passes.quantize.quantize_weight`, ``qmax = 2^(b-1) - 1``:

1. *Scales by MSE search on the weights*: for every output channel the clipping value
   ``alpha = p * max|w|`` with ``p`` on ``SCALE_GRID`` (0.30, 0.31, ..., 1.00) minimizing
   ``||w - q(w)||^2`` (round-to-nearest at scale ``alpha / qmax``); ties go to the larger p.
2. *GPTQ rounding* (Frantar et al., "GPTQ", 2022, as published; written from the algorithm's
   description): columns are visited in decreasing order of ``diag(H)`` ("act order"), each
   column is rounded to its level at the fixed per-channel scale, and its rounding error,
   divided by the pivot of the upper Cholesky factor ``U`` of ``(H + lambda I)^-1``, is
   subtracted from the not yet rounded columns along row ``U[i, i+1:]``: the closed-form
   optimal update of the remaining weights for the quadratic objective. Damping
   ``lambda = DAMP * mean(diag H)`` (DAMP = 0.01, GPTQ's default) keeps the inverse well
   conditioned; an input that is always zero (``H[i,i] = 0``) gets ``H[i,i] = 1``.
3. *Selection*: three candidates -- GPTQ at the MSE scales, GPTQ at the max scales, plain
   round-to-nearest at the max scales (exactly ``quantize_weight``) -- are scored by the
   undamped ``tr(D H D^T)``; the smallest wins, round-to-nearest on ties. So the calibration
   layer-output error is never larger than round-to-nearest's (a property test).

**Bias correction**: after quantization the mean output error on the calibration patches,
``(W - W') mu`` per output channel, is added to the bias (the quantized layer then has the
float layer's mean output on the data it was calibrated on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcc.ir import Node, WeightQuant
from imcc.ir.ops import Conv, Linear, _windows

DAMP = 0.01
SCALE_GRID = np.round(np.arange(30, 101) / 100, 2)
CHUNK_PATCHES = 1 << 15   # patches per block when accumulating H (bounds memory)

__all__ = ["InputStats", "input_stats", "patches", "gptq_quantize", "output_error",
           "DAMP", "SCALE_GRID"]


@dataclass
class InputStats:
    """Per input-channel group: ``H[g] = X_g^T X_g`` (n x n, float64), ``mean[g]`` (n,), and
    the number of patches."""

    H: list[np.ndarray]
    mean: list[np.ndarray]
    count: int


def _conv_blocks(op: Conv, x: np.ndarray, chunk: int):  # type: ignore[no-untyped-def]
    """Yield, per block of images, the list over groups of patch matrices (P, n_g)."""
    t, lft, b, r = op.pads
    g = op.group
    ic = x.shape[1]
    icg = ic // g
    ho, wo = op.out_hw(x.shape[2], x.shape[3])
    per_image = max(1, ho * wo)
    step = max(1, chunk // per_image)
    for s in range(0, x.shape[0], step):
        xp = np.pad(x[s:s + step], ((0, 0), (0, 0), (t, b), (lft, r)))
        out = []
        for gi in range(g):
            win = _windows(np.ascontiguousarray(xp[:, gi * icg:(gi + 1) * icg]), *op.kernel,
                           *op.stride, *op.dilation, ho, wo)
            # (N, c, ho, wo, kh, kw) -> (N*ho*wo, c*kh*kw), the weight's flattening order
            out.append(win.transpose(0, 2, 3, 1, 4, 5).reshape(-1, icg * op.kernel[0]
                                                               * op.kernel[1]))
        yield out


def patches(node: Node, x: np.ndarray, chunk: int = CHUNK_PATCHES):  # type: ignore[no-untyped-def]
    """Blocks of the patch matrices (one (P, n_g) array per group) ``node`` reads from its
    input ``x``."""
    op = node.op
    if isinstance(op, Conv):
        yield from _conv_blocks(op, x, chunk)
    elif isinstance(op, Linear):
        flat = x.reshape(-1, x.shape[-1])
        for s in range(0, flat.shape[0], chunk):
            yield [flat[s:s + chunk]]
    else:  # pragma: no cover - only crossbar layers are fitted
        raise TypeError(f"{op.kind} is not a crossbar layer")


def input_stats(node: Node, x: np.ndarray) -> InputStats:
    """``H`` and mean patch per group of the input ``x`` of crossbar layer ``node``."""
    hs: list[np.ndarray] | None = None
    sums: list[np.ndarray] = []
    count = 0
    for block in patches(node, x):
        if hs is None:
            hs = [np.zeros((p.shape[1], p.shape[1])) for p in block]
            sums = [np.zeros(p.shape[1]) for p in block]
        for gi, p in enumerate(block):
            p64 = p.astype(np.float64)
            hs[gi] += p64.T @ p64
            sums[gi] += p64.sum(axis=0)
        count += block[0].shape[0]
    assert hs is not None
    return InputStats(hs, [s / max(count, 1) for s in sums], count)


def output_error(d: np.ndarray, h: np.ndarray) -> float:
    """``tr(D H D^T)`` = ``||D X||_F^2`` for ``H = X^T X``."""
    return float(np.einsum("ij,jk,ik->", d, h, d))


def _rtn(w: np.ndarray, scale: np.ndarray, qmax: int) -> np.ndarray:
    """Round-to-nearest levels exactly as quantize_weight computes them (float32)."""
    w32 = w.astype(np.float32)
    return np.clip(np.rint(w32 / scale[:, None]), -qmax, qmax)


def _mse_scales(w: np.ndarray, qmax: int) -> np.ndarray:
    """Per-row float32 scale minimizing ||w - q(w)||^2 over alpha = p * max|w| (p on
    SCALE_GRID, ties to the larger p)."""
    absmax = np.abs(w).max(axis=1)
    best = np.full(w.shape[0], np.inf)
    out = np.ones(w.shape[0], dtype=np.float32)
    for p in SCALE_GRID[::-1]:
        s = (absmax * p / qmax).astype(np.float32)
        s[s == 0] = 1.0
        q = np.clip(np.rint(w / s[:, None]), -qmax, qmax)
        err = ((w - q * s[:, None]) ** 2).sum(axis=1)
        better = err < best
        best[better] = err[better]
        out[better] = s[better]
    return out


def _gptq_levels(w: np.ndarray, h: np.ndarray, scale: np.ndarray, qmax: int) -> np.ndarray:
    """GPTQ column-by-column rounding of ``w`` (m x n) at fixed per-row ``scale``."""
    n = w.shape[1]
    perm = np.argsort(-np.diag(h), kind="stable")
    inv = np.argsort(perm)
    wp = w[:, perm].astype(np.float64)
    hp = h[np.ix_(perm, perm)].copy()
    d = np.diag(hp).copy()
    dead = d == 0
    hp[dead, dead] = 1.0
    lam = DAMP * float(np.mean(np.diag(hp)))
    hp[np.diag_indices(n)] += lam
    try:
        hinv = np.linalg.inv(hp)
        u = np.linalg.cholesky((hinv + hinv.T) / 2).T   # upper: hinv = u^T u
    except np.linalg.LinAlgError:
        return _rtn(w, scale, qmax)
    s = scale.astype(np.float64)
    q = np.zeros_like(wp)
    for i in range(n):
        col = wp[:, i]
        qi = np.clip(np.rint(col / s), -qmax, qmax)
        q[:, i] = qi
        err = (col - qi * s) / u[i, i]
        if i + 1 < n:
            wp[:, i + 1:] -= np.outer(err, u[i, i + 1:])
    return q[:, inv]


def gptq_quantize(w: np.ndarray, bits: int, stats: InputStats, groups: int = 1,
                  ) -> tuple[WeightQuant, str]:
    """Quantize crossbar weight ``w`` (axis 0 = output channels, ``groups`` output-channel
    groups reading the input groups of ``stats``) as the module docstring describes.
    Returns the WeightQuant and the candidate chosen (``"gptq-mse"``, ``"gptq-max"`` or
    ``"rtn"``)."""
    qmax = (1 << (bits - 1)) - 1
    w32 = np.asarray(w, dtype=np.float32)
    oc = w32.shape[0]
    mat = w32.reshape(oc, -1).astype(np.float64)
    absmax = np.abs(w32.reshape(oc, -1)).max(axis=1)
    max_scale = (absmax / np.float32(qmax)).astype(np.float32)
    max_scale[max_scale == 0] = np.float32(1.0)
    ocg = oc // groups
    mse_scale = _mse_scales(mat, qmax)
    cands: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "rtn": (max_scale, _rtn(mat, max_scale, qmax))}
    for name, sc in (("gptq-mse", mse_scale), ("gptq-max", max_scale)):
        q = np.zeros_like(mat)
        for gi in range(groups):
            rows = slice(gi * ocg, (gi + 1) * ocg)
            q[rows] = _gptq_levels(mat[rows], stats.H[gi], sc[rows], qmax)
        cands[name] = (sc, q)

    def err(sc: np.ndarray, q: np.ndarray) -> float:
        d = mat - q * sc.astype(np.float64)[:, None]
        return sum(output_error(d[gi * ocg:(gi + 1) * ocg], stats.H[gi])
                   for gi in range(groups))

    scores = {k: err(*v) for k, v in cands.items()}
    best = "rtn"
    for k in ("gptq-mse", "gptq-max"):
        if scores[k] < scores[best] * (1 - 1e-9):
            best = k
    sc, q = cands[best]
    return WeightQuant(bits, sc.astype(np.float32), q.reshape(w32.shape).astype(np.int32)), best


def bias_delta(w: np.ndarray, w_new: np.ndarray, stats: InputStats, groups: int = 1,
               ) -> np.ndarray:
    """``(W - W') mu`` per output channel: the mean output error on the calibration data."""
    oc = w.shape[0]
    d = (np.asarray(w, np.float64) - np.asarray(w_new, np.float64)).reshape(oc, -1)
    ocg = oc // groups
    return np.concatenate([d[gi * ocg:(gi + 1) * ocg] @ stats.mean[gi] for gi in range(groups)])
