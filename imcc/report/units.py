"""Units and number formats shared by every imcc renderer (terminal, Markdown, CSV, HTML,
the budget check and its JUnit XML, sweeps): one place decides how an energy, a time, a
cycle count, a ratio or a percentage reads, and where chart axes put their ticks.

Every formatter takes ``None`` for "does not apply" and returns ``"-"`` for it. All output
is a pure function of the value (no locale), so rendered reports are byte-stable.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imcc.report.model import MacSummary

# The components of the energy model (imcc.analysis.energy), in report order, and how a
# reader sees them.
BREAKDOWN_KEYS: tuple[str, ...] = ("cells", "row_drivers", "adc", "shift_add", "buffer")
BREAKDOWN_LABELS: dict[str, str] = {"cells": "cells", "row_drivers": "row drivers",
                                    "adc": "ADC", "shift_add": "shift-add",
                                    "buffer": "buffer"}

NONE_TEXT = "-"

# Characters a user-controlled string (a model path, a node or value name, a budget key)
# must not carry into a terminal, a CSV cell or an XML file: C0/C1 controls (ANSI escapes,
# NUL, newlines), DEL, line/paragraph separators, bidirectional overrides, and the code
# points XML 1.0 cannot hold (surrogates, U+FFFE, U+FFFF).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                     "\ud800-\udfff\ufffe\uffff]")


def _escape_char(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def safe_text(s: object) -> str:
    """`s` with every control or otherwise unsafe character written as a visible escape
    (``"\\x1b"``, ``"\\u202e"``): one printable line, safe in a terminal, a CSV cell and
    XML. Every renderer passes user-controlled strings through it."""
    return _UNSAFE.sub(_escape_char, str(s))


@dataclass(frozen=True)
class Unit:
    """A display unit of a base quantity (pJ for energy, ns for time)."""

    name: str
    per_base: float  # value in this unit = base value * per_base

    def fmt(self, base: float | None) -> str:
        """The number alone: two decimals (with thousands separators), or three significant
        digits below 1 so that small values do not all read "0.00"."""
        if base is None:
            return NONE_TEXT
        v = base * self.per_base
        return f"{v:.3g}" if abs(v) < 1 else f"{v:,.2f}"

    def text(self, base: float | None) -> str:
        """The number and the unit name, e.g. ``"1.46 uJ"``."""
        return NONE_TEXT if base is None else f"{self.fmt(base)} {self.name}"

    def fixed(self, base: float | None, decimals: int) -> str:
        """A fixed number of decimals, for table columns with the unit in the header."""
        return NONE_TEXT if base is None else f"{base * self.per_base:,.{decimals}f}"


PJ, NJ, UJ, MJ = Unit("pJ", 1.0), Unit("nJ", 1e-3), Unit("uJ", 1e-6), Unit("mJ", 1e-9)
NS, US, MS, S = Unit("ns", 1.0), Unit("us", 1e-3), Unit("ms", 1e-6), Unit("s", 1e-9)
_ENERGY_UNITS = (MJ, UJ, NJ)   # largest first; PJ is the fallback
_TIME_UNITS = (S, MS, US)      # largest first; NS is the fallback


def _largest(units: tuple[Unit, ...], fallback: Unit, value: float) -> Unit:
    for unit in units:
        if value * unit.per_base >= 1:
            return unit
    return fallback


def energy_unit(max_pj: float) -> Unit:
    """The largest unit in which `max_pj` is at least 1, so a whole column reads naturally."""
    return _largest(_ENERGY_UNITS, PJ, max_pj)


def time_unit(max_ns: float) -> Unit:
    """The largest unit in which `max_ns` is at least 1."""
    return _largest(_TIME_UNITS, NS, max_ns)


def energy_text(pj: float | None) -> str:
    """An energy in its own best unit, e.g. ``"20.21 uJ"``."""
    return NONE_TEXT if pj is None else energy_unit(pj).text(pj)


def time_text(ns: float | None) -> str:
    """A time in its own best unit, e.g. ``"7.17 ms"``."""
    return NONE_TEXT if ns is None else time_unit(ns).text(ns)


def count_text(v: float | None) -> str:
    """A whole number (cycles, tiles, parameters) with thousands separators: ``"21,249"``."""
    return NONE_TEXT if v is None else f"{v:,.0f}"


def ratio_text(v: float | None) -> str:
    """A ratio such as a speedup: ``"1.46x"``."""
    return NONE_TEXT if v is None else f"{v:.2f}x"


def ratio(num: float | None, den: float | None) -> float | None:
    """num / den, or None when either is missing or den is 0."""
    if num is None or den is None or den == 0:
        return None
    return num / den


def pct_text(fraction: float | None, decimals: int = 1) -> str:
    """A fraction as a percentage: ``pct_text(0.425) == "42.5%"``."""
    return NONE_TEXT if fraction is None else f"{100 * fraction:.{decimals}f}%"


def decimal_text(v: float | None, decimals: int) -> str:
    """A fixed number of decimals: ``decimal_text(0.1234, 3) == "0.123"``."""
    return NONE_TEXT if v is None else f"{v:.{decimals}f}"


def sig_text(v: float | None, digits: int = 3) -> str:
    """`digits` significant digits, e.g. for errors: ``"0.125"``."""
    return NONE_TEXT if v is None else f"{v:.{digits}g}"


def plain_number(v: float) -> str:
    """A number as written in a budget file: integers without a decimal point, otherwise six
    significant digits (JUnit messages)."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.6g}"


