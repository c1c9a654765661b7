"""The typed compile report (format ``imcc-report/1``, written as report.json).

`Report.to_json()` returns exactly the dictionary report.json holds (same keys, same order),
and `Report.from_json()` reads any imcc-report/1 dictionary written so far: keys that later
versions added (``group_pack``, ``slices``, ``input_bits``, ``params_before``,
``params_after``, ``passes``, ``lower_bound_cycles``) may be missing from an old file. A
malformed report raises `DataError` with a one-line reason naming the key.

Optional parts are Optional fields: `Report.energy` / `LayerReport.energy` exist only with an
energy analysis, `Report.lowrank` only when the low-rank pass ran, so renderers never probe
a dictionary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imcc.errors import DataError
from imcc.report.units import BREAKDOWN_KEYS

FORMAT = "imcc-report/1"

_MISSING = object()


class _Reader:
    """Typed access to one JSON object; every problem is a DataError naming the key."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, dict):
            raise DataError(f"report: {where or 'the report'} must be an object, got "
                            f"{type(raw).__name__}")
        self.raw: dict[str, Any] = raw
        self.where = where

    def _key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str, optional: bool) -> Any:
        v = self.raw.get(key, _MISSING)
        if v is _MISSING:
            if optional:
                return None
            raise DataError(f"report: missing key {self._key(key)}")
        return v

    def _typed(self, key: str, types: tuple[type, ...], what: str, nullable: bool,
               optional: bool = False) -> Any:
        v = self._get(key, optional)
        if v is None and (nullable or optional):
            return None
        if isinstance(v, bool) and bool not in types or not isinstance(v, types):
            raise DataError(f"report: key {self._key(key)} must be {what}"
                            f"{' or null' if nullable else ''}, got {v!r}"[:200])
        return v

    def integer(self, key: str, nullable: bool = False, optional: bool = False) -> Any:
        return self._typed(key, (int,), "an integer", nullable, optional)

    def number(self, key: str, nullable: bool = False, optional: bool = False) -> Any:
        v = self._typed(key, (int, float), "a number", nullable, optional)
        return None if v is None else float(v)

    def string(self, key: str, nullable: bool = False, optional: bool = False) -> Any:
        return self._typed(key, (str,), "a string", nullable, optional)

    def flag(self, key: str) -> bool:
        return bool(self._typed(key, (bool,), "true or false", False))

    def obj(self, key: str, optional: bool = False) -> _Reader | None:
        v = self._get(key, optional)
        return None if v is None and optional else _Reader(v, self._key(key))

    def array(self, key: str, optional: bool = False) -> list[Any] | None:
        v = self._typed(key, (list,), "a list", False, optional)
        return None if v is None else list(v)

    def str_map(self, key: str) -> dict[str, str]:
        sub = self.obj(key)
        assert sub is not None
        for k in sub.raw:
            sub.string(k)
        return dict(sub.raw)

    def breakdown(self, key: str) -> dict[str, float]:
        """An energy breakdown: a number (pJ) for each of BREAKDOWN_KEYS, in file order."""
        sub = self.obj(key)
        assert sub is not None
        if set(sub.raw) != set(BREAKDOWN_KEYS):
            raise DataError(f"report: key {sub.where} must have the keys "
                            f"{', '.join(BREAKDOWN_KEYS)}, got {', '.join(sub.raw) or 'none'}"
                            [:200])
        return {k: sub.number(k) for k in sub.raw}


@dataclass(frozen=True)
class Precision:
    """Bit widths (weights, bits per cell, activations, DAC and ADC resolution) and the
    tech profile of the energy model."""

    weight_bits: int
    cell_bits: int
    act_bits: int
    dac_bits: int
    adc_bits: int
    tech: str

    def phrases(self) -> list[str]:
        """How a page states them, e.g. ``["4-bit weights on 1-bit cells", ...]``."""
        return [f"{self.weight_bits}-bit weights on {self.cell_bits}-bit cells",
                f"{self.act_bits}-bit activations ({self.dac_bits}-bit DAC)",
                f"{self.adc_bits}-bit ADC"] + ([f"tech {self.tech}"] if self.tech else [])


