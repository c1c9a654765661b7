"""quantize: integer weights for the crossbars and fake-quantized crossbar inputs.

Weights (every crossbar layer, symmetric, per output channel ``oc`` on axis 0)::

    qmax      = 2^(b-1) - 1
    scale[oc] = max|W[oc]| / qmax          (float32; 1.0 for an all-zero channel, whose
                                            levels are all 0 whatever the scale)
    q         = clip(round_half_even(W / scale[oc]), -qmax, qmax)      (int32)
    W'        = q * scale[oc]              (float32, replaces the weight constant)

The node gets ``wquant = WeightQuant(b, scale, q)`` and reads a new constant ``W'``, so
the float graph computes exactly what the crossbar computes. The bias stays float (it is
added digitally after the crossbar).

Activations (per tensor, zero point 0): the input ``x`` of every crossbar layer is read
through a ``FakeQuant(scale, b, signed)`` node::

    unsigned: q = clip(round_half_even(x / scale), 0, 2^b - 1)
    signed:   q = clip(round_half_even(x / scale), -2^(b-1), 2^(b-1) - 1)
    y = q * scale

``signed=False`` when ``x`` is provably non-negative: produced by Relu, Sigmoid, Softmax,
HardSigmoid, Sqrt,
Clip(min >= 0) or an unsigned FakeQuant, or by an op that keeps non-negativity
(MaxPool, AveragePool, global pools, Slice, Reshape, Transpose, Reduce*, Gather, Expand,
Pad with value >= 0,
Concat/Add/Mul/Div and crossbar/affine layers whose inputs and constants are all
non-negative). One FakeQuant is shared by all crossbar layers that read the same value
at the same bit width. Only the crossbar layers read it: every other user of ``x`` (e.g.
the Add of a residual shortcut) keeps reading the float value, because those ops run in
the digital periphery at full precision; only the DAC-driven crossbar rows need integers.

``first_last_bits`` sets weight *and* input-activation bits of the first crossbar layers
(no crossbar layer upstream) and the last ones (no crossbar layer downstream), as
`imcc.ir.topology.first_last_crossbar` defines them; a low-rank half whose partner is
first/last counts as first/last too.

``layer_bits`` sets weight and input-activation bits of named layers (``{layer: bits}``;
a layer named by its original name covers both halves of its low-rank pair), e.g. the
8-bit exceptions `imcc tune --allow-8bit` chooses; it takes precedence over
``first_last_bits``.

Calibration (``method``): activation scales are chosen on the calibration inputs, after
the weights are quantized, in one forward pass in topological order in which every
FakeQuant is calibrated on its input *as produced by the already quantized upstream
layers* (so later scales see earlier quantization), then applied before execution
continues. For a tensor with values ``v`` (at most 2^18 of them, drawn with a fixed seed;
exact zeros dropped since they quantize without error) and ``m = max|v|``:

* ``"mse"`` (default): the clipping value ``alpha`` minimizing ``mean((v - fq_alpha(v))^2)``
  with ``scale = alpha / qmax`` (``qmax`` = 2^b - 1 unsigned, 2^(b-1) - 1 signed), searched
  on 64 points ``m*k/64`` and then on 33 points between the neighbours of the best one
  (resolution ``m/1024``); ties go to the smaller alpha.
* ``"max"``: ``alpha = m`` (no clipping).

An all-zero tensor gets scale 1.0. The calibration inputs come from the compile context
(``ctx.calib``); without them the pass synthesizes a deterministic batch of standard
normal noise (seed 0) per graph input, the distribution of a standardized image: 32
samples, or fewer for large inputs (enough for the largest input to hold 2^18 values, at
least 8: a 3x224x224 input gets 8; `synthetic_samples`).
The pass returns a ``CalibrationRecord`` whose ``source`` is ``"synthetic"`` or
``"data:<n> samples"``, for the report.

Weights by calibration data (``weight_method``): ``"rtn"`` is the round-to-nearest rule
above; ``"gptq"`` chooses the per-channel scales by an MSE search on the weights, rounds
column by column with GPTQ error feedback on the damped Gram matrix of the layer's actual
inputs (the calibration images through the *already quantized* upstream layers and
FakeQuants) and corrects the bias by the mean output error; see `imcc.passes.datafit`.
It is never worse than round-to-nearest on the calibration data (the better one is kept).
``"auto"`` (default) is ``"gptq"`` when calibration data is given and ``"rtn"`` otherwise
(the synthetic batch says nothing about the real inputs), so a compile without ``--calib``
is unchanged. The levels are integers in either case; only their choice differs. The
method used is in the ``CalibrationRecord`` (``weight_method``).

Low-rank pairs under ``"gptq"``: the ``R`` half is GPTQ-quantized on its input like any
layer (no bias to correct); the ``L`` half is first **refit** by ridge least squares with
an intercept (`imcc.passes.datafit.lsq_refit`) from its actual input -- the quantized
``R``'s output through its FakeQuant -- to its float output recorded before quantization
(at `datafit.FIT_PATCHES` sampled positions), so it absorbs ``R``'s rounding and the
intermediate activation quantization; the refit weight is then GPTQ-quantized and its
bias corrected. (Skipped, like bias correction, when ``L``'s output is provably
non-negative.)

Exporting the quantized graph to ONNX (QuantizeLinear/DequantizeLinear, integer levels) is
the exporter's job: see `imcc.ir.onnx_export`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from imcc.errors import DataError, ModelError, UsageError
from imcc.ir import Graph, Node, PairRole, Value, WeightQuant, ops
from imcc.ir.annotations import level_dtype
from imcc.ir.interp import run_streaming
from imcc.ir.names import resolve_layer_names
from imcc.ir.records import CalibrationRecord
from imcc.ir.topology import first_last_crossbar
from imcc.passes import datafit
from imcc.passes.base import CompileContext, Contract, Pass, PassResult, option

METHODS: tuple[str, ...] = ("mse", "max")
WEIGHT_METHODS: tuple[str, ...] = ("auto", "rtn", "gptq")
MIN_BITS, MAX_BITS = 2, 16
MAX_CALIB_VALUES = 1 << 18   # values per tensor used by the scale search
SYNTHETIC_SAMPLES = 32       # synthetic calibration samples, at most ...
MIN_SYNTHETIC_SAMPLES = 8    # ... and at least (see synthetic_samples)
# A float32 scale below the smallest normal number loses its precision (and x / scale
# overflows): such activations have vanished, e.g. through thousands of damping layers.
SMALLEST_SCALE = float(np.finfo(np.float32).tiny)
SEED = 0

# Ops whose output is non-negative whenever their (first) input is.
_KEEP_NONNEG: tuple[type[ops.Op], ...] = (
    ops.MaxPool, ops.AveragePool, ops.GlobalAveragePool, ops.GlobalMaxPool, ops.Slice,
    ops.Reshape, ops.Transpose, ops.ReduceMean, ops.ReduceSum, ops.ReduceMax, ops.Gather,
    ops.Expand)
# Ops whose output is non-negative whenever all inputs (constants included) are.
_ALL_NONNEG: tuple[type[ops.Op], ...] = (
    ops.Concat, ops.Add, ops.Mul, ops.Div, ops.Affine, ops.Conv, ops.Linear)


def _check_bits(what: str, bits: object, option: bool = False) -> int:
    """``bits`` as an int in [MIN_BITS, MAX_BITS], else a UsageError naming the range
    (``option``: name it as the command-line flag, ``--act-bits``)."""
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) \
            or not MIN_BITS <= int(bits) <= MAX_BITS:
        one = not isinstance(bits, bool) and bits == 1
        hint = ("1-bit symmetric weights have the single level 0; use 2 or more"
                if one and what != "act_bits" else
                "1-bit signed activations have no positive level; use 2 or more"
                if one else None)
        name = f"--{what.replace('_', '-')} {bits!r}" if option else f"{what}={bits!r}"
        raise UsageError(f"{name}: must be an integer in [{MIN_BITS}, {MAX_BITS}] when "
                         "quantizing", hint)
    return int(bits)


def check_bit_widths(weight_bits: object, act_bits: object, first_last_bits: object = None,
                     option: bool = False) -> None:
    """Refuse, before any work, widths the quantize pass cannot run (see `_check_bits`)."""
    _check_bits("weight_bits", weight_bits, option)
    _check_bits("act_bits", act_bits, option)
    if first_last_bits is not None:
        _check_bits("first_last_bits", first_last_bits, option)


# ------------------------------------------------------------------------------ weights


def quantize_weight(w: np.ndarray, bits: int) -> WeightQuant:
    """Symmetric per-output-channel (axis 0) quantization of a weight tensor."""
    qmax = (1 << (bits - 1)) - 1
    w32 = np.asarray(w, dtype=np.float32)
    oc = w32.shape[0]
    absmax = np.abs(w32.reshape(oc, -1)).max(axis=1) if w32.size else np.zeros(oc, np.float32)
    scale = (absmax / np.float32(qmax)).astype(np.float32)
    # An all-zero channel (or one so small the scale underflows) quantizes to 0 for any
    # positive scale; 1.0 keeps the digital rescale well defined.
    scale[scale == 0] = np.float32(1.0)
    shp = (oc,) + (1,) * (w32.ndim - 1)
    q = np.clip(np.rint(w32 / scale.reshape(shp)), -qmax, qmax).astype(level_dtype(bits))
    return WeightQuant(bits, scale, q)


def dequantize_weight(wq: WeightQuant) -> np.ndarray:
    """``q * scale`` in float32: the weight the crossbar realizes."""
    shp = (-1,) + (1,) * (wq.q.ndim - 1)
    return (wq.q.astype(np.float32) * wq.scale.reshape(shp)).astype(np.float32)


# -------------------------------------------------------------------------- activations


def _sample(x: np.ndarray) -> np.ndarray:
    """The finite non-zero values of x, subsampled with a fixed seed to MAX_CALIB_VALUES."""
    v = np.asarray(x, dtype=np.float32).reshape(-1)
    if v.size > MAX_CALIB_VALUES:
        v = v[np.random.default_rng(SEED).integers(0, v.size, MAX_CALIB_VALUES)]
    # Zeros quantize exactly at every scale: dropping them leaves the argmin unchanged.
    return v[np.isfinite(v) & (v != 0)]


def synthetic_samples(sample_shapes: list[tuple[int, ...]]) -> int:
    """Samples in the synthetic calibration batch: enough that the largest input alone
    fills the scale search's MAX_CALIB_VALUES, within [MIN_SYNTHETIC_SAMPLES,
    SYNTHETIC_SAMPLES]. A 3x32x32 input gets 32 samples; a 3x224x224 one 8, which still
    gives every tensor of an ImageNet CNN 2^14 values or more (2048 per sample at the
    classifier), while the forward pass costs a quarter of 32 samples' (ResNet-50: 66
    instead of 262 GFLOP)."""
    per = max((int(np.prod(s, dtype=np.int64)) for s in sample_shapes), default=1)
    return int(min(SYNTHETIC_SAMPLES, max(MIN_SYNTHETIC_SAMPLES, -(-MAX_CALIB_VALUES // per))))


def _qmax(bits: int, signed: bool) -> int:
    return (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1


def fakequant_mse(x: np.ndarray, scale: float, bits: int, signed: bool) -> float:
    """mean((x - FakeQuant(scale)(x))^2). The calibration search calls this ~100 times per
    tensor, so it works in place in float32 (same rounding as FakeQuant) and only the
    final dot product is accumulated in float64."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    fq = ops.FakeQuant(float(scale), bits, signed)
    lo, hi = fq.qrange
    s = np.float32(scale)
    q = np.divide(x, s)
    np.rint(q, out=q)
    np.clip(q, lo, hi, out=q)
    np.multiply(q, s, out=q)
    np.subtract(x, q, out=q)
    if not q.size:
        return 0.0
    # A plain ufunc reduction, not BLAS: a multithreaded dot is ~40x slower on a busy machine.
    d = q.astype(np.float64)
    np.multiply(d, d, out=d)
    return float(d.sum() / q.size)


