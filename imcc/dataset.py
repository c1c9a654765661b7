"""Data files (``--calib`` / ``--data``): a numpy ``.npz`` archive, loaded without unpickling.

Accepted layouts (exactly one input array per file):

* ``images``: uint8, ``N x C x H x W`` (any rank equal to the model input's), pixel values
  0..255, plus optional ``mean`` and ``std`` (one value per channel, channel = axis 1; both
  or neither). The model input is ``(images / 255 - mean) / std``, computed in float32 --
  the torchvision ``ToTensor()`` + ``Normalize(mean, std)`` recipe. Without mean/std it is
  ``images / 255``.
* a floating-point array under the model's input name or under ``x``: used as is (cast to
  float32); it must be finite.

Optional ``labels``: integer class indices, one per sample. Other keys (e.g. ``classes``)
are ignored and never read.

The file is always opened with ``allow_pickle=False``: an archive holding object arrays is
refused when such an array is read, never unpickled. Before an array is read, its declared
size (zip entry and .npy header) is checked against ``max_data_bytes()`` (4 GiB, or the
``IMCC_MAX_DATA_BYTES`` environment variable), so a header claiming 2^40 samples or a zip
bomb is refused before memory is taken; encrypted members and unknown compression methods
are refused too. The model input must be finite and at most ``MAX_INPUT_MAGNITUDE`` in
magnitude after normalization (a ``std`` of 1e-45 or a ``mean`` of -3e38 would otherwise
reach the crossbars as inf/NaN). Every problem is a :class:`imcc.errors.DataError` with a
one-line message.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imcc.errors import DataError, UsageError

EXAMPLE_DATA = "cifar10_test_500.npz"
DEFAULT_MAX_DATA_BYTES = 4 << 30
# Normalized inputs beyond this are a mistake (a std near 0, a huge mean), not data: their
# integer activation levels and float32 column sums would overflow or lose all precision.
MAX_INPUT_MAGNITUDE = 1e6


def max_data_bytes() -> int:
    """The largest array a data file may declare, in bytes (``IMCC_MAX_DATA_BYTES``)."""
    raw = os.environ.get("IMCC_MAX_DATA_BYTES")
    if raw is None:
        return DEFAULT_MAX_DATA_BYTES
    try:
        v = int(raw)
    except ValueError:
        v = 0
    if v < 1:
        raise UsageError(f"IMCC_MAX_DATA_BYTES={raw!r} must be a positive integer (bytes)")
    return v


def bundled_example_data() -> Path:
    """Path of the CIFAR-10 sample shipped inside the package (500 test images, labels,
    mean/std for the bundled ResNet-20)."""
    p = Path(__file__).resolve().parent / "examples" / EXAMPLE_DATA
    if not p.is_file():
        raise DataError(f"the bundled example data {p} is missing", "reinstall imcc")
    return p


# Data files shipped inside the package, by the name that may stand for their path
# (`--calib cifar10`, `--data cifar10`); a file of that name in the working directory wins.
BUNDLED_DATA = {"cifar10": EXAMPLE_DATA}


def resolve_data(spec: str | Path) -> Path:
    """A data file's path, or the bundled data file a name (`cifar10`) stands for."""
    p = Path(spec)
    if str(spec) in BUNDLED_DATA and not p.exists():
        return bundled_example_data()
    return p


@dataclass(frozen=True, eq=False)
class Dataset:
    """Model inputs ``x`` (float32, batch on axis 0), optional ``labels`` (int64, one per
    sample) and a human-readable ``source`` (file name, plus the slice taken)."""

    x: np.ndarray
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def _slice(self, lo: int, hi: int) -> Dataset:
        labels = None if self.labels is None else self.labels[lo:hi]
        return Dataset(self.x[lo:hi], labels, f"{self.source}[{lo}:{hi}]")

    def split(self, n_first: int) -> tuple[Dataset, Dataset]:
        """The first ``n_first`` samples and the rest (e.g. calibration / evaluation)."""
        n = len(self)
        if not 0 < n_first < n:
            raise UsageError(f"cannot split {n} samples after {n_first}: both parts must be "
                             f"non-empty (choose 1..{n - 1})")
        return self._slice(0, n_first), self._slice(n_first, n)

    def take(self, limit: int) -> Dataset:
        """The first ``min(limit, len(self))`` samples."""
        if limit < 1:
            raise UsageError(f"cannot take {limit} samples: the limit must be at least 1")
        return self if limit >= len(self) else self._slice(0, limit)


def _shape(s: tuple[int | None, ...]) -> str:
    return "x".join("N" if d is None else str(d) for d in s) if s else "scalar"


