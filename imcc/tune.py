"""Accuracy-budgeted per-layer low-rank tuning (`imcc tune`).

Problem. Choose for every factorizable crossbar layer ``l`` a setting ``s_l`` -- ``none``
(left as is) or a group low-rank ``(rank m/R, groups g)`` with ``R`` in {2, 4, 8, 16} and
``g`` in {1, 2, 4, 8} -- minimizing the network's cost ``sum_l c_l(s_l)`` (cycles per image,
or energy in pJ with ``budget="energy"``) subject to ``drop <= max_drop``: the accuracy the
compiled network (data-aware low-rank fit, GPTQ 4-bit weights, the first and last layers at
``first_last_bits``) loses against the float model on a held-out split, in points (top-1
with labels; ``agreement``: 100 minus the percentage of images whose argmax equals the
float model's).

Split. The first ``n // 2`` of the ``n`` calibration samples calibrate (the data fit, GPTQ,
activation ranges); the other half is held out and only ever evaluated on.

1. Cost. A layer's cost does not depend on its weights' values, only on its shapes, so one
   cheap compile per uniform setting (plain SVD, no quantization; no calibration) gives
   ``c_l(s)`` for every layer at once: the sum over the two halves of its pair in the
   report. A setting the layer cannot take as asked (groups not dividing its input
   channels) is left out; two settings that clip to the same (rank, groups) are one.
2. Sensitivity. Each layer alone, in float: the layer's patches on the calibration half
   give the statistics of `imcc.passes.datafit` (one float run), every setting is fitted by
   the same grouped reduced-rank regression as the low-rank pass, with bias correction
   (the mean output error at the sampled positions), and the network is re-run from that
   layer on the held-out half with only that layer replaced (the activations upstream are
   the float run's, cached). The loss estimate ``e_l(s)`` is the mean KL divergence
   ``KL(p_float || p)`` of the output softmax (nats per image); the single-layer accuracy
   drop is recorded for the table.
3. Selection. Per layer, the options ``(saved_l(s) = c_l(none) - c_l(s), e_l(s))`` are
   reduced to their lower convex hull starting at ``(0, 0)``; its edges are *moves*, with
   efficiency ``d saved / d e``, decreasing along a layer's hull, so sorting all moves by
   efficiency keeps each layer's moves in order and every prefix of the sorted list is a
   per-layer assignment (a greedy Lagrangian / knapsack relaxation of the problem).
4. Verification. The estimates only order the moves: the budget is judged on real
   compiles only. A prefix of ``j`` moves is verified by compiling its policy file with
   `imcc.api.compile` (exactly what ``imcc compile --policy FILE --calib ...`` runs, with
   the calibration half) and running onnxruntime on its compiled.onnx (bit-exact with the
   crossbar program, see `imcc.sim.evaluate`) on the held-out half. Prefix 0 (nothing
   factorized) must pass, else the budget is unreachable (`BudgetUnreachable`). The search
   keeps ``lo`` (the longest prefix known to pass) and ``hi`` (a longer one known to fail),
   tries the whole list first and then ``jobs`` evenly spaced prefixes between them per
   round, until ``hi = lo + 1``; the result is the verified prefix ``lo``. Its cycles are
   the compiled report's.

Cost: about 17 cheap compiles, one float run on each half, one fit and one partial run per
(layer, setting), and ``2 + log_{jobs+1}(moves)`` verifications (each a full compile with
the data fit and GPTQ). Everything is deterministic (fixed seeds, fixed orders, ties broken
by layer order).
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imcc.errors import ImccError, UsageError

RANKS: tuple[str, ...] = ("m/2", "m/4", "m/8", "m/16")
GROUPS: tuple[int, ...] = (1, 2, 4, 8)
METRICS: tuple[str, ...] = ("top1", "agreement")
BUDGETS: tuple[str, ...] = ("cycles", "energy")
# Numerical zero of the KL estimate (nats): a move that costs less is taken first.
_TINY_LOSS = 1e-12

PathLike = str | Path
Progress = Callable[[str, int, int], None]


class BudgetUnreachable(ImccError):
    """Even the uncompressed network (every layer ``none``) loses more than the allowed
    accuracy on the held-out split: no policy can meet the budget. Exit code 1, like a
    budget `imcc check` finds exceeded."""

    exit_code = 1


@dataclass(frozen=True)
class Setting:
    """One layer's low-rank setting: ``rank`` ``none`` or ``m/R``, with ``groups``."""

    rank: str
    groups: int = 1

    @property
    def is_none(self) -> bool:
        return self.rank == "none"

    def __str__(self) -> str:
        return "none" if self.is_none else f"{self.rank} g{self.groups}"


NONE = Setting("none", 1)


@dataclass(frozen=True)
class Option:
    """A setting as measured for one layer: its ``cycles`` and ``energy_pj`` (the layer, or
    its two halves), ``cost`` (the budget's quantity of the two), and with only this layer
    changed, in float, on the held-out half: ``loss`` (mean KL divergence of the output
    softmax from the float model's, nats) and ``drop`` (points of the metric lost)."""

    setting: Setting
    cycles: int
    energy_pj: float | None
    cost: float
    loss: float = 0.0
    drop: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.setting.rank, "groups": self.setting.groups,
                "cycles": self.cycles, "energy_pj": self.energy_pj, "kl": self.loss,
                "drop": self.drop}