def calibrate_scale(x: np.ndarray, bits: int, signed: bool, method: str = "mse") -> float:
    """Per-tensor activation scale for ``FakeQuant(scale, bits, signed)`` (see module doc).
    The result is a float32 value returned as a Python float."""
    if method not in METHODS:
        raise UsageError(f"calibration method {method!r} is unknown; choose one of "
                         f"{', '.join(METHODS)}")
    v = _sample(x)
    m = float(np.max(np.abs(v))) if v.size else 0.0
    if m == 0.0:
        return 1.0
    qmax = _qmax(bits, signed)
    if method == "max":
        return float(np.float32(m / qmax))

    def best(alphas: np.ndarray) -> int:
        errs = [fakequant_mse(v, float(np.float32(a / qmax)), bits, signed) for a in alphas]
        return int(np.argmin(errs))  # first minimum: the smaller alpha on ties

    coarse = m * np.arange(1, 65, dtype=np.float64) / 64
    k = best(coarse)
    lo = coarse[k - 1] if k > 0 else coarse[0] / 2
    hi = coarse[min(k + 1, len(coarse) - 1)]
    fine = np.linspace(lo, hi, 33)
    return float(np.float32(fine[best(fine)] / qmax))


def _nonnegative_values(graph: Graph) -> set[int]:
    """ids of the values that are provably >= 0 (see module doc)."""
    nonneg: set[int] = set()

    def nn(v: Value) -> bool:
        if v.data is not None:
            return bool(np.all(v.data >= 0))
        return id(v) in nonneg

    for node in graph.nodes:
        op, ins = node.op, node.inputs
        if isinstance(op, ops.Relu | ops.Sigmoid | ops.Softmax | ops.HardSigmoid | ops.Sqrt):
            ok = True
        elif isinstance(op, ops.Clip):
            ok = ((op.min is not None and op.min >= 0)
                  or (nn(ins[0]) and (op.max is None or op.max >= 0)))
        elif isinstance(op, ops.FakeQuant):
            ok = not op.signed or nn(ins[0])
        elif isinstance(op, ops.Pad):
            ok = nn(ins[0]) and (op.mode != "constant" or op.value >= 0)
        elif isinstance(op, _KEEP_NONNEG):
            ok = nn(ins[0])
        elif isinstance(op, _ALL_NONNEG):
            ok = all(nn(v) for v in ins)
        else:
            ok = False
        if ok:
            nonneg.update(id(o) for o in node.outputs)
    return nonneg


