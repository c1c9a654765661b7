"""Atomic, deterministic file output.

`atomic_dir(path)` yields a fresh temporary directory beside `path`; only when the block
finishes without error is it renamed into place. An existing directory is replaced only
then, and only if it is empty or carries the stamp file imcc writes into every output
(`.imcc-output`): a directory that merely holds a `report.json` is a user's, and `-o
~/thesis` must never delete a user's files. Nor may it delete the inputs it reads
(`protect`: e.g. the model, when it lies inside the old output). While a block runs, a lock
file beside `path` (`.NAME.lock`, flock'ed, removed afterwards) makes a second writer of the
same output fail at once instead of racing. If the previous output cannot be removed after
the new one is in place, that is an error naming what is left, not a silent leftover.
Outputs get the permissions the user's umask gives new files, not the
private mode of `tempfile`. `write_npz` writes an .npz whose bytes depend only on its
arrays (fixed zip entry timestamps, sorted keys), so identical inputs give byte-identical
files.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import secrets
import shutil
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the package depends on tomli below 3.11
    import tomli as tomllib

from imcc.errors import DataError, OutputError

_EPOCH = (1980, 1, 1, 0, 0, 0)
OUTPUT_STAMP = ".imcc-output"  # written into every output directory imcc creates
STAMP_FORMAT = "imcc-output/1"


def _candidate(parent: Path, prefix: str) -> Path:
    return parent / f"{prefix}{secrets.token_hex(6)}"


def _create(p: Path, directory: bool) -> None:
    """Create `p` (FileExistsError if it exists) with the umask's permissions
    (tempfile.mkdtemp/mkstemp would make it private: 0700 / 0600)."""
    if directory:
        os.mkdir(p)
    else:
        os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))


def _fresh(parent: Path, prefix: str, directory: bool) -> Path:
    """A new, uniquely named entry in `parent` (see `_create`)."""
    while True:
        p = _candidate(parent, prefix)
        try:
            _create(p, directory)
            return p
        except FileExistsError:
            continue


def _replaceable(d: Path) -> bool:
    """Empty, or an output imcc wrote (its stamp file)."""
    try:
        return not any(d.iterdir()) or (d / OUTPUT_STAMP).is_file()
    except OSError:
        return False


def _digests(d: Path) -> dict[str, str]:
    """sha256 of every regular file of an output directory but the stamp, by name."""
    out = {}
    for p in sorted(d.iterdir()):
        if p.is_file() and p.name != OUTPUT_STAMP:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[p.name] = h.hexdigest()
    return out


def _write_stamp(d: Path) -> None:
    """The stamp marks the directory as imcc's and records what it wrote."""
    doc = {"format": STAMP_FORMAT, "sha256": _digests(d)}
    (d / OUTPUT_STAMP).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def verify_output(d: str | Path, names: Sequence[str]) -> None:
    """Refuse (DataError) an output directory whose files `names` differ from what imcc
    wrote into it (a swapped compiled.onnx, an edited program). A directory without a
    stamp (written before stamps existed) is not checked."""
    d = Path(d)
    stamp = d / OUTPUT_STAMP
    if not stamp.is_file():
        return
    try:
        doc = parse_json(stamp.read_text(), str(stamp))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{stamp}: unreadable ({exc})") from exc
    recorded = doc.get("sha256") if isinstance(doc, dict) else None
    if not isinstance(recorded, dict):
        raise DataError(f"{stamp}: not an {STAMP_FORMAT} stamp", "recompile with `imcc compile`")
    now = _digests(d)
    changed = [n for n in names if n in recorded and now.get(n) != recorded[n]]
    if changed:
        raise DataError(f"{d}: {', '.join(changed)} of the compiled output changed since "
                        f"imcc wrote {'it' if len(changed) == 1 else 'them'} (sha256 differs "
                        f"from {OUTPUT_STAMP})", "recompile with `imcc compile` instead of "
                        "editing or swapping outputs")


def _stem(name: str) -> str:
    """`name`, shortened for the names of its temporary and lock files (which add up to 20
    characters) so that any name the file system allows stays usable; a digest keeps
    different long names apart."""
    if len(name) <= 200:
        return name
    return f"{name[:180]}~{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def _inside(p: Path, d: Path) -> bool:
    try:
        p.resolve().relative_to(d)
        return True
    except (ValueError, OSError):
        return False