@dataclass(frozen=True)
class LayerTuning:
    """One factorizable layer: its full and short names, every option measured (``none``
    first) and the option chosen."""

    name: str
    short: str
    options: tuple[Option, ...]
    chosen: Option
    bits: int | None = None   # an 8-bit exception (weights and inputs); None: as the others
    # with an exception: the verified cycles it adds and the KL divergence it removes,
    # alone on top of the uncompressed network
    bits_cycles: int | None = None
    bits_kl_gain: float | None = None

    @property
    def baseline(self) -> Option:
        return self.options[0]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.short, "full": self.name, "setting": str(self.chosen.setting),
                "rank": self.chosen.setting.rank, "groups": self.chosen.setting.groups,
                "cycles": self.chosen.cycles, "baseline_cycles": self.baseline.cycles,
                "energy_pj": self.chosen.energy_pj,
                "baseline_energy_pj": self.baseline.energy_pj,
                "kl": self.chosen.loss, "drop": self.chosen.drop, "bits": self.bits,
                "bits_cycles": self.bits_cycles, "bits_kl_gain": self.bits_kl_gain,
                "options": [o.to_json() for o in self.options]}


@dataclass(frozen=True)
class Verification:
    """A real check of one policy: the first ``moves`` low-rank moves with the layers
    ``eight_bit`` (full names) at 8 bits. The compiled network's ``cycles`` and
    ``energy_pj``, its ``accuracy`` (fraction: top-1, or agreement with the float model)
    on the held-out half, the ``drop`` against the float model (points), the mean ``kl``
    divergence of its output softmax from the float model's (nats), whether the drop is
    within the budget, and the ``seconds`` of wall time of the round it ran in."""

    moves: int
    eight_bit: tuple[str, ...]
    cycles: int
    energy_pj: float | None
    accuracy: float
    drop: float
    kl: float
    passed: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["eight_bit"] = list(self.eight_bit)
        return d


@dataclass(frozen=True)
class TuneResult:
    """What `tune` found (fields as in the module docstring). ``reference`` is the float
    model's top-1 on the held-out half (1.0 for ``agreement``); ``final`` the verification
    of the emitted policy; ``verifications`` every real check, in the order run."""

    model: str
    target: str
    metric: str
    budget: str
    max_drop: float
    first_last_bits: int | None
    calib_images: int
    eval_images: int
    reference: float
    layers: tuple[LayerTuning, ...]
    moves: int
    final: Verification
    baseline: Verification
    verifications: tuple[Verification, ...]
    seconds: float
    allow_8bit: bool = False
    folds: int = 2

    @property
    def cycles(self) -> int:
        return self.final.cycles

    @property
    def samples(self) -> int:
        """Calibration samples the tuner read (both halves)."""
        return self.eval_images if self.folds == 2 else self.calib_images + self.eval_images

    def policy(self) -> dict[str, Any]:
        """The policy file's content (`imcc.passes.lowrank.LowRankPass.policy_from_file`)."""
        pol: dict[str, Any] = {"method": "data"}
        if self.first_last_bits is not None:
            pol["first_last_bits"] = self.first_last_bits
        layers: dict[str, Any] = {}
        for la in self.layers:
            s = la.chosen.setting
            entry: dict[str, Any] = {} if s.is_none else {"rank": s.rank, "groups": s.groups}
            if la.bits is not None:
                entry["bits"] = la.bits
            layers[la.name] = entry or "none"
        pol["layers"] = layers
        return pol

    def policy_toml(self) -> str:
        """The policy as TOML (what the final verification compiled), with comments
        saying how it was found."""
        f = self.final
        head = [f"# imcc tune {self.model} --target {self.target} --max-drop {self.max_drop:g} "
                f"--metric {self.metric} --budget {self.budget}",
                f"# verified on {self.eval_images} held-out samples ({self._split_text()}): "
                f"{self.metric} {f.accuracy:.2%} "
                f"(float {self.reference:.2%}, drop {f.drop:.2f} points), "
                f"{f.cycles:,} cycles per image (uncompressed {self.baseline.cycles:,})",
                f"# compile it with: imcc compile MODEL --target {self.target} --policy FILE "
                f"--calib DATA --calib-limit {self.samples}"]
        body = policy_text([(la.name, la.chosen.setting, la.bits) for la in self.layers],
                           self.first_last_bits)
        return "\n".join(head) + "\n" + body

    def _split_text(self) -> str:
        h = self.calib_images
        if self.folds == 2:
            return (f"2 folds: calibrated on samples 0-{h - 1}, scored on the next "
                    f"{self.eval_images - h}, and the other way round")
        return f"calibrated on samples 0-{h - 1}, scored on the next {self.eval_images}"

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "folds": self.folds, "metric": self.metric,
                "budget": self.budget,
                "max_drop": self.max_drop, "first_last_bits": self.first_last_bits,
                "calib_images": self.calib_images, "eval_images": self.eval_images,
                "reference": self.reference, "total_cycles": self.final.cycles,
                "total_energy_pj": self.final.energy_pj,
                "baseline_cycles": self.baseline.cycles,
                "accuracy": self.final.accuracy, "drop": self.final.drop,
                "moves": self.moves, "moves_taken": self.final.moves,
                "allow_8bit": self.allow_8bit,
                "eight_bit": [la.short for la in self.layers if la.bits is not None],
                "seconds": self.seconds, "policy": self.policy(),
                "layers": [la.to_json() for la in self.layers],
                "verifications": [v.to_json() for v in self.verifications]}


