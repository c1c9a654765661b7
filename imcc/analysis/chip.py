"""Chip descriptions: how many crossbar arrays a chip has, how they are grouped into cores,
what programming weights costs, and what area each component takes.

A chip file is a flat TOML file whose keys are exactly the fields of `Chip` (every key
required, no others). The built-in presets ship as package data in `imcc/analysis/chips/`
with the source of every value in a comment next to it (as the tech profiles do); any other
name passed to `load_chip` is read as the path of a user file in the same format.

The chip fixes the array size (`rows` x `cols`, which must equal the compile target's) but
not the bits per cell: those stay the target's (`--cell-bits`), so one chip can be studied
at several weight slicings. Read energies and timings stay in the tech profile (`--tech`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from imcc.analysis.tech import check_number, parse_toml, read_toml
from imcc.errors import DataError, UsageError

BUILTIN_CHIPS: tuple[str, ...] = ("isaac", "pimcomp-arch-a")

# Counts, areas, energies and times beyond this describe no chip; sums would overflow.
MAX_CHIP_VALUE = 1e9


@dataclass(frozen=True)
class Chip:
    """A chip of `cores * arrays_per_core` crossbar arrays. Units are in the field names.

    `arrays` is the number of arrays available to the compiler: `cores * arrays_per_core`
    unless `--chip-arrays` overrode it (`with_arrays`); the area then counts
    `ceil(arrays / arrays_per_core)` cores."""

    name: str
    source: str                      # provenance, shown in reports
    rows: int                        # cells per array column (array rows)
    cols: int                        # cells per array row (array columns)
    arrays_per_core: int             # crossbar arrays per core (ISAAC: per tile)
    cores: int                       # cores per chip
    adcs_per_array: int              # ADCs per array (area only; timing uses the tech)
    transfer_bits_per_ns: float      # activation bandwidth between cores
    write_energy_pj_per_cell: float  # programming one cell once
    write_ns_per_row: float          # programming one array row (rows are written serially)
    endurance_writes: float          # writes a cell survives
    area_array_mm2: float            # one array with its DACs and sample-and-holds
    area_adc_mm2: float              # one ADC
    area_buffer_mm2: float           # the activation buffer of one core
    area_core_periphery_mm2: float   # one core's other periphery (shift-add, registers, bus)
    batch: int                       # images run per weight load when the model is segmented
    arrays_override: int | None = None  # --chip-arrays

    @property
    def arrays(self) -> int:
        if self.arrays_override is not None:
            return self.arrays_override
        return self.cores * self.arrays_per_core

    @property
    def n_cores(self) -> int:
        """Cores the available arrays occupy (all of them unless `--chip-arrays` is set)."""
        return math.ceil(self.arrays / self.arrays_per_core)

    def core_of(self, array: int) -> int:
        return array // self.arrays_per_core

    @property
    def area_mm2(self) -> float:
        """Arrays with their ADCs, plus each occupied core's buffer and periphery."""
        per_array = self.area_array_mm2 + self.adcs_per_array * self.area_adc_mm2
        per_core = self.area_buffer_mm2 + self.area_core_periphery_mm2
        return self.arrays * per_array + self.n_cores * per_core

    def with_arrays(self, n: int | None) -> Chip:
        """This chip with `n` arrays instead of `cores * arrays_per_core` (None: unchanged)."""
        if n is None:
            return self
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise UsageError(f"--chip-arrays must be an integer >= 1, got {n!r}")
        return dataclasses.replace(self, arrays_override=n)

    def with_batch(self, n: int | None) -> Chip:
        """This chip running `n` images per weight load (`--chip-batch`; None: unchanged)."""
        if n is None:
            return self
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHIP_VALUE:
            raise UsageError(f"--chip-batch must be an integer in [1, {MAX_CHIP_VALUE:.0e}], "
                             f"got {n!r}")
        return dataclasses.replace(self, batch=n)

    def check_target(self, rows: int, cols: int) -> None:
        """The compile target's arrays must be this chip's."""
        if (rows, cols) != (self.rows, self.cols):
            raise UsageError(f"chip {self.name} has {self.rows}x{self.cols} arrays but the "
                             f"target is {rows}x{cols}",
                             hint=f"use --target {self.rows}x{self.cols}")


_KINDS: dict[str, tuple[str, bool]] = {
    "name": ("str", False), "source": ("str", False),
    "rows": ("int", True), "cols": ("int", True), "arrays_per_core": ("int", True),
    "cores": ("int", True), "adcs_per_array": ("int", False),
    "transfer_bits_per_ns": ("float", True), "write_energy_pj_per_cell": ("float", False),
    "write_ns_per_row": ("float", False), "endurance_writes": ("float", True),
    "area_array_mm2": ("float", False), "area_adc_mm2": ("float", False),
    "area_buffer_mm2": ("float", False), "area_core_periphery_mm2": ("float", False),
    "batch": ("int", True),
}
assert set(_KINDS) == {f.name for f in fields(Chip)} - {"arrays_override"}


def chip_from_dict(raw: dict[str, Any], label: str) -> Chip:
    """Build a chip from parsed TOML, checking keys, types and signs (one-line DataErrors)."""
    unknown = sorted(set(raw) - set(_KINDS))
    if unknown:
        raise DataError(f"{label}: unknown key{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(unknown)} (allowed: {', '.join(_KINDS)})")
    missing = [k for k in _KINDS if k not in raw]
    if missing:
        raise DataError(f"{label}: missing key{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(missing)}")
    values: dict[str, Any] = {}
    for key, (kind, positive) in _KINDS.items():
        v = raw[key]
        if kind == "str":
            if not isinstance(v, str) or not v.strip():
                raise DataError(f"{label}: key {key} must be a non-empty string, got {v!r}"
                                [:200])
            values[key] = v
        else:
            values[key] = check_number(v, kind, positive, f"{label}: key {key}",
                                       hi=MAX_CHIP_VALUE)
    return Chip(**values)


def load_chip(name_or_path: str, arrays: int | None = None, batch: int | None = None) -> Chip:
    """A built-in preset by name (`isaac`, `pimcomp-arch-a`) or a user TOML file by path,
    with `arrays` (`--chip-arrays`) overriding its number of arrays and `batch`
    (`--chip-batch`) its images per weight load."""
    if name_or_path in BUILTIN_CHIPS:
        res = resources.files("imcc.analysis") / "chips" / f"{name_or_path}.toml"
        label = f"built-in chip file {name_or_path}.toml"
        chip = chip_from_dict(parse_toml(res.read_bytes(), label), label)
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise DataError(f"unknown chip {name_or_path!r}: not a built-in preset "
                            f"({', '.join(BUILTIN_CHIPS)}) and no such file")
        chip = chip_from_dict(read_toml(path, "chip file"), f"chip file {path}")
    return chip.with_arrays(arrays).with_batch(batch)
