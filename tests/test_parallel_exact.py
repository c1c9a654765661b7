"""imcc's own threads (the compression of arrays.npz) give the same bytes on any thread
count and follow the user's limits; a compile's BLAS runs on one thread."""

from __future__ import annotations

import io
import zipfile

import numpy as np

import imcc.fileio as fileio
import imcc.threads as threads
from imcc.fileio import Stacked, npz_bytes
from imcc.threads import THREAD_VARS, available_cpus, limit_threads, work_threads


def test_work_threads_follow_limit_threads_and_the_user(monkeypatch) -> None:
    for v in THREAD_VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(threads, "_pinned_by_default", False)
    assert work_threads() == available_cpus()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's choice (e.g. a sweep worker)
    assert work_threads() == 1
    with limit_threads(3):
        assert work_threads() == 3
    assert work_threads() == 1
    # The command line pinned BLAS to one thread by default: its own threads still use
    # the cores (they block instead of spinning on a busy core).
    monkeypatch.setattr(threads, "_pinned_by_default", True)
    assert work_threads() == available_cpus()
    with limit_threads(1):
        assert work_threads() == 1


def test_npz_bytes_do_not_depend_on_the_thread_count(monkeypatch) -> None:
    """Members cut into many pieces, one an exact multiple of the piece size, one shorter
    than a piece, a Stacked one: byte-identical on 1 and 2 threads, valid zip (CRCs) and
    the arrays read back."""
    monkeypatch.setattr(fileio, "DEFLATE_CHUNK", 4096)
    rng = np.random.default_rng(3)
    header = 128  # np.save's header of these members
    arrays = {
        "levels": rng.integers(0, 2, (97, 131)).astype(np.int8),
        "exact": np.zeros(3 * 4096 - header, np.int8),
        "small": np.arange(7, dtype=np.int32),
        "noise": rng.standard_normal(5000).astype(np.float32),
        "stacked": Stacked.of([rng.integers(-3, 4, (n, 5)) for n in (900, 0, 333)],
                              np.int32, (5,)),
    }
    with limit_threads(1):
        one = npz_bytes(arrays)
    with limit_threads(2):
        two = npz_bytes(arrays)
    assert one == two
    with zipfile.ZipFile(io.BytesIO(two)) as zf:
        assert zf.testzip() is None
        info = {i.filename: i for i in zf.infolist()}
        assert info["exact.npy"].file_size == 3 * 4096
        assert info["levels.npy"].compress_size < info["levels.npy"].file_size / 2
    back = np.load(io.BytesIO(two))
    for k, v in arrays.items():
        want = np.concatenate(v.parts) if isinstance(v, Stacked) else v
        np.testing.assert_array_equal(back[k], want)


def test_compile_runs_blas_on_one_thread(monkeypatch) -> None:
    """Multithreaded OpenBLAS sgemm rounds differently from single-threaded (so the ResNet-20
    scales of `imcc.compile` in Python differed from the pinned command line's in the 7th
    digit): the compile's passes see one BLAS thread whatever the process has."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import imcc.passes.quantize as quantize
    from imcc.compiler import CompileOptions, compile_model

    seen: list[int] = []
    real = quantize.calibrate_scale

    def spy(*args, **kwargs):
        seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        return real(*args, **kwargs)

    monkeypatch.setattr(quantize, "calibrate_scale", spy)
    with threadpool_limits(limits=2, user_api="blas"):
        compile_model("resnet20", CompileOptions())
        after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert seen and set(seen) == {1}
    assert set(after) == {2}  # restored