def compact_count(v: float, full_below: float = 1e4) -> str:
    """A count for a chart label: exact with separators below `full_below`, else three
    significant digits with k / M / G (``"14.6k"``)."""
    if v >= full_below:
        for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if v >= div:
                return f"{v / div:.3g}{suffix}"
    return f"{v:,.0f}"


def mac_share_text(macs: MacSummary) -> str:
    """One line on where the MACs run, e.g. ``"38.8M MACs per image: 88.8% on crossbars
    (18 layers), 11.2% digital (8 products of two activations)"``."""
    n_x = sum(o.unit == "crossbar" for o in macs.ops)
    n_d = len(macs.ops) - n_x
    text = (f"{compact_count(macs.total)} MACs per image: "
            f"{pct_text(macs.crossbar_share)} on crossbars ({n_x} layer"
            f"{'s' if n_x != 1 else ''})")
    if n_d:
        text += (f", {pct_text(macs.share(macs.digital))} digital ({n_d} product"
                 f"{'s' if n_d != 1 else ''} of two activations)")
    return text


CSV_DIGITS = 6  # significant digits of a float in a CSV cell


def machine_float(v: float, digits: int = CSV_DIGITS) -> str:
    """A float for a machine-read table (CSV): `digits` significant digits in plain decimal
    notation (no exponent, no thousands separator, trailing zeros dropped), but never fewer
    than its integer digits: ``20212345.678 -> "20212346"``, ``0.24512345 -> "0.245123"``.
    Exact figures stay in JSON; a spreadsheet gets readable cells, not 17-digit floats."""
    v = float(v)  # a numpy float formats like a float
    if not math.isfinite(v):
        return repr(v)
    if v == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    text = f"{v:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def csv_value(v: object) -> str:
    """A CSV cell: empty for "does not apply", floats by `machine_float` (byte-stable),
    booleans as true / false."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return machine_float(v)
    return safe_text(v)


def conv_text(kernel: tuple[int, int], stride: tuple[int, int], pads: tuple[int, ...],
              dilation: tuple[int, int], groups: int) -> str:
    """A conv's geometry as the tables show it: ``k3x3 s1 p1`` (+ `` d2``, `` g4`` when
    dilated or grouped)."""
    text = f"k{kernel[0]}x{kernel[1]} s{stride[0]}"
    if any(pads):
        text += f" p{max(pads)}"
    if dilation != (1, 1):
        text += f" d{dilation[0]}"
    if groups > 1:
        text += f" g{groups}"
    return text


def coord(v: float) -> str:
    """An SVG coordinate with fixed precision, so output is byte-stable."""
    return f"{v:.1f}"


# ------------------------------------------------------------------------ chart axes


def nice_step(span: float, max_ticks: int) -> float:
    """The smallest round step (1, 2, 2.5 or 5 x 10^k) dividing `span` into at most
    `max_ticks` intervals."""
    rough = span / max_ticks
    exp = 10.0 ** math.floor(math.log10(rough))
    return next(m * exp for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * exp >= rough * (1 - 1e-9))


def nice_axis(v: float, max_ticks: int = 5) -> tuple[float, int]:
    """(axis maximum, tick count) of a bar axis from 0 reaching `v`: a nice step with at
    most `max_ticks` ticks, so the longest bar fills most of the plot."""
    if v <= 0:
        return 1.0, 4
    step = nice_step(v, max_ticks)
    n = max(1, math.ceil(v / step - 1e-9))
    return n * step, n


def linear_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    """Nice ticks covering [lo, hi] on a linear axis."""
    step = nice_step(hi - lo, max_ticks)
    k = math.ceil(lo / step - 1e-9)
    ticks = []
    while k * step <= hi * (1 + 1e-12) + 1e-12:
        ticks.append(round(k * step, 12))
        k += 1
    return ticks


def log_axis(a: float, b: float) -> tuple[list[float], float, float]:
    """Ticks (values, not logs) and the axis range for data in [a, b] on a log axis. The
    range is widened to the nearest ticks outside the data, so every point sits between
    labelled ticks; of the tick sets 10^k, {1,2,5}x10^k and {1..9}x10^k giving 3 to 8
    ticks, the one with the tightest range wins (the coarser one on a tie). A range too
    narrow for any gets linear ticks."""
    best: tuple[float, int, list[float]] | None = None
    for mantissas in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        grid = [m * 10.0 ** k for k in range(math.floor(math.log10(a)) - 1,
                                             math.ceil(math.log10(b)) + 2) for m in mantissas]
        lo = max(v for v in grid if v <= a * (1 + 1e-12))
        hi = min(v for v in grid if v >= b * (1 - 1e-12))
        ticks = [v for v in grid if lo <= v <= hi]
        if 3 <= len(ticks) <= 8:
            cand = (math.log10(hi / lo), len(ticks), ticks)
            if best is None or cand[:2] < best[:2]:
                best = cand
    if best is not None:
        return best[2], best[2][0], best[2][-1]
    decades = [10.0 ** k for k in range(math.floor(math.log10(a)), math.ceil(math.log10(b)) + 1)]
    if len(decades) > 8:  # many decades: every n-th one
        step = math.ceil((len(decades) - 1) / 7)
        ticks = decades[::step]
        return ticks, ticks[0], max(ticks[-1], b)
    lo, hi = (a * 0.97, b * 1.03) if b > a else (a * 0.9, a * 1.1)
    return [t for t in linear_ticks(lo, hi, 5) if lo <= t <= hi and t > 0], lo, hi


__all__ = ["BREAKDOWN_KEYS", "BREAKDOWN_LABELS", "MJ", "MS", "NJ", "NONE_TEXT", "NS", "PJ",
           "S", "UJ", "US", "Unit", "compact_count", "conv_text", "coord", "count_text",
           "csv_value",
           "decimal_text", "energy_text", "energy_unit", "linear_ticks", "log_axis",
           "machine_float",
           "nice_axis", "nice_step", "pct_text", "plain_number", "ratio", "ratio_text",
           "safe_text", "sig_text", "time_text", "time_unit"]