# ------------------------------------------------------------------------------ options


def check_options(max_drop: float, metric: str | None, budget: str, jobs: int,
                  calib_limit: int) -> None:
    """`tune`'s option checks, before any work (UsageError)."""
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) \
            or not math.isfinite(max_drop) or not 0 <= max_drop <= 100:
        raise UsageError(f"--max-drop must be a number of points in [0, 100], got {max_drop!r}")
    if metric is not None and metric not in METRICS:
        raise UsageError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if budget not in BUDGETS:
        raise UsageError(f"--budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    if jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs}")
    if calib_limit < 2:
        raise UsageError(f"--calib-limit must be >= 2 (half calibrates, half is held out), "
                         f"got {calib_limit}")


# ------------------------------------------------------------------------- step 1: costs


def _pair_costs(report: Any) -> dict[str, tuple[int, float | None, int | None, int | None]]:
    """layer -> (cycles, energy_pj, rank, groups): a pair's halves summed under its
    original name, an unfactorized layer under its own."""
    res: dict[str, tuple[int, float | None, int | None, int | None]] = {}
    for la in report.layers:
        name = la.pair or la.name
        e = None if la.energy is None else la.energy.energy_pj
        c0, e0, _, _ = res.get(name, (0, 0.0, None, None))
        res[name] = (c0 + la.cycles, None if e is None or e0 is None else e0 + e,
                     la.rank, la.groups)
    return res


def _costs(model: Path, compile_kw: dict[str, Any], budget: str, report: Progress
           ) -> tuple[list[str], dict[str, list[Option]]]:
    """Step 1: the factorizable layers (in graph order) and each one's options with their
    costs, ``none`` first."""
    from imcc.api import compile as compile_model

    settings = [Setting(r, g) for g in GROUPS for r in RANKS]
    total = len(settings) + 1
    base = _pair_costs(compile_model(model, quantize=False, write=False,
                                     **compile_kw).report)
    report("layer costs", 1, total)
    order = list(base)
    opts: dict[str, list[Option]] = {}
    seen: dict[str, set[tuple[int, int]]] = {}
    for i, s in enumerate(settings):
        rep = compile_model(model, quantize=False, write=False, rank=s.rank, groups=s.groups,
                            lowrank_method="svd", **compile_kw).report
        for name, (cyc, e, k, g) in _pair_costs(rep).items():
            if k is None or name not in base or g != s.groups or (k, g) in seen.get(name, ()):
                continue  # not factorized, groups fell back, or a duplicate after clipping
            seen.setdefault(name, set()).add((k, g))
            opts.setdefault(name, []).append(Option(s, cyc, e, 0.0))
        report("layer costs", i + 2, total)
    layers = [n for n in order if n in opts]
    res: dict[str, list[Option]] = {}
    for name in layers:
        cyc, e, _, _ = base[name]
        every = [Option(NONE, cyc, e, 0.0)] + opts[name]
        if budget == "energy" and any(o.energy_pj is None for o in every):
            raise UsageError("--budget energy needs an energy analysis, which this target "
                             "has none of", hint="use --budget cycles")
        res[name] = [dataclasses.replace(o, cost=float(o.cycles if budget == "cycles"
                                                       else o.energy_pj or 0.0))
                     for o in every]
    return layers, res


# ------------------------------------------------------------------- step 2: sensitivity


@dataclass(frozen=True)
class _LayerJob:
    """What one worker needs to measure one layer's options (picklable)."""

    graph: Any                # the fold-bn'ed float graph (imcc.ir.Graph)
    index: int                # the layer's position in graph.nodes
    live: dict[str, np.ndarray]  # activations live before it on the held-out half
    cov: np.ndarray
    cross: np.ndarray
    yy: float
    count: int
    mean_x: np.ndarray        # mean patch at the sampled positions
    mean_y: np.ndarray        # mean float pre-bias output there
    settings: tuple[tuple[Setting, int, int], ...]   # (setting, groups, rank k)
    p_float: np.ndarray       # float softmax on the held-out half
    labels: np.ndarray | None


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64).reshape(len(z), -1)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _metric_drop(p: np.ndarray, p_float: np.ndarray, labels: np.ndarray | None) -> float:
    """Points lost against the float model: top-1 with labels, else 100 - agreement."""
    a, f = p.argmax(1), p_float.argmax(1)
    if labels is not None:
        return float(np.mean(f == labels) - np.mean(a == labels)) * 100
    return float(1.0 - np.mean(a == f)) * 100


