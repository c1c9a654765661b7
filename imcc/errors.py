"""Typed errors. Library code raises these; only the CLI turns them into messages and exit codes.

Exit codes (documented in the README):
  1  a budget was exceeded (``imcc check``) -- not an error class
  2  usage error: a bad option value or an impossible target/rank/group setting
  3  the input model is malformed or uses unsupported constructs
  4  a data, budget or tech file is malformed
  5  an output could not be written
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ImccError(Exception):
    """Base class: every error imcc expects to report to a user."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(ImccError):
    """A command-line option or API argument has an impossible value."""

    exit_code = 2


class ModelError(ImccError):
    """The model file is unreadable, malformed or not ONNX."""

    exit_code = 3


@dataclass(frozen=True)
class Construct:
    """One unsupported construct: ``text`` says what and why; a node also gives its ``op``
    type, ``node`` name and the reason alone (``why``), by which long refusals are grouped."""

    text: str
    op: str | None = None
    node: str | None = None
    why: str | None = None

    def __str__(self) -> str:
        return self.text


class UnsupportedError(ModelError):
    """The model uses constructs imcc cannot compile. Lists all of them at once: each one
    when there are few (`GROUP_ABOVE` or fewer), else grouped by op type and reason with a
    count and the first few node names, so a refusal stays readable."""

    GROUP_ABOVE = 6    # more constructs than this are grouped
    NAMES_SHOWN = 3    # node names shown per group
    GROUPS_SHOWN = 12  # groups shown, the largest first

    def __init__(self, problems: Sequence[str | Construct], hint: str | None = None) -> None:
        self.constructs = [p if isinstance(p, Construct) else Construct(p) for p in problems]
        self.problems = [str(p) for p in self.constructs]
        n = len(self.problems)
        head = f"{n} unsupported construct{'s' if n != 1 else ''}: "
        if n <= self.GROUP_ABOVE:
            msg = head + "; ".join(self.problems)
        else:
            msg = head + self._grouped()
        super().__init__(msg, hint)

    def _grouped(self) -> str:
        groups: dict[tuple[str, str], list[str]] = {}
        for c in self.constructs:
            if c.op is not None and c.why is not None:
                key = (c.op, c.why)
            else:
                key = ("", c.text)  # not a node: its own text is the group
            groups.setdefault(key, []).append(c.node or "")
        # Largest groups first; ties in order of first appearance (dicts keep it).
        ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
        parts: list[str] = []
        for (op, why), nodes in ordered[:self.GROUPS_SHOWN]:
            if not op:
                parts.append(why + (f" (x{len(nodes)})" if len(nodes) > 1 else ""))
                continue
            shown = ", ".join(repr(x) for x in nodes[:self.NAMES_SHOWN])
            more = f" and {len(nodes) - self.NAMES_SHOWN} more" \
                if len(nodes) > self.NAMES_SHOWN else ""
            parts.append(f"{op} x{len(nodes)}: {why} ({shown}{more})")
        rest = len(ordered) - self.GROUPS_SHOWN
        if rest > 0:
            parts.append(f"{rest} more kind{'s' if rest != 1 else ''} of construct")
        return "; ".join(parts)


class DataError(ImccError):
    """A data (--calib/--data), budget or tech file is malformed."""

    exit_code = 4


class OutputError(ImccError):
    """An output could not be written."""

    exit_code = 5


class Interrupted(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """A termination signal (SIGINT, SIGTERM, SIGHUP) arrived. A BaseException so that
    `except Exception` blocks do not swallow it while clean-up handlers (`finally`, atomic
    output directories) still run; the CLI exits with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