@dataclass(frozen=True)
class TargetInfo(Precision):
    """The crossbar target (array rows x columns and its precision) and the tech profile
    the report was computed for."""

    rows: int
    cols: int

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "cols": self.cols, "weight_bits": self.weight_bits,
                "cell_bits": self.cell_bits, "act_bits": self.act_bits,
                "dac_bits": self.dac_bits, "adc_bits": self.adc_bits, "tech": self.tech}

    @classmethod
    def _read(cls, r: _Reader) -> TargetInfo:
        return cls(rows=r.integer("rows"), cols=r.integer("cols"),
                   weight_bits=r.integer("weight_bits"),
                   cell_bits=r.integer("cell_bits"), act_bits=r.integer("act_bits"),
                   dac_bits=r.integer("dac_bits"), adc_bits=r.integer("adc_bits"),
                   tech=r.string("tech"))


@dataclass(frozen=True)
class LayerEnergy:
    """Energy (pJ) and serial latency (ns) of one crossbar layer, with the energy per
    component (every key of `imcc.report.units.BREAKDOWN_KEYS`, in pJ)."""

    energy_pj: float
    latency_ns: float
    breakdown: Mapping[str, float]


@dataclass(frozen=True)
class EnergySummary:
    """Whole-program energy (pJ), latency (ns), energy per component (every key of
    BREAKDOWN_KEYS) and the ADC width the energy was computed for."""

    total_energy_pj: float
    total_latency_ns: float
    breakdown: Mapping[str, float]
    adc_bits: int


@dataclass(frozen=True)
class LowRankSummary:
    """The low-rank pass's settings, how many pairs it made, and why layers were left as
    they are (`skipped`) or adjusted (`notes`), by layer name."""

    rank: str
    groups: int
    factorized_layers: int
    skipped: Mapping[str, str]
    notes: Mapping[str, str]
    # "svd" (weights only) or "data" (fitted on calibration data); None: a report written
    # before the key
    method: str | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"rank": self.rank, "groups": self.groups}
        if self.method is not None:
            d["method"] = self.method
        d.update({"factorized_layers": self.factorized_layers, "skipped": dict(self.skipped),
                  "notes": dict(self.notes)})
        return d

    @classmethod
    def _read(cls, r: _Reader) -> LowRankSummary:
        return cls(rank=r.string("rank"), groups=r.integer("groups"),
                   factorized_layers=r.integer("factorized_layers"),
                   skipped=r.str_map("skipped"), notes=r.str_map("notes"),
                   method=r.string("method", optional=True))


@dataclass(frozen=True)
class LayerChip:
    """A crossbar layer on the chip (with ``--chip``): the segment it runs in, its replicas
    (each serves at most ``ceil(windows / replicas)`` windows), the arrays they occupy
    (``tiles x replicas``; None in a report written before the key) and its stage time
    (ns)."""

    segment: int
    replicas: int
    stage_ns: float
    arrays: int | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"segment": self.segment, "replicas": self.replicas}
        if self.arrays is not None:
            d["arrays"] = self.arrays
        d["stage_ns"] = self.stage_ns
        return d

    @classmethod
    def _read(cls, c: _Reader) -> LayerChip:
        return cls(segment=c.integer("segment"), replicas=c.integer("replicas"),
                   stage_ns=c.number("stage_ns"), arrays=c.integer("arrays", optional=True))


@dataclass(frozen=True)
class ChipLayer(LayerChip):
    """One entry of the chip object's per-layer list: `LayerChip` with the layer's name."""

    name: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **super().to_json()}

    @classmethod
    def _read(cls, c: _Reader) -> ChipLayer:
        base = LayerChip._read(c)
        return cls(segment=base.segment, replicas=base.replicas, stage_ns=base.stage_ns,
                   arrays=base.arrays, name=c.string("name"))


