"""Functional simulation of crossbar programs."""

from __future__ import annotations
