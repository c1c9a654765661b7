"""Placement of a compiled program on a chip: a read-only analysis of the emitted program.

Why an analysis and not a pass: placement needs the tiles, which exist only once the
program is emitted (the map pass chooses a mapping; emission lays out the tiles), and it
changes nothing the program computes. Like the energy analysis it is a function of the
program, the tech profile and the chip.

Model. Crossbar layer `l` of the program has `T_l` tiles, `W_l` windows and `P_l` input-bit
phases. Its tiles sit on distinct arrays and fire together for each window, so one window
step takes `t_l = max over its tiles of P_l * max(t_read, ceil(c / n_adc) / f_adc)` (the
energy analysis's cycle latency, `c` the tile's columns). Replicating the layer `r_l` times
(`r_l * T_l` arrays) lets replica `k` serve a contiguous share of the windows, at most
`ceil(W_l / r_l)`, so the layer's stage time is `s_l = ceil(W_l / r_l) * t_l`. The number of
(window, tile) activations per image stays `W_l * T_l`: replication changes time, never the
cycle count.

Segments. When `sum T_l` exceeds the chip's arrays `A`, the layers (in program order) are
cut into consecutive segments whose tiles fit, by dynamic programming over the cut points
minimizing the time of one batch (each candidate segment planned, replicas included, as it
would run; see the batch time below). Every segment is loaded once per batch whatever the
cut, so the weights are reloaded the least possible: once per segment per batch of `B`
images (the chip's `batch`, `--chip-batch`). A layer with `T_l > A` cannot be placed: a
UsageError names the layer with the most tiles and the arrays it needs.

Replication search (within each segment, with its spare arrays). Two searches; the better
one is kept (lower slowest stage, then lower sum of stages, then fewer arrays; for a
segmented model, lower `fill + (B - 1) * bottleneck`, with a third candidate, `sum-greedy`,
spending each array where it saves the most stage time per array):
- `greedy`: repeatedly give the slowest stage its next useful replica count (the smallest
  `r` that lowers `ceil(W / r)`) while the arrays last;
- `min-max`: the exact minimum of the slowest stage: for a candidate bottleneck `tau` each
  layer needs `r_l = ceil(W_l / floor(tau / t_l))`; the smallest candidate `tau` (all values
  `ceil(W / r) * t`) whose arrays fit is found by bisection (feasibility is monotone in
  `tau`); the arrays left over then go greedily to the slowest stages (latency).
Because `min-max` is exact, more arrays never give a slower bottleneck.

Figures (docs/reports.md defines them): within segment `s`, `fill_s = sum of its stage
times + its transfers` (one image through it), `bottleneck_s = max(stage times, transfers)`.
Inter-core transfer: the output of a crossbar layer (`elements * act_bits` bits) moves at
`transfer_bits_per_ns` to the next crossbar layer of the segment unless both sit on one
single core. Writes: programming a tile writes its `rows x cols` used cells, rows serially
(`write_ns_per_row`), all arrays of a segment in parallel; a segment's write time is its
slowest array's.
- `S == 1`: weights are written once, before the first image: `throughput = 1 /
  bottleneck`, `latency = fill`, `write_energy_pj = 0` per inference.
- `S > 1`: one batch takes `sum_s (write_s + fill_s + (B - 1) * bottleneck_s)`;
  `throughput = B / that`; `latency` (first image in to its output out) `= sum_s write_s +
  sum_{s<S} (fill_s + (B - 1) * bottleneck_s) + fill_S`; `write_energy_pj = sum of the
  write energy of every placed tile / B`, and each used cell is written `1 / B` times per
  inference.
Digital steps between crossbar layers, and buffering activations between segments, are
not costed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from imcc.analysis.chip import Chip
from imcc.analysis.energy import EnergyReport
from imcc.analysis.tech import TechProfile
from imcc.errors import UsageError
from imcc.targets.crossbar import CrossbarTarget
from imcc.targets.program import (
    CrossbarLayer,
    LayerPlace,
    Load,
    Placement,
    Program,
    Replica,
    SegmentPlace,
)


@dataclass(frozen=True)
class LayerPlacement:
    """One crossbar layer on the chip. `arrays[k][t]` is the array of tile `t` of replica
    `k` (array ids count from 0 within the segment); replica `k` serves the windows
    `window_ranges[k]` = [start, stop) in row-major window order."""

    name: str
    segment: int
    tiles: int
    windows: int
    replicas: int
    step_ns: float               # one window step: all tiles of one replica fire together
    stage_ns: float              # ceil(windows / replicas) * step_ns
    arrays: tuple[tuple[int, ...], ...]
    window_ranges: tuple[tuple[int, int], ...]
    cells_written: int           # used cells of all its arrays (replicas included)
    write_ns: float              # programming its slowest array
    transfer_ns: float           # moving its output to the next crossbar layer

    @property
    def arrays_used(self) -> int:
        return self.tiles * self.replicas

    @property
    def window_steps(self) -> int:
        return -(-self.windows // self.replicas)


@dataclass(frozen=True)
class Segment:
    index: int
    layers: tuple[str, ...]
    arrays_used: int
    write_ns: float
    write_energy_pj: float
    fill_ns: float
    bottleneck_ns: float


@dataclass(frozen=True)
class ChipPlan:
    chip: Chip
    search: str                       # the replication search kept: "min-max" or "greedy"
    layers: tuple[LayerPlacement, ...]
    segments: tuple[Segment, ...]
    throughput_ips: float | None      # None: no crossbar layer
    latency_ns: float
    write_energy_pj: float            # per inference
    writes_per_cell: float            # per inference, per used cell (endurance)

    @property
    def arrays_used(self) -> int:
        """The most arrays any segment occupies at once."""
        return max((s.arrays_used for s in self.segments), default=0)

    @property
    def lifetime_inferences(self) -> float | None:
        """Inferences until a cell reaches its endurance (None: cells are written once)."""
        return None if self.writes_per_cell == 0 else (
            self.chip.endurance_writes / self.writes_per_cell)

    def to_placement(self) -> Placement:
        """The program's placement section: array ids as planned (each segment reuses the
        arrays from 0), and every segment loading all of its tiles before it runs (the
        segments overwrite each other's arrays; a model that fits loads once)."""
        segments = []
        for seg in self.segments:
            loads = tuple(Load(a, p.name, t) for p in self.layers if p.segment == seg.index
                          for rep in p.arrays for t, a in enumerate(rep))
            segments.append(SegmentPlace(seg.index, seg.layers, loads))
        layers = tuple(LayerPlace(p.name, p.segment, tuple(
            Replica(arrays, start, stop)
            for arrays, (start, stop) in zip(p.arrays, p.window_ranges, strict=True)))
            for p in self.layers)
        return Placement(chip=self.chip.name, arrays=self.chip.arrays, batch=self.chip.batch,
                         segments=tuple(segments), layers=layers)


def step_ns(layer: CrossbarLayer, phases: int, tech: TechProfile) -> float:
    """One window step of a layer whose tiles fire together: the slowest tile's cycle
    latency (the energy analysis's per-cycle latency)."""
    return max((phases * max(tech.t_read_ns,
                             math.ceil(t.cols.shape[0] / tech.n_adc_per_array) / tech.f_adc_ghz)
                for t in layer.tiles), default=0.0)


def _next_useful(windows: int, r: int) -> int:
    """The smallest r' > r with ceil(windows / r') < ceil(windows / r) (windows + 1 if none)."""
    steps = -(-windows // r)
    if steps <= 1:
        return windows + 1
    # ceil(W / r') <= steps - 1  <=>  r' >= W / (steps - 1)
    return -(-windows // (steps - 1))


def _stage(w: int, r: int, t: float) -> float:
    return -(-w // r) * t


def _fill_greedy(tiles: list[int], windows: list[int], step: list[float], reps: list[int],
                 spare: int) -> int:
    """Give the slowest stages their next useful replica count while `spare` arrays last
    (a stage that cannot afford it is skipped for good). Returns the arrays left."""
    blocked: set[int] = set()
    while True:
        cand = [i for i in range(len(tiles)) if i not in blocked
                and _next_useful(windows[i], reps[i]) <= windows[i]]
        if not cand:
            return spare
        i = max(cand, key=lambda j: (_stage(windows[j], reps[j], step[j]), -j))
        nxt = _next_useful(windows[i], reps[i])
        cost = (nxt - reps[i]) * tiles[i]
        if cost > spare:
            blocked.add(i)
            continue
        spare -= cost
        reps[i] = nxt


def _greedy(tiles: list[int], windows: list[int], step: list[float], spare: int) -> list[int]:
    """Replicate the slowest stage while it can be afforded; stop when it cannot (the
    bottleneck then cannot improve)."""
    reps = [1] * len(tiles)
    while tiles:
        i = max(range(len(tiles)), key=lambda j: (_stage(windows[j], reps[j], step[j]), -j))
        nxt = _next_useful(windows[i], reps[i])
        cost = (nxt - reps[i]) * tiles[i]
        if nxt > windows[i] or cost > spare:
            break
        spare -= cost
        reps[i] = nxt
    return reps


def _minmax(tiles: list[int], windows: list[int], step: list[float], spare: int) -> list[int]:
    """The replication minimizing the slowest stage exactly, then leftover arrays greedily."""
    budget = spare + sum(tiles)

    def need(tau: float) -> list[int] | None:
        reps = []
        for w, t in zip(windows, step, strict=True):
            if t == 0:
                reps.append(1)
                continue
            per = math.floor(tau / t + 1e-9)   # window steps allowed
            if per < 1:
                return None
            reps.append(-(-w // min(per, w)))
        return reps if sum(r * n for r, n in zip(reps, tiles, strict=True)) <= budget else None

    cands = sorted({_stage(w, r, t) for w, t in zip(windows, step, strict=True)
                    for r in _useful_counts(w)})
    lo, hi = 0, len(cands) - 1
    while lo < hi:  # the smallest feasible candidate; the largest (r = 1) always fits
        mid = (lo + hi) // 2
        if need(cands[mid]) is not None:
            hi = mid
        else:
            lo = mid + 1
    reps = need(cands[lo]) if cands else [1] * len(tiles)
    assert reps is not None
    left = budget - sum(r * n for r, n in zip(reps, tiles, strict=True))
    _fill_greedy(tiles, windows, step, reps, left)
    return reps


def _useful_counts(w: int) -> list[int]:
    """Replica counts r at which ceil(w / r) changes (1, ..., w)."""
    out, r = [], 1
    while r <= w:
        out.append(r)
        r = _next_useful(w, r)
    return out


def _score(reps: list[int], tiles: list[int], windows: list[int], step: list[float]
           ) -> tuple[float, float, int]:
    stages = [_stage(w, r, t) for w, r, t in zip(windows, reps, step, strict=True)]
    used = sum(r * n for r, n in zip(reps, tiles, strict=True))
    return (max(stages, default=0.0), sum(stages), used)


def _sum_greedy(tiles: list[int], windows: list[int], step: list[float], spare: int
                ) -> list[int]:
    """Spend the arrays where they save the most stage time per array (the sum of stages:
    one image's time through a segment)."""
    reps = [1] * len(tiles)
    while True:
        best: tuple[float, int] | None = None
        for i in range(len(tiles)):
            nxt = _next_useful(windows[i], reps[i])
            cost = (nxt - reps[i]) * tiles[i]
            if nxt > windows[i] or cost > spare:
                continue
            gain = (_stage(windows[i], reps[i], step[i])
                    - _stage(windows[i], nxt, step[i])) / cost
            if best is None or gain > best[0]:
                best = (gain, i)
        if best is None:
            return reps
        i = best[1]
        nxt = _next_useful(windows[i], reps[i])
        spare -= (nxt - reps[i]) * tiles[i]
        reps[i] = nxt


def replicate(tiles: list[int], windows: list[int], step: list[float], spare: int,
              images: int | None = None) -> tuple[list[int], str]:
    """Replica counts per layer for one segment with `spare` arrays beyond one copy each,
    and the name of the search that found them (see the module docstring). `images`: the
    segment runs that many images per load (a segmented model), so its time
    `fill + (images - 1) * bottleneck` is minimized; None: the model fits, pipelined, and
    the slowest stage comes first."""
    cands = [("greedy", _greedy(tiles, windows, step, spare)),
             ("min-max", _minmax(tiles, windows, step, spare))]
    if images is not None:
        cands.append(("sum-greedy", _sum_greedy(tiles, windows, step, spare)))

    def key(reps: list[int]) -> tuple[float, ...]:
        bott, total, used = _score(reps, tiles, windows, step)
        if images is None:
            return (bott, total, used)
        return (total + (images - 1) * bott, bott, used)

    name, reps = min(reversed(cands), key=lambda c: key(c[1]))
    return reps, name


def _check_layers(layers: list[CrossbarLayer], arrays: int) -> None:
    """Every layer's tiles must fit the chip at once. The error names the layer needing
    the most arrays (the first such in program order), so that the hinted `--chip-arrays`
    is enough for the whole model (in segments)."""
    if not layers:
        return
    big = max(layers, key=lambda la: len(la.tiles))  # max keeps the first of equals
    n = len(big.tiles)
    if n > arrays:
        raise UsageError(f"layer {big.name} needs {n} arrays but the chip has {arrays}",
                         hint=f"use --chip-arrays {n} or more")


def _plan_segment(layers: list[CrossbarLayer], s: int, steps: list[float],
                  target: CrossbarTarget, chip: Chip, images: int | None
                  ) -> tuple[list[LayerPlacement], Segment, str]:
    tiles = [len(la.tiles) for la in layers]
    windows = [la.n_windows for la in layers]
    reps, search = replicate(tiles, windows, steps, chip.arrays - sum(tiles), images)
    base = 0
    spans: list[tuple[tuple[int, ...], ...]] = []
    for la, r in zip(layers, reps, strict=True):
        n = len(la.tiles)
        spans.append(tuple(tuple(range(base + k * n, base + (k + 1) * n)) for k in range(r)))
        base += r * n
    seg_place: list[LayerPlacement] = []
    for j, (la, r, t) in enumerate(zip(layers, reps, steps, strict=True)):
        w = la.n_windows
        share = -(-w // r)
        ranges = tuple((min(k * share, w), min((k + 1) * share, w)) for k in range(r))
        cores = {chip.core_of(a) for rep in spans[j] for a in rep}
        transfer = 0.0
        if j + 1 < len(layers):
            nxt = {chip.core_of(a) for rep in spans[j + 1] for a in rep}
            if not (len(cores) == 1 and cores == nxt):
                transfer = math.prod(la.out_shape) * target.act_bits \
                    / chip.transfer_bits_per_ns
        cells = r * sum(tl.rows.shape[0] * tl.cols.shape[0] for tl in la.tiles)
        wns = max((tl.rows.shape[0] * chip.write_ns_per_row for tl in la.tiles), default=0.0)
        seg_place.append(LayerPlacement(
            name=la.name, segment=s, tiles=len(la.tiles), windows=w, replicas=r,
            step_ns=t, stage_ns=share * t, arrays=spans[j], window_ranges=ranges,
            cells_written=int(cells), write_ns=wns, transfer_ns=transfer))
    segment = Segment(
        index=s, layers=tuple(p.name for p in seg_place),
        arrays_used=sum(p.arrays_used for p in seg_place),
        write_ns=max((p.write_ns for p in seg_place), default=0.0),
        write_energy_pj=sum(p.cells_written for p in seg_place) * chip.write_energy_pj_per_cell,
        fill_ns=sum(p.stage_ns + p.transfer_ns for p in seg_place),
        bottleneck_ns=max([p.stage_ns for p in seg_place] + [p.transfer_ns for p in seg_place]))
    return seg_place, segment, search


def _batch_ns(seg: Segment, images: int) -> float:
    return seg.write_ns + seg.fill_ns + (images - 1) * seg.bottleneck_ns


def place(program: Program, target: CrossbarTarget, tech: TechProfile, energy: EnergyReport,
          chip: Chip) -> ChipPlan:
    """Place `program` on `chip` (see the module docstring for the model)."""
    chip.check_target(target.rows, target.cols)
    layers = program.crossbar_layers()
    _check_layers(layers, chip.arrays)
    phases = {e.name: e.phases for e in energy.layers}
    steps = [step_ns(la, phases[la.name], tech) for la in layers]
    n = len(layers)
    if sum(len(la.tiles) for la in layers) <= chip.arrays:
        cuts = [(0, n)] if n else []
        images: int | None = None
    else:
        # The cut into consecutive segments with the least batch time (dynamic programming
        # over cut points; each candidate segment is planned as it would run).
        images = chip.batch
        best: list[tuple[float, int]] = [(0.0, 0)] + [(math.inf, 0)] * n
        for j in range(1, n + 1):
            used = 0
            for i in range(j - 1, -1, -1):
                used += len(layers[i].tiles)
                if used > chip.arrays:
                    break
                _, seg, _ = _plan_segment(layers[i:j], 0, steps[i:j], target, chip, images)
                cost = best[i][0] + _batch_ns(seg, images)
                if cost < best[j][0]:
                    best[j] = (cost, i)
        cuts = []
        j = n
        while j > 0:
            cuts.append((best[j][1], j))
            j = best[j][1]
        cuts.reverse()
    placements: list[LayerPlacement] = []
    segments: list[Segment] = []
    searches: list[str] = []
    for s, (i, j) in enumerate(cuts):
        seg_place, segment, search = _plan_segment(layers[i:j], s, steps[i:j], target, chip,
                                                   images)
        placements.extend(seg_place)
        segments.append(segment)
        searches.append(search)
    return _figures(chip, placements, segments, searches)


def _figures(chip: Chip, placements: list[LayerPlacement], segments: list[Segment],
             searches: list[str]) -> ChipPlan:
    search = ",".join(sorted(set(searches)))
    if not segments:
        return ChipPlan(chip=chip, search=search, layers=(), segments=(), throughput_ips=None,
                        latency_ns=0.0, write_energy_pj=0.0, writes_per_cell=0.0)
    b = chip.batch
    if len(segments) == 1:
        seg = segments[0]
        tput = 1e9 / seg.bottleneck_ns if seg.bottleneck_ns > 0 else None
        return ChipPlan(chip=chip, search=search, layers=tuple(placements),
                        segments=tuple(segments), throughput_ips=tput, latency_ns=seg.fill_ns,
                        write_energy_pj=0.0, writes_per_cell=0.0)
    batch_ns = sum(s.write_ns + s.fill_ns + (b - 1) * s.bottleneck_ns for s in segments)
    latency = (sum(s.write_ns for s in segments)
               + sum(s.fill_ns + (b - 1) * s.bottleneck_ns for s in segments[:-1])
               + segments[-1].fill_ns)
    return ChipPlan(chip=chip, search=search, layers=tuple(placements),
                    segments=tuple(segments),
                    throughput_ips=b * 1e9 / batch_ns if batch_ns > 0 else None,
                    latency_ns=latency,
                    write_energy_pj=sum(s.write_energy_pj for s in segments) / b,
                    writes_per_cell=1.0 / b)