def _first_last(graph: Graph, xbar: list[Node]) -> set[int]:
    """ids of the first and last crossbar layers (and their low-rank partners)."""
    first, last = first_last_crossbar(graph)
    chosen = first + last
    names = {n.name for n in chosen}
    chosen += [n for n in xbar if n.lowrank is not None and n.lowrank.partner in names]
    return {id(n) for n in chosen}


def calibration_feeds(graph: Graph, calib: np.ndarray | None) -> tuple[dict[str, np.ndarray], str]:
    """The feeds calibration runs on: ``calib`` checked against the graph's single input
    (``DataError`` when it does not fit), or the deterministic synthetic batch when None
    (module docstring). Returns the feeds and their ``CalibrationRecord`` source."""
    if calib is None:
        for v in graph.inputs:
            if any(d is None for d in v.type.shape[1:]) or v.type.dtype.numpy.kind != "f":
                raise UsageError(f"input %{v.name} ({v.type}) cannot be synthesized for "
                                 "calibration", "give calibration data")
        n = synthetic_samples([v.type.sample_shape() for v in graph.inputs])
        feeds = {v.name: np.random.default_rng(SEED + i).standard_normal(
            (n,) + v.type.sample_shape(), dtype=np.float32) for i, v in enumerate(graph.inputs)}
        return feeds, "synthetic"
    if len(graph.inputs) != 1:
        raise UsageError(f"calibration data feeds one input, the graph has "
                         f"{len(graph.inputs)}")
    inp = graph.inputs[0]
    x = np.asarray(calib)
    if x.dtype.kind != "f":
        raise DataError(f"calibration data must be floating point, got {x.dtype}")
    want = inp.type.shape
    if x.ndim != len(want) or any(w is not None and w != g
                                  for w, g in zip(want[1:], x.shape[1:], strict=True)):
        raise DataError(f"calibration data has shape {x.shape}, the input %{inp.name} is "
                        f"{inp.type}")
    if x.shape[0] == 0:
        raise DataError("calibration data holds zero samples")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise DataError("calibration data contains NaN or infinity")
    return {inp.name: x}, f"data:{x.shape[0]} samples"


