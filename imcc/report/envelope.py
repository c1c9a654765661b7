"""The one envelope of every JSON document imcc prints with ``--json``.

Each document is one JSON object whose first keys say what it is::

    {"format": "imcc-<kind>", "format_version": N, "imcc_version": "0.1.0",
     "command": "<the imcc command that printed it>", "model": "<model name or null>",
     ...the payload's keys}

``format`` names the payload's schema (``imcc-report``, ``imcc-simulation``,
``imcc-check``, ``imcc-sweep``, ``imcc-tune``) and ``format_version`` its version, raised
only when a key changes meaning or goes away (new keys may appear within a version). The
payload's keys sit beside the envelope's, so a reader of the payload alone keeps working.
Totals are named
``total_<quantity>`` (``total_cycles``, ``total_energy_pj``) in every payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imcc import __version__

ENVELOPE_KEYS: tuple[str, ...] = ("format", "format_version", "imcc_version", "command",
                                  "model")

# kind -> current format_version
FORMAT_VERSIONS: dict[str, int] = {"report": 1, "simulation": 1, "check": 1, "sweep": 1,
                                   "layers": 1, "passes": 1, "examples": 1, "tune": 1}


def envelope(kind: str, command: str, model: str | None, payload: Mapping[str, Any],
             imcc_version: str = __version__) -> dict[str, Any]:
    """`payload` inside the envelope of `kind` (a key of `FORMAT_VERSIONS`). The payload may
    not carry envelope keys itself (an internal error: they would be overwritten); the
    report's own ``format``/``imcc_version`` are restated by `report_envelope`."""
    clash = sorted(set(payload) & set(ENVELOPE_KEYS))
    assert not clash, f"payload carries envelope keys {clash}"
    return {"format": f"imcc-{kind}", "format_version": FORMAT_VERSIONS[kind],
            "imcc_version": imcc_version, "command": command, "model": model, **payload}


def report_envelope(report_json: Mapping[str, Any], command: str) -> dict[str, Any]:
    """A report.json dictionary (format ``imcc-report/1`` on disk) in the envelope: format
    ``imcc-report`` version 1, ``imcc_version`` the version that compiled it, then every
    other key of report.json unchanged, in order."""
    rest = {k: v for k, v in report_json.items() if k not in ENVELOPE_KEYS}
    return envelope("report", command, report_json["model"], rest,
                    imcc_version=report_json["imcc_version"])


__all__ = ["ENVELOPE_KEYS", "FORMAT_VERSIONS", "envelope", "report_envelope"]
