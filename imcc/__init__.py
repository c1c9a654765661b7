"""imcc: a model-to-crossbar compiler for in-memory-computing arrays."""

from __future__ import annotations

__version__ = "0.1.0"