# ------------------------------------------------------------------------------ the pass


@dataclass(frozen=True)
class QuantizePass(Pass):
    """Quantize crossbar weights and crossbar inputs; see the module docstring for the math.

    ``method``: how activation clipping ranges are chosen on the calibration inputs --
    ``"mse"`` (default) minimizes the mean squared quantization error of each tensor over
    a grid of clipping values; ``"max"`` uses the largest magnitude seen (no clipping).
    Calibration inputs come from ``ctx.calib``; ``run`` returns a ``CalibrationRecord``.
    """

    name: ClassVar[str] = "quantize"
    summary: ClassVar[str] = ("quantize crossbar weights (per output channel) and crossbar "
                              "inputs to integer levels, calibrating activation ranges on the "
                              "--calib data (else a synthetic batch)")
    contract: ClassVar[Contract] = Contract(
        forbids=frozenset({"quantized", "mapped"}), ensures=frozenset({"quantized"}),
        why="it quantizes the final weights: after fold-bn and lowrank, before map")
    weight_bits: int = option(4, unit="bits", help="weight precision (two's complement, "
                              f"symmetric per output channel), {MIN_BITS} to {MAX_BITS}")
    act_bits: int = option(4, unit="bits", help="crossbar input (activation) precision, "
                           f"{MIN_BITS} to {MAX_BITS}")
    first_last_bits: int | None = option(None, unit="bits", help="weights and inputs of the "
                                         "first and last crossbar layers (none: as the others)")
    layer_bits: dict[str, int] = option(
        default_factory=dict, unit="bits", help="per-layer weight and input bits, "
        "{LAYER=BITS,...}; LAYER as the tables show it or in full (a factorized layer by its "
        "original name: both halves)")
    method: str = option("mse", help="activation clipping: mse (minimize the quantization "
                         "error on the calibration data) or max (no clipping)")
    weight_method: str = option("auto", help="weight rounding: rtn (round to nearest), gptq "
                                "(MSE-searched scales + GPTQ error feedback on the calibration "
                                "data; kept only where no worse than rtn) or auto (gptq with "
                                "--calib data, else rtn)")
    spec_omit_default: ClassVar[frozenset[str]] = frozenset({"weight_method", "layer_bits"})

    def __post_init__(self) -> None:
        if self.weight_method not in WEIGHT_METHODS:
            raise UsageError(f"quantize weight_method={self.weight_method!r} is unknown; "
                             f"choose one of {', '.join(WEIGHT_METHODS)}")
        check_bit_widths(self.weight_bits, self.act_bits, self.first_last_bits)
        object.__setattr__(self, "layer_bits", dict(self.layer_bits))
        for layer, b in self.layer_bits.items():
            try:
                _check_bits("layer_bits", b, False)
            except UsageError as exc:
                raise UsageError(f"layer {layer!r}: {exc.message}", hint=exc.hint) from exc
        if self.method not in METHODS:
            raise UsageError(f"quantize method={self.method!r} is unknown; choose one of "
                             f"{', '.join(METHODS)}")

    def run(self, graph: Graph, ctx: CompileContext) -> PassResult:
        wbits, abits = int(self.weight_bits), int(self.act_bits)
        fl = None if self.first_last_bits is None else int(self.first_last_bits)
        xbar = list(graph.crossbar_nodes())
        if any(n.wquant is not None for n in xbar):
            raise UsageError("the graph is already quantized: run the quantize pass once")
        # Everything that can fail on user input is checked before the graph is edited.
        feeds, source = self._feeds(graph, ctx.calib)
        special = _first_last(graph, xbar) if fl is not None else set()
        own = self._layer_bits(xbar)
        nonneg = _nonnegative_values(graph)

        def w_bits(node: Node) -> int:
            if id(node) in own:
                return own[id(node)]
            return fl if fl is not None and id(node) in special else wbits

        def a_bits(node: Node) -> int:
            if id(node) in own:
                return own[id(node)]
            return fl if fl is not None and id(node) in special else abits

        wm = self.weight_method
        if wm == "auto":
            wm = "gptq" if ctx.calib is not None else "rtn"
        # The float targets of the pairs' L refit: the graph as it arrived, before any edit.
        targets = _pair_targets(graph, feeds, xbar) if wm == "gptq" else {}
        fitted: dict[int, int] = {}  # GPTQ: node id -> weight bits, quantized during the run
        for node in xbar:
            bits = w_bits(node)
            if wm == "rtn":
                self._quantize_weights(graph, node, bits)
            else:
                self._check_weight(node)
                fitted[id(node)] = bits

        # One FakeQuant per (value, bits), in the order the crossbar layers come.
        groups: dict[tuple[int, int], list[Node]] = {}
        for node in xbar:
            bits = a_bits(node)
            groups.setdefault((id(node.inputs[0]), bits), []).append(node)
        pending: set[int] = set()
        for (_, bits), consumers in groups.items():
            x = consumers[0].inputs[0]
            fq = self._insert_fakequant(graph, x, consumers, bits, signed=id(x) not in nonneg)
            pending.add(id(fq))
        _calibrate(graph, feeds, pending, self.method, fitted, nonneg, targets)
        return PassResult(graph, modified=bool(xbar),
                          records=(CalibrationRecord(source, weight_method=wm),))

    # -- helpers
    def _layer_bits(self, xbar: list[Node]) -> dict[int, int]:
        """node id -> bits of the ``layer_bits`` entries (names resolved like the low-rank
        pass's; a pair's original name covers both halves)."""
        if not self.layer_bits:
            return {}
        owner = {n.name: n.lowrank.source if n.lowrank is not None else n.name for n in xbar}
        names = resolve_layer_names(self.layer_bits, sorted(set(owner.values())),
                                    "quantize: layer_bits (policy bits)")
        by_layer = {names[k]: int(v) for k, v in self.layer_bits.items()}
        return {id(n): by_layer[owner[n.name]] for n in xbar if owner[n.name] in by_layer}

    @staticmethod
    def _feeds(graph: Graph, calib: np.ndarray | None) -> tuple[dict[str, np.ndarray], str]:
        return calibration_feeds(graph, calib)

    @staticmethod
    def _check_weight(node: Node) -> np.ndarray:
        w = node.inputs[1]
        if w.data is None:
            raise ModelError(f"{node.name}: the weight %{w.name} is not a constant")
        if not np.all(np.isfinite(w.data)):
            raise ModelError(f"{node.name}: the weight %{w.name} contains NaN or infinity")
        return w.data

    @staticmethod
    def _quantize_weights(graph: Graph, node: Node, bits: int) -> None:
        wq = quantize_weight(QuantizePass._check_weight(node), bits)
        _set_weight(graph, node, wq)


    @staticmethod
    def _insert_fakequant(graph: Graph, x: Value, consumers: list[Node], bits: int,
                          signed: bool) -> Node:
        """Insert FakeQuant(x) right after x's producer and rewire only `consumers` to it
        (not graph.replace_uses: the digital users of x keep the float value). The scale
        is a placeholder until calibration."""
        index = 0 if x.producer is None else graph.nodes.index(x.producer) + 1
        fq = graph.add(ops.FakeQuant(1.0, bits, signed), [x], x.name + "_q", index=index)
        for c in consumers:
            c.inputs[0] = fq.output
            x.users.remove(c)
            fq.output.users.append(c)
        return fq


