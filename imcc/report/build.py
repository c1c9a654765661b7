"""Build the typed `imcc-report/1` report (report.json) from a compiled program.

Every cycle figure is read off the emitted program (`CrossbarLayer.cycles`: windows x tiles);
the im2col baseline is the DESIGN.md formula for the same layer and target.
"""

from __future__ import annotations

import dataclasses

from imcc import __version__
from imcc.analysis.energy import EnergyReport
from imcc.analysis.place import ChipPlan
from imcc.ir import Strategy
from imcc.ir.names import short_name
from imcc.ir.records import LowRankRecord
from imcc.report.macs import crossbar_macs, mac_summary
from imcc.report.model import (
    FORMAT,
    ChipLayer,
    ChipSummary,
    EnergySummary,
    LayerChip,
    LayerEnergy,
    LayerReport,
    LowRankSummary,
    Report,
    TargetInfo,
)
from imcc.report.units import conv_text
from imcc.targets.cost import LayerGeom, im2col_cost
from imcc.targets.crossbar import CrossbarTarget
from imcc.targets.program import CrossbarLayer, Program
from imcc.targets.tiling import lower_bound_cycles

__all__ = ["FORMAT", "build_report", "clamp_warnings", "layer_entry", "layer_geom",
           "ops_per_inference",
           "uncompressed_im2col_cycles"]


def layer_geom(layer: CrossbarLayer) -> LayerGeom:
    """Cost-model geometry of an emitted layer (a Linear is a 1x1 conv on positions x 1)."""
    oc = int(layer.out_scale.shape[0])
    if layer.op == "Conv":
        return LayerGeom.from_conv(layer.in_shape[0], oc, layer.groups, layer.kernel,
                                   layer.stride, layer.dilation,
                                   (layer.out_shape[1], layer.out_shape[2]))
    positions = 1
    for d in layer.in_shape[:-1]:
        positions *= d
    return LayerGeom.from_linear(layer.in_shape[-1], oc, positions)


def _shape_text(layer: CrossbarLayer) -> str:
    def dims(s: tuple[int, ...]) -> str:
        return "x".join(map(str, s))

    text = f"{dims(layer.in_shape)} -> {dims(layer.out_shape)}"
    if layer.op == "Conv":
        text += ", " + conv_text(layer.kernel, layer.stride, layer.pads, layer.dilation,
                                 layer.groups)
    return text


def layer_entry(layer: CrossbarLayer, target: CrossbarTarget,
                energy: LayerEnergy | None = None) -> LayerReport:
    tiles = layer.tiles
    per_group = [t for t in tiles if t.group == 0]
    row_tiles = 1 + max((t.row_tile for t in per_group), default=-1)
    col_tiles = 1 + max((t.col_tile for t in per_group), default=-1)
    taps = sum(t.taps for t in tiles)
    base = im2col_cost(layer_geom(layer), target.rows, target.cols,
                       len(layer.slice_weights)).cycles
    lr = layer.lowrank
    pw = None if layer.mapping.strategy is Strategy.IM2COL else layer.mapping.pw
    return LayerReport(
        name=layer.name, op=layer.op, shape=_shape_text(layer),
        mapping=layer.mapping.strategy.value, pw=None if pw is None else (pw[0], pw[1]),
        n_parallel=layer.mapping.n_parallel, group_pack=layer.mapping.group_pack,
        conv_groups=layer.groups, row_tiles=row_tiles, col_tiles=col_tiles, tiles=len(tiles),
        windows=layer.n_windows, cycles=layer.cycles, im2col_cycles=base,
        lower_bound_cycles=_layer_bound(layer, target),
        utilization=taps / (len(tiles) * target.rows * target.cols) if tiles else 0.0,
        mapping_note=layer.mapping.reason or None,
        rank=lr.rank if lr else None, groups=lr.groups if lr else None,
        rel_error=lr.rel_error if lr else None,
        pair=lr.source if lr else None, role=lr.role.value if lr else None,
        params_before=lr.params_before if lr else None,   # of the original layer
        params_after=lr.params_after if lr else None,     # of the pair (both halves)
        weight_params=layer.weight_params, slices=len(layer.slice_weights),
        input_bits=layer.in_quant[1] if layer.in_quant else None, energy=energy,
        lowrank_method=lr.method if lr else None, data_error=lr.data_error if lr else None)


