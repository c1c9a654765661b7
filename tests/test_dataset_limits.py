"""Data files are size-checked before they are read and their normalized inputs checked
for sanity (issue 13: numeric guards, resource limits)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from imcc.dataset import MAX_INPUT_MAGNITUDE, load_npz
from imcc.errors import DataError

SHAPE = (None, 3, 4, 4)


def images_npz(path: Path, **extra: np.ndarray) -> Path:
    imgs = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 4), dtype=np.uint8)
    np.savez(path, images=imgs, **extra)
    return path


@pytest.mark.parametrize("mean,std", [(0.5, 1e-45), (-3e38, 1.0), (0.0, 1e-7)])
def test_absurd_normalization_is_refused(tmp_path: Path, mean: float, std: float) -> None:
    p = images_npz(tmp_path / "d.npz", mean=np.full(3, mean, np.float32),
                   std=np.full(3, std, np.float32))
    with pytest.raises(DataError, match="not finite or exceed") as info:
        load_npz(p, "x", SHAPE)
    assert "mean" in str(info.value)


def test_huge_float_inputs_are_refused(tmp_path: Path) -> None:
    x = np.zeros((2, 3, 4, 4), np.float32)
    x[1, 0, 0, 0] = 10 * MAX_INPUT_MAGNITUDE
    np.savez(tmp_path / "d.npz", x=x)
    with pytest.raises(DataError, match="first in sample 1"):
        load_npz(tmp_path / "d.npz", "x", SHAPE)


def test_a_header_declaring_two_to_the_forty_samples_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "liar.npz"
    with zipfile.ZipFile(p, "w") as zf:
        hdr = io.BytesIO()
        np.lib.format.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (1 << 40, 3, 4, 4)})
        zf.writestr("x.npy", b"\x93NUMPY\x01\x00" + hdr.getvalue()[8:] + b"\0" * 64)
    with pytest.raises(DataError, match="declares shape"):
        load_npz(p, "x", SHAPE)


def test_a_zip_bomb_is_refused_before_inflating(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("IMCC_MAX_DATA_BYTES", str(1 << 20))
    p = tmp_path / "bomb.npz"
    x = np.zeros((64, 3, 32, 32), np.float32)  # 786 KB of zeros: compresses to almost nothing
    x = np.concatenate([x] * 4)  # 3 MB inflated, a few KB on disk
    np.savez_compressed(p, x=x)
    assert p.stat().st_size < 100_000
    with pytest.raises(DataError, match="inflates to"):
        load_npz(p, "x", (None, 3, 32, 32))


def test_unknown_compression_is_a_data_error(tmp_path: Path) -> None:
    p = tmp_path / "lzma.npz"
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 3, 4, 4), np.float32))
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_LZMA) as zf:
        zf.writestr("x.npy", buf.getvalue())
    raw = bytearray(p.read_bytes())
    # Rewrite the method field (14 = LZMA) to an unassigned number in both headers.
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        i = raw.find(sig)
        raw[i + off:i + off + 2] = (77).to_bytes(2, "little")
    p.write_bytes(bytes(raw))
    with pytest.raises(DataError):
        load_npz(p, "x", SHAPE)
