"""Budgets for `imcc check`: limits on a compiled model's cycles, energy and latency.

Budget file (TOML):

    [budget]
    cycles = 150000          # integer, whole program
    energy_uj = 40.0         # microjoules, whole program
    latency_ms = 15.0        # milliseconds, whole program
    tolerance = 0.05         # optional: allow 5 % over every limit (default 0)

    # chip-level limits (the report must come from a compile with --chip):
    throughput = 10000.0     # inferences per second, a MINIMUM
    area_mm2 = 50.0          # chip area in mm2
    arrays = 2000            # arrays used (the most any segment occupies)

    [budget.layers."/layer1/layer1.0/conv1/Conv"]
    cycles = 4096            # any of cycles / energy_uj / latency_ms, per layer

At least one limit must be given. A limit is met when `actual <= limit * (1 + tolerance)`;
the throughput minimum when `actual >= limit * (1 - tolerance)`.
The check reads a `Report` (imcc.report.model), so it can run on a saved report.json as
well as on a fresh compile.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imcc.analysis.tech import check_number, read_toml
from imcc.errors import DataError, UsageError
from imcc.ir.names import resolve_layer_names
from imcc.report.model import LayerEnergy, LayerReport, Report
from imcc.report.units import MS, UJ, Unit, pct_text, plain_number, safe_text

# metric -> (kind, unit, report key, unit of the budget; the report counts in pJ and ns)
_CYCLES = Unit("cycles", 1.0)
_METRICS: dict[str, tuple[str, str, str, Unit]] = {
    "cycles": ("int", "cycles", "cycles", _CYCLES),
    "energy_uj": ("float", "uJ", "energy_pj", UJ),
    "latency_ms": ("float", "ms", "latency_ns", MS),
}
_TOTAL_KEYS = {"cycles": "total_cycles", "energy_pj": "total_energy_pj",
               "latency_ns": "total_latency_ns"}
# Chip-level metrics (whole program only): metric -> (kind, unit, minimum?)
_CHIP_METRICS: dict[str, tuple[str, str, bool]] = {
    "throughput": ("float", "inferences/s", True),
    "area_mm2": ("float", "mm2", False),
    "arrays": ("int", "arrays", False),
}


@dataclass(frozen=True)
class Limits:
    """Limits on one scope (the whole program or one layer); None means unconstrained."""

    cycles: int | None = None
    energy_uj: float | None = None
    latency_ms: float | None = None
    throughput: float | None = None   # chip-level (whole program only): a minimum
    area_mm2: float | None = None
    arrays: int | None = None

    def items(self) -> list[tuple[str, float]]:
        return [(m, float(v)) for m in (*_METRICS, *_CHIP_METRICS)
                if (v := getattr(self, m)) is not None]


@dataclass(frozen=True)
class Budget:
    total: Limits
    layers: dict[str, Limits] = field(default_factory=dict)
    tolerance: float = 0.0
    source: str = ""


@dataclass(frozen=True)
class CheckItem:
    """One checked limit. `over_by_fraction = (actual - limit) / limit`: positive when over
    the limit, negative for headroom. `passed` applies the budget's tolerance."""

    name: str          # "total.cycles", "layer.<name>.energy_uj"
    limit: float
    actual: float
    unit: str
    passed: bool
    over_by_fraction: float
    minimum: bool = False  # the limit is a floor (throughput): over means below it