def _replace_input(node: Node, index: int, new: Value) -> None:
    old = node.inputs[index]
    node.inputs[index] = new
    old.users.remove(node)
    new.users.append(node)


def _set_weight(graph: Graph, node: Node, wq: WeightQuant) -> None:
    w = node.inputs[1]
    _replace_input(node, 1, graph.const(w.name + "_q", dequantize_weight(wq)))
    node.wquant = wq


def _fit_weight(graph: Graph, node: Node, x: np.ndarray, bits: int, correct_bias: bool) -> None:
    """GPTQ-quantize ``node``'s weight on its actual input ``x`` and correct its bias."""
    w = node.inputs[1].data
    assert w is not None
    groups = node.op.group if isinstance(node.op, ops.Conv) else 1
    stats = datafit.input_stats(node, np.asarray(x, dtype=np.float32))
    wq, _ = datafit.gptq_quantize(w, bits, stats, groups)
    _set_weight(graph, node, wq)
    if not correct_bias:
        return
    delta = datafit.bias_delta(w, dequantize_weight(wq), stats, groups)
    if not np.any(delta):
        return
    if len(node.inputs) > 2:
        b = node.inputs[2]
        assert b.data is not None
        new = graph.const(b.name + "_bc", (b.data.astype(np.float64) + delta)
                          .astype(b.data.dtype))
        _replace_input(node, 2, new)
    else:
        new = graph.const(node.name + ".bias_bc", delta.astype(np.float32))
        node.inputs.append(new)
        new.users.append(node)


