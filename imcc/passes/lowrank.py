"""Group low-rank compression of crossbar layers (Jeon, Rhe, Ko, arXiv 2502.07820).

Math. A conv weight ``W`` of shape ``(m, IC, Kh, Kw)`` is matricized as ``m x n`` with
``n = IC*Kh*Kw`` in ``W.reshape(m, -1)`` order (input channel major). Its input channels
are split into ``g`` equal groups, ``W = [W_1 ... W_g]`` with ``W_i`` of shape
``m x n/g``, and each block is replaced by its truncated SVD of rank ``k``:
``W_i ~ L_i R_i`` with ``L_i = U_i[:, :k] diag(s_i[:k])`` (``m x k``) and
``R_i = V_i^T[:k]`` (``k x n/g``). As a network this is

* ``<orig>.R``: a ``Kh x Kw`` Conv with ``group=g``, ``IC -> g*k`` channels, the same
  stride/pads/dilation as the original; output channels ``[i*k, (i+1)*k)`` are ``R_i``
  applied to input-channel group ``i`` (ONNX Conv group semantics), no bias;
* ``<orig>.L``: a 1x1 Conv ``g*k -> m`` with weight ``[L_1 ... L_g]`` and the original bias.

The relative error ``||W - W_hat||_F / ||W||_F`` is ``sqrt(sum of the discarded s_i^2) /
||W||_F``. Theorem 1 of the paper: for the same ``k`` the grouped error never exceeds the
ungrouped (``g = 1``) one, because the best rank-``k`` approximation of ``W`` restricted to
block ``i`` has rank at most ``k`` and so cannot beat the best rank-``k`` approximation of
``W_i``.

Data-aware factorization (``method``). ``"svd"`` is the per-group truncated SVD above; it
reads only the weights. ``"data"`` needs calibration inputs (``ctx.calib``) and fits the
factors to what the layer does on them, sequentially in topological order: a first run of
the float network records each layer's float pre-bias outputs ``Y`` at `datafit.FIT_PATCHES`
(16384) output positions drawn with a fixed seed (subsampled so a layer fits in well under
a second; the statistics below converge long before) and its mean output per channel; a
second run feeds each layer the output of the **already factorized** layers upstream, so
the fit corrects the error that accumulated before it. At the sampled positions ``X`` are
the layer's im2col patches from that run; the factors minimize the ridge-regularized
data-weighted error ``||Y - sum_i L_i R_i X_i||_F^2 + lambda sum_i ||L_i R_i||_F^2`` with
``lambda = 1e-4 * mean(diag X^T X)`` (`datafit.RIDGE`; it keeps rank-deficient inputs, e.g.
dead channels, well posed) by grouped reduced-rank regression (`datafit.reduced_rank_fit`:
the least-squares map truncated through the SVD of its fitted outputs, block-coordinate
sweeps for ``g > 1``; Theorem 1 holds for this objective too, grouped <= ungrouped at the
same ``k``, since the ungrouped solution is one of its starts). Bias correction: the
float layer's mean output minus the factorized layer's, on all calibration positions, is
added to the bias. The intermediate channels are then equalized for quantization
(`datafit.equalize_channels`). ``"auto"`` (default) is ``"data"`` with calibration data and
``"svd"`` without, so a compile without ``--calib`` is unchanged. With calibration data the
pass measures the data-weighted relative error ``||Y - Y_hat||_F / ||Y||_F`` of either
method (``data_error`` in the record and the report); without, it is None.

Decisions (also recorded per layer in the ``LowRankRecord`` the pass returns):

* Singular values go into ``L``: the rows of each ``R_i`` are orthonormal, so the ``g*k``
  intermediate activations never exceed the input's norm (a well-conditioned range for
  activation quantization), and ``L`` carries the scale, like the original weight.
* A rank ``"m/r"`` means ``k = floor(m / r)``; every rank is then clipped to
  ``[1, min(m, n/g)]`` and the clipping is recorded.
* If the *default* ``groups`` does not divide a layer's input channels, that layer falls
  back to the largest divisor of its input channels not above ``groups`` (a global default
  cannot fit every layer, e.g. a 3-channel first conv); the fallback is recorded and logged.
  A per-layer ``layer_groups`` entry that does not divide is a ``UsageError``: the user
  named that layer, so a silent change would be wrong.
* Convs that are already grouped (``group > 1``, e.g. depthwise) are left uncompressed;
  naming one in ``layer_ranks`` with a rank is a ``UsageError``.
* Policy: the first and last crossbar layers, by data flow
  (`imcc.ir.topology.first_last_crossbar`: no crossbar layer upstream / downstream; on a
  plain CNN the first conv and the classifier's Linear), are left uncompressed unless
  ``include_first_last`` is set. Linear layers
  are factorized only with ``include_linear``. An explicit ``layer_ranks`` entry overrides
  both policies for that layer.
* Linear layers are factorized the same way with groups over ``in_features``, as two
  Linears. Linear has no group attribute, so the ``R`` Linear stores ``blockdiag(R_1..R_g)``
  (``g*k x n``) with explicit zeros off the diagonal blocks (none when ``g = 1``).
* ``params_before = m*n (+ m bias)``, ``params_after = k*n + m*g*k (+ m bias)`` for the
  pair (both halves carry the pair totals); the zeros of a grouped Linear's ``R`` are not
  counted. Rank is never refused for not saving parameters: the pass does what was asked.
* The replacement keeps the original output value's name, so graph outputs and any
  name-keyed data (e.g. calibration statistics) still refer to the same tensor.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from imcc.errors import DataError, UsageError
from imcc.fileio import parse_json, parse_toml
from imcc.ir import Graph, LowRank, Node, PairRole
from imcc.ir.interp import run_streaming
from imcc.ir.names import resolve_layer_names
from imcc.ir.ops import Conv, Linear
from imcc.ir.records import LowRankDecision, LowRankRecord
from imcc.ir.topology import first_last_crossbar
from imcc.passes import datafit
from imcc.passes.base import CompileContext, Contract, Pass, PassResult, option
from imcc.passes.quantize import calibration_feeds

log = logging.getLogger(__name__)

__all__ = ["RankKind", "RankSpec", "parse_rank", "grouped_lowrank", "LayerDecision",
           "LowRankPass", "policy_from_file", "policy_bits", "METHODS"]


# --------------------------------------------------------------------------------- rank specs


class RankKind(Enum):
    NONE = "none"          # leave the layer uncompressed
    FRACTION = "fraction"  # k = floor(m / value)
    ABSOLUTE = "absolute"  # k = value


@dataclass(frozen=True)
class RankSpec:
    """A parsed rank: ``none``, ``m/<value>`` or an absolute ``<value>``."""

    kind: RankKind
    value: int = 0

    def resolve(self, m: int) -> int | None:
        """The requested rank for a layer with ``m`` outputs, before clipping (may be 0 for
        ``m/r`` with ``r > m``); None for ``none``."""
        if self.kind is RankKind.NONE:
            return None
        if self.kind is RankKind.FRACTION:
            return m // self.value
        return self.value

    def __str__(self) -> str:
        if self.kind is RankKind.NONE:
            return "none"
        return f"m/{self.value}" if self.kind is RankKind.FRACTION else str(self.value)


_RANK_FORMS = "'none', 'm/<positive integer>' or a positive integer"


def parse_rank(spec: str | int) -> RankSpec:
    """Parse a rank spec: ``"none"``, ``"m/r"`` (``k = floor(m / r)``, ``r >= 1``) or an
    absolute positive integer. Anything else raises ``UsageError``."""
    if isinstance(spec, bool) or not isinstance(spec, (str, int)):
        raise UsageError(f"rank {spec!r} is not a string or integer", hint=_RANK_FORMS)
    text = str(spec).strip().lower()
    if text == "none":
        return RankSpec(RankKind.NONE)
    frac = re.fullmatch(r"m\s*/\s*(\S+)", text)
    body = frac.group(1) if frac else text
    if not re.fullmatch(r"[+-]?\d+", body):
        raise UsageError(f"rank {spec!r} is not understood", hint=_RANK_FORMS)
    value = int(body)
    if value <= 0:
        what = "divisor of m" if frac else "rank"
        raise UsageError(f"rank {spec!r}: the {what} must be positive", hint=_RANK_FORMS)
    return RankSpec(RankKind.FRACTION if frac else RankKind.ABSOLUTE, value)


# ------------------------------------------------------------------------------ factorization


def grouped_lowrank(w: np.ndarray, groups: int, rank: int,
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """Factor ``w`` by group low-rank SVD (see the module docstring).

    ``w`` is a conv weight ``(m, IC, Kh, Kw)`` or a linear weight ``(m, n)``. Returns
    ``(R, L, rel_error)``: for a conv, ``R`` is the grouped-conv weight ``(g*k, IC/g, Kh, Kw)``
    and ``L`` the 1x1-conv weight ``(m, g*k, 1, 1)``; for a linear weight, ``R`` is
    ``(g*k, n/g)`` (the stacked ``R_i``) and ``L`` is ``(m, g*k)``. The factors keep ``w``'s
    floating dtype (float32 for integer input); the SVD runs in float64.
    ``rank`` must lie in ``[1, min(m, n/g)]`` (the pass clips before calling).
    """
    w = np.asarray(w)
    if w.ndim not in (2, 4):
        raise UsageError(f"grouped_lowrank: weight must be 2-D or 4-D, got shape {w.shape}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise UsageError(f"groups must be a positive integer, got {groups!r}")
    m, c_in = int(w.shape[0]), int(w.shape[1])
    if c_in % groups:
        raise UsageError(f"groups={groups} does not divide the {c_in} input channels")
    mat = w.reshape(m, -1).astype(np.float64)
    ng = mat.shape[1] // groups
    max_k = min(m, ng)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= max_k:
        raise UsageError(f"rank {rank!r} outside [1, {max_k}] = [1, min(m, n/g)] "
                         f"for weight {w.shape} with groups={groups}")
    r_blocks: list[np.ndarray] = []
    l_blocks: list[np.ndarray] = []
    tail = 0.0
    for i in range(groups):
        u, s, vt = np.linalg.svd(mat[:, i * ng:(i + 1) * ng], full_matrices=False)
        l_blocks.append(u[:, :rank] * s[:rank])
        r_blocks.append(vt[:rank])
        tail += float(np.sum(s[rank:] ** 2))
    norm2 = float(np.sum(mat * mat))
    rel_error = math.sqrt(tail / norm2) if norm2 > 0.0 else 0.0
    dtype = w.dtype if np.issubdtype(w.dtype, np.floating) else np.dtype(np.float32)
    r = np.concatenate(r_blocks, axis=0)
    lw = np.concatenate(l_blocks, axis=1)
    if w.ndim == 4:
        r = r.reshape(groups * rank, c_in // groups, *w.shape[2:])
        lw = lw.reshape(m, groups * rank, 1, 1)
    return r.astype(dtype), lw.astype(dtype), rel_error


METHODS: tuple[str, ...] = ("auto", "data", "svd")


@dataclass(frozen=True)
class _Plan:
    """A layer the pass will factorize: its groups and rank (after fallback and clipping)
    and the notes saying what was adjusted."""

    node: Node
    groups: int
    rank: int
    notes: tuple[str, ...]
    requested_rank: int | None = None  # the rank asked for, when it was clamped to `rank`


@dataclass(frozen=True)
class _Fit:
    """The factors of one layer: ``r`` (g*k, n/g) stacked ``R_i``, ``lw`` (m, g*k), the bias
    correction (None: the bias is kept), the weight error ``||W - W_hat|| / ||W||`` and the
    data-weighted output error (None without calibration data)."""

    r: np.ndarray
    lw: np.ndarray
    method: str
    rel_error: float
    data_error: float | None = None
    bias_delta: np.ndarray | None = None


def _weight(node: Node) -> np.ndarray:
    w = node.inputs[1].data
    assert w is not None
    return w


def _flat_svd(node: Node, g: int, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """`grouped_lowrank` of the node's weight with 2-D factors (R_i stacked, L)."""
    w = _weight(node)
    r, lw, err = grouped_lowrank(w, g, k)
    return r.reshape(g * k, -1), lw.reshape(w.shape[0], g * k), err


