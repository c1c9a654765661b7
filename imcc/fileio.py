"""Atomic, deterministic file output.

`atomic_dir(path)` yields a fresh temporary directory beside `path`; only when the block
finishes without error is it renamed into place (an existing directory is replaced only
then, and only if it is empty or a previous imcc output: `-o ~/thesis` must never delete
a user's files). Outputs get the permissions the user's umask gives new files, not the
private mode of `tempfile`. `write_npz` writes an .npz whose bytes depend only on its
arrays (fixed zip entry timestamps, sorted keys), so identical inputs give byte-identical
files.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from imcc.errors import OutputError

_EPOCH = (1980, 1, 1, 0, 0, 0)
OUTPUT_MARKER = "report.json"  # every compiled output directory holds one


def _fresh(parent: Path, prefix: str, directory: bool) -> Path:
    """A new, uniquely named entry in `parent`, created with the umask's permissions
    (tempfile.mkdtemp/mkstemp would make it private: 0700 / 0600)."""
    while True:
        p = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            if directory:
                os.mkdir(p)
            else:
                os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return p
        except FileExistsError:
            continue


def _replaceable(d: Path) -> bool:
    """Empty, or holding a previous result (its marker file)."""
    try:
        return not any(d.iterdir()) or (d / OUTPUT_MARKER).is_file()
    except OSError:
        return False


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    dest = Path(path)
    if dest.exists() and not dest.is_dir():
        raise OutputError(f"{dest}: exists and is not a directory")
    if dest.is_dir() and not _replaceable(dest):
        raise OutputError(f"{dest}: exists and is not an imcc output directory (no "
                          f"{OUTPUT_MARKER}); refusing to replace it",
                          hint="choose a new or empty directory with -o")
    full = dest.resolve()
    parent = full.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = _fresh(parent, f".{full.name}.tmp-", directory=True)
    except OSError as exc:
        raise OutputError(f"{dest}: cannot create the output directory ({exc.strerror})") from exc
    try:
        try:
            yield tmp
        except OSError as exc:  # writing the outputs failed (disk full, permissions, ...)
            raise OutputError(f"{dest}: cannot write the outputs ({exc.strerror or exc})"
                              ) from exc
        old = None
        try:
            if full.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{full.name}.old-", dir=parent))
                os.replace(full, old / "d")
            os.replace(tmp, full)
        except OSError as exc:
            if old is not None and (old / "d").exists():
                os.replace(old / "d", full)  # put the previous result back
                shutil.rmtree(old, ignore_errors=True)
            raise OutputError(f"{dest}: cannot move the outputs into place "
                              f"({exc.strerror or exc})") from exc
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    p = Path(path)
    tmp: Path | None = None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = _fresh(p.parent, f".{p.name}.tmp-", directory=False)
        tmp.write_bytes(data)
        os.replace(tmp, p)
    except OSError as exc:
        if tmp is not None and tmp.exists():
            tmp.unlink()  # no partial file left behind
        raise OutputError(f"{p}: cannot write ({exc.strerror})") from exc


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(key + ".npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            zf.writestr(info, arr.getvalue())
    return buf.getvalue()
