"""Thread counts for numpy's BLAS and onnxruntime.

OpenBLAS starts one thread per core. On a machine whose cores are busy with other work its
threads wait for each other on every call: measured on 2 shared cores, `imcc simulate` ran
4.8x slower (32.0 s vs 6.6 s, 500 images) and onnxruntime on the same model 2.3x slower with two
threads than with one. So the command line pins both to `DEFAULT_THREADS` unless the user
chose: an `OPENBLAS_NUM_THREADS` / `OMP_NUM_THREADS` / `MKL_NUM_THREADS` in the environment
is respected, and `imcc simulate --threads N` sets both explicitly (0: one per available
core).

`pin_default_threads` must run before numpy is imported (the environment variables are
read when OpenBLAS loads); `limit_threads` also works afterwards, through threadpoolctl
(which changes the thread count of BLAS libraries already loaded in the process).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_THREADS = 1


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def user_threads() -> int | None:
    """The thread count the environment asks for (the first valid variable), else None."""
    for var in THREAD_VARS:
        v = os.environ.get(var, "").strip()
        if v.isdigit() and int(v) > 0:
            return int(v)
    return None


def pin_default_threads() -> None:
    """At the command line's entry, before numpy loads: DEFAULT_THREADS for BLAS/OpenMP
    unless the user set any of THREAD_VARS."""
    if any(v in os.environ for v in THREAD_VARS):
        return
    for var in THREAD_VARS:
        os.environ[var] = str(DEFAULT_THREADS)


def session_threads() -> int:
    """The intra-op thread count for onnxruntime sessions: what BLAS is told to use (the
    environment), else one per available core (onnxruntime's own default)."""
    return user_threads() or available_cpus()


@contextmanager
def pinned_worker_threads() -> Iterator[None]:
    """Start worker processes with one BLAS/OpenMP thread each. A pool already uses every
    core; on top of it, each worker's BLAS threads busy-wait between the many small matrix
    products of calibration and steal the cores the other workers need (measured on a busy
    2-core machine: a 20-configuration ResNet-20 sweep took 36 s, not 4-10 s). The
    variables are read when a worker starts, so they are set for the pool's lifetime and
    restored afterwards; a value the user set is kept."""
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    for k in THREAD_VARS:
        os.environ.setdefault(k, "1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def limit_threads(n: int | None) -> Iterator[int]:
    """Run the block with `n` BLAS threads (0: one per available core; None: unchanged).
    The environment variables are set too, for onnxruntime sessions (`session_threads`)
    and child processes, and restored afterwards. Yields the thread count in effect."""
    if n is None:
        yield session_threads()
        return
    count = n or available_cpus()
    saved = {v: os.environ.get(v) for v in THREAD_VARS}
    for var in THREAD_VARS:
        os.environ[var] = str(count)
    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=count):
            yield count
    finally:
        for var, old in saved.items():
            if old is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = old
