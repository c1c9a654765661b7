"""Textual pass pipelines: ``fold-bn,lowrank{rank=m/8,groups=4},quantize{weight_bits=4},map``.

A pipeline is a comma-separated list of registered pass names, each optionally followed by
``{field=value,...}`` that sets the pass's dataclass fields (ints, floats, bools and
strings, converted from the field's declared type; ``none`` for an optional value). A
per-layer table (``layer_ranks``, ``layer_groups``) is written in braces,
``layer_ranks={/conv1/Conv=m/4,/fc/Gemm=2}``; a layer name is everything before the last
``=`` and cannot contain ``{``, ``}`` or ``,``. The crossbar target and the calibration
data are not pass options: passes read them from the compile context.

The order must respect every pass's contract (`check_order`): fold-bn, lowrank, quantize,
map, each at most once (any may be left out but map), map last.

`pipeline_spec` writes a pass list back as this text (every option, in field order), and
``parse_pipeline(pipeline_spec(ps)) == ps``; the report records it as ``pipeline``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from typing import Any

from imcc.errors import UsageError
from imcc.passes.base import Pass


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
    return _convert_to(cls, fname, hints.get(fname, ftype), raw)


def _convert_to(cls: type[Pass], fname: str, t: Any, raw: str) -> Any:
    if typing.get_origin(t) is dict:
        _, vtype = typing.get_args(t)
        if not (raw.startswith("{") and raw.endswith("}")):
            raise UsageError(f"option {fname}={raw!r} of pass {cls.name!r}: a per-layer table "
                             "is written {name=value,...}", hint=f"e.g. {fname}={{/conv1/Conv=2}}")
        table: dict[str, Any] = {}
        for entry in _split_top(raw[1:-1]):
            if not entry and raw[1:-1].strip() == "":
                continue
            key, eq, val = entry.rpartition("=")
            key = key.strip()
            if not eq or not key:
                raise UsageError(f"option {fname} of pass {cls.name!r}: entry {entry!r} is not "
                                 "name=value")
            if key in table:
                raise UsageError(f"option {fname} of pass {cls.name!r}: layer {key!r} is given "
                                 "twice")
            table[key] = _convert_to(cls, f"{fname}[{key}]", vtype, val.strip())
        return table
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


def pipeline_spec(passes: Sequence[Pass]) -> str:
    """The pipeline text `parse_pipeline` reads back into equal passes."""
    return ",".join(p.spec() for p in passes)


def check_order(passes: Sequence[Pass], items: Sequence[str] | None = None) -> None:
    """Refuse (UsageError, exit 2) a pass order that breaks a pass's contract
    (`imcc.passes.base.Contract`): a pass whose requirement does not hold yet, one that runs
    after a pass it must precede, a pass given twice, or a pipeline that does not end mapped.
    The message names the legal order and, when the passes only need reordering, the
    pipeline reordered (`items`: the passes as the user wrote them)."""
    from imcc.passes import REGISTRY

    order = list(REGISTRY)
    texts = list(items) if items is not None else [p.spec() for p in passes]
    legal = ", ".join(order) + ", each at most once, map last"

    def refuse(problem: str) -> UsageError:
        names = [p.name for p in passes]
        hint = f"the legal order is {legal}"
        if len(set(names)) == len(names):
            fixed = [t for _, t in sorted(zip(passes, texts, strict=True),
                                          key=lambda pt: order.index(pt[0].name))]
            if "map" not in names:
                fixed.append("map")
            hint += f"; reordered: {','.join(fixed)}"
        return UsageError(f"pipeline {','.join(texts)!r}: {problem}", hint=hint)

    held: set[str] = set()
    ran: list[Pass] = []
    for p in passes:
        c = p.contract
        if any(q.name == p.name for q in ran):
            raise refuse(f"{p.name} is given twice")
        missing = sorted(c.requires - held)
        if missing:
            raise refuse(f"{p.name} needs {', '.join(missing)} first")
        clash = sorted(c.forbids & held)
        if clash:
            after = next(q.name for q in ran if q.contract.ensures & set(clash))
            raise refuse(f"{p.name} cannot run after {after} ({c.why})")
        held |= c.ensures
        ran.append(p)
    if "mapped" not in held:
        raise refuse("it must end with the map pass")


def parse_pipeline(spec: str) -> list[Pass]:
    from imcc.passes import REGISTRY

    passes: list[Pass] = []
    items = _split_top(spec)
    for item in items:
        if not item:
            raise UsageError(f"pipeline {spec!r}: empty pass name")
        name, _, rest = item.partition("{")
        name = name.strip()
        cls = REGISTRY.get(name)
        if cls is None:
            raise UsageError(f"unknown pass {name!r}", hint="available: " + ", ".join(REGISTRY))
        settable = {f.name: f for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                    if f.init}
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
                if key in kwargs:
                    raise UsageError(f"pass {name!r}: option {key!r} is given twice")
                kwargs[key] = _convert(cls, key, settable[key].type, val.strip())
        passes.append(cls(**kwargs))
    check_order(passes, items)
    return passes
