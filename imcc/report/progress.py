"""Progress of long work (compile passes, simulation batches, sweep rows) on stderr.

On a terminal it is a rich progress bar, removed when the work ends. Off a terminal (a CI
log, a pipe) a bar would be either invisible or hundreds of lines of escape sequences, so
`PlainProgress` prints plain lines instead: none for work that ends within `first_after`
seconds (a quick command stays quiet), then one line at most every `every` seconds, e.g.
``imcc: simulating 300/500 (12 s)``. Both offer the subset of rich's `Progress` API that
imcc uses: `add_task`, `advance`, `update`, and use as a context manager.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# One line `PlainProgress` prints. The bad-input checks hold a failing command to one
# line of reason; on a slow machine a long pass may print progress before that line.
PROGRESS_LINE = re.compile(r"imcc: .* (done|[0-9,]+(/[0-9,]+)?) \([0-9]+ s\)")


def without_progress(stderr: str) -> list[str]:
    """The non-blank lines of `stderr` that are not `PlainProgress` lines."""
    return [ln for ln in stderr.splitlines()
            if ln.strip() and not PROGRESS_LINE.fullmatch(ln.strip())]


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0


class PlainProgress:
    """Periodic plain progress lines for a console that is not a terminal (see the module
    docstring). `clock` returns seconds (monotonic); tests pass a fake one."""

    def __init__(self, console: Console, first_after: float = 10.0, every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.first_after, self.every, self.clock = (console, first_after,
                                                                  every, clock)
        self.tasks: list[_Task] = []
        self.start = clock()
        self.last: float | None = None  # when the last line was printed

    def __enter__(self) -> PlainProgress:
        self.start = self.clock()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None and self.last is not None:
            self._line(final=True)  # a log that showed progress also shows the end

    def add_task(self, description: str, total: float | None = None) -> int:
        self.tasks.append(_Task(description, total))
        return len(self.tasks) - 1

    def advance(self, task: int, advance: float = 1) -> None:
        self.tasks[task].completed += advance
        self._tick()

    def update(self, task: int, *, completed: float | None = None,
               description: str | None = None, total: float | None = None,
               **_: Any) -> None:
        t = self.tasks[task]
        if total is not None:
            t.total = total
        if completed is not None:
            t.completed = completed
        if description is not None:
            t.description = description
        self._tick()

    def _tick(self) -> None:
        now = self.clock()
        if now - self.start < self.first_after:
            return
        if self.last is None or now - self.last >= self.every:
            self._line()

    def _line(self, final: bool = False) -> None:
        now = self.clock()
        self.last = now
        for t in self.tasks:
            done = f"{t.completed:,.0f}" + ("" if t.total is None else f"/{t.total:,.0f}")
            what = "done" if final else done
            # descriptions are rich markup (escaped by the caller); printed as plain text
            self.console.print(f"imcc: {t.description} {what} ({now - self.start:.0f} s)",
                               highlight=False, markup=True, soft_wrap=True)


def progress(console: Console, quiet: bool = False) -> Progress | PlainProgress:
    """A progress display on `console` (stderr): a transient rich bar on a terminal,
    periodic plain lines otherwise; nothing when `quiet` (a disabled rich bar)."""
    if console.is_terminal or quiet:
        return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        transient=True, disable=quiet)
    return PlainProgress(console)


__all__ = ["PlainProgress", "progress"]