def _run_from(graph: Any, index: int, live: dict[str, np.ndarray], replace: np.ndarray
              ) -> np.ndarray:
    """The graph's (single) output when node ``index`` outputs ``replace``, from the
    activations ``live`` before it (the same streaming as `imcc.ir.interp.run_streaming`:
    each activation is dropped after its last use)."""
    nodes = graph.nodes[index:]
    remaining: dict[str, int] = {}
    for node in nodes:
        for v in node.inputs:
            remaining[v.name] = remaining.get(v.name, 0) + 1
    keep = {v.name for v in graph.outputs}
    env = dict(live)
    for i, node in enumerate(nodes):
        if i == 0:
            y = replace
        else:
            y = node.op.compute(*[v.data if v.data is not None else env[v.name]
                                  for v in node.inputs])
        env[node.output.name] = y
        for v in node.inputs:
            remaining[v.name] -= 1
            if remaining[v.name] == 0 and v.name not in keep:
                env.pop(v.name, None)
    return env[graph.outputs[0].name]


def _measure_layer(job: _LayerJob) -> list[tuple[float, float]]:
    """(loss, drop) of every setting of ``job`` (step 2 of the module docstring)."""
    from imcc.passes import datafit
    from imcc.passes.lowrank import grouped_lowrank
    from imcc.threads import limit_threads

    node = job.graph.nodes[job.index]
    w = node.inputs[1].data
    bias = [b.data for b in node.inputs[2:] if b.data is not None]
    b0 = bias[0].astype(np.float64) if bias else np.zeros(w.shape[0])
    d = datafit.FitData(job.cov, job.cross, job.yy, job.count)
    ins = [v.data if v.data is not None else job.live[v.name] for v in node.inputs[:1]]
    out: list[tuple[float, float]] = []
    with limit_threads(1):
        for _, g, k in job.settings:
            r0, l0, _ = grouped_lowrank(w, g, k)
            init = (r0.reshape(g * k, -1), l0.reshape(w.shape[0], g * k))
            r, lw, _ = datafit.reduced_rank_fit(d, g, k, svd_init=init)
            # The pair in float is the dense layer whose block i is L_i R_i.
            a = np.concatenate([lw[:, i * k:(i + 1) * k] @ r[i * k:(i + 1) * k]
                                for i in range(g)], axis=1)
            delta = job.mean_y - a @ job.mean_x  # bias correction at the sampled positions
            y = node.op.compute(ins[0], a.reshape(w.shape).astype(w.dtype),
                                (b0 + delta).astype(np.float32))
            p = _softmax(_run_from(job.graph, job.index, job.live, y))
            out.append((_kl(job.p_float, p), _metric_drop(p, job.p_float, job.labels)))
    return out


def _layer_jobs(graph: Any, layers: Sequence[str], options: dict[str, list[Option]],
                fit_x: np.ndarray, eval_x: np.ndarray, labels: np.ndarray | None
                ) -> list[_LayerJob]:
    """Step 2's inputs: one float run on each half (module docstring)."""
    from imcc.passes import datafit

    index = {n.name: i for i, n in enumerate(graph.nodes)}
    wanted = {index[name]: name for name in layers}
    stats: dict[str, tuple[datafit.FitData, np.ndarray, np.ndarray]] = {}

    def run(x: np.ndarray, visit: Callable[[int, Any, dict[str, np.ndarray],
                                            list[np.ndarray], np.ndarray], None]) -> np.ndarray:
        remaining: dict[str, int] = {}
        for node in graph.nodes:
            for v in node.inputs:
                remaining[v.name] = remaining.get(v.name, 0) + 1
        keep = {v.name for v in graph.outputs}
        env: dict[str, np.ndarray] = {graph.inputs[0].name: np.asarray(x, np.float32)}
        for i, node in enumerate(graph.nodes):
            ins = [v.data if v.data is not None else env[v.name] for v in node.inputs]
            y = node.op.compute(*ins)
            visit(i, node, env, ins, y)
            env[node.output.name] = y
            for v in node.inputs:
                remaining[v.name] -= 1
                if remaining[v.name] == 0 and v.name not in keep:
                    env.pop(v.name, None)
        return env[graph.outputs[0].name]

    def fit_visit(i: int, node: Any, env: dict[str, np.ndarray], ins: list[np.ndarray],
                  y: np.ndarray) -> None:
        if i not in wanted:
            return
        total = int(np.prod(y.shape)) // int(y.shape[1])
        pos = datafit.sample_positions(total, datafit.FIT_PATCHES, seed=len(stats))
        bias = [b.data for b in node.inputs[2:] if b.data is not None]
        xs = datafit.patch_rows(node, ins[0], pos).astype(np.float64)
        ys = datafit.output_rows(y, pos).astype(np.float64) - \
            (bias[0].astype(np.float64) if bias else 0.0)
        stats[wanted[i]] = (datafit.fit_data(xs, ys), xs.mean(axis=0), ys.mean(axis=0))

    live: dict[str, dict[str, np.ndarray]] = {}

    def eval_visit(i: int, node: Any, env: dict[str, np.ndarray], ins: list[np.ndarray],
                   y: np.ndarray) -> None:
        if i in wanted:
            live[wanted[i]] = dict(env)  # arrays are never changed in place: no copies

    run(fit_x, fit_visit)
    p_float = _softmax(run(eval_x, eval_visit))
    jobs = []
    for name in layers:
        d, mx, my = stats[name]
        node = graph.nodes[index[name]]
        m = int(node.inputs[1].data.shape[0])
        settings = []
        for o in options[name][1:]:
            k, g = _resolved(o.setting, m, int(node.inputs[1].data[0].size))
            settings.append((o.setting, g, k))
        jobs.append(_LayerJob(graph, index[name], live[name], d.cov, d.cross, d.yy, d.count,
                              mx, my, tuple(settings), p_float, labels))
    return jobs