@contextmanager
def _output_lock(parent: Path, name: str, dest: Path) -> Iterator[None]:
    """An exclusive, non-blocking flock on `parent/.name.lock` for the block's duration.
    The kernel drops it if the process dies, so a crash never leaves a stale lock."""
    lock = parent / f".{_stem(name)}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o666)
        except OSError as exc:
            raise OutputError(f"{dest}: cannot create the lock file {lock} "
                              f"({exc.strerror})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"{dest}: another imcc process is writing this output "
                              f"(lock {lock})", hint="wait for it, or choose another "
                              "directory with -o") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed it between our open and flock: take a new one
    try:
        yield
    finally:
        try:
            os.unlink(lock)
        finally:
            os.close(fd)


@contextmanager
def atomic_dir(path: str | Path, protect: Sequence[str | Path] = ()) -> Iterator[Path]:
    dest = Path(path)
    try:
        os.stat(dest)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, no permission...
        raise OutputError(f"{str(dest)[:80]}: unusable output path "
                          f"({getattr(exc, 'strerror', None) or exc})") from None
    if dest.exists() and not dest.is_dir():
        raise OutputError(f"{dest}: exists and is not a directory")
    full = dest.resolve()
    for p in protect:
        if Path(p).exists() and _inside(Path(p), full):
            raise OutputError(f"{dest}: holds the input {p}; writing the outputs there would "
                              "delete it", hint="choose another directory with -o")
    if dest.is_dir() and not _replaceable(dest):
        raise OutputError(f"{dest}: exists, is not empty and was not written by imcc (no "
                          f"{OUTPUT_STAMP} stamp); refusing to replace it",
                          hint="choose a new or empty directory with -o")
    parent = full.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{dest}: cannot create the output directory ({exc.strerror})") from exc
    with _output_lock(parent, full.name, dest):
        # Checked again under the lock: another writer may have finished meanwhile.
        if dest.is_dir() and not _replaceable(dest):
            raise OutputError(f"{dest}: exists and was not written by imcc; refusing to "
                              "replace it", hint="choose a new or empty directory with -o")
        tmp: Path | None = None
        try:
            try:
                # Named before it is created: a signal (the CLI raises it as an exception)
                # landing just after the mkdir still finds `tmp` for the clean-up below.
                while True:
                    tmp = _candidate(parent, f".{_stem(full.name)}.tmp-")
                    try:
                        _create(tmp, directory=True)
                        break
                    except FileExistsError:
                        tmp = None
            except OSError as exc:
                raise OutputError(f"{dest}: cannot create the output directory "
                                  f"({exc.strerror})") from exc
            try:
                yield tmp
                _write_stamp(tmp)
            except OSError as exc:  # writing the outputs failed (disk full, permissions, ...)
                raise OutputError(f"{dest}: cannot write the outputs ({exc.strerror or exc})"
                                  ) from exc
            old = None
            try:
                if full.exists():
                    old = Path(tempfile.mkdtemp(prefix=f".{_stem(full.name)}.old-",
                                                dir=parent))
                    os.replace(full, old / "d")
                os.replace(tmp, full)
            except OSError as exc:
                if old is not None and (old / "d").exists():
                    os.replace(old / "d", full)  # put the previous result back
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
                raise OutputError(f"{dest}: cannot move the outputs into place "
                                  f"({exc.strerror or exc})") from exc
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
                if old.exists():
                    raise OutputError(f"{dest}: the outputs are in place, but the previous "
                                      f"output could not be removed: {old} is left over",
                                      hint="remove it by hand")
        except BaseException:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    p = Path(path)
    tmp: Path | None = None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        while True:  # named before it is created, as in atomic_dir
            tmp = _candidate(p.parent, f".{p.name}.tmp-")
            try:
                _create(tmp, directory=False)
                break
            except FileExistsError:
                tmp = None
        tmp.write_bytes(data)
        os.replace(tmp, p)
    except BaseException as exc:
        if tmp is not None and tmp.exists():
            tmp.unlink()  # no partial file left behind, also when interrupted
        if isinstance(exc, OSError):
            raise OutputError(f"{p}: cannot write ({exc.strerror})") from exc
        raise


