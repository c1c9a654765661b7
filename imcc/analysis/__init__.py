"""Read-only analyses of a compiled crossbar program: energy and latency under a technology
profile, and budget checks for `imcc check`."""

from __future__ import annotations

from imcc.analysis.budget import (
    Budget,
    CheckItem,
    CheckResult,
    Limits,
    check_budget,
    load_budget,
    to_junit_xml,
)
from imcc.analysis.energy import (
    BREAKDOWN_KEYS,
    EnergyReport,
    LayerEnergy,
    analyze_energy,
    analyze_layer,
)
from imcc.analysis.tech import BUILTIN_TECHS, DEFAULT_TECH, TechProfile, load_tech

__all__ = [
    "BREAKDOWN_KEYS",
    "BUILTIN_TECHS",
    "DEFAULT_TECH",
    "Budget",
    "CheckItem",
    "CheckResult",
    "EnergyReport",
    "LayerEnergy",
    "Limits",
    "TechProfile",
    "analyze_energy",
    "analyze_layer",
    "check_budget",
    "load_budget",
    "load_tech",
    "to_junit_xml",
]
