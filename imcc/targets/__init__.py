"""Crossbar targets: geometry, cost model, program emission and its on-disk format."""

from __future__ import annotations