# Chip figures a report written before them lacks (read as None).
_CHIP_LATER = ("utilization", "compute_energy_pj", "energy_per_inference_pj",
               "ops_per_inference", "tops", "tops_per_w", "tops_per_mm2")


@dataclass(frozen=True)
class ChipSummary:
    """Chip-level figures (with ``--chip``; docs/reports.md defines each one). The figures
    after ``writes_per_cell`` are None in a report written before them (and
    ``lifetime_inferences`` is None when cells are written only once)."""

    chip: str
    arrays_used: int
    arrays_available: int
    segments: int
    throughput_ips: float | None
    latency_ns: float
    write_energy_pj: float
    area_mm2: float
    batch: int
    replication_search: str
    writes_per_cell: float
    utilization: float | None = None            # arrays_used / arrays_available
    compute_energy_pj: float | None = None      # the energy analysis's, per inference
    energy_per_inference_pj: float | None = None  # compute + write_energy_pj
    ops_per_inference: int | None = None        # 2 x multiply-accumulates
    tops: float | None = None
    tops_per_w: float | None = None
    tops_per_mm2: float | None = None
    lifetime_inferences: float | None = None
    layers: tuple[ChipLayer, ...] = ()

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "chip": self.chip, "arrays_used": self.arrays_used,
            "arrays_available": self.arrays_available, "segments": self.segments,
            "throughput_ips": self.throughput_ips, "latency_ns": self.latency_ns,
            "write_energy_pj": self.write_energy_pj, "area_mm2": self.area_mm2,
            "batch": self.batch, "replication_search": self.replication_search,
            "writes_per_cell": self.writes_per_cell}
        if self.utilization is not None:
            d.update({k: getattr(self, k) for k in _CHIP_LATER})
            d["lifetime_inferences"] = self.lifetime_inferences
            d["layers"] = [la.to_json() for la in self.layers]
        return d

    @classmethod
    def _read(cls, r: _Reader) -> ChipSummary:
        later: dict[str, Any] = {k: r.number(k, nullable=True, optional=True)
                                 for k in _CHIP_LATER if k != "ops_per_inference"}
        later["ops_per_inference"] = r.integer("ops_per_inference", optional=True)
        layers = r.array("layers", optional=True) or []
        return cls(chip=r.string("chip"), arrays_used=r.integer("arrays_used"),
                   arrays_available=r.integer("arrays_available"),
                   segments=r.integer("segments"),
                   throughput_ips=r.number("throughput_ips", nullable=True),
                   latency_ns=r.number("latency_ns"),
                   write_energy_pj=r.number("write_energy_pj"), area_mm2=r.number("area_mm2"),
                   batch=r.integer("batch"), replication_search=r.string("replication_search"),
                   writes_per_cell=r.number("writes_per_cell"),
                   lifetime_inferences=r.number("lifetime_inferences", nullable=True,
                                                optional=True),
                   layers=tuple(ChipLayer._read(_Reader(la, f"{r.where}.layers[{i}]"))
                                for i, la in enumerate(layers)), **later)


UNITS = ("crossbar", "digital")


@dataclass(frozen=True)
class MacEntry:
    """One matrix product of the network: where it runs (``unit``: "crossbar" or
    "digital") and its multiply-accumulates per image (imcc/report/macs.py)."""

    name: str
    op: str        # Conv / Linear on a crossbar; MatMul (two activations) digital
    unit: str
    macs: int

    @classmethod
    def _read(cls, r: _Reader) -> MacEntry:
        unit = r.string("unit")
        if unit not in UNITS:
            raise DataError(f"report: key {r.where}.unit must be crossbar or digital, got "
                            f"{unit!r}"[:200])
        return cls(name=r.string("name"), op=r.string("op"), unit=unit,
                   macs=r.integer("macs"))


