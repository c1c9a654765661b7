"""imcc: a model-to-crossbar compiler for in-memory-computing arrays.

The Python API (`imcc.api`) is re-exported here: `imcc.compile`, `imcc.simulate`,
`imcc.check`, `imcc.list_examples` and their typed results. It is loaded on first use, so that
`import imcc` (and the CLI's `--help`) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["CheckOutcome", "CompiledModel", "Example", "SimulationResult", "__version__",
           "check", "compile", "list_examples", "simulate"]
_API = frozenset(__all__) - {"__version__"}

if TYPE_CHECKING:
    from imcc.api import (
        CheckOutcome,
        CompiledModel,
        Example,
        SimulationResult,
        check,
        compile,
        list_examples,
        simulate,
    )


def __getattr__(name: str) -> Any:
    if name in _API:
        from imcc import api

        return getattr(api, name)
    raise AttributeError(f"module 'imcc' has no attribute {name!r}")

