"""The data-file loader: the bundled CIFAR-10 sample, float variants, and every refusal."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

import imcc
from imcc.dataset import Dataset, bundled_example_data, load_npz
from imcc.errors import DataError, UsageError

SHAPE = (None, 3, 32, 32)
SMALL = (None, 3, 4, 4)


def _bad(path: Path, match: str, name: str = "input",
         shape: tuple[int | None, ...] = SMALL) -> DataError:
    with pytest.raises(DataError, match=match) as info:
        load_npz(path, name, shape)
    assert "\n" not in str(info.value)  # one-line messages
    return info.value


def _images(n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 4, 4), dtype=np.uint8)


# --------------------------------------------------------------------------- good files


def test_bundled_example_is_in_the_package() -> None:
    p = bundled_example_data()
    assert p.is_file()
    assert p.parent == Path(imcc.__file__).resolve().parent / "examples"


def test_bundled_cifar_loads_and_normalizes() -> None:
    p = bundled_example_data()
    d = load_npz(p, "input", SHAPE)
    assert d.x.shape == (500, 3, 32, 32) and d.x.dtype == np.float32
    assert d.labels is not None and d.labels.dtype == np.int64 and d.labels.shape == (500,)
    assert 0 <= d.labels.min() and d.labels.max() <= 9
    assert d.source == str(p) and len(d) == 500
    with np.load(p, allow_pickle=False) as z:
        img, mean, std = z["images"], z["mean"], z["std"]
    for n, c, h, w in [(0, 0, 0, 0), (7, 1, 3, 4), (499, 2, 31, 17)]:
        by_hand = (float(img[n, c, h, w]) / 255.0 - float(mean[c])) / float(std[c])
        assert d.x[n, c, h, w] == pytest.approx(by_hand, rel=1e-5, abs=1e-6)
    # Per-channel statistics of normalized CIFAR are near 0 mean, unit spread.
    assert np.all(np.abs(d.x.mean(axis=(0, 2, 3))) < 0.5)


def test_images_without_mean_std_are_scaled_to_unit_range(tmp_path: Path) -> None:
    img = _images()
    np.savez(tmp_path / "d.npz", images=img)
    d = load_npz(tmp_path / "d.npz", "input", SMALL)
    np.testing.assert_array_equal(d.x, img.astype(np.float32) / np.float32(255))
    assert d.labels is None


def test_scalar_mean_std_broadcast(tmp_path: Path) -> None:
    img = _images()
    np.savez(tmp_path / "d.npz", images=img, mean=np.float32(0.5), std=np.array([0.25]))
    d = load_npz(tmp_path / "d.npz", "input", SMALL)
    np.testing.assert_allclose(d.x, (img / 255 - 0.5) / 0.25, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("key", ["x", "input"])
def test_float_array_under_x_or_input_name(tmp_path: Path, key: str) -> None:
    x = np.random.default_rng(1).standard_normal((6, 3, 4, 4))  # float64: cast to float32
    labels = np.arange(6, dtype=np.int32)
    np.savez(tmp_path / "d.npz", **{key: x, "labels": labels, "classes": np.array(["a", "b"])})
    d = load_npz(tmp_path / "d.npz", "input", SMALL)
    assert d.x.dtype == np.float32
    np.testing.assert_array_equal(d.x, x.astype(np.float32))
    assert d.labels is not None and d.labels.dtype == np.int64
    np.testing.assert_array_equal(d.labels, labels)


def test_unknown_dims_accept_any_size(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3, 7, 9), np.float32))
    assert load_npz(tmp_path / "d.npz", "input", (1, 3, None, None)).x.shape == (2, 3, 7, 9)


def test_split_and_take() -> None:
    d = Dataset(np.arange(10, dtype=np.float32).reshape(10, 1), np.arange(10), "f.npz")
    a, b = d.split(3)
    assert (len(a), len(b)) == (3, 7)
    assert a.labels is not None and b.labels is not None
    assert b.x[0, 0] == 3 and b.labels[0] == 3 and b.source == "f.npz[3:10]"
    t = d.take(4)
    assert len(t) == 4 and t.source == "f.npz[0:4]"
    assert d.take(100) is d
    for bad in (0, 10, -1):
        with pytest.raises(UsageError):
            d.split(bad)
    with pytest.raises(UsageError):
        d.take(0)
    unlabeled = Dataset(d.x, None, "f.npz")
    assert unlabeled.split(5)[1].labels is None


# ---------------------------------------------------------------------------- bad files


def test_missing_path_and_directory(tmp_path: Path) -> None:
    _bad(tmp_path / "nope.npz", "no such file")
    _bad(tmp_path, "not a file")


def test_text_file_renamed_npz(tmp_path: Path) -> None:
    p = tmp_path / "t.npz"
    p.write_text("label,pixel\n1,2\n")
    _bad(p, "not an .npz archive")


def test_corrupt_zip(tmp_path: Path) -> None:
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((2, 3, 4, 4), np.float32))
    p = tmp_path / "cut.npz"
    p.write_bytes(good.read_bytes()[:100])
    _bad(p, "npz archive|corrupt")


def test_corrupt_member(tmp_path: Path) -> None:
    p = tmp_path / "m.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", b"\x93NUMPY garbage")
    _bad(p, "'x'")


def test_single_npy_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "a.npz"
    with open(p, "wb") as f:
        np.save(f, np.zeros((2, 3, 4, 4), np.float32))
    _bad(p, "single .npy array")


class _Marker:
    """Unpickling this creates a file: proof that a loader executed pickled code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("key", ["x", "labels"])