@dataclass(frozen=True)
class MacSummary:
    """The network's MACs per image by where they run, and every matrix product in
    program order (report.json's ``macs``; shares are fractions of all MACs)."""

    ops: tuple[MacEntry, ...]

    def total_on(self, unit: str) -> int:
        return sum(o.macs for o in self.ops if o.unit == unit)

    @property
    def crossbar(self) -> int:
        return self.total_on("crossbar")

    @property
    def digital(self) -> int:
        return self.total_on("digital")

    @property
    def total(self) -> int:
        return self.crossbar + self.digital

    def share(self, macs: int) -> float | None:
        """``macs`` as a fraction of the network's (None for a network without MACs)."""
        return macs / self.total if self.total else None

    @property
    def crossbar_share(self) -> float | None:
        return self.share(self.crossbar)

    def to_json(self) -> dict[str, Any]:
        return {"crossbar": self.crossbar, "digital": self.digital, "total": self.total,
                "crossbar_share": self.crossbar_share,
                "ops": [{"name": o.name, "op": o.op, "unit": o.unit, "macs": o.macs,
                         "share": self.share(o.macs)} for o in self.ops]}

    @classmethod
    def _read(cls, r: _Reader) -> MacSummary:
        raw = r.array("ops")
        assert raw is not None
        out = cls(tuple(MacEntry._read(_Reader(o, f"{r.where}.ops[{i}]"))
                        for i, o in enumerate(raw)))
        for key, want in (("crossbar", out.crossbar), ("digital", out.digital),
                          ("total", out.total)):
            if r.integer(key) != want:
                raise DataError(f"report: key {r.where}.{key} is {r.raw[key]}, its ops add "
                                f"up to {want}")
        return out