def _layer_bound(layer: CrossbarLayer, target: CrossbarTarget) -> int:
    """The layer's lower bound as the emitter recorded it (program.json checks it equals
    the bound of its geometry); a program read from a file written before the key has 0,
    so the bound is then computed from the same geometry."""
    if layer.lower_bound_cycles > 0:
        return layer.lower_bound_cycles
    return lower_bound_cycles(layer_geom(layer), len(layer.slice_weights), target.rows,
                              target.cols)


def _original_geom(r: CrossbarLayer, l_half: CrossbarLayer) -> LayerGeom:
    """The geometry of the layer a low-rank pair replaced: R's input, kernel, stride and
    dilation, L's outputs (its grouping recovered from the parameters it had)."""
    oc = int(l_half.out_scale.shape[0])
    if r.op != "Conv":
        return LayerGeom.from_linear(r.in_shape[-1], oc, layer_geom(r).ho)
    ic = r.in_shape[0]
    lr = r.lowrank
    dense = ic * oc * r.kernel[0] * r.kernel[1]
    groups = 1
    if lr is not None and lr.params_before > 0 and dense % lr.params_before == 0:
        g = dense // lr.params_before
        groups = g if ic % g == 0 and oc % g == 0 else 1
    return LayerGeom.from_conv(ic, oc, groups, r.kernel, r.stride, r.dilation,
                               (l_half.out_shape[1], l_half.out_shape[2]))


def uncompressed_im2col_cycles(program: Program, target: CrossbarTarget) -> int:
    """im2col cycles of the network before low-rank factorization, on the same target and
    with the same bit slices: each pair counts as the layer it replaced. This is the
    baseline of `speedup_vs_im2col` (the paper's: im2col of the original network)."""
    total = 0
    pairs: dict[str, dict[str, CrossbarLayer]] = {}
    for layer in program.crossbar_layers():
        if layer.lowrank is None:
            total += im2col_cost(layer_geom(layer), target.rows, target.cols,
                                 len(layer.slice_weights)).cycles
        else:
            pairs.setdefault(layer.lowrank.source, {})[layer.lowrank.role.value] = layer
    for halves in pairs.values():
        r, l_half = halves.get("R"), halves.get("L")
        if r is None or l_half is None:  # an incomplete pair: count the halves as they are
            total += sum(im2col_cost(layer_geom(h), target.rows, target.cols,
                                     len(h.slice_weights)).cycles for h in halves.values())
            continue
        total += im2col_cost(_original_geom(r, l_half), target.rows, target.cols,
                             len(r.slice_weights)).cycles
    return total


def _lowrank_summary(record: LowRankRecord, pairs: int) -> LowRankSummary:
    return LowRankSummary(
        rank=record.rank, groups=record.groups, factorized_layers=pairs, method=record.method,
        skipped={d.layer: "; ".join(d.notes) for d in record.decisions if not d.factorized},
        notes={d.layer: "; ".join(d.notes) for d in record.decisions
               if d.factorized and d.notes})


def clamp_warnings(record: LowRankRecord | None) -> tuple[str, ...]:
    """A warning when the low-rank pass clamped a requested rank (``--rank 1000``,
    ``m/100``) to the range [1, min(m, n/g)] a layer allows: the effective rank of every
    clamped layer, grouped by (requested, effective). Empty when nothing was clamped."""
    if record is None:
        return ()
    by: dict[tuple[int, int], list[str]] = {}
    for d in record.decisions:
        if d.requested_rank is not None and d.rank is not None:
            by.setdefault((d.requested_rank, d.rank), []).append(short_name(d.layer))
    if not by:
        return ()
    n = sum(len(v) for v in by.values())
    parts = [f"{req} -> {eff} on {', '.join(layers)}" for (req, eff), layers in sorted(by.items())]
    return (f"rank {record.rank} clamped on {n} layer{'s' if n != 1 else ''} to the range "
            "[1, min(m, n/g)] each allows (requested -> effective): " + "; ".join(parts),)