@dataclass(frozen=True)
class CheckResult:
    items: list[CheckItem]
    tolerance: float = 0.0

    @property
    def passed(self) -> bool:
        return all(item.passed for item in self.items)

    @property
    def failures(self) -> list[CheckItem]:
        return [item for item in self.items if not item.passed]

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable form (for `imcc check --json`)."""
        return {"passed": self.passed, "tolerance": self.tolerance,
                "items": [{"name": i.name, "limit": i.limit, "actual": i.actual,
                           "unit": i.unit, "passed": i.passed,
                           "over_by_fraction": i.over_by_fraction,
                           **({"minimum": True} if i.minimum else {})}
                          for i in self.items]}


def _limits(raw: Any, label: str, allowed_extra: set[str], chip: bool = False) -> Limits:
    if not isinstance(raw, dict):
        raise DataError(f"{label} must be a table, got {type(raw).__name__}")
    metrics = {m: k for m, (k, *_rest) in _METRICS.items()}
    if chip:
        metrics.update({m: k for m, (k, *_rest) in _CHIP_METRICS.items()})
    unknown = sorted(set(raw) - set(metrics) - allowed_extra)
    if unknown:
        raise DataError(f"{label}: unknown key{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(unknown)} (allowed: "
                        f"{', '.join([*metrics, *sorted(allowed_extra)])})")
    values: dict[str, Any] = {}
    for metric, kind in metrics.items():
        if metric in raw:
            # A zero limit cannot be met by any layer and makes over-fractions infinite.
            values[metric] = check_number(raw[metric], kind, True, f"{label}: key {metric}")
    return Limits(**values)


def budget_from_dict(raw: dict[str, Any], label: str) -> Budget:
    unknown = sorted(set(raw) - {"budget"})
    if unknown:
        raise DataError(f"{label}: unknown top-level key{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(unknown)} (expected a [budget] table)")
    if "budget" not in raw:
        raise DataError(f"{label}: missing [budget] table")
    table = raw["budget"]
    total = _limits(table, f"{label}: [budget]", {"tolerance", "layers"}, chip=True)
    tolerance = 0.0
    if "tolerance" in table:
        tolerance = float(check_number(table["tolerance"], "float", False,
                                       f"{label}: key budget.tolerance"))
    layers: dict[str, Limits] = {}
    raw_layers = table.get("layers", {})
    if not isinstance(raw_layers, dict):
        raise DataError(f"{label}: budget.layers must be a table of per-layer tables")
    for name, sub in raw_layers.items():
        where = f'{label}: [budget.layers."{name}"]'
        lim = _limits(sub, where, set())
        if not lim.items():
            raise DataError(f"{where} sets no limit (use cycles, energy_uj or latency_ms)")
        layers[name] = lim
    if not total.items() and not layers:
        raise DataError(f"{label}: the budget sets no limit (use cycles, energy_uj, "
                        f"latency_ms, throughput, area_mm2 or arrays under [budget], or "
                        f"cycles, energy_uj or latency_ms under [budget.layers.\"<name>\"])")
    return Budget(total=total, layers=layers, tolerance=tolerance, source=label)


def load_budget(path: str | Path) -> Budget:
    """Read and validate a budget TOML file; any problem raises DataError naming the key."""
    p = Path(path)
    return budget_from_dict(read_toml(p, "budget file"), f"budget file {p}")


def _value(cycles: int, energy: LayerEnergy | None, key: str) -> float | None:
    if key == "cycles":
        return float(cycles)
    if energy is None:
        return None
    return energy.energy_pj if key == "energy_pj" else energy.latency_ns


def _actual(v: float | None, key: str, metric: str, where: str) -> float:
    if v is None:
        what = "energy" if metric == "energy_uj" else "latency"
        raise DataError(f"the budget limits {where}{metric} but the report has no {what} "
                        f"analysis ({key} missing); compile with an energy analysis")
    return float(v)


def _item(name: str, limit: float, actual: float, unit: str, tolerance: float,
          minimum: bool = False) -> CheckItem:
    # A relative epsilon keeps a value that equals the limit up to float rounding (e.g. after
    # the pJ -> uJ conversion) on the passing side.
    if minimum:
        passed = actual >= limit * (1.0 - tolerance) * (1.0 - 1e-12)
        return CheckItem(name=name, limit=limit, actual=actual, unit=unit, passed=passed,
                         over_by_fraction=(limit - actual) / limit, minimum=True)
    allowed = limit * (1.0 + tolerance)
    passed = actual <= allowed * (1.0 + 1e-12)
    return CheckItem(name=name, limit=limit, actual=actual, unit=unit, passed=passed,
                     over_by_fraction=(actual - limit) / limit)


def _chip_actual(report: Report, metric: str) -> float:
    c = report.chip
    if c is None:
        raise DataError(f"the budget limits {metric} but the report has no chip placement",
                        hint="compile with --chip, e.g. --chip isaac")
    if metric == "throughput":
        # No crossbar layer: nothing limits the rate (an empty program meets any minimum).
        return float("inf") if c.throughput_ips is None else c.throughput_ips
    return float(c.area_mm2 if metric == "area_mm2" else c.arrays_used)


def check_budget(report: Report, budget: Budget) -> CheckResult:
    """Compare a report with a budget: program totals first, then each budgeted layer in
    budget-file order. A budgeted layer missing from the report is an error, not a pass, so
    a renamed layer cannot silently escape its limit."""
    items: list[CheckItem] = []
    e = report.energy
    totals = None if e is None else LayerEnergy(e.total_energy_pj, e.total_latency_ns, {})
    for metric, limit in budget.total.items():
        if metric in _CHIP_METRICS:
            _kind, unit, minimum = _CHIP_METRICS[metric]
            items.append(_item(f"total.{metric}", limit, _chip_actual(report, metric), unit,
                               budget.tolerance, minimum))
            continue
        _kind, unit, key, per = _METRICS[metric]
        actual = per.per_base * _actual(_value(report.total_cycles, totals, key),
                                        _TOTAL_KEYS[key], metric, "total ")
        items.append(_item(f"total.{metric}", limit, actual, unit, budget.tolerance))
    by_name: dict[str, LayerReport] = {layer.name: layer for layer in report.layers}
    # A layer is budgeted by its full name or the short one the tables show.
    try:
        full = resolve_layer_names(budget.layers, list(by_name),
                                   "budgeted layers not in the report")
    except UsageError as exc:
        raise DataError(f"{budget.source}: {exc.message}", hint=exc.hint) from exc
    for name, limits in budget.layers.items():
        layer = by_name[full[name]]
        for metric, limit in limits.items():
            _kind, unit, key, per = _METRICS[metric]
            actual = per.per_base * _actual(_value(layer.cycles, layer.energy, key), key,
                                            metric, f"layer {name} ")
            items.append(_item(f"layer.{name}.{metric}", limit, actual, unit,
                               budget.tolerance))
    return CheckResult(items=items, tolerance=budget.tolerance)


def to_junit_xml(result: CheckResult, suite_name: str = "imcc-check") -> str:
    """JUnit XML with one <testcase> per budget item and a <failure> for each exceeded limit.
    Deterministic: no timestamps or host names."""
    failures = result.failures
    suite_name = safe_text(suite_name)  # user-controlled text: XML 1.0 cannot hold controls
    suites = ET.Element("testsuites", {"name": suite_name, "tests": str(len(result.items)),
                                       "failures": str(len(failures)), "errors": "0",
                                       "time": "0"})
    suite = ET.SubElement(suites, "testsuite", {
        "name": suite_name, "tests": str(len(result.items)), "failures": str(len(failures)),
        "errors": "0", "skipped": "0", "time": "0"})
    for item in result.items:
        name = safe_text(item.name)
        case = ET.SubElement(suite, "testcase", {"classname": suite_name, "name": name,
                                                 "time": "0"})
        over = "below by" if item.minimum else "over by"
        margin = (f"{over} {pct_text(item.over_by_fraction, 2)}" if item.over_by_fraction > 0
                  else f"headroom {pct_text(-item.over_by_fraction, 2)}")
        detail = (f"{name}: actual {plain_number(item.actual)} {item.unit}, limit "
                  f"{plain_number(item.limit)} {item.unit}, {margin} "
                  f"(tolerance {pct_text(result.tolerance, 2)})")
        if item.passed:
            ET.SubElement(case, "system-out").text = detail
        else:
            fail = ET.SubElement(case, "failure", {
                "message": f"{name} {'below' if item.minimum else 'over'} budget by "
                           f"{pct_text(item.over_by_fraction, 2)}",
                "type": "BudgetExceeded"})
            fail.text = detail
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def error_junit_xml(message: str, suite_name: str = "imcc-check") -> str:
    """JUnit XML for a check that could not run (a usage or input error, exit 2): one
    <testcase> named ``imcc-check`` holding an <error> with the message, so that a CI
    report shows why the gate failed instead of finding no file. Deterministic."""
    suite_name = safe_text(suite_name)
    message = safe_text(message)
    suites = ET.Element("testsuites", {"name": suite_name, "tests": "1", "failures": "0",
                                       "errors": "1", "time": "0"})
    suite = ET.SubElement(suites, "testsuite", {
        "name": suite_name, "tests": "1", "failures": "0", "errors": "1", "skipped": "0",
        "time": "0"})
    case = ET.SubElement(suite, "testcase", {"classname": suite_name, "name": "imcc-check",
                                             "time": "0"})
    ET.SubElement(case, "error", {"message": message, "type": "InputError"}).text = message
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


__all__ = ["Budget", "CheckItem", "CheckResult", "Limits", "budget_from_dict", "check_budget",
           "error_junit_xml", "load_budget", "to_junit_xml"]