@dataclass(frozen=True)
class LayerReport:
    """One crossbar layer: its mapping, tiles, cycles beside the im2col baseline, low-rank
    provenance (when it is half of a factorized pair) and energy (with an analysis)."""

    name: str
    op: str                          # "Conv" or a linear op ("Gemm", "MatMul")
    shape: str                       # e.g. "16x32x32 -> 16x32x32, k3x3 s1 p1"
    mapping: str                     # im2col, sdk, vw-sdk, lowrank-sdk
    pw: tuple[int, int] | None       # parallel window; None for im2col
    n_parallel: int
    group_pack: int | None           # conv groups per array (None: a report before 0.1)
    conv_groups: int
    row_tiles: int
    col_tiles: int
    tiles: int
    windows: int
    cycles: int
    im2col_cycles: int
    utilization: float               # used cells / cells of the layer's arrays
    mapping_note: str | None         # why the mapping differs from the request
    rank: int | None
    groups: int | None
    rel_error: float | None          # ||W - W_hat||_F / ||W||_F of the pair
    pair: str | None                 # the original layer of a factorized pair
    role: str | None                 # "R" (grouped KxK half) or "L" (1x1 half)
    params_before: int | None
    params_after: int | None
    weight_params: int
    slices: int | None
    input_bits: int | None
    energy: LayerEnergy | None = None
    chip: LayerChip | None = None    # with --chip
    # A factorized half: how the pair was fitted ("svd" or "data"; None if the model arrived
    # factorized or the report predates the key) and the data-weighted relative output
    # error ||Y - Y_hat||_F / ||Y||_F on the calibration patches (None without data)
    lowrank_method: str | None = None
    data_error: float | None = None
    # Activations no correct layout of this layer goes below (imcc.targets.tiling,
    # "Lower bound"); None: a report written before the key.
    lower_bound_cycles: int | None = None
    # Multiply-accumulates per image (imcc/report/macs.py); None: a report before the key
    macs: int | None = None

    @property
    def bound_ratio(self) -> float | None:
        """cycles / lower_bound_cycles (>= 1; None without a bound)."""
        lb = self.lower_bound_cycles
        return None if not lb else self.cycles / lb

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "op": self.op, "shape": self.shape, "mapping": self.mapping,
            "pw": None if self.pw is None else list(self.pw), "n_parallel": self.n_parallel}
        if self.macs is not None:
            d["macs"] = self.macs
        if self.group_pack is not None:
            d["group_pack"] = self.group_pack
        d.update({
            "conv_groups": self.conv_groups, "row_tiles": self.row_tiles,
            "col_tiles": self.col_tiles, "tiles": self.tiles, "windows": self.windows,
            "cycles": self.cycles, "im2col_cycles": self.im2col_cycles})
        if self.lower_bound_cycles is not None:
            d["lower_bound_cycles"] = self.lower_bound_cycles
        d.update({
            "utilization": self.utilization, "mapping_note": self.mapping_note,
            "rank": self.rank, "groups": self.groups, "rel_error": self.rel_error,
            "pair": self.pair, "role": self.role, "params_before": self.params_before,
            "params_after": self.params_after, "weight_params": self.weight_params})
        if self.lowrank_method is not None:
            d["lowrank_method"] = self.lowrank_method
        if self.data_error is not None:
            d["data_error"] = self.data_error
        if self.slices is not None:
            d["slices"] = self.slices
        d["input_bits"] = self.input_bits
        if self.energy is not None:
            d.update({"energy_pj": self.energy.energy_pj, "latency_ns": self.energy.latency_ns,
                      "energy_breakdown": dict(self.energy.breakdown)})
        if self.chip is not None:
            d["chip"] = self.chip.to_json()
        return d

    @classmethod
    def _read(cls, r: _Reader) -> LayerReport:
        pw_raw = r.array("pw", optional=True)
        pw: tuple[int, int] | None = None
        if pw_raw is not None:
            if len(pw_raw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                           for v in pw_raw):
                raise DataError(f"report: key {r.where}.pw must be [rows, cols] or null, "
                                f"got {pw_raw!r}"[:200])
            pw = (pw_raw[0], pw_raw[1])
        energy = None
        if "energy_pj" in r.raw:
            energy = LayerEnergy(energy_pj=r.number("energy_pj"),
                                 latency_ns=r.number("latency_ns"),
                                 breakdown=r.breakdown("energy_breakdown"))
        c = r.obj("chip", optional=True)
        chip = None if c is None else LayerChip._read(c)
        return cls(
            name=r.string("name"), op=r.string("op"), shape=r.string("shape"),
            mapping=r.string("mapping"), pw=pw, n_parallel=r.integer("n_parallel"),
            group_pack=r.integer("group_pack", optional=True),
            conv_groups=r.integer("conv_groups"), row_tiles=r.integer("row_tiles"),
            col_tiles=r.integer("col_tiles"), tiles=r.integer("tiles"),
            windows=r.integer("windows"), cycles=r.integer("cycles"),
            im2col_cycles=r.integer("im2col_cycles"),
            lower_bound_cycles=r.integer("lower_bound_cycles", optional=True),
            utilization=r.number("utilization"),
            mapping_note=r.string("mapping_note", nullable=True),
            rank=r.integer("rank", nullable=True), groups=r.integer("groups", nullable=True),
            rel_error=r.number("rel_error", nullable=True),
            pair=r.string("pair", nullable=True), role=r.string("role", nullable=True),
            params_before=r.integer("params_before", optional=True),
            params_after=r.integer("params_after", optional=True),
            weight_params=r.integer("weight_params"), slices=r.integer("slices", optional=True),
            input_bits=r.integer("input_bits", optional=True), energy=energy, chip=chip,
            lowrank_method=r.string("lowrank_method", optional=True),
            data_error=r.number("data_error", nullable=True, optional=True),
            macs=r.integer("macs", optional=True))


