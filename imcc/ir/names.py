"""Layer names as users see and type them.

Exporters name nodes by scope path and op (``/layer1/layer1.0/conv1/Conv``); the tables
show the short form (``layer1.0/conv1``): the leading scope that the next scope repeats
(``layer1`` in ``layer1.0``) and the trailing op type are dropped, and a low-rank half
keeps its suffix (``/layer1/layer1.0/conv1/Conv.R`` -> ``layer1.0/conv1.R``).

`resolve_layer_names` maps what a user typed (``--layer-rank``, policy files, budget files)
to the full names: the full name, the full name without its leading ``/``, or the short
name are accepted. A name that matches nothing, or a short name shared by several layers,
is a `UsageError` listing the close matches, so a typo is never silently ignored.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence

from imcc.errors import UsageError

# The op types exporters append to a crossbar layer's scope path.
_OP_TAILS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
_HALF = re.compile(r"^(?P<op>[A-Za-z]+)(?P<half>\.[RL])$")


def short_name(name: str) -> str:
    """'/layer1/layer1.0/conv1/Conv' -> 'layer1.0/conv1'; '.../conv1/Conv.R' ->
    '.../conv1.R'. A name without scopes stays as it is."""
    parts = [p for p in name.strip("/").split("/") if p]
    if len(parts) > 1:
        half = _HALF.match(parts[-1])
        if parts[-1] in _OP_TAILS:
            parts = parts[:-1]
        elif half and half["op"] in _OP_TAILS:
            parts = parts[:-2] + [parts[-2] + half["half"]]
    if len(parts) > 1 and parts[1].startswith(parts[0] + "."):
        parts = parts[1:]
    return "/".join(parts) or name


def short_names(names: Sequence[str]) -> list[str]:
    """`short_name` of each, except that names whose short forms collide (a transformer
    block's ``attn/MatMul`` and ``attn/Gemm``) keep their op type: ``attn/MatMul``."""
    shorts = [short_name(n) for n in names]
    counts: dict[str, int] = {}
    for s in shorts:
        counts[s] = counts.get(s, 0) + 1
    return [_with_tail(n) if counts[s] > 1 else s for n, s in zip(names, shorts, strict=True)]


def _with_tail(name: str) -> str:
    """The short form with the trailing op type kept."""
    parts = [p for p in name.strip("/").split("/") if p]
    if len(parts) > 2 and parts[1].startswith(parts[0] + "."):
        parts = parts[1:]
    return "/".join(parts) or name


def _aliases(full: str) -> set[str]:
    return {full, full.lstrip("/"), short_name(full), _with_tail(full)}


def resolve_layer_names(requested: Iterable[str], layers: Sequence[str], what: str
                        ) -> dict[str, str]:
    """Map each requested name to the full layer name it denotes (see the module
    docstring). ``layers``: the full names of the layers that can be named; ``what``: where
    the names came from, for the message (e.g. ``"--layer-rank / policy"``). Raises
    `UsageError` on an unknown or ambiguous name (all of them, with close matches)."""
    by_alias: dict[str, set[str]] = {}
    for full in layers:
        for a in _aliases(full):
            by_alias.setdefault(a, set()).add(full)
    resolved: dict[str, str] = {}
    problems: list[str] = []
    for name in requested:
        if name in layers:  # a full name always denotes itself
            resolved[name] = name
            continue
        hits = sorted(by_alias.get(name, ()))
        if len(hits) == 1:
            resolved[name] = hits[0]
        elif hits:
            problems.append(f"{name!r} is ambiguous: it names {', '.join(map(repr, hits))}")
        else:
            close = difflib.get_close_matches(name, sorted(by_alias), n=3, cutoff=0.6)
            problems.append(f"no layer named {name!r}" + (
                f" (close: {', '.join(map(repr, close))})" if close else ""))
    if problems:
        shown = ", ".join(short_name(n) for n in layers[:12])
        more = f" and {len(layers) - 12} more" if len(layers) > 12 else ""
        raise UsageError(f"{what}: " + "; ".join(problems),
                         hint=f"layers: {shown or 'none'}{more}; `imcc layers MODEL` lists "
                              "them with their full names")
    # Two spellings of one layer would give it two settings: refuse rather than pick one.
    seen: dict[str, str] = {}
    for name, full in resolved.items():
        if full in seen and seen[full] != name:
            raise UsageError(f"{what}: {seen[full]!r} and {name!r} name the same layer "
                             f"{full!r}")
        seen[full] = name
    return resolved


__all__ = ["resolve_layer_names", "short_name", "short_names"]
