"""Typed errors. Library code raises these; only the CLI turns them into messages and exit codes.

Exit codes (documented in the README):
  1  a budget was exceeded (``imcc check``) -- not an error class
  2  usage error: a bad option value or an impossible target/rank/group setting
  3  the input model is malformed or uses unsupported constructs
  4  a data, budget or tech file is malformed
  5  an output could not be written
"""

from __future__ import annotations


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


class UnsupportedError(ModelError):
    """The model uses constructs imcc cannot compile. Lists all of them at once."""

    def __init__(self, problems: list[str], hint: str | None = None) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        msg = f"{n} unsupported construct{'s' if n != 1 else ''}: " + "; ".join(self.problems)
        super().__init__(msg, hint)


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
