"""Textual pass pipelines: ``fold-bn,lowrank{rank=m/8,groups=4},quantize{weight_bits=4},map``.

A pipeline is a comma-separated list of registered pass names, each optionally followed by
``{field=value,...}`` that sets the pass's dataclass fields (ints, floats, bools and
strings, converted from the field's declared type). The `map` pass takes its crossbar
target from the command line; dict-, array- and runtime-only fields cannot be set here.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from imcc.errors import UsageError
from imcc.passes.base import Pass
from imcc.targets.crossbar import CrossbarTarget


def _split_top(spec: str) -> list[str]:
    """Split on commas that are not inside braces."""
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in spec:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise UsageError(f"pipeline {spec!r}: unbalanced '}}'")
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise UsageError(f"pipeline {spec!r}: unbalanced '{{'")
    out.append("".join(cur).strip())
    return out


def _convert(cls: type[Pass], fname: str, ftype: Any, raw: str) -> Any:
    hints = typing.get_type_hints(cls)
    t = hints.get(fname, ftype)
    args = set(typing.get_args(t)) or {t}
    if raw.lower() == "none" and type(None) in args:
        return None
    for want in (bool, int, float, str):
        if want in args:
            if want is bool:
                if raw.lower() in ("true", "1", "yes"):
                    return True
                if raw.lower() in ("false", "0", "no"):
                    return False
                continue
            try:
                return want(raw)
            except ValueError:
                continue
    raise UsageError(f"option {fname}={raw!r} of pass {cls.name!r} (type {t}) cannot be set "
                     "from the command line")


def parse_pipeline(spec: str, target: CrossbarTarget) -> list[Pass]:
    from imcc.passes import REGISTRY

    passes: list[Pass] = []
    for item in _split_top(spec):
        if not item:
            raise UsageError(f"pipeline {spec!r}: empty pass name")
        name, _, rest = item.partition("{")
        name = name.strip()
        cls = REGISTRY.get(name)
        if cls is None:
            raise UsageError(f"unknown pass {name!r}", hint="available: " + ", ".join(REGISTRY))
        settable = {f.name: f for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                    if f.init and f.name not in ("calib", "target", "layer_ranks",
                                                 "layer_groups")}
        kwargs: dict[str, Any] = {}
        if rest:
            if not rest.endswith("}"):
                raise UsageError(f"pass {item!r}: options must be written {{key=value,...}}")
            for kv in _split_top(rest[:-1]):
                if not kv:
                    continue
                key, eq, val = kv.partition("=")
                key = key.strip().replace("-", "_")
                if not eq or key not in settable:
                    raise UsageError(f"pass {name!r}: unknown option {key!r}",
                                     hint="options: " + ", ".join(settable))
                kwargs[key] = _convert(cls, key, settable[key].type, val.strip())
        if name == "map":
            kwargs["target"] = target
        passes.append(cls(**kwargs))
    if not passes or passes[-1].name != "map":
        raise UsageError(f"pipeline {spec!r} must end with the map pass",
                         hint="e.g. fold-bn,lowrank{rank=m/2},quantize,map")
    return passes
