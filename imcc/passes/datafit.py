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
from imcc.ir.annotations import level_dtype
from imcc.ir.ops import Conv, Linear, _windows

DAMP = 0.01
RIDGE = 1e-4          # reduced-rank regression: lambda = RIDGE * mean(diag X^T X)
FIT_PATCHES = 1 << 14  # patches per layer the low-rank fits and the L refit sample
SWEEPS = 4            # block-coordinate sweeps of the grouped reduced-rank regression
SCALE_GRID = np.round(np.arange(30, 101) / 100, 2)
CHUNK_PATCHES = 1 << 15   # patches per block when accumulating H (bounds memory)

__all__ = ["InputStats", "input_stats", "patches", "gptq_quantize", "output_error",
           "DAMP", "SCALE_GRID", "RIDGE", "FIT_PATCHES", "SWEEPS", "FitData", "fit_data",
           "sample_positions", "patch_rows", "output_rows", "reduced_rank_fit",
           "fit_objective", "lsq_refit", "equalize_channels"]


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
    return WeightQuant(bits, sc.astype(np.float32),
                       q.reshape(w32.shape).astype(level_dtype(bits))), best


def bias_delta(w: np.ndarray, w_new: np.ndarray, stats: InputStats, groups: int = 1,
               ) -> np.ndarray:
    """``(W - W') mu`` per output channel: the mean output error on the calibration data."""
    oc = w.shape[0]
    d = (np.asarray(w, np.float64) - np.asarray(w_new, np.float64)).reshape(oc, -1)
    ocg = oc // groups
    return np.concatenate([d[gi * ocg:(gi + 1) * ocg] @ stats.mean[gi] for gi in range(groups)])


# ------------------------------------------------------------------ data-aware factorization
#
# Reduced-rank regression (RRR). The layer's float outputs are ``Y`` (P x m, the float
# network's pre-bias outputs at P sampled positions) and ``X`` (P x n) the patches the
# *compressed* network feeds it there; input-channel group ``i`` owns the columns
# ``[i*n/g, (i+1)*n/g)`` (``W.reshape(m, -1)`` order, channel major). The factorization
# minimizes the ridge-regularized data-weighted error
#
#     f = ||Y^T - sum_i L_i R_i X_i^T||_F^2 + lambda * sum_i ||L_i R_i||_F^2
#
# (the ridge is the same as appending ``sqrt(lambda) I`` to the patches and zeros to the
# targets, so every closed form below is exact for ``C = X^T X + lambda I``; it keeps
# rank-deficient inputs, e.g. always-zero channels, well posed). Only ``C`` (n x n),
# ``M = Y^T X`` (m x n) and ``||Y||^2`` are needed.
#
# One group (``g = 1``) has the closed form: ``B = M C^-1`` (the least-squares map), its
# fitted outputs ``B X^T`` have the Gram matrix ``F = B C B^T``; with ``U_k`` the top-k
# eigenvectors of ``F``, ``L = U_k``, ``R = U_k^T B`` (Eckart-Young on the fitted outputs).
# With ``Y = W X`` this is the input-whitened SVD of ``W``. For ``g > 1`` there is no closed
# form; block-coordinate descent solves the one-group problem for group ``i`` on the
# residual target ``M_i - sum_{j != i} A_j C_ji`` (``A_j = L_j R_j``), then refits all of
# ``L = [L_1..L_g]`` jointly by least squares given the ``R_i``. Every step is an exact
# minimizer over its block, so ``f`` never increases. The start is the best of three
# candidates: the per-group truncation of the full least-squares map, the one-group RRR
# solution cut into its column blocks (``L_i = L``, ``R_i`` = block ``i`` of ``R``), and the
# plain per-group SVD of the weight when given. Hence the result is never worse than the
# ungrouped optimum at the same ``k`` (Theorem 1 on the data-weighted error) nor than plain
# SVD. Gauge: each ``L_i`` is made orthonormal (thin QR, positive diagonal), ``R_i`` takes
# the scale (deterministic factors; `equalize_channels` then rescales them for quantization).


@dataclass
class FitData:
    """The statistics a reduced-rank fit reads: ``cov = X^T X`` (n x n), ``cross = Y^T X``
    (m x n), ``yy = ||Y||_F^2``, all float64, from ``count`` patches."""

    cov: np.ndarray
    cross: np.ndarray
    yy: float
    count: int


def fit_data(x: np.ndarray, y: np.ndarray) -> FitData:
    """`FitData` of patches ``x`` (P x n) and targets ``y`` (P x m)."""
    x64 = np.asarray(x, np.float64)
    y64 = np.asarray(y, np.float64)
    return FitData(x64.T @ x64, y64.T @ x64, float(np.sum(y64 * y64)), int(x64.shape[0]))