def _declared_size(z: np.lib.npyio.NpzFile, key: str, where: str) -> None:
    """Refuse a member whose zip entry or .npy header declares more than the limit."""
    limit = max_data_bytes()
    zf = z.zip
    if zf is None:
        return
    name = key if key in zf.namelist() else key + ".npy"
    try:
        info = zf.getinfo(name)
    except KeyError:
        return  # numpy will report it
    hint = "raise IMCC_MAX_DATA_BYTES (bytes) if the file is genuine"
    if info.flag_bits & 0x1:
        raise DataError(f"{where}: array '{key}' is encrypted", "store it unencrypted")
    if info.file_size > limit:
        raise DataError(f"{where}: array '{key}' inflates to {info.file_size} bytes, more "
                        f"than the limit of {limit}", hint)
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f, max_header_size=1 << 16)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError,
            NotImplementedError) as exc:
        raise DataError(f"{where}: array '{key}' is unreadable: {exc}") from exc
    n = 1
    for d in shape:
        n *= int(d)
    declared = n * dtype.itemsize
    if declared > limit or declared > info.file_size:
        raise DataError(f"{where}: array '{key}' declares shape {_shape(tuple(shape))} "
                        f"({declared} bytes) but the file holds {info.file_size} bytes "
                        f"(limit {limit})" if declared <= limit else
                        f"{where}: array '{key}' declares shape {_shape(tuple(shape))} "
                        f"({declared} bytes), more than the limit of {limit}", hint)


def _read(z: np.lib.npyio.NpzFile, key: str, where: str) -> np.ndarray:
    """One array of the archive; object arrays and corrupt members become DataError."""
    _declared_size(z, key, where)
    try:
        return np.asarray(z[key])
    except ValueError as exc:
        # numpy refuses object arrays under allow_pickle=False with a ValueError.
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise DataError(f"{where}: array '{key}' holds Python objects (pickled data); "
                            "imcc never unpickles data files",
                            "store plain numeric arrays") from exc
        raise DataError(f"{where}: array '{key}' is unreadable: {exc}") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError,
            NotImplementedError) as exc:
        # RuntimeError: an encrypted member; NotImplementedError: unknown compression.
        raise DataError(f"{where}: array '{key}' is corrupt or unsupported: {exc}") from exc


def _per_channel(a: np.ndarray, key: str, channels: int, where: str) -> np.ndarray:
    """mean/std as a float32 vector broadcastable over axis 1 of the images."""
    if a.dtype.kind not in "fiu":
        raise DataError(f"{where}: '{key}' must be numeric, got {a.dtype}")
    flat = a.astype(np.float32).reshape(-1)
    if a.ndim > 1 or flat.size not in (1, channels):
        raise DataError(f"{where}: '{key}' has shape {_shape(a.shape)}; expected one value per "
                        f"channel ({channels}) or a single value")
    if not np.all(np.isfinite(flat)):
        raise DataError(f"{where}: '{key}' contains NaN or infinity")
    return flat


def load_npz(path: str | Path, input_name: str, input_shape: tuple[int | None, ...]) -> Dataset:
    """Load a data file for a model whose single input is ``input_name`` with shape
    ``input_shape`` (``None`` for unknown dimensions, normally the batch). Only the
    per-sample shape is checked; the batch size is free. ``path`` may be the name of a
    bundled data file (`BUNDLED_DATA`)."""
    p = resolve_data(path)
    where = str(p)
    if not p.exists():
        raise DataError(f"{where}: no such file")
    if not p.is_file():
        raise DataError(f"{where}: not a file (expected an .npz archive)")
    try:
        loaded = np.load(p, allow_pickle=False)
    except ValueError as exc:
        # Not zip and not .npy: numpy would fall back to unpickling, which is refused.
        raise DataError(f"{where}: not an .npz archive (neither a zip archive nor a .npy "
                        "array)", "write it with numpy.savez") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{where}: not a readable .npz archive ({exc})") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(f"{where}: is a single .npy array, expected an .npz archive with "
                        f"'images' or 'x'", "save it with numpy.savez(path, x=array)")
    with loaded as z:
        return _load(z, where, input_name, tuple(input_shape))


