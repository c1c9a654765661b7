"""bit_slice in narrow integers equals the plain int64 two's complement slicing for every
weight/cell width and input dtype; .npz writing is deterministic and readable."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from imcc.fileio import NPZ_LEVEL, Stacked, npz_bytes, write_npz
from imcc.targets.program import bit_slice, bit_slice_at


def slice_int64(q: np.ndarray, weight_bits: int, cell_bits: int) -> np.ndarray:
    s = -(-weight_bits // cell_bits)
    u = np.asarray(q).astype(np.int64) & ((1 << (s * cell_bits)) - 1)
    lv = np.stack([(u >> (k * cell_bits)) & ((1 << cell_bits) - 1) for k in range(s)])
    top = lv[-1]
    lv[-1] = -np.where(top >= 1 << (cell_bits - 1), top - (1 << cell_bits), top)
    return lv.astype(np.int8)


@pytest.mark.parametrize("weight_bits", [1, 2, 3, 4, 5, 7, 8, 12, 16])
@pytest.mark.parametrize("cell_bits", [1, 2, 3, 4, 7])
def test_bit_slice_equals_int64_slicing(weight_bits: int, cell_bits: int) -> None:
    lo, hi = -(1 << (weight_bits - 1)), 1 << (weight_bits - 1)
    rng = np.random.default_rng(weight_bits * 10 + cell_bits)
    for q in (np.arange(lo, hi), rng.integers(lo, hi, (3, 5, 2)).astype(np.int8 if
              weight_bits <= 8 else np.int32), rng.integers(lo, hi, 7).astype(np.float32)):
        got = bit_slice(q, weight_bits, cell_bits)
        assert got.dtype == np.int8
        np.testing.assert_array_equal(got, slice_int64(q, weight_bits, cell_bits))
        # one slice per element, as the emitter takes them from a big layer's levels
        s = rng.integers(0, got.shape[0], q.shape)
        at = bit_slice_at(q, s, weight_bits, cell_bits)
        assert at.dtype == np.int8
        np.testing.assert_array_equal(at, np.take_along_axis(got, s[None], 0)[0])


def test_npz_is_deterministic_streamed_and_fast_deflate(tmp_path) -> None:
    arrays = {"b": np.arange(5000, dtype=np.int32) % 7, "a": np.ones((40, 3), np.float32)}
    data = npz_bytes(arrays)
    assert data == npz_bytes(dict(reversed(list(arrays.items()))))
    write_npz(tmp_path / "x.npz", arrays)
    assert (tmp_path / "x.npz").read_bytes() == data
    back = dict(np.load(io.BytesIO(data)))
    assert sorted(back) == ["a", "b"] and all(np.array_equal(back[k], arrays[k]) for k in back)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert [i.filename for i in zf.infolist()] == ["a.npy", "b.npy"]
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
    assert NPZ_LEVEL == 1


@pytest.mark.parametrize(("dtype", "tail"), [(np.int8, ()), (np.int32, (3,)),
                                              (np.float32, (2, 2))])
def test_stacked_member_is_the_concatenation(dtype, tail) -> None:
    """A Stacked member (written part by part) has the bytes np.save gives the concatenated
    array, empty parts included, and reads back as it."""
    rng = np.random.default_rng(len(tail))
    parts = [rng.integers(-3, 4, (n,) + tail).astype(dtype) for n in (5, 0, 1, 12)]
    whole = np.concatenate(parts)
    assert npz_bytes({"a": Stacked.of(parts, dtype, tail), "b": whole}) == \
        npz_bytes({"a": whole, "b": whole})
    back = np.load(io.BytesIO(npz_bytes({"a": Stacked.of(parts, dtype, tail)})))["a"]
    assert back.dtype == dtype and np.array_equal(back, whole)
    with pytest.raises(ValueError, match="does not stack"):
        Stacked.of([np.zeros((2, 3))], np.float64, (2,))