NPZ_LEVEL = 1  # deflate level of .npz members (level 6, zlib's default, is ~6x slower)


@dataclass(frozen=True)
class Stacked:
    """An .npz member given as parts: the concatenation of `parts` along axis 0, written
    part by part into the member (never concatenated in memory). Every part has the same
    dtype and the same shape after axis 0."""

    parts: tuple[np.ndarray, ...]
    dtype: np.dtype[Any]
    tail: tuple[int, ...] = ()

    @staticmethod
    def of(parts: Sequence[np.ndarray], dtype: Any, tail: tuple[int, ...] = ()) -> Stacked:
        dt = np.dtype(dtype)
        ps = tuple(np.ascontiguousarray(a, dtype=dt) for a in parts)
        for a in ps:
            if a.shape[1:] != tail:
                raise ValueError(f"part of shape {a.shape} does not stack on {tail}")
        return Stacked(ps, dt, tail)

    @property
    def shape(self) -> tuple[int, ...]:
        return (sum(int(a.shape[0]) for a in self.parts),) + self.tail


def _write_member(member: IO[bytes], value: np.ndarray | Stacked) -> None:
    if not isinstance(value, Stacked):
        np.lib.format.write_array(member, np.ascontiguousarray(value), allow_pickle=False)
        return
    # The header np.save writes for the whole array, then each part's bytes in order:
    # byte-identical to write_array on the concatenation.
    header = {"descr": np.lib.format.dtype_to_descr(value.dtype), "fortran_order": False,
              "shape": value.shape}
    np.lib.format.write_array_header_1_0(member, header)
    for a in value.parts:
        if a.size:
            member.write(a.data)  # contiguous (Stacked.of): written as its bytes


DEFLATE_CHUNK = 1 << 20  # bytes of a member compressed as one independent piece


class ChunkedDeflate:
    """A stand-in for the raw-deflate compressor of one zip member that compresses it in
    DEFLATE_CHUNK-byte pieces on `work_threads()` threads (zlib releases the GIL): each
    piece is a deflate stream of its own, ended by a sync flush (a byte-aligned, non-final
    empty block) and the last by a final block, so their concatenation is one valid
    deflate stream, as pigz writes. The pieces are cut at fixed byte offsets of the
    member, so the bytes do not depend on the thread count or on how the member is
    written. A large write is compressed from views of its buffer (never copied whole, which
    would add the largest program array to the peak memory), all before `compress`
    returns; the pieces of small writes are copies, at most two per thread in flight.
    Measured on the ResNet-50-shaped program (125 MB of members): the same size as one
    stream (24.2 vs 24.0 MB)."""

    def __init__(self, level: int) -> None:
        from concurrent.futures import Future, ThreadPoolExecutor

        from imcc.threads import work_threads

        self.level = level
        self.threads = work_threads()
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        self.pending: list[bytes | Future[bytes]] = []
        self.buf = bytearray()

    def _piece(self, data: bytes | memoryview, last: bool) -> bytes:
        c = zlib.compressobj(self.level, zlib.DEFLATED, -zlib.MAX_WBITS)
        return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

    def _submit(self, data: bytes | memoryview, last: bool) -> None:
        self.pending.append(self._piece(data, last) if self.pool is None
                            else self.pool.submit(self._piece, data, last))

    def _drain(self, keep: int) -> bytes:
        out = []
        while len(self.pending) > keep:
            p = self.pending.pop(0)
            out.append(p if isinstance(p, bytes) else p.result())
        return b"".join(out)

    def compress(self, data: Any) -> bytes:
        mv = memoryview(data).cast("B")  # zipfile hands over the array's buffer
        out = []
        if self.buf:  # top up the piece a smaller write left
            take = DEFLATE_CHUNK - len(self.buf)
            self.buf += mv[:take]
            mv = mv[take:]
            if len(self.buf) == DEFLATE_CHUNK:
                self._submit(bytes(self.buf), last=False)
                self.buf = bytearray()
        borrowed = 0  # pieces that are views of `data`: compressed before returning
        while len(mv) >= DEFLATE_CHUNK:
            self._submit(mv[:DEFLATE_CHUNK], last=False)  # no copy of a large array
            mv = mv[DEFLATE_CHUNK:]
            borrowed += 1
            out.append(self._drain(keep=2 * self.threads))
        if borrowed:
            out.append(self._drain(keep=0))
        self.buf += mv
        out.append(self._drain(keep=2 * self.threads))
        return b"".join(out)

    def flush(self) -> bytes:
        self._submit(bytes(self.buf), last=True)
        self.buf = bytearray()
        try:
            return self._drain(keep=0)
        finally:
            if self.pool is not None:
                self.pool.shutdown()


