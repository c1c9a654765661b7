"""Helpers the benchmark scripts share: wall-clock repeats and the machine/library line
printed at a run's start and end (the load average tells how noisy its timings are)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def environment() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"{os.cpu_count()} CPUs, load average {load}; Python {platform.python_version()}, "
            f"numpy {np.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}")


def rewrite_section(doc: Path, name: str, text: str) -> None:
    """Replace the part of `doc` between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``
    with `text`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    body = doc.read_text()
    if begin not in body or end not in body:
        raise SystemExit(f"{doc}: no {begin} ... {end} section")
    head, rest = body.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


def finish_section(lines: list[str], doc: Path | None, name: str) -> None:
    """Close a benchmark's Markdown `lines` with the environment at the end, print them,
    and, given `doc`, write them into its `name` section (`rewrite_section`)."""
    text = "\n".join([*lines, "", f"End: {environment()}"])
    print("\n" + text)
    if doc is not None:
        rewrite_section(doc, name, text)
