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

imcc's own parallel work (the compression of arrays.npz, `imcc.fileio.ChunkedDeflate`) runs
on Python threads over zlib, which releases the GIL for whole megabyte pieces and blocks
instead of spinning when a core is busy; so it uses every available core (`work_threads`)
unless the user limited threads: `limit_threads`, or a THREAD_VARS value set before imcc
started (the sweep's and tuner's worker processes run on one thread). Loops of small numpy
calls gain nothing from threads: the calibration's scale search (ufuncs of ~40 us each) and the
emitter's layers both ran 20-40% slower on two threads of an idle 2-core machine (GIL
hand-offs between the calls), so they stay serial.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_THREADS = 1

_work_threads: ContextVar[int | None] = ContextVar("imcc_work_threads", default=None)
_pinned_by_default = False  # pin_default_threads set THREAD_VARS (the user did not)


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
    global _pinned_by_default
    if any(v in os.environ for v in THREAD_VARS):
        return
    for var in THREAD_VARS:
        os.environ[var] = str(DEFAULT_THREADS)
    _pinned_by_default = True


def work_threads() -> int:
    """Threads for imcc's own parallel work (see module doc): the count of the enclosing
    `limit_threads`, else the user's THREAD_VARS value, else one per available core."""
    n = _work_threads.get()
    if n is not None:
        return n
    if not _pinned_by_default:
        return user_threads() or available_cpus()
    return available_cpus()


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
def single_thread_blas() -> Iterator[None]:
    """BLAS on one thread for the block (the work threads unchanged). Multithreaded
    OpenBLAS sgemm rounds differently from the single-threaded one (checked on ResNet-50's
    conv shapes), so a compile's calibration (activation scales, fitted weights) would
    otherwise depend on the core count of the machine, and `imcc.compile` in Python on the
    thread count the command line pins."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@contextmanager
def limit_threads(n: int | None) -> Iterator[int]:
    """Run the block with `n` BLAS threads and `n` work threads (0: one per available core;
    None: unchanged).
    The environment variables are set too, for onnxruntime sessions (`session_threads`)
    and child processes, and restored afterwards. Yields the thread count in effect."""
    if n is None:
        yield session_threads()
        return
    count = n or available_cpus()
    saved = {v: os.environ.get(v) for v in THREAD_VARS}
    for var in THREAD_VARS:
        os.environ[var] = str(count)
    token = _work_threads.set(count)
    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=count):
            yield count
    finally:
        _work_threads.reset(token)
        for var, old in saved.items():
            if old is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = old
