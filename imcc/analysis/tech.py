"""Technology profiles: the per-action energies and timings the energy analysis multiplies
by activity counts.

A profile is a flat TOML file whose keys are exactly the fields of `TechProfile` (every key
required, no others). The built-in profiles ship as package data in `imcc/analysis/tech/`
with the provenance of every value in a comment next to it; any other name passed to
`load_tech` is read as the path of a user file in the same format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from imcc.errors import DataError
from imcc.fileio import parse_toml

__all__ = ["TechProfile", "load_tech", "read_toml", "parse_toml", "check_number",
           "tech_from_dict", "BUILTIN_TECHS", "DEFAULT_TECH"]

BUILTIN_TECHS: tuple[str, ...] = ("isaac", "neurosim")
DEFAULT_TECH = "isaac"


@dataclass(frozen=True)
class TechProfile:
    """Costs of one crossbar technology. Units are in the field names."""

    name: str
    source: str                 # provenance, shown in reports
    t_read_ns: float            # one array read (one input-bit phase)
    e_adc_8b_pj: float          # one ADC conversion at 8 bits
    adc_scale_per_bit: float    # E_adc(B) = e_adc_8b_pj * adc_scale_per_bit ** (B - 8)
    e_row_pj: float             # DAC / row driver, per active row per phase
    e_cell_fj: float            # per active cell per phase
    e_shift_add_pj: float       # per ADC sample shifted and added
    e_buffer_pj_per_bit: float  # activation buffer, per bit read or written
    n_adc_per_array: int        # ADCs shared by the columns of one array
    f_adc_ghz: float            # samples per ns of one ADC

    def e_adc_pj(self, bits: int) -> float:
        """Energy of one conversion at `bits` of resolution."""
        return self.e_adc_8b_pj * self.adc_scale_per_bit ** (bits - 8)


# Value rules per key: (kind, strictly positive?). Strictly positive where the model divides
# by the value or where zero is physically meaningless; energies may be zero so a user can
# switch a component off in a what-if study.
_RULES: dict[str, tuple[str, bool]] = {
    "name": ("str", False),
    "source": ("str", False),
    "t_read_ns": ("float", False),
    "e_adc_8b_pj": ("float", False),
    "adc_scale_per_bit": ("float", True),
    "e_row_pj": ("float", False),
    "e_cell_fj": ("float", False),
    "e_shift_add_pj": ("float", False),
    "e_buffer_pj_per_bit": ("float", False),
    "n_adc_per_array": ("int", True),
    "f_adc_ghz": ("float", True),
}
assert set(_RULES) == {f.name for f in fields(TechProfile)}


# Every tech constant is a per-event energy (pJ/fJ), a time (ns), a count or a frequency
# (GHz); beyond this no device is meant, and sums of them would overflow to infinity.
MAX_TECH_VALUE = 1e6


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """Parse a TOML file, turning every failure into a one-line DataError naming the file."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{what} {path}: cannot read: {e.strerror or e}") from e
    return parse_toml(data, f"{what} {path}")


def check_number(value: Any, kind: str, positive: bool, where: str,
                 hi: float = float("inf")) -> float | int:
    """Validate one numeric TOML value (shared with the budget loader). `kind` is "int" or
    "float"; ints are accepted as floats, bools never (TOML booleans are not numbers);
    values above `hi` are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        want = "an integer" if kind == "int" else "a number"
        raise DataError(f"{where} must be {want}, got {type(value).__name__} {value!r}")
    if kind == "int" and not isinstance(value, int):
        raise DataError(f"{where} must be an integer, got {value!r}")
    if not math.isfinite(value):
        raise DataError(f"{where} must be finite, got {value!r}")
    if value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise DataError(f"{where} must be {bound}, got {value!r}")
    if value > hi:
        raise DataError(f"{where} must be at most {hi:g}, got {value!r}")
    return int(value) if kind == "int" else float(value)


def tech_from_dict(raw: dict[str, Any], label: str) -> TechProfile:
    """Build a profile from parsed TOML, checking keys, types and signs."""
    unknown = sorted(set(raw) - set(_RULES))
    if unknown:
        raise DataError(f"{label}: unknown key{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(unknown)} (allowed: {', '.join(_RULES)})")
    missing = [k for k in _RULES if k not in raw]
    if missing:
        raise DataError(f"{label}: missing key{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(missing)}")
    values: dict[str, Any] = {}
    for key, (kind, positive) in _RULES.items():
        v = raw[key]
        if kind == "str":
            if not isinstance(v, str) or not v.strip():
                raise DataError(f"{label}: key {key} must be a non-empty string, got {v!r}")
            values[key] = v
        else:
            values[key] = check_number(v, kind, positive, f"{label}: key {key}",
                                       hi=MAX_TECH_VALUE)
    return TechProfile(**values)


def load_tech(name_or_path: str = DEFAULT_TECH) -> TechProfile:
    """Load a built-in profile by name ("isaac", "neurosim") or a user TOML file by path."""
    if name_or_path in BUILTIN_TECHS:
        res = resources.files("imcc.analysis") / "tech" / f"{name_or_path}.toml"
        label = f"built-in tech file {name_or_path}.toml"
        return tech_from_dict(parse_toml(res.read_bytes(), label), label)
    path = Path(name_or_path)
    if not path.is_file():
        raise DataError(f"unknown tech {name_or_path!r}: not a built-in profile "
                        f"({', '.join(BUILTIN_TECHS)}) and no such file")
    raw = read_toml(path, "tech file")
    return tech_from_dict(raw, f"tech file {path}")