def _resolved(s: Setting, m: int, n: int) -> tuple[int, int]:
    """(rank k, groups g) a setting takes on a layer with ``m`` outputs and ``n`` inputs
    per output, clipped as the low-rank pass clips it."""
    from imcc.passes.lowrank import parse_rank

    req = parse_rank(s.rank).resolve(m) or 1
    return min(max(req, 1), min(m, n // s.groups)), s.groups


# --------------------------------------------------------------------- step 3: selection


@dataclass(frozen=True)
class _Move:
    layer: int      # index into the layer list
    step: int       # position along the layer's hull
    to: int         # index of the option it moves the layer to
    efficiency: float


def hull_moves(options: Sequence[Option]) -> list[tuple[int, float, float]]:
    """The lower convex hull of ``(saved, loss)`` over ``options`` (``options[0]`` is the
    baseline: saved 0, loss 0) as moves ``(option index, d saved, d loss)`` in order of
    increasing saved. Only options that save cost are considered; an option with more
    loss than one saving at least as much is never on the hull."""
    base = options[0].cost
    pts = sorted(((base - o.cost, o.loss, i) for i, o in enumerate(options)
                  if i == 0 or base - o.cost > 0), key=lambda t: (t[0], t[1], t[2]))
    # keep the lowest loss per saved value, then the lower hull (monotone chain)
    hull: list[tuple[float, float, int]] = []
    for p in pts:
        if hull and hull[-1][0] == p[0]:
            continue  # same saving, higher (or equal) loss: sorted after the better one
        while len(hull) >= 2:
            (x1, y1, _), (x2, y2, _) = hull[-2], hull[-1]
            # pop the middle point when it lies on or above the chord from hull[-2] to p
            if (y2 - y1) * (p[0] - x1) >= (p[1] - y1) * (x2 - x1):
                hull.pop()
            else:
                break
        hull.append(p)
    moves = []
    for (x1, y1, _), (x2, y2, j) in zip(hull, hull[1:], strict=False):
        moves.append((j, x2 - x1, y2 - y1))
    return moves


def order_moves(all_options: Sequence[Sequence[Option]]) -> list[_Move]:
    """Every layer's hull moves, most cost saved per unit of estimated loss first (ties:
    layer order, then hull order, so a layer's moves stay in order)."""
    moves = []
    for li, opts in enumerate(all_options):
        for step, (j, ds, dl) in enumerate(hull_moves(opts)):
            eff = math.inf if dl <= _TINY_LOSS else ds / dl
            moves.append(_Move(li, step, j, eff))
    moves.sort(key=lambda mv: (-mv.efficiency, mv.layer, mv.step))
    return moves


def assignment(n_layers: int, moves: Sequence[_Move], prefix: int) -> list[int]:
    """The option index of every layer after the first ``prefix`` moves."""
    chosen = [0] * n_layers
    for mv in moves[:prefix]:
        chosen[mv.layer] = mv.to
    return chosen


# ------------------------------------------------------------------ step 4: verification


@dataclass(frozen=True)
class _VerifyJob:
    model: str
    compile_kw: dict[str, Any]
    policy_text: str
    fit_x: np.ndarray
    eval_x: np.ndarray


def _verify(job: _VerifyJob) -> tuple[int, float | None, np.ndarray, np.ndarray]:
    """Compile the policy with the calibration half and run onnxruntime on compiled.onnx
    and float.onnx over the held-out half: (cycles, energy_pj, compiled outputs, float
    outputs)."""
    from imcc.api import compile as compile_model
    from imcc.sim.evaluate import ort_run, ort_session
    from imcc.threads import limit_threads

    with tempfile.TemporaryDirectory(prefix="imcc-tune-") as tmp, limit_threads(1):
        pol = Path(tmp) / "policy.toml"
        pol.write_text(job.policy_text, encoding="utf-8")
        res = compile_model(job.model, policy=pol, calib=job.fit_x,
                            calib_limit=len(job.fit_x), output=Path(tmp) / "out",
                            **job.compile_kw)
        assert res.outdir is not None
        y, yf = (ort_run(ort_session(res.outdir / f, threads=1), job.eval_x)
                 for f in ("compiled.onnx", "float.onnx"))
    return res.cycles, res.energy_pj, y, yf


def policy_text(layers: Sequence[tuple[str, Setting, int | None]],
                first_last_bits: int | None) -> str:
    """A policy file (TOML) giving every layer of ``layers`` (name, setting, bits or None)
    its setting and bits, the data-aware fit (``method``) and the first/last bits."""
    lines = ['method = "data"']
    if first_last_bits is not None:
        lines.append(f"first_last_bits = {first_last_bits}")
    lines += ["", "[layers]"]
    for name, s, bits in layers:
        parts = [] if s.is_none else [f'rank = "{s.rank}"', f"groups = {s.groups}"]
        if bits is not None:
            parts.append(f"bits = {bits}")
        entry = f"{{ {', '.join(parts)} }}" if parts else '"none"'
        lines.append(f"{json.dumps(name)} = {entry}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ the tuner


def tune(model: PathLike = "resnet20", calib: PathLike | None = None, *,
         calib_limit: int = 256, target: str = "128x128", max_drop: float = 1.0,
         metric: str | None = None, budget: str = "cycles", jobs: int = 1,
         folds: int = 2, allow_8bit: bool = False, first_last_bits: int | None = 8,
         weight_bits: int = 4, act_bits: int = 4, tech: str = "isaac",
         progress: Progress | None = None
         ) -> TuneResult:
    """Find a per-layer low-rank policy of ``model`` for ``target`` that minimizes the
    ``budget`` (``cycles`` or ``energy``) while losing at most ``max_drop`` points of
    ``metric`` (``top1`` with labels, ``agreement`` with the float model's argmax; default
    top1 when the data has labels) on the held-out half of the first ``calib_limit``
    samples of ``calib`` (module docstring). ``allow_8bit``: layers may be kept at 8-bit
    weights and inputs when the uncompressed network misses the budget. ``jobs`` worker
    processes measure layers and verify policies (one BLAS thread each; this process
    pins itself to one too). ``progress(phase, done, total)`` is called as work
    completes. Raises `BudgetUnreachable` when no policy can meet the budget."""
    from imcc.compiler import resolve_model
    from imcc.dataset import load_npz
    from imcc.frontend import import_model
    from imcc.ir.names import short_name
    from imcc.passes.base import CompileContext
    from imcc.passes.fold_bn import FoldBatchNorm
    from imcc.passes.quantize import check_bit_widths
    from imcc.targets.crossbar import CrossbarTarget
    from imcc.threads import limit_threads, pinned_worker_threads

    t_start = time.perf_counter()
    if calib is None:
        raise UsageError("tune needs calibration data: half of it calibrates, half is held "
                         "out to measure the accuracy loss", hint="give --calib DATA.npz "
                         "(or 'cifar10' for the bundled sample)")
    check_options(max_drop, metric, budget, jobs, calib_limit)
    if folds not in (1, 2):
        raise UsageError(f"--folds must be 1 or 2, got {folds}")
    CrossbarTarget.parse_shape(target)
    check_bit_widths(weight_bits, act_bits, first_last_bits, option=True)
    report: Progress = progress or (lambda phase, done, total: None)
    path = resolve_model(str(model))
    graph = import_model(path, name=path.stem)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UsageError("tune supports models with one input and one output")
    v = graph.inputs[0]
    data = load_npz(calib, v.name, v.type.shape).take(calib_limit)
    if len(data) < 2:
        raise UsageError(f"tune needs at least 2 calibration samples, {calib} has {len(data)}")
    fit, held = data.split(len(data) // 2)
    metric = metric or ("top1" if data.labels is not None else "agreement")
    if metric == "top1" and held.labels is None:
        raise UsageError("--metric top1 needs labels in the calibration data",
                         hint="use --metric agreement (with the float model's argmax)")
    labels = held.labels if metric == "top1" else None
    if labels is not None and fit.labels is None:
        raise UsageError("the calibration data has labels for only some samples")
    compile_kw: dict[str, Any] = dict(target=target, weight_bits=weight_bits,
                                      act_bits=act_bits, tech=tech)

    with limit_threads(1):
        layers, options = _costs(path, compile_kw, budget, report)
        if not layers:
            raise UsageError(f"{path.name} has no layer the low-rank pass can factorize "
                             "(the first and last crossbar layers are left as they are)")
        folded = FoldBatchNorm().run(graph, CompileContext()).graph
        layer_jobs = _layer_jobs(folded, layers, options, fit.x, held.x, labels)

    ctx = multiprocessing.get_context("spawn")
    with pinned_worker_threads(), limit_threads(1), \
            (ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) if jobs > 1
             else _Serial()) as pool:
        futures = [pool.submit(_measure_layer, j) for j in layer_jobs]
        for i, (name, fut) in enumerate(zip(layers, futures, strict=True)):
            opts = options[name]
            options[name] = [opts[0]] + [dataclasses.replace(o, loss=ls, drop=dr)
                                         for o, (ls, dr) in zip(opts[1:], fut.result(),
                                                                strict=True)]
            report("layer sensitivity", i + 1, len(futures))
        moves = order_moves([options[n] for n in layers])
        pairs = [(fit.x, held.x), (held.x, fit.x)][:folds]
        fold_labels: np.ndarray | None = None
        if labels is not None and fit.labels is not None:
            fold_labels = np.concatenate([labels, fit.labels][:folds])
        search = _Search(pool, jobs, str(path), {**compile_kw,
                                                 "first_last_bits": first_last_bits},
                         layers, options, pairs, fold_labels, max_drop, first_last_bits,
                         report)
        eight, probes = search.exceptions(metric, allow_8bit)
        kept = [mv for mv in moves if layers[mv.layer] not in eight]
        taken = search.longest_prefix(kept, eight)
        final = search.result(kept, taken, eight)

    chosen = assignment(len(layers), kept, taken)
    base = search.cache[search.key([0] * len(layers), frozenset())]
    tunings = []
    for name, j in zip(layers, chosen, strict=True):
        probe = probes.get(name)
        tunings.append(LayerTuning(
            name, short_name(name), tuple(options[name]), options[name][j],
            bits=8 if name in eight else None,
            bits_cycles=None if probe is None else probe.cycles - base.cycles,
            bits_kl_gain=None if probe is None else base.kl - probe.kl))
    assert search.reference is not None
    return TuneResult(
        model=path.stem, target=target, metric=metric, budget=budget, max_drop=float(max_drop),
        first_last_bits=first_last_bits, calib_images=len(fit),
        eval_images=len(held) + (len(fit) if folds == 2 else 0), folds=folds,
        reference=search.reference, layers=tuple(tunings), moves=len(kept), final=final,
        baseline=base, verifications=tuple(search.runs),
        seconds=time.perf_counter() - t_start, allow_8bit=allow_8bit)


class _Search:
    """Step 4 of the module docstring: real verifications, cached by policy, run ``jobs``
    at a time on ``pool``."""

    def __init__(self, pool: Any, jobs: int, model: str, compile_kw: dict[str, Any],
                 layers: list[str], options: dict[str, list[Option]],
                 folds: list[tuple[np.ndarray, np.ndarray]], labels: np.ndarray | None,
                 max_drop: float, first_last_bits: int | None, report: Progress) -> None:
        self.pool, self.jobs, self.model, self.compile_kw = pool, jobs, model, compile_kw
        self.layers, self.options = layers, options
        # (calibration inputs, held-out inputs) per fold; `labels` of the held-out inputs
        # of every fold, concatenated in fold order (None: agreement)
        self.folds, self.labels = folds, labels
        self.max_drop, self.first_last_bits, self.report = max_drop, first_last_bits, report
        self.cache: dict[tuple[tuple[int, ...], frozenset[str]], Verification] = {}
        self.runs: list[Verification] = []
        self.reference: float | None = None
        self.expected = 0  # verifications still expected (progress bar)

    @staticmethod
    def key(chosen: Sequence[int], eight: frozenset[str]
            ) -> tuple[tuple[int, ...], frozenset[str]]:
        return tuple(chosen), eight

    def verify(self, configs: list[tuple[list[int], frozenset[str], int]]
               ) -> list[Verification]:
        """Verify (option index per layer, 8-bit layers, moves) configurations."""
        todo = [c for c in configs if self.key(c[0], c[1]) not in self.cache]
        todo = list({self.key(c[0], c[1]): c for c in todo}.values())
        t0 = time.perf_counter()
        futs = []
        for chosen, eight, _ in todo:
            text = policy_text([(n, self.options[n][j].setting, 8 if n in eight else None)
                                for n, j in zip(self.layers, chosen, strict=True)],
                               self.first_last_bits)
            futs.append([self.pool.submit(_verify, _VerifyJob(
                self.model, self.compile_kw, text, fx, ex)) for fx, ex in self.folds])
        for (chosen, eight, moves), fold_futs in zip(todo, futs, strict=True):
            done = [f.result() for f in fold_futs]
            cyc, energy = done[0][0], done[0][1]
            # cycles and energy do not depend on the calibration: every fold's are the same
            assert all(d[0] == cyc for d in done), [d[0] for d in done]
            pf = _softmax(np.concatenate([d[3] for d in done]))
            p = _softmax(np.concatenate([d[2] for d in done]))
            if self.reference is None:
                self.reference = (1.0 if self.labels is None
                                  else float(np.mean(pf.argmax(1) == self.labels)))
            acc = (float(np.mean(p.argmax(1) == pf.argmax(1))) if self.labels is None
                   else float(np.mean(p.argmax(1) == self.labels)))
            drop = _metric_drop(p, pf, self.labels)
            ver = Verification(moves, tuple(n for n in self.layers if n in eight), cyc, energy,
                               acc, drop, _kl(pf, p), drop <= self.max_drop + 1e-9,
                               time.perf_counter() - t0)
            self.cache[self.key(chosen, eight)] = ver
            self.runs.append(ver)
            self.expected = max(0, self.expected - 1)
            self.report("verifying", len(self.runs), len(self.runs) + self.expected)
        return [self.cache[self.key(c[0], c[1])] for c in configs]

    def exceptions(self, metric: str, allow_8bit: bool
                   ) -> tuple[frozenset[str], dict[str, Verification]]:
        """The 8-bit layers: none when the uncompressed network passes; else (with
        ``allow_8bit``) the shortest prefix that passes of the layers ordered by KL removed
        per cycle added, each measured alone at 8 bits. Also returns those probes."""
        zeros = [0] * len(self.layers)
        self.expected = 2
        base = self.verify([(zeros, frozenset(), 0)])[0]
        if base.passed:
            return frozenset(), {}
        why = (f"even uncompressed, the compiled network loses {base.drop:.2f} points of "
               f"{metric} on the held-out half ({base.accuracy:.2%} vs float "
               f"{self.reference or 0:.2%}), more than --max-drop {self.max_drop:g}")
        if not allow_8bit:
            raise BudgetUnreachable(why, hint="allow 8-bit layers (--allow-8bit), raise "
                                    "--max-drop or give more calibration data")
        self.expected = len(self.layers) + 1
        probes = dict(zip(self.layers, self.verify(
            [(zeros, frozenset({n}), 0) for n in self.layers]), strict=True))
        gain = {n: base.kl - probes[n].kl for n in self.layers}
        order = sorted((n for n in self.layers if gain[n] > 0),
                       key=lambda n: (-gain[n] / max(probes[n].cycles - base.cycles, 1),
                                      self.layers.index(n)))
        if not order or not self.verify([(zeros, frozenset(order), 0)])[0].passed:
            raise BudgetUnreachable(why + "; with 8-bit layers too", hint="raise --max-drop "
                                    "or give more calibration data")
        lo, hi = 0, len(order)  # prefix lo fails, hi passes: find the shortest passing one
        while hi - lo > 1:
            pts = self._between(lo, hi)
            res = self.verify([(zeros, frozenset(order[:p]), 0) for p in pts])
            for p, r in zip(pts, res, strict=True):
                if r.passed:
                    hi = min(hi, p)
            lo = max([lo] + [p for p, r in zip(pts, res, strict=True)
                             if not r.passed and p < hi])
        return frozenset(order[:hi]), probes

    def longest_prefix(self, moves: list[_Move], eight: frozenset[str]) -> int:
        """The longest verified-passing prefix of ``moves`` (prefix 0 passes)."""
        n = len(self.layers)

        def config(p: int) -> tuple[list[int], frozenset[str], int]:
            return assignment(n, moves, p), eight, p

        status = {0: True}
        self.expected = 1 + math.ceil(math.log2(max(len(moves), 1)) /
                                      math.log2(self.jobs + 1))
        if moves:
            status[len(moves)] = self.verify([config(len(moves))])[0].passed
        while True:
            lo = max(p for p, ok in status.items() if ok)
            fails = [p for p, ok in status.items() if not ok and p > lo]
            if not fails or min(fails) - lo <= 1:
                return lo
            pts = self._between(lo, min(fails))
            for p, r in zip(pts, self.verify([config(p) for p in pts]), strict=True):
                status[p] = r.passed

    def result(self, moves: list[_Move], taken: int, eight: frozenset[str]) -> Verification:
        return self.cache[self.key(assignment(len(self.layers), moves, taken), eight)]

    def _between(self, lo: int, hi: int) -> list[int]:
        """``jobs`` evenly spaced points strictly between ``lo`` and ``hi`` (at least one)."""
        step = (hi - lo) / (self.jobs + 1)
        return sorted({min(hi - 1, max(lo + 1, lo + round(step * (i + 1))))
                       for i in range(self.jobs)})


def _kl(p_float: np.ndarray, p: np.ndarray) -> float:
    """Mean KL(p_float || p) over the rows (nats)."""
    lf = np.log(np.maximum(p_float, 1e-300))
    return max(float(np.mean(np.sum(p_float * (lf - np.log(np.maximum(p, 1e-300))),
                                    axis=1))), 0.0)


class _Serial:
    """A stand-in for a process pool with one job: each task runs in this process when its
    result is asked for (no worker start-up, no pickling; progress follows the work)."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Later:
        return _Later(lambda: fn(*args))


class _Later:
    def __init__(self, run: Callable[[], Any]) -> None:
        self._run: Callable[[], Any] | None = run
        self._value: Any = None

    def result(self) -> Any:
        if self._run is not None:
            self._value, self._run = self._run(), None
        return self._value


def write_policy(result: TuneResult, path: PathLike) -> Path:
    """Write the policy TOML atomically; returns the path."""
    from imcc.fileio import atomic_write_bytes

    p = Path(path)
    atomic_write_bytes(p, result.policy_toml().encode("utf-8"))
    return p


__all__ = ["BUDGETS", "GROUPS", "METRICS", "NONE", "RANKS", "BudgetUnreachable",
           "LayerTuning", "Option", "Setting", "TuneResult", "Verification", "assignment",
           "check_options", "hull_moves", "order_moves", "policy_text", "tune", "write_policy"]