def test_pickled_object_array_is_refused_without_unpickling(tmp_path: Path, key: str) -> None:
    marker = tmp_path / "unpickled"
    evil = np.array([_Marker(marker)] * 2, dtype=object)
    arrays = {"x": np.zeros((2, 3, 4, 4), np.float32), key: evil}
    p = tmp_path / "evil.npz"
    np.savez(p, **arrays)  # numpy pickles object arrays when saving
    pickle.loads(pickle.dumps(_Marker(tmp_path / "control")))  # the payload does work...
    assert (tmp_path / "control").exists()
    _bad(p, f"'{key}'.*pickled data")
    assert not marker.exists()  # ...but the loader never ran it


def test_no_input_array_names_keys_found(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", pixels=_images(), labels=np.zeros(5, np.int64))
    e = _bad(tmp_path / "d.npz", "keys found: 'pixels', 'labels'")
    assert "'images'" in str(e) and "'x'" in str(e) and "'input'" in str(e)


def test_ambiguous_input(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=_images(), x=np.zeros((5, 3, 4, 4), np.float32))
    _bad(tmp_path / "d.npz", "ambiguous")


def test_wrong_rank(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=np.zeros((5, 48), np.uint8))
    _bad(tmp_path / "d.npz", "rank 2 .*rank 4")


def test_wrong_sample_shape_names_both(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=np.zeros((5, 3, 28, 28), np.uint8))
    e = _bad(tmp_path / "d.npz", "per-sample shape", shape=SHAPE)
    assert "3x28x28" in str(e) and "3x32x32" in str(e)


def test_zero_samples(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((0, 3, 4, 4), np.float32))
    _bad(tmp_path / "d.npz", "zero samples")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_array(tmp_path: Path, bad: float) -> None:
    x = np.zeros((4, 3, 4, 4), np.float32)
    x[2, 1, 0, 0] = bad
    np.savez(tmp_path / "d.npz", x=x)
    _bad(tmp_path / "d.npz", "NaN/infinite.*sample 2")


def test_float64_overflowing_float32_is_refused(tmp_path: Path) -> None:
    x = np.zeros((2, 3, 4, 4))
    x[0, 0, 0, 0] = 1e300
    np.savez(tmp_path / "d.npz", x=x)
    _bad(tmp_path / "d.npz", "infinite")


def test_integer_x_and_float_images(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=_images())
    _bad(tmp_path / "a.npz", "floating-point")
    np.savez(tmp_path / "b.npz", images=_images().astype(np.float32))
    _bad(tmp_path / "b.npz", "uint8")


@pytest.mark.parametrize("mean,std,match", [
    (np.zeros(2, np.float32), np.ones(3, np.float32), "'mean' has shape 2"),
    (np.zeros(3, np.float32), np.ones(4, np.float32), "'std' has shape 4"),
    (np.zeros((3, 1), np.float32), np.ones(3, np.float32), "'mean' has shape 3x1"),
    (np.zeros(3, np.float32), np.array([1, 0, 1], np.float32), "positive"),
    (np.array([0, np.nan, 0], np.float32), np.ones(3, np.float32), "NaN"),
])
def test_bad_mean_std(tmp_path: Path, mean: np.ndarray, std: np.ndarray, match: str) -> None:
    np.savez(tmp_path / "d.npz", images=_images(), mean=mean, std=std)
    _bad(tmp_path / "d.npz", match)


def test_mean_without_std(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=_images(), mean=np.zeros(3, np.float32))
    _bad(tmp_path / "d.npz", "'mean' is given without 'std'")


@pytest.mark.parametrize("labels,match", [
    (np.zeros(4, np.int64), "'labels' has shape 4.*5"),
    (np.zeros((5, 1), np.int64), "'labels' has shape 5x1"),
    (np.zeros(5, np.float32), "integer"),
    (np.array([0, 1, -1, 2, 3]), "non-negative"),
])
def test_bad_labels(tmp_path: Path, labels: np.ndarray, match: str) -> None:
    np.savez(tmp_path / "d.npz", images=_images(), labels=labels)
    _bad(tmp_path / "d.npz", match)