@dataclass(frozen=True)
class Report:
    """A compiled model's report: totals over its crossbar layers and one `LayerReport`
    each. Cycles are counted from the emitted program. Two speedups (None when the model has
    no crossbar layer, so no cycle): `speedup_vs_im2col`, the honest headline, divides the
    im2col cycles of the *uncompressed* network on the same target
    (`uncompressed_im2col_cycles`: each low-rank pair counted as the layer it replaced) by
    the chosen cycles; `speedup` (report.json's ``speedup`` and
    ``speedup_vs_same_network_im2col``) divides im2col of the network as compiled
    (`im2col_cycles`, factorized layers included), so it credits the mapping alone.
    Reports written before these keys read the uncompressed figures as None."""

    imcc_version: str
    model: str
    target: TargetInfo
    quantized: bool
    calibration: str | None
    mapping: str
    total_cycles: int
    im2col_cycles: int
    speedup: float | None
    n_arrays: int
    n_crossbar_layers: int
    weight_params: int
    layers: tuple[LayerReport, ...]
    lowrank: LowRankSummary | None = None
    energy: EnergySummary | None = None
    uncompressed_im2col_cycles: int | None = None  # None: a report written before the key
    speedup_vs_im2col: float | None = None
    passes: tuple[str, ...] | None = None   # the pass pipeline run (None: not recorded)
    pipeline: str | None = None  # its spec, which `-p` parses back (None: not recorded)
    chip: ChipSummary | None = None  # chip-level figures (only with --chip)
    # how the quantize pass chose the weight levels: "rtn" (round to nearest, the default
    # without calibration data) or "gptq" (on the calibration data); None: not quantized or
    # a report written before the key
    weight_method: str | None = None
    # What a user should know about how the options were applied (e.g. a rank clamped to
    # what a layer allows), one line each; report.json's ``warnings``, written when any.
    warnings: tuple[str, ...] = ()
    # The sum of the layers' lower_bound_cycles (None: a report written before the key).
    lower_bound_cycles: int | None = None
    # MACs per image on crossbars and digitally (None: a report written before the key).
    macs: MacSummary | None = None
    format: str = FORMAT

    @property
    def bound_ratio(self) -> float | None:
        """total_cycles / lower_bound_cycles (>= 1; None without a bound)."""
        lb = self.lower_bound_cycles
        return None if not lb else self.total_cycles / lb

    @property
    def headline_speedup(self) -> float | None:
        """The speedup to show first: against the uncompressed network's im2col, or, for a
        report written before that key, against im2col of the network as compiled when
        nothing in it is factorized (the two are then equal)."""
        if self.uncompressed_im2col_cycles is not None:
            return self.speedup_vs_im2col
        return None if self.has_lowrank_layers else self.speedup

    @property
    def has_lowrank_layers(self) -> bool:
        return any(layer.rank is not None for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        """The report.json dictionary."""
        d: dict[str, Any] = {
            "format": self.format, "imcc_version": self.imcc_version, "model": self.model,
            "target": self.target.to_json(), "quantized": self.quantized,
            "calibration": self.calibration}
        if self.weight_method is not None:
            d["weight_method"] = self.weight_method
        d.update({"mapping": self.mapping, "total_cycles": self.total_cycles})
        if self.lower_bound_cycles is not None:
            d["lower_bound_cycles"] = self.lower_bound_cycles
        d.update({"im2col_cycles": self.im2col_cycles, "speedup": self.speedup})
        if self.uncompressed_im2col_cycles is not None:
            d.update({"uncompressed_im2col_cycles": self.uncompressed_im2col_cycles,
                      "speedup_vs_im2col": self.speedup_vs_im2col,
                      "speedup_vs_same_network_im2col": self.speedup})
        d.update({"n_arrays": self.n_arrays, "n_crossbar_layers": self.n_crossbar_layers,
                  "weight_params": self.weight_params})
        if self.lowrank is not None:
            d["lowrank"] = self.lowrank.to_json()
        if self.energy is not None:
            d.update({"total_energy_pj": self.energy.total_energy_pj,
                      "total_latency_ns": self.energy.total_latency_ns,
                      "energy_breakdown": dict(self.energy.breakdown),
                      "adc_bits": self.energy.adc_bits})
        d["layers"] = [layer.to_json() for layer in self.layers]
        if self.macs is not None:
            d["macs"] = self.macs.to_json()
        if self.passes is not None:
            d["passes"] = list(self.passes)
        if self.pipeline is not None:
            d["pipeline"] = self.pipeline
        if self.chip is not None:
            d["chip"] = self.chip.to_json()
        if self.warnings:
            d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_json(cls, raw: Any) -> Report:
        """Read a report.json dictionary; DataError (one line, naming the key) when it is
        not a well-formed imcc-report/1 report."""
        r = _Reader(raw, "")
        fmt = r.raw.get("format")
        if fmt == "imcc-report" and r.raw.get("format_version") == 1:
            fmt = FORMAT  # `imcc report --json` output: report.json in the envelope
        if fmt != FORMAT:
            raise DataError(f"not an {FORMAT} report (format {fmt!r})"[:200])
        layers_raw = r.array("layers")
        assert layers_raw is not None
        layers = tuple(LayerReport._read(_Reader(la, f"layers[{i}]"))
                       for i, la in enumerate(layers_raw))
        target = r.obj("target")
        assert target is not None
        lowrank = r.obj("lowrank", optional=True)
        energy = None
        if "total_energy_pj" in raw:
            energy = EnergySummary(total_energy_pj=r.number("total_energy_pj"),
                                   total_latency_ns=r.number("total_latency_ns"),
                                   breakdown=r.breakdown("energy_breakdown"),
                                   adc_bits=r.integer("adc_bits"))
        chip = r.obj("chip", optional=True)
        macs = r.obj("macs", optional=True)
        passes = r.array("passes", optional=True)
        if passes is not None and not all(isinstance(p, str) for p in passes):
            raise DataError("report: key passes must be a list of pass names")
        warnings = r.array("warnings", optional=True) or []
        if not all(isinstance(w, str) for w in warnings):
            raise DataError("report: key warnings must be a list of strings")
        return cls(
            format=fmt, imcc_version=r.string("imcc_version"), model=r.string("model"),
            target=TargetInfo._read(target), quantized=r.flag("quantized"),
            calibration=r.string("calibration", nullable=True), mapping=r.string("mapping"),
            total_cycles=r.integer("total_cycles"),
            lower_bound_cycles=r.integer("lower_bound_cycles", optional=True),
            im2col_cycles=r.integer("im2col_cycles"),
            speedup=r.number("speedup", nullable=True),
            uncompressed_im2col_cycles=r.integer("uncompressed_im2col_cycles", optional=True),
            speedup_vs_im2col=r.number("speedup_vs_im2col", nullable=True, optional=True),
            n_arrays=r.integer("n_arrays"),
            n_crossbar_layers=r.integer("n_crossbar_layers"),
            weight_params=r.integer("weight_params"), layers=layers,
            lowrank=None if lowrank is None else LowRankSummary._read(lowrank),
            energy=energy, passes=None if passes is None else tuple(passes),
            pipeline=r.string("pipeline", nullable=True, optional=True),
            chip=None if chip is None else ChipSummary._read(chip),
            weight_method=r.string("weight_method", optional=True), warnings=tuple(warnings),
            macs=None if macs is None else MacSummary._read(macs))


__all__ = ["FORMAT", "UNITS", "ChipLayer", "ChipSummary", "EnergySummary", "LayerChip",
           "LayerEnergy", "LayerReport", "LowRankSummary", "MacEntry", "MacSummary", "Precision",
           "Report", "TargetInfo"]