def _pair_targets(graph: Graph, feeds: dict[str, np.ndarray], xbar: list[Node],
                  ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For the ``L`` half of every low-rank pair: its float output on the calibration feeds
    (the graph before quantization) at `datafit.FIT_PATCHES` sampled output positions, as
    ``(positions, rows)``: the targets its least-squares refit aims at."""
    halves = {id(n) for n in xbar if n.lowrank is not None and n.lowrank.role is PairRole.L}
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if not halves:
        return out

    def visit(node: Node, ins: list[np.ndarray], y: np.ndarray) -> None:
        if id(node) in halves:
            total = int(y.size) // int(y.shape[1])
            pos = datafit.sample_positions(total, datafit.FIT_PATCHES, seed=len(out))
            out[id(node)] = (pos, datafit.output_rows(y, pos).astype(np.float64))

    run_streaming(graph, feeds, visit)
    return out


def _refit_pair_half(graph: Graph, node: Node, x: np.ndarray,
                     target: tuple[np.ndarray, np.ndarray]) -> None:
    """Replace the float weight and bias of the ``L`` half ``node`` by the least-squares fit
    (`datafit.lsq_refit`, ridge-regularized, intercept as the bias) of its float targets
    from its actual input ``x``: the quantized ``R``'s output through its FakeQuant. The
    fit then absorbs the error ``R``'s rounding and the intermediate activation
    quantization put into ``x``."""
    w = node.inputs[1].data
    assert w is not None
    pos, rows = target
    w_new, c = datafit.lsq_refit(datafit.patch_rows(node, x, pos), rows)
    _replace_input(node, 1, graph.const(node.inputs[1].name + "_fit",
                                        w_new.reshape(w.shape).astype(w.dtype)))
    b_dtype = node.inputs[2].data.dtype if len(node.inputs) > 2 and \
        node.inputs[2].data is not None else np.dtype(np.float32)
    bias = graph.const(node.name + ".bias_fit", c.astype(b_dtype))
    if len(node.inputs) > 2:
        _replace_input(node, 2, bias)
    else:
        node.inputs.append(bias)
        bias.users.append(node)


def _calibrate(graph: Graph, feeds: dict[str, np.ndarray], pending: set[int],
               method: str, fitted: dict[int, int] | None = None,
               nonneg: set[int] | None = None,
               targets: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
    """Run the graph on `feeds`; on reaching a pending FakeQuant, choose its scale from its
    actual input, set it, and go on with the quantized value. A streaming version of
    imcc.ir.interp.run (same op semantics): it skips nodes no FakeQuant depends on and
    frees each activation after its last use, so calibrating on hundreds of images does not
    keep every intermediate tensor alive.

    ``fitted`` (node id -> weight bits): crossbar layers whose weights are GPTQ-quantized on
    their actual input when the run reaches them (so downstream scales and layers see the
    quantized layer). Their bias is corrected unless the output is provably non-negative
    (``nonneg``: a corrected bias could break the unsigned FakeQuant downstream), or the
    layer is the ``R`` half of a low-rank pair without bias (its partner's bias absorbs it).

    ``targets`` (from `_pair_targets`): the ``L`` halves of low-rank pairs, refit by least
    squares on their actual input against their float outputs (`_refit_pair_half`) just
    before they are GPTQ-quantized, when their bias may be corrected."""
    fitted = fitted or {}
    targets = targets or {}
    nonneg = nonneg or set()
    needed: set[int] = set()  # ids of nodes some pending FakeQuant or fitted layer needs
    need_vals: set[int] = set()
    for node in reversed(graph.nodes):
        if id(node) in pending or id(node) in fitted \
                or any(id(o) in need_vals for o in node.outputs):
            needed.add(id(node))
            need_vals.update(id(v) for v in node.inputs if not v.is_const)
    remaining: dict[int, int] = {}
    for node in graph.nodes:
        if id(node) in needed:
            for v in node.inputs:
                remaining[id(v)] = remaining.get(id(v), 0) + 1
    env: dict[int, np.ndarray] = {
        id(v): np.asarray(feeds[v.name], dtype=v.type.dtype.numpy) for v in graph.inputs}
    for node in graph.nodes:
        if id(node) not in needed:
            continue
        read = list(node.inputs)  # before _fit_weight swaps the constants
        ins = [v.data if v.data is not None else env[id(v)] for v in read]
        if id(node) in pending:
            op = node.op
            assert isinstance(op, ops.FakeQuant)
            x = np.asarray(ins[0])
            where = f"calibrating %{node.inputs[0].name} (input of the crossbar layers after it)"
            if not np.all(np.isfinite(x)):
                raise DataError(f"{where}: the activations hold NaN or infinity",
                                "the network overflows on the calibration data")
            scale = calibrate_scale(x, op.bits, op.signed, method)
            if not (np.isfinite(scale) and float(np.float32(scale)) >= SMALLEST_SCALE) \
                    and np.any(x != 0):
                raise DataError(f"{where}: the activation scale comes out as {scale:g}: the "
                                f"activations (max |x| = {float(np.abs(x).max()):g}) vanish "
                                "below what float32 levels resolve", "check the model's "
                                "weights and the calibration data's scale")
            node.op = ops.FakeQuant(scale, op.bits, op.signed)
        if id(node) in fitted:
            correct = id(node.output) not in nonneg and not (
                node.lowrank is not None and node.lowrank.role is PairRole.R
                and len(node.inputs) <= 2)
            if correct and id(node) in targets:
                _refit_pair_half(graph, node, ins[0], targets[id(node)])
            _fit_weight(graph, node, ins[0], fitted[id(node)], correct)
            ins = [v.data if v.data is not None else env[id(v)] for v in node.inputs]
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite: refused above
            env[id(node.output)] = node.op.compute(*ins)
        for v in read:
            remaining[id(v)] -= 1
            if remaining[id(v)] == 0:
                env.pop(id(v), None)


__all__ = ["QuantizePass", "calibration_feeds", "check_bit_widths", "quantize_weight",
           "dequantize_weight", "calibrate_scale", "fakequant_mse", "METHODS", "WEIGHT_METHODS"]
