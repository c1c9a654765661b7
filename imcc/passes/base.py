"""The pass protocol.

A pass is a *frozen* dataclass: a kebab-case ``name`` (its registry key), its options as
fields (checked in ``__post_init__``, so a bad pipeline fails before any graph work), and

    run(graph, ctx: CompileContext) -> PassResult

``ctx`` carries what a pass legitimately needs from outside its options (the crossbar
target, calibration data); the result carries the graph (passes may edit it in place and
return it), whether anything changed, and typed records of what was decided
(`imcc.ir.records`), which the driver collects by type for the report. A pass keeps no
state between runs: running the same pass object twice on equal graphs gives equal
results.

Every option is declared with `option` (a dataclass field carrying its help text and unit),
so `describe_pass` -- and with it ``imcc passes`` -- lists options, units and defaults from
the pass classes themselves, the single source of truth.

``spec()`` writes the pass as the text `imcc.passes.pipeline.parse_pipeline` reads
(``name{field=value,...}``, every option, in field order), so a report can record the exact
pipeline and ``parse_pipeline(spec)`` gives back equal pass objects.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from imcc.errors import UsageError
from imcc.ir import Graph
from imcc.ir.records import Record
from imcc.targets.crossbar import CrossbarTarget


@dataclass(frozen=True)
class CompileContext:
    """What passes read from outside their options: the crossbar ``target`` (its array
    size and bit widths) and the calibration inputs (``calib``: a float array whose first
    axis is the sample, for the model's single input; None asks the quantize pass for its
    deterministic synthetic batch). ``calib`` takes no part in comparisons (an array has no
    single truth value); compare it separately when it matters."""

    target: CrossbarTarget = field(default_factory=CrossbarTarget)
    calib: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class PassResult:
    graph: Graph
    modified: bool
    records: tuple[Record, ...] = ()


def option(default: Any = dataclasses.MISSING, *, help: str, unit: str | None = None,  # noqa: A002 - as argparse/typer
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A pass option: a dataclass field whose metadata holds its ``help`` text and its
    ``unit`` (None: a plain choice or count), read by `describe_pass`."""
    meta = {"help": help, "unit": unit}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionInfo:
    """One option of a pass as ``imcc passes`` shows it: ``type`` and ``default`` as
    pipeline text (``default`` None when the option has no default)."""

    name: str
    type: str
    default: str
    unit: str | None
    help: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PassInfo:
    """A pass as ``imcc passes`` shows it: name, the first paragraph of its docstring, the
    order contract and its options."""

    name: str
    summary: str
    requires: tuple[str, ...]
    ensures: tuple[str, ...]
    order: str
    options: tuple[OptionInfo, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "requires": list(self.requires),
                "ensures": list(self.ensures), "order": self.order,
                "options": [o.to_json() for o in self.options]}


def _type_text(t: Any) -> str:
    """A field's type as a user writes it: 'int', 'str or none', 'table NAME=str'."""
    if typing.get_origin(t) is dict:
        return f"table NAME={_type_text(typing.get_args(t)[1])}"
    args = [a for a in typing.get_args(t) if a is not type(None)] or [t]
    text = " or ".join(getattr(a, "__name__", str(a)) for a in args)
    return text + (" or none" if type(None) in typing.get_args(t) else "")


def describe_pass(cls: type[Pass]) -> PassInfo:
    """What ``imcc passes`` lists for a pass class (from its fields' `option` metadata)."""
    hints = typing.get_type_hints(cls)
    opts: list[OptionInfo] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = format_value(f.default, f"{cls.name}.{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            default = format_value(f.default_factory(), f"{cls.name}.{f.name}")
        else:
            default = "(required)"
        opts.append(OptionInfo(f.name, _type_text(hints[f.name]), default,
                               f.metadata.get("unit"), f.metadata.get("help", "")))
    doc = inspect.getdoc(cls) or ""
    summary = cls.summary or " ".join(doc.split("\n\n")[0].split())
    c = cls.contract
    return PassInfo(cls.name, summary, tuple(sorted(c.requires)), tuple(sorted(c.ensures)),
                    c.why, tuple(opts))


# Characters with a meaning in pipeline text; option values and layer names cannot hold them.
SPEC_SPECIAL = frozenset("{},=")


def format_value(value: Any, where: str) -> str:
    """One option value as pipeline text (the inverse of `pipeline._convert`)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{format_text(str(k), where)}={format_value(v, where)}"
                              for k, v in value.items()) + "}"
    if isinstance(value, str):
        return format_text(value, where)
    raise UsageError(f"{where}: a {type(value).__name__} option cannot be written as "
                     "pipeline text")


def format_text(text: str, where: str) -> str:
    bad = sorted(SPEC_SPECIAL & set(text))
    if bad or text != text.strip() or not text:
        raise UsageError(f"{where}: {text!r} cannot be written as pipeline text (it is empty, "
                         f"has surrounding spaces or holds {' '.join(bad) or 'spaces'})")
    return text


@dataclass(frozen=True)
class Contract:
    """What a pass needs of the graph and what it leaves, as named properties
    (``bn-folded``, ``factorized``, ``quantized``, ``mapped``): `requires` must hold before
    it runs, `forbids` must not hold yet (e.g. lowrank factorizes float weights, so it
    forbids ``quantized``), `ensures` holds after it. `why` explains the order to a user."""

    requires: frozenset[str] = frozenset()
    forbids: frozenset[str] = frozenset()
    ensures: frozenset[str] = frozenset()
    why: str = ""


class Pass(ABC):
    name: ClassVar[str]
    # Options added after a pass's first release: written by ``spec()`` only when they differ
    # from their default, so the pipelines (and reports) of earlier releases read the same.
    spec_omit_default: ClassVar[frozenset[str]] = frozenset()
    contract: ClassVar[Contract] = Contract()
    summary: ClassVar[str] = ""  # one line for `imcc passes` (else the docstring's first)

    @abstractmethod
    def run(self, graph: Graph, ctx: CompileContext) -> PassResult:
        """Transform the graph; raise an ImccError subclass on impossible options."""

    def spec(self) -> str:
        """This pass as pipeline text: ``name`` or ``name{field=value,...}``."""
        items = [f"{f.name}={format_value(getattr(self, f.name), f'{self.name}.{f.name}')}"
                 for f in dataclasses.fields(self)  # type: ignore[arg-type]
                 if f.init and not (f.name in self.spec_omit_default
                                    and _is_default(f, getattr(self, f.name)))]
        return self.name + ("{" + ",".join(items) + "}" if items else "")


def _is_default(f: dataclasses.Field[Any], value: object) -> bool:
    """Whether ``value`` is the field's default (a ``default_factory``'s value included)."""
    if f.default is not dataclasses.MISSING:
        return bool(value == f.default)
    if f.default_factory is not dataclasses.MISSING:
        return bool(value == f.default_factory())
    return False


__all__ = ["CompileContext", "Contract", "OptionInfo", "Pass", "PassInfo", "PassResult",
           "describe_pass", "format_value", "option"]