def _svd_fit(plan: _Plan) -> _Fit:
    r, lw, err = _flat_svd(plan.node, plan.groups, plan.rank)
    return _Fit(r, lw, "svd", err)


def _pair_output(node: Node, plan: _Plan, r: np.ndarray, lw: np.ndarray, x: np.ndarray,
                 ) -> np.ndarray:
    """The factorized layer's output on ``x`` (the original bias included)."""
    w = _weight(node)
    bias = [b.data for b in node.inputs[2:] if b.data is not None]
    g, k = plan.groups, plan.rank
    m = w.shape[0]
    if isinstance(node.op, Conv):
        op = node.op
        r_op = Conv(kernel=op.kernel, stride=op.stride, pads=op.pads, dilation=op.dilation,
                    group=g)
        z = r_op.compute(x, r.reshape(g * k, w.shape[1] // g, *w.shape[2:]).astype(np.float32))
        return Conv(kernel=(1, 1)).compute(z, lw.reshape(m, g * k, 1, 1).astype(np.float32),
                                           *bias)
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    ng = flat.shape[1] // g
    z = np.concatenate([flat[:, i * ng:(i + 1) * ng] @ r[i * k:(i + 1) * k].T
                        for i in range(g)], axis=1)
    y = z @ lw.T + (bias[0] if bias else 0.0)
    return y.astype(np.float32)


def _channel_mean(y: np.ndarray) -> np.ndarray:
    return np.asarray(y, np.float64).mean(axis=tuple(a for a in range(y.ndim) if a != 1))


def _fit_sequential(graph: Graph, plans: list[_Plan], feeds: dict[str, np.ndarray],
                    data: bool) -> list[_Fit]:
    """Fit every planned layer on the calibration ``feeds`` (module docstring, "Data-aware
    factorization"): one streaming run of the float network records each layer's float
    outputs at `datafit.FIT_PATCHES` sampled positions and its per-channel mean output;
    a second run, in topological order, feeds each layer the output of the already
    factorized layers upstream, fits it (``data``: reduced-rank regression plus bias
    correction; else the plain SVD, measured only) and continues with the fitted layer's
    output."""
    by_id = {id(p.node): p for p in plans}
    targets: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def bias_of(node: Node) -> np.ndarray | float:
        b = [v.data for v in node.inputs[2:] if v.data is not None]
        return b[0].astype(np.float64) if b else 0.0

    def record(node: Node, ins: list[np.ndarray], y: np.ndarray) -> None:
        if id(node) in by_id:
            total = int(np.prod(y.shape)) // int(y.shape[1])
            pos = datafit.sample_positions(total, datafit.FIT_PATCHES, seed=len(targets))
            rows = datafit.output_rows(y, pos).astype(np.float64) - bias_of(node)
            targets[id(node)] = (pos, rows, _channel_mean(y))

    run_streaming(graph, feeds, lambda n, i, y: record(n, i, y))
    fits: dict[int, _Fit] = {}

    def fit(node: Node, ins: list[np.ndarray], y: np.ndarray) -> np.ndarray | None:
        plan = by_id.get(id(node))
        if plan is None:
            return None
        pos, target, mean_f = targets[id(node)]
        d = datafit.fit_data(datafit.patch_rows(node, ins[0], pos), target)
        r0, l0, svd_err = _flat_svd(node, plan.groups, plan.rank)
        if data:
            r, lw, _ = datafit.reduced_rank_fit(d, plan.groups, plan.rank, svd_init=(r0, l0))
            r, lw = datafit.equalize_channels(d, plan.groups, r, lw)
        else:
            r, lw = r0, l0
        k, g = plan.rank, plan.groups
        a = np.concatenate([lw[:, i * k:(i + 1) * k] @ r[i * k:(i + 1) * k]
                            for i in range(g)], axis=1)
        w = _weight(node).reshape(a.shape[0], -1).astype(np.float64)
        wn = float(np.linalg.norm(w))
        rel = float(np.linalg.norm(w - a)) / wn if wn > 0 else 0.0
        data_err = math.sqrt(max(datafit.fit_objective(a, d), 0.0) / d.yy) if d.yy > 0 else 0.0
        out = _pair_output(node, plan, r, lw, ins[0])
        delta = None
        if data:
            # Bias correction: the float layer's mean output on the calibration set.
            delta = mean_f - _channel_mean(out)
            shape = (1, -1) + (1,) * (out.ndim - 2)
            out = (out + delta.reshape(shape)).astype(np.float32)
        fits[id(node)] = _Fit(r, lw, "data" if data else "svd", rel if data else svd_err,
                              data_err, delta)
        return out

    run_streaming(graph, feeds, fit)
    return [fits[id(p.node)] for p in plans]


def _largest_divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


# ------------------------------------------------------------------------------------- pass


# The per-layer decision is an IR record; the old name stays importable.
LayerDecision = LowRankDecision


def _check_groups(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class LowRankPass(Pass):
    """Replace crossbar layers by group low-rank pairs (math and policy: module docstring).

    ``rank``: default rank spec for every eligible layer; ``groups``: default number of
    input-channel groups; ``layer_ranks`` / ``layer_groups``: per-layer overrides by node
    name (``"none"`` skips a layer); ``include_first_last``: also factorize the first conv
    and the last crossbar layer; ``include_linear``: also factorize Linear layers;
    ``method``: ``"data"`` (fit on ``ctx.calib``), ``"svd"`` (weights only) or ``"auto"``
    (``data`` when calibration data is given; module docstring, "Data-aware factorization").
    ``run`` returns a ``LowRankRecord`` listing what happened to every crossbar layer
    (no record when no rank is requested at all: the pass then does nothing).
    """

    name: ClassVar[str] = "lowrank"
    summary: ClassVar[str] = ("replace a crossbar layer W (m x n) by a group low-rank pair: "
                              "R (g groups of rank k) then L (m x g*k), by truncated SVD per "
                              "input-channel group")
    contract: ClassVar[Contract] = Contract(
        forbids=frozenset({"factorized", "quantized", "mapped"}), ensures=frozenset({"factorized"}),
        why="it factorizes float weights, before they are quantized and mapped")
    rank: str = option("none", help="rank k of every eligible layer: none (leave it), m/R "
                       "(output channels / R) or an integer; clamped to [1, min(m, n/g)]")
    groups: int = option(1, help="input-channel groups g of the factorization (>= 1; g must "
                         "divide a layer's input channels)")
    layer_ranks: dict[str, str] = option(
        default_factory=dict, help="per-layer rank overrides, {LAYER=SPEC,...}; LAYER as the "
        "tables show it (layer1.0/conv1) or in full; SPEC as rank")
    layer_groups: dict[str, int] = option(default_factory=dict,
                                          help="per-layer group overrides, {LAYER=G,...}")
    include_first_last: bool = option(False, help="also factorize the first conv and the "
                                      "last crossbar layer")
    include_linear: bool = option(False, help="also factorize Linear (fully connected) layers")
    method: str = option("auto", help="how the factors are fitted: data (on the calibration "
                         "images, against the float network's outputs), svd (per-group SVD of "
                         "the weights) or auto (data with calibration data, else svd)")
    spec_omit_default: ClassVar[frozenset[str]] = frozenset({"method"})

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"lowrank method={self.method!r} is unknown; choose one of "
                             f"{', '.join(METHODS)}")
        # Options are checked eagerly so a bad pipeline fails before any graph work. The
        # per-layer tables are copied so the caller's dicts cannot change a frozen pass.
        object.__setattr__(self, "layer_ranks", dict(self.layer_ranks))
        object.__setattr__(self, "layer_groups", dict(self.layer_groups))
        parse_rank(self.rank)
        _check_groups(self.groups, "groups")
        for layer, spec in self.layer_ranks.items():
            try:
                parse_rank(spec)
            except UsageError as exc:
                raise UsageError(f"layer {layer!r}: {exc.message}", hint=exc.hint) from exc
        for layer, g in self.layer_groups.items():
            _check_groups(g, f"groups for layer {layer!r}")

    @property
    def active(self) -> bool:
        """Whether any rank is requested (by default or for some layer)."""
        return self.rank != "none" or any(r != "none" for r in self.layer_ranks.values())

    # -- policy files

    @classmethod
    def policy_from_file(cls, path: str | Path) -> LowRankPass:
        """Read a JSON (``.json``) or TOML (``.toml``) policy file::

            {"rank": "m/2", "groups": 4, "include_first_last": false, "include_linear": false,
             "method": "data", "first_last_bits": 8,
             "layers": {"<name>": {"rank": "m/4", "groups": 2, "bits": 8}, "<name2>": "none"}}

        Every key is optional. A layer entry is a rank spec (string or integer) or a table
        with ``rank`` and/or ``groups``. ``method`` is the pass's (``data`` makes a compile
        without calibration data a usage error, rather than a silently different fit).
        ``first_last_bits`` and a layer's ``bits`` (weights and inputs) belong to the
        quantize pass: they are checked here and read by `policy_bits` (a compile's own
        ``--first-last-bits`` overrides the policy's). A malformed file raises
        ``DataError`` naming the problem."""
        p = Path(path)
        raw = _load_policy(p)
        known = {"rank", "groups", "layers", "include_first_last", "include_linear",
                 "method", "first_last_bits"}
        extra = sorted(set(raw) - known)
        if extra:
            raise DataError(f"{p}: unknown key(s) {', '.join(extra)}",
                            hint=f"allowed: {', '.join(sorted(known))}")
        kwargs: dict[str, Any] = {}
        if "rank" in raw:
            kwargs["rank"] = _policy_rank(p, "rank", raw["rank"])
        if "groups" in raw:
            kwargs["groups"] = _policy_groups(p, "groups", raw["groups"])
        for flag in ("include_first_last", "include_linear"):
            if flag in raw:
                if not isinstance(raw[flag], bool):
                    raise DataError(f"{p}: {flag} must be true or false, got {raw[flag]!r}")
                kwargs[flag] = raw[flag]
        if "method" in raw:
            if raw["method"] not in METHODS:
                raise DataError(f"{p}: method must be one of {', '.join(METHODS)}, got "
                                f"{raw['method']!r}")
            kwargs["method"] = raw["method"]
        _policy_bits(p, raw)
        layer_ranks: dict[str, str] = {}
        layer_groups: dict[str, int] = {}
        layers = raw.get("layers", {})
        if not isinstance(layers, dict):
            raise DataError(f"{p}: layers must be a table of layer name -> rank or "
                            f"{{rank, groups}}, got {type(layers).__name__}")
        for layer, entry in layers.items():
            where = f"layers.{layer}"
            if isinstance(entry, dict):
                bad = sorted(set(entry) - {"rank", "groups", "bits"})
                if bad:
                    raise DataError(f"{p}: {where}: unknown key(s) {', '.join(bad)}",
                                    hint="allowed: rank, groups, bits")
                if "rank" in entry:
                    layer_ranks[layer] = _policy_rank(p, f"{where}.rank", entry["rank"])
                if "groups" in entry:
                    layer_groups[layer] = _policy_groups(p, f"{where}.groups", entry["groups"])
            else:
                layer_ranks[layer] = _policy_rank(p, where, entry)
        return cls(layer_ranks=layer_ranks, layer_groups=layer_groups, **kwargs)

    # -- the pass

    def run(self, graph: Graph, ctx: CompileContext) -> PassResult:
        xbar = list(graph.crossbar_nodes())
        # Layers may be named as the tables show them (`layer1.0/conv1`) or in full
        # (`/layer1/layer1.0/conv1/Conv`); an unknown or ambiguous name is an error.
        present = [n.name for n in xbar]
        names = resolve_layer_names(self.layer_ranks, present,
                                    "lowrank: layer_ranks (--layer-rank, policy layers)")
        ranks = {names[k]: v for k, v in self.layer_ranks.items()}
        names = resolve_layer_names(self.layer_groups, present,
                                    "lowrank: layer_groups (policy layers)")
        groups = {names[k]: v for k, v in self.layer_groups.items()}
        if not self.active:
            return PassResult(graph, modified=False)
        method = self.method
        if method == "auto":
            method = "data" if ctx.calib is not None else "svd"
        if method == "data" and ctx.calib is None:
            raise UsageError("lowrank method=data fits the factors on calibration data, and "
                             "none was given", hint="pass --calib DATA.npz, or use method=svd")
        protected = self._protected(graph)
        default = parse_rank(self.rank)
        planned = [self._handle(graph, node, default, protected, ranks, groups)
                   for node in xbar]
        plans = [p for p in planned if isinstance(p, _Plan)]
        if ctx.calib is not None and plans:
            fits = _fit_sequential(graph, plans, calibration_feeds(graph, ctx.calib)[0],
                                   method == "data")
        else:
            fits = [_svd_fit(p) for p in plans]
        by_name = {p.node.name: (p, f) for p, f in zip(plans, fits, strict=True)}
        decisions = tuple(self._apply(graph, *by_name[d.node.name]) if isinstance(d, _Plan)
                          else d for d in planned)
        record = LowRankRecord(rank=self.rank, groups=self.groups, decisions=decisions,
                               method=method)
        return PassResult(graph, modified=record.factorized_layers > 0, records=(record,))

    def _protected(self, graph: Graph) -> dict[str, str]:
        """Layers the first/last policy leaves uncompressed, with the reason."""
        out: dict[str, str] = {}
        if self.include_first_last:
            return out
        first, last = first_last_crossbar(graph)
        for node in first:
            out[node.name] = "first conv" if isinstance(node.op, Conv) else \
                "first crossbar layer"
        for node in last:
            out.setdefault(node.name, "last crossbar layer")
        return out

    def _handle(self, graph: Graph, node: Node, default: RankSpec, protected: dict[str, str],
                layer_ranks: dict[str, str], layer_groups: dict[str, int]
                ) -> LowRankDecision | _Plan:
        """Whether and how ``node`` is factorized: a skip decision, or the plan (groups and
        rank after fallback and clipping). ``layer_ranks`` / ``layer_groups``: the per-layer
        tables keyed by full node name."""
        explicit = node.name in layer_ranks
        spec = parse_rank(layer_ranks[node.name]) if explicit else default

        def skip(reason: str) -> LowRankDecision:
            return LowRankDecision(node.name, False, (reason,))

        if spec.kind is RankKind.NONE:
            return skip("per-layer rank 'none'" if explicit else "no rank requested")
        if node.lowrank is not None:
            return skip("already one half of a low-rank pair")
        if not explicit and node.name in protected:
            return skip(f"{protected[node.name]}: left uncompressed by policy "
                        "(set include_first_last or give a per-layer rank)")
        if isinstance(node.op, Linear) and not explicit and not self.include_linear:
            return skip("Linear layers are factorized only with include_linear "
                        "or a per-layer rank")
        if not isinstance(node.op, (Conv, Linear)):
            return skip(f"{node.op.kind} is not a Conv or Linear")
        if isinstance(node.op, Conv) and node.op.group > 1:
            if explicit:
                raise UsageError(f"lowrank: layer {node.name!r} is already a grouped conv "
                                 f"(group={node.op.group}); it cannot be factorized",
                                 hint="drop its rank or set it to 'none'")
            return skip(f"already a grouped conv (group={node.op.group})")
        w_val = node.inputs[1]
        if w_val.data is None:
            return skip("weight is not a constant")
        w = w_val.data
        m, c_in = int(w.shape[0]), int(w.shape[1])
        n = int(w[0].size)
        notes: list[str] = []

        g_req = layer_groups.get(node.name, self.groups)
        if c_in % g_req:
            if node.name in layer_groups:
                raise UsageError(f"lowrank: groups={g_req} for layer {node.name!r} does not "
                                 f"divide its {c_in} input channels",
                                 hint="choose a divisor of the input channels")
            g = _largest_divisor_at_most(c_in, g_req)
            notes.append(f"groups {g_req} does not divide {c_in} input channels: used {g}")
            log.warning("lowrank: %s: %s", node.name, notes[-1])
        else:
            g = g_req
        max_k = min(m, n // g)
        k_req = spec.resolve(m)
        assert k_req is not None  # NONE was handled above
        k = min(max(k_req, 1), max_k)
        if k != k_req:
            notes.append(f"rank {spec} = {k_req} clipped to {k} (range [1, {max_k}])")
            log.info("lowrank: %s: %s", node.name, notes[-1])

        return _Plan(node, g, k, tuple(notes), requested_rank=k_req if k != k_req else None)

    def _apply(self, graph: Graph, plan: _Plan, fit: _Fit) -> LowRankDecision:
        """Replace ``plan.node`` by the pair ``fit`` describes (module docstring)."""
        node, g, k = plan.node, plan.groups, plan.rank
        w = node.inputs[1].data
        assert w is not None
        m, c_in = int(w.shape[0]), int(w.shape[1])
        n = int(w[0].size)
        dtype = w.dtype if np.issubdtype(w.dtype, np.floating) else np.dtype(np.float32)
        r_w, l_w = fit.r.astype(dtype), fit.lw.astype(dtype)
        if isinstance(node.op, Conv):
            r_w = r_w.reshape(g * k, c_in // g, *w.shape[2:])
            l_w = l_w.reshape(m, g * k, 1, 1)
        bias = node.inputs[2:]
        n_bias = sum(int(b.data.size) if b.data is not None else m for b in bias)
        before = m * n + n_bias
        after = k * n + m * g * k + n_bias
        if fit.bias_delta is not None:
            # Bias correction: the original bias (or none) plus the mean output error.
            old_b = bias[0].data if bias and bias[0].data is not None else None
            base = np.zeros(m) if old_b is None else old_b.astype(np.float64)
            b_type = dtype if old_b is None else old_b.dtype
            name = bias[0].name + "_bc" if bias else f"{node.name}.bias_bc"
            bias = [graph.const(name, (base + fit.bias_delta).astype(b_type))]

        idx = graph.nodes.index(node)
        x = node.inputs[0]
        if isinstance(node.op, Conv):
            op = node.op
            r_op: Conv | Linear = Conv(kernel=op.kernel, stride=op.stride, pads=op.pads,
                                       dilation=op.dilation, group=g)
            l_op: Conv | Linear = Conv(kernel=(1, 1))
        else:
            # Linear has no group attribute: expand the stacked R_i to blockdiag(R_1..R_g).
            ng = n // g
            full = np.zeros((g * k, n), dtype=r_w.dtype)
            for i in range(g):
                full[i * k:(i + 1) * k, i * ng:(i + 1) * ng] = r_w[i * k:(i + 1) * k]
            r_w = full
            r_op = l_op = Linear()
        r_const = graph.const(f"{node.name}.R.weight", r_w)
        r_node = graph.add(r_op, [x, r_const], f"{node.name}.R", index=idx)
        l_const = graph.const(f"{node.name}.L.weight", l_w)
        l_node = graph.add(l_op, [r_node.output, l_const, *bias], f"{node.name}.L",
                           index=idx + 1)
        old_out = node.output
        graph.replace_uses(old_out, l_node.output)
        graph.remove(node)
        # The pair's output takes over the original name; the detached old value gets the
        # fresh (already reserved) one, so names stay unique.
        l_node.output.name, old_out.name = old_out.name, l_node.output.name

        for half, role, partner in ((r_node, PairRole.R, l_node), (l_node, PairRole.L, r_node)):
            half.lowrank = LowRank(role=role, source=node.name, partner=partner.name, rank=k,
                                   groups=g, rel_error=fit.rel_error, params_before=before,
                                   params_after=after, method=fit.method,
                                   data_error=fit.data_error)
        return LowRankDecision(node.name, True, plan.notes, rank=k, groups=g,
                               rel_error=fit.rel_error, params_before=before,
                               params_after=after, method=fit.method,
                               data_error=fit.data_error,
                               requested_rank=plan.requested_rank)


def policy_from_file(path: str | Path) -> LowRankPass:
    """Module-level alias of ``LowRankPass.policy_from_file``."""
    return LowRankPass.policy_from_file(path)


def policy_bits(path: str | Path) -> tuple[int | None, dict[str, int]]:
    """A policy file's quantize settings: ``first_last_bits`` (None when it has none) and
    the layers' ``bits`` entries (``{layer: bits}``)."""
    p = Path(path)
    return _policy_bits(p, _load_policy(p))


# ------------------------------------------------------------------------ policy file helpers


def _load_policy(p: Path) -> dict[str, Any]:
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read lowrank policy {p}: {exc}") from exc
    suffix = p.suffix.lower()
    if suffix == ".json":
        raw = parse_json(text, str(p))
    elif suffix == ".toml":
        raw = parse_toml(text, str(p))
    else:
        raise DataError(f"{p}: a lowrank policy must be a .json or .toml file")
    if not isinstance(raw, dict):
        raise DataError(f"{p}: the top level must be a table/object, got {type(raw).__name__}")
    return raw


def _policy_bits(p: Path, raw: dict[str, Any]) -> tuple[int | None, dict[str, int]]:
    from imcc.passes.quantize import MAX_BITS, MIN_BITS

    def bits(where: str, v: object) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not MIN_BITS <= v <= MAX_BITS:
            raise DataError(f"{p}: {where} must be an integer in [{MIN_BITS}, {MAX_BITS}], "
                            f"got {v!r}")
        return v

    fl = bits("first_last_bits", raw["first_last_bits"]) if "first_last_bits" in raw else None
    layers = raw.get("layers", {})
    per = ({name: bits(f"layers.{name}.bits", e["bits"]) for name, e in layers.items()
            if isinstance(e, dict) and "bits" in e} if isinstance(layers, dict) else {})
    return fl, per


def _policy_rank(p: Path, where: str, value: object) -> str:
    try:
        return str(parse_rank(value))  # type: ignore[arg-type]
    except UsageError as exc:
        raise DataError(f"{p}: {where}: {exc.message}", hint=exc.hint) from exc


def _policy_groups(p: Path, where: str, value: object) -> int:
    try:
        return _check_groups(value, where)
    except UsageError as exc:
        raise DataError(f"{p}: {exc.message}") from exc