def _write_npz_to(fileobj: BinaryIO, arrays: Mapping[str, np.ndarray | Stacked]) -> None:
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(key + ".npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            # zf.open takes the level from the entry (3.13 renamed the attribute)
            setattr(info, "compress_level" if hasattr(info, "compress_level")
                    else "_compresslevel", NPZ_LEVEL)
            info.external_attr = 0o644 << 16
            value = arrays[key]
            size = int(np.prod(value.shape, dtype=np.int64)) * value.dtype.itemsize
            # Streamed into the member: no serialized copy of the array is kept. (A member
            # past 2 GiB needs zip64 entries, which zipfile only writes when told upfront.)
            with zf.open(info, "w", force_zip64=size + (1 << 16) > zipfile.ZIP64_LIMIT
                         ) as member:
                # zipfile has no public hook for the compressor; its writer calls
                # compress()/flush() of `_compressor` (3.10-3.13), so a ChunkedDeflate
                # stands in for zlib's (a Python without the attribute keeps zlib's own).
                if getattr(member, "_compressor", None) is not None:
                    member._compressor = ChunkedDeflate(NPZ_LEVEL)  # type: ignore[attr-defined]
                _write_member(member, value)


def npz_bytes(arrays: Mapping[str, np.ndarray | Stacked]) -> bytes:
    """An .npz (zip of .npy members, sorted, fixed timestamps) as bytes."""
    buf = io.BytesIO()
    _write_npz_to(buf, arrays)
    return buf.getvalue()


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray | Stacked]) -> None:
    """The same bytes as `npz_bytes`, written straight to `path` (for large programs)."""
    with open(path, "wb") as f:
        _write_npz_to(f, arrays)


# ------------------------------------------------------------------ structured input files

MAX_NESTING = 64         # tables/lists inside one another in any JSON/TOML file imcc reads
MAX_INT = (1 << 63) - 1  # integers beyond int64 are no legitimate count or size


def check_structure(obj: object, label: str) -> None:
    """Refuse parsed JSON/TOML nested deeper than MAX_NESTING or holding integers beyond
    int64 (they would raise OverflowError in float arithmetic later), iteratively."""
    stack: list[tuple[object, int]] = [(obj, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict | list):
            if depth >= MAX_NESTING:
                raise DataError(f"{label}: nested more than {MAX_NESTING} levels deep")
            items = v.values() if isinstance(v, dict) else v
            stack.extend((x, depth + 1) for x in items)
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
            raise DataError(f"{label}: integer {str(v)[:20]}... is out of range "
                            f"(at most {MAX_INT})")


def parse_json(text: str, label: str) -> object:
    """json.loads with one-line DataErrors (syntax, recursion, huge numbers)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{label}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    except RecursionError:
        raise DataError(f"{label}: nested more than {MAX_NESTING} levels deep") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise DataError(f"{label}: invalid JSON ({exc})") from exc
    check_structure(obj, label)
    return obj


def parse_toml(data: bytes | str, label: str) -> dict[str, Any]:
    """tomllib.loads with one-line DataErrors (encoding, syntax, nesting, huge numbers)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        raw = tomllib.loads(text)
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: not UTF-8 text") from e
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"{label}: malformed TOML: {' '.join(str(e).split())}") from e
    except RecursionError:
        raise DataError(f"{label}: nested too deeply") from None
    check_structure(raw, label)
    return raw