def sample_positions(total: int, limit: int, seed: int = 0) -> np.ndarray:
    """At most ``limit`` of the ``total`` output positions, sorted, drawn without
    replacement with a fixed seed (all of them when ``total <= limit``)."""
    if total <= limit:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, limit, replace=False))


def patch_rows(node: Node, x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The patches (``len(pos)`` x n, all input-channel groups side by side) ``node`` reads
    from ``x`` at the flattened output positions ``pos`` (image, row, column order)."""
    out: list[np.ndarray] = []
    start = 0
    for block in patches(node, np.asarray(x, np.float32)):
        rows = block[0].shape[0]
        sel = pos[(pos >= start) & (pos < start + rows)] - start
        out.append(np.concatenate([b[sel] for b in block], axis=1))
        start += rows
    return np.concatenate(out, axis=0)


def output_rows(y: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """A crossbar layer's output ``y`` ((N, m, H, W) or (N, m)) at the flattened output
    positions ``pos`` as ``len(pos)`` x m."""
    m = y.shape[1]
    flat = np.moveaxis(y, 1, -1).reshape(-1, m) if y.ndim == 4 else y.reshape(-1, m)
    return np.asarray(flat[pos])


def fit_objective(a: np.ndarray, d: FitData, ridge: float = 0.0) -> float:
    """``||Y^T - A X^T||^2 + ridge * ||A||^2`` for the m x n map ``A``, from the statistics."""
    c = d.cov + ridge * np.eye(d.cov.shape[0])
    return float(d.yy - 2 * np.sum(a * d.cross) + np.einsum("ij,jk,ik->", a, c, a))


def _ridge(cov: np.ndarray) -> float:
    mean = float(np.mean(np.diag(cov))) if cov.size else 0.0
    return RIDGE * mean if mean > 0 else RIDGE


def _solve_spd(c: np.ndarray, rhs_t: np.ndarray) -> np.ndarray:
    """``rhs_t C^-1`` for a symmetric positive (semi-)definite ``C`` (rows of rhs_t)."""
    try:
        return np.linalg.solve(c, rhs_t.T).T
    except np.linalg.LinAlgError:
        return rhs_t @ np.linalg.pinv(c, hermitian=True)


def _top_eig(f: np.ndarray, k: int) -> np.ndarray:
    """The top-k eigenvectors of symmetric ``f`` as columns, signs fixed (largest entry of
    each column positive) so results are deterministic."""
    vals, vecs = np.linalg.eigh((f + f.T) / 2)
    u = vecs[:, np.argsort(-vals, kind="stable")[:k]]
    flip = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(u.shape[1])])
    flip[flip == 0] = 1.0
    return u * flip


def _rrr_block(cross: np.ndarray, c: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One-group RRR: ``(L, R)`` minimizing ``||T - L R X||`` given ``T X^T = cross`` and
    ``X X^T = c`` (ridge included)."""
    b = _solve_spd(c, cross)
    u = _top_eig(b @ c @ b.T, k)
    return u, u.T @ b


def _assemble(ls: list[np.ndarray], rs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([li @ ri for li, ri in zip(ls, rs, strict=True)], axis=1)


def reduced_rank_fit(d: FitData, groups: int, rank: int,
                     svd_init: tuple[np.ndarray, np.ndarray] | None = None,
                     ridge: float | None = None, sweeps: int = SWEEPS,
                     ) -> tuple[np.ndarray, np.ndarray, float]:
    """Grouped reduced-rank regression (see the comment above). ``svd_init``: the plain SVD
    factors ``(R stacked (g*k, n/g), L (m, g*k))`` as `grouped_lowrank` returns them (2-D),
    a fourth start candidate. ``ridge``: lambda (default ``RIDGE * mean(diag cov)``).
    Returns ``(R (g*k, n/g), L (m, g*k), f)`` with ``f`` the minimized (ridge) objective."""
    lam = _ridge(d.cov) if ridge is None else float(ridge)
    n = d.cov.shape[0]
    ng = n // groups
    c = d.cov + lam * np.eye(n)
    blk = [slice(i * ng, (i + 1) * ng) for i in range(groups)]
    k = rank

    def obj(ls: list[np.ndarray], rs: list[np.ndarray]) -> float:
        return fit_objective(_assemble(ls, rs), d, lam)

    cands: list[tuple[list[np.ndarray], list[np.ndarray]]] = []
    b_full = _solve_spd(c, d.cross)
    pg = [_rrr_block(b_full[:, s] @ c[s, s], c[s, s], k) for s in blk]
    cands.append(([p[0] for p in pg], [p[1] for p in pg]))
    lu, ru = _rrr_block(d.cross, c, k)
    cands.append(([lu] * groups, [ru[:, s] for s in blk]))
    if svd_init is not None:
        r0, l0 = svd_init
        cands.append(([l0[:, i * k:(i + 1) * k] for i in range(groups)],
                      [r0[i * k:(i + 1) * k] for i in range(groups)]))
    scores = [obj(*cd) for cd in cands]
    ls, rs = (list(v) for v in cands[int(np.argmin(scores))])
    best = min(scores)
    keep = (list(ls), list(rs))
    for _ in range(sweeps if groups > 1 else 1):
        if groups > 1:
            for i, s in enumerate(blk):
                others = sum((ls[j] @ rs[j] @ c[blk[j], s] for j in range(groups) if j != i),
                             np.zeros((d.cross.shape[0], ng)))
                ls[i], rs[i] = _rrr_block(d.cross[:, s] - others, c[s, s], k)
        # Joint least-squares refit of L = [L_1..L_g] given the R_i.
        rb = np.zeros((groups * k, n))
        for i, s in enumerate(blk):
            rb[i * k:(i + 1) * k, s] = rs[i]
        lj = _solve_spd(rb @ c @ rb.T, d.cross @ rb.T)
        ls = [lj[:, i * k:(i + 1) * k] for i in range(groups)]
        cur = obj(ls, rs)
        if cur < best:
            best, keep = cur, (list(ls), list(rs))
        elif cur > best:   # only by rounding (each step is exact): keep the best seen
            break
    ls, rs = keep
    # Gauge: orthonormal L_i (thin QR with a positive diagonal); R_i carries the scale.
    for i in range(groups):
        q, t = np.linalg.qr(ls[i])
        sgn = np.sign(np.diag(t))
        sgn[sgn == 0] = 1.0
        ls[i], rs[i] = q * sgn, (t * sgn[:, None]) @ rs[i]
    return np.concatenate(rs, axis=0), np.concatenate(ls, axis=1), obj(ls, rs)


def lsq_refit(z: np.ndarray, t: np.ndarray, ridge: float | None = None,
              ) -> tuple[np.ndarray, np.ndarray]:
    """Least squares with an intercept: ``(W, c)`` minimizing
    ``||t - z W^T - c||^2 + ridge ||W||^2`` for inputs ``z`` (P x n) and targets ``t``
    (P x m); ``ridge`` defaults to ``RIDGE * mean(diag z^T z)``. Solved on centered data,
    so the intercept is not penalized."""
    z64 = np.asarray(z, np.float64)
    t64 = np.asarray(t, np.float64)
    zm, tm = z64.mean(axis=0), t64.mean(axis=0)
    zc, tc = z64 - zm, t64 - tm
    cov = zc.T @ zc
    lam = _ridge(z64.T @ z64) if ridge is None else float(ridge)
    w = _solve_spd(cov + lam * np.eye(cov.shape[0]), tc.T @ zc)
    return w, tm - w @ zm


def equalize_channels(d: FitData, groups: int, r: np.ndarray, lw: np.ndarray,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Rescale the ``g*k`` intermediate channels of a pair (``r`` (g*k, n/g), ``lw``
    (m, g*k), `reduced_rank_fit`'s layout) so that each has the RMS, on the patches of
    ``d``, of the largest one: row ``j`` of ``r`` times ``s_j``, column ``j`` of ``lw``
    divided by it (``s_j >= 1``; the product ``L R`` is unchanged). Why: the intermediate
    tensor is quantized with one per-tensor step ``delta``, fixed by its largest channels,
    and channel ``j``'s rounding noise reaches the output as ``delta * ||L_j|| / s_j``;
    lifting the small channels to the common range divides their noise by ``s_j`` at no
    cost in range. A channel that is zero on the data is left as is."""
    gk = r.shape[0]
    k = gk // groups
    ng = d.cov.shape[0] // groups
    ms = np.empty(gk)
    for j in range(gk):
        s = slice((j // k) * ng, (j // k + 1) * ng)
        ms[j] = float(r[j] @ d.cov[s, s] @ r[j])
    rms = np.sqrt(np.maximum(ms, 0.0))
    top = float(rms.max()) if gk else 0.0
    sc = np.ones(gk)
    live = rms > top * 1e-12
    if top > 0:
        sc[live] = top / rms[live]
    return r * sc[:, None], lw / sc[None, :]