def _load(z: np.lib.npyio.NpzFile, where: str, input_name: str,
          input_shape: tuple[int | None, ...]) -> Dataset:
    keys = list(z.files)
    found = ", ".join(f"'{k}'" for k in keys) or "none"
    names = ["images", input_name] + (["x"] if input_name != "x" else [])
    present = [k for k in names if k in keys]
    floats = f"'{input_name}' or 'x'" if input_name != "x" else "'x'"
    expected = (f"'images' (uint8 N x C x H x W, optional 'mean'/'std'), or a float array "
                f"{floats}")
    if not present:
        raise DataError(f"{where}: no input array (keys found: {found}); expected {expected}")
    if len(present) > 1:
        raise DataError(f"{where}: ambiguous input, found {' and '.join(present)}; keep exactly "
                        f"one of {expected}")
    key = present[0]
    raw = _read(z, key, where)

    if raw.ndim != len(input_shape):
        raise DataError(f"{where}: '{key}' has rank {raw.ndim} (shape {_shape(raw.shape)}), the "
                        f"model input '{input_name}' has rank {len(input_shape)} "
                        f"({_shape(input_shape)})")
    want, got = input_shape[1:], raw.shape[1:]
    if any(w is not None and w != g for w, g in zip(want, got, strict=True)):
        raise DataError(f"{where}: per-sample shape {_shape(got)} of '{key}' does not match the "
                        f"model input '{input_name}' ({_shape(want)})")
    if raw.shape[0] == 0:
        raise DataError(f"{where}: '{key}' holds zero samples")

    if key == "images":
        x = _normalize_images(z, raw, where, keys)
    else:
        if raw.dtype.kind != "f":
            raise DataError(f"{where}: '{key}' must be a floating-point array, got {raw.dtype}",
                            "store uint8 pixels under 'images' instead")
        with np.errstate(over="ignore"):  # overflow to inf is reported just below
            x = raw.astype(np.float32)
        bad = ~np.isfinite(x)
        if bad.any():
            first = int(np.argmax(bad.reshape(x.shape[0], -1).any(axis=1)))
            raise DataError(f"{where}: '{key}' contains {int(bad.sum())} NaN/infinite values "
                            f"(first in sample {first})")

    _check_magnitude(x, key, where)
    labels = _labels(z, where, keys, int(x.shape[0]))
    return Dataset(np.ascontiguousarray(x), labels, where)


def _check_magnitude(x: np.ndarray, key: str, where: str) -> None:
    with np.errstate(all="ignore"):
        big = ~(np.abs(x) <= MAX_INPUT_MAGNITUDE)  # also catches NaN and inf
    if big.any():
        first = int(np.argmax(big.reshape(x.shape[0], -1).any(axis=1)))
        what = "normalized " if key == "images" else ""
        raise DataError(f"{where}: the {what}model input holds {int(big.sum())} values that are "
                        f"not finite or exceed {MAX_INPUT_MAGNITUDE:g} in magnitude (first in "
                        f"sample {first})", "check 'mean'/'std'" if key == "images" else None)


def _normalize_images(z: np.lib.npyio.NpzFile, images: np.ndarray, where: str,
                      keys: list[str]) -> np.ndarray:
    if images.dtype != np.uint8:
        raise DataError(f"{where}: 'images' must be uint8 pixels 0..255, got {images.dtype}",
                        "store already-normalized floats under 'x' instead")
    x = images.astype(np.float32) / np.float32(255.0)
    has_mean, has_std = "mean" in keys, "std" in keys
    if has_mean != has_std:
        given, missing = ("mean", "std") if has_mean else ("std", "mean")
        raise DataError(f"{where}: '{given}' is given without '{missing}'; give both or neither")
    if not has_mean:
        return x
    if images.ndim < 2:
        raise DataError(f"{where}: 'mean'/'std' need a channel axis (axis 1) in 'images'")
    channels = int(images.shape[1])
    shp = (1, -1) + (1,) * (images.ndim - 2)
    mean = _per_channel(_read(z, "mean", where), "mean", channels, where)
    std = _per_channel(_read(z, "std", where), "std", channels, where)
    if np.any(std <= 0):
        raise DataError(f"{where}: 'std' must be positive, got {std.tolist()}")
    with np.errstate(all="ignore"):  # overflow is reported by _check_magnitude
        return (x - mean.reshape(shp)) / std.reshape(shp)


def _labels(z: np.lib.npyio.NpzFile, where: str, keys: list[str], n: int) -> np.ndarray | None:
    if "labels" not in keys:
        return None
    lab = _read(z, "labels", where)
    if lab.dtype.kind not in "iu":
        raise DataError(f"{where}: 'labels' must be integer class indices, got {lab.dtype}")
    if lab.shape != (n,):
        raise DataError(f"{where}: 'labels' has shape {_shape(lab.shape)}; expected one label "
                        f"per sample ({n})")
    if lab.size and int(lab.min()) < 0:
        raise DataError(f"{where}: 'labels' must be non-negative class indices, "
                        f"found {int(lab.min())}")
    return lab.astype(np.int64)