def build_report(program: Program, target: CrossbarTarget,
                 energy: EnergyReport | None, mapping: str, tech: str,
                 calibration: str | None, lowrank: LowRankRecord | None,
                 passes: tuple[str, ...] | list[str] | None = None,
                 pipeline: str | None = None, chip: ChipPlan | None = None,
                 weight_method: str | None = None) -> Report:
    """The report of `program`; `lowrank` is the low-rank pass's record when it ran,
    `weight_method` how the quantize pass rounded the weights (``rtn`` or ``gptq``),
    `passes` the names of the passes run (recorded as report.json's ``passes``), `chip` the
    placement on a chip (``--chip``)."""
    layers = tuple(
        layer_entry(layer, target, None if energy is None else _layer_energy(energy, layer))
        for layer in program.crossbar_layers())
    if chip is not None:
        placed = {p.name: p for p in chip.layers}
        layers = tuple(dataclasses.replace(entry, chip=LayerChip(
            segment=placed[entry.name].segment, replicas=placed[entry.name].replicas,
            stage_ns=placed[entry.name].stage_ns, arrays=placed[entry.name].arrays_used))
            for entry in layers)
    macs = mac_summary(program)
    per_layer = {o.name: o.macs for o in macs.ops if o.unit == "crossbar"}
    layers = tuple(dataclasses.replace(entry, macs=per_layer[entry.name]) for entry in layers)
    total = program.total_cycles
    base = sum(entry.im2col_cycles for entry in layers)
    original = uncompressed_im2col_cycles(program, target)
    # Each pair is counted once: both halves carry the pair's totals.
    pairs = {entry.pair for entry in layers if entry.pair}
    t = program.target
    return Report(
        imcc_version=__version__, model=program.model,
        target=TargetInfo(rows=t["rows"], cols=t["cols"], weight_bits=t["weight_bits"],
                          cell_bits=t["cell_bits"], act_bits=t["act_bits"],
                          dac_bits=t["dac_bits"], adc_bits=t["adc_bits"], tech=tech),
        quantized=program.quantized, calibration=calibration, mapping=mapping,
        total_cycles=total, im2col_cycles=base, speedup=base / total if total else None,
        lower_bound_cycles=sum(entry.lower_bound_cycles or 0 for entry in layers),
        uncompressed_im2col_cycles=original,
        speedup_vs_im2col=original / total if total else None,
        n_arrays=program.n_arrays, n_crossbar_layers=len(layers),
        weight_params=sum(entry.weight_params for entry in layers), layers=layers,
        lowrank=None if lowrank is None else _lowrank_summary(lowrank, len(pairs)),
        energy=None if energy is None else EnergySummary(
            total_energy_pj=energy.total_energy_pj, total_latency_ns=energy.total_latency_ns,
            breakdown=energy.breakdown, adc_bits=energy.adc_bits),
        passes=None if passes is None else tuple(passes), pipeline=pipeline,
        chip=None if chip is None else _chip_summary(chip, program, energy),
        weight_method=weight_method, warnings=clamp_warnings(lowrank), macs=macs)


def ops_per_inference(program: Program) -> int:
    """Operations of one inference on the crossbars: 2 per multiply-accumulate (a multiply
    and an add, the TOPS convention) of every crossbar layer as compiled (a factorized
    pair counts both halves)."""
    return 2 * sum(crossbar_macs(layer) for layer in program.crossbar_layers())


def _chip_summary(plan: ChipPlan, program: Program, energy: EnergyReport | None
                  ) -> ChipSummary:
    """The chip object of report.json. Energy per inference is the energy analysis's
    compute energy plus the weight writes per inference; TOPS = ops x throughput, TOPS/W =
    ops per pJ of that energy, TOPS/mm2 = TOPS / area."""
    ops = ops_per_inference(program)
    compute = None if energy is None else energy.total_energy_pj
    per_inf = None if compute is None else compute + plan.write_energy_pj
    tops = None if plan.throughput_ips is None else ops * plan.throughput_ips / 1e12
    area = plan.chip.area_mm2
    return ChipSummary(
        chip=plan.chip.name, arrays_used=plan.arrays_used, arrays_available=plan.chip.arrays,
        segments=len(plan.segments), throughput_ips=plan.throughput_ips,
        latency_ns=plan.latency_ns, write_energy_pj=plan.write_energy_pj,
        area_mm2=area, batch=plan.chip.batch,
        replication_search=plan.search, writes_per_cell=plan.writes_per_cell,
        utilization=plan.arrays_used / plan.chip.arrays, compute_energy_pj=compute,
        energy_per_inference_pj=per_inf, ops_per_inference=ops, tops=tops,
        tops_per_w=None if not per_inf else ops / per_inf,   # ops / pJ == TOPS / W
        tops_per_mm2=None if tops is None or area <= 0 else tops / area,
        lifetime_inferences=plan.lifetime_inferences,
        layers=tuple(ChipLayer(segment=p.segment, replicas=p.replicas, stage_ns=p.stage_ns,
                               arrays=p.arrays_used, name=p.name) for p in plan.layers))


def _layer_energy(energy: EnergyReport, layer: CrossbarLayer) -> LayerEnergy:
    e = energy.layer(layer.name)
    return LayerEnergy(energy_pj=e.energy_pj, latency_ns=e.latency_ns,
                       breakdown=dict(e.breakdown))
