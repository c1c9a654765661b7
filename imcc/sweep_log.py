"""The sweep CSV as a log: rows streamed into it as they finish, and `--resume`.

Contract:

* A sweep writes, before any compile, a settings record beside the CSV
  (``<csv>.settings.json``, atomically): every option all rows share (bit widths, tech,
  quantization, calibration, evaluation data, policy, pipeline, ...) with the sha256 of each
  file it reads (model, calibration, data, policy) and the CSV's columns. The configuration
  axes (targets, ranks, groups, mappings) are not part of it: a resumed sweep may add
  configurations.
* Then the CSV gets its header and, as each configuration finishes, its row: one
  ``write`` of the whole line, then flush and fsync, so an interrupted sweep (Ctrl-C, a
  killed process or worker, a lost cluster) leaves every finished row on disk and at most
  one incomplete last line. Rows are in completion order while the sweep runs.
* When the sweep completes, the CSV is replaced atomically by the final one: every row in
  configuration order (`imcc.report.sweep.to_csv`), byte-identical to an uninterrupted
  sweep's.
* ``--resume`` reads the existing CSV: the header must be the columns this sweep writes
  and the settings record must equal this sweep's (a clear error names what differs); rows
  are matched on the configuration key (target, rank, groups, mapping) and skipped; an
  incomplete last line is dropped (that configuration runs again). A row whose key is not
  in this sweep's plan is an error (the CSV belongs to a different sweep). Without an
  existing CSV, ``--resume`` starts a fresh sweep.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, TextIO

from imcc.errors import DataError, OutputError, UsageError
from imcc.fileio import atomic_write_bytes, parse_json
from imcc.report.sweep import SweepRow, csv_line
from imcc.report.units import safe_text

# (target, rank, groups, mapping, chip, chip arrays): a configuration's key; the chip and
# its arrays are None in a sweep without --chips.
Label = tuple[str, str, int, str, str | None, int | None]

SETTINGS_FORMAT = "imcc-sweep-settings/1"
_INT_FIELDS = {"groups", "total_cycles", "im2col_cycles", "n_arrays", "params",
               "factorized_layers", "chip_arrays", "arrays_used", "segments"}
_TEXT_FIELDS = {"target", "rank", "mapping", "chip"}
_OPTIONAL_TEXT_FIELDS = {"lowrank_method"}  # empty cell: no factorized layer (None)


def settings_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name + ".settings.json")


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (a renamed or moved input is still the same input)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from exc
    return h.hexdigest()


def label_of(row: SweepRow) -> Label:
    return row.target, row.rank, row.groups, row.mapping, row.chip, row.chip_arrays


def _cell(name: str, text: str, where: str) -> Any:
    if name in _TEXT_FIELDS:
        return text
    if name in _OPTIONAL_TEXT_FIELDS:
        return text or None
    if text == "":
        if name in _INT_FIELDS:
            raise DataError(f"{where}: column {name} is empty")
        return None
    try:
        return int(text) if name in _INT_FIELDS else float(text)
    except ValueError:
        raise DataError(f"{where}: column {name} holds {safe_text(text)!r}, not a "
                        "number") from None


def parse_rows(text: str, columns: tuple[str, ...], where: str) -> list[SweepRow]:
    """The complete rows of a (possibly interrupted) sweep CSV. Its header must be
    `columns`; an incomplete last line (no newline: the sweep was killed while writing
    it) is dropped."""
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    lines = list(csv.reader(io.StringIO(text)))
    if not lines:
        raise DataError(f"{where}: has no header line; it is not a sweep CSV",
                        hint="run without --resume to start the sweep afresh")
    if tuple(lines[0]) != columns:
        raise UsageError(f"{where}: its columns ({', '.join(map(safe_text, lines[0]))}) are "
                         f"not the ones this sweep writes ({', '.join(columns)}); it was "
                         "made by a different sweep (e.g. with or without --data)",
                         hint="run without --resume, or choose another -o")
    names = {f.name for f in fields(SweepRow)}
    rows: list[SweepRow] = []
    for n, cells in enumerate(lines[1:], start=2):
        if len(cells) != len(columns):
            raise DataError(f"{where}: line {n} has {len(cells)} cells, expected "
                            f"{len(columns)}")
        values = {c: _cell(c, v, f"{where}: line {n}") for c, v in zip(columns, cells,
                                                                        strict=True)}
        rows.append(SweepRow(**{k: v for k, v in values.items() if k in names}))
    return rows


class SweepLog:
    """The streamed CSV of one sweep (see the module docstring). `open` validates a CSV to
    resume and returns the rows already done; nothing is written until the first `append`
    (so a sweep refused before any row leaves no file), which writes the settings record,
    the header and the resumed rows; `finish` writes the final CSV."""

    def __init__(self, path: Path, columns: tuple[str, ...], record: dict[str, Any],
                 done: dict[Label, SweepRow]) -> None:
        self.path, self.columns, self._record, self._done = path, columns, record, done
        self._fh: TextIO | None = None

    @classmethod
    def open(cls, path: Path, columns: tuple[str, ...], settings: Mapping[str, Any],
             planned: Iterable[Label], resume: bool) -> tuple[SweepLog, dict[Label, SweepRow]]:
        record = {"format": SETTINGS_FORMAT, "columns": list(columns), **settings}
        done: dict[Label, SweepRow] = {}
        side = settings_path(path)
        if resume and path.exists():
            if not side.is_file():
                raise UsageError(f"--resume: {path} has no settings record {side.name} "
                                 "beside it, so whether it was made by this sweep's settings "
                                 "cannot be checked", hint="run without --resume")
            try:
                old_text = side.read_text(encoding="utf-8")
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError(f"{path}: cannot read it to resume ({exc})") from exc
            old = parse_json(old_text, str(side))
            if old != record:
                raise UsageError(f"--resume: {path} was made by different settings: "
                                 f"{_differences(old, record)}",
                                 hint="repeat the original options, or run without --resume")
            plan = set(planned)
            for row in parse_rows(text, columns, str(path)):
                key = label_of(row)
                if key not in plan:
                    name = "/".join(str(k) for k in key if k is not None)
                    raise UsageError(f"--resume: {path} holds configuration "
                                     f"{name}, which this sweep does not "
                                     "run", hint="list every configuration of the earlier "
                                     "sweep (a resumed sweep may add configurations)")
                done[key] = row
        return cls(path, columns, record, done), dict(done)

    def _write_record(self) -> None:
        atomic_write_bytes(settings_path(self.path),
                           (json.dumps(self._record, indent=1, sort_keys=True) + "\n").encode())

    def _start(self) -> TextIO:
        self._write_record()
        # The complete rows of the resumed CSV (an interrupted line is dropped), then the
        # new rows appended to them.
        body = csv_line(self.columns) + "".join(csv_line(_cells(r, self.columns))
                                                for r in self._done.values())
        atomic_write_bytes(self.path, body.encode())
        try:
            return open(self.path, "a", encoding="utf-8", newline="")
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({exc.strerror})") from exc

    def append(self, row: SweepRow) -> None:
        """Log one finished row: one write of the whole line, flushed and synced."""
        if self._fh is None:
            self._fh = self._start()
        try:
            self._fh.write(csv_line(_cells(row, self.columns)))
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({exc.strerror})") from exc

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def finish(self, final_csv: str) -> None:
        """Replace the log by the final CSV (rows in configuration order)."""
        self.close()
        self._write_record()
        atomic_write_bytes(self.path, final_csv.encode())


def _cells(row: SweepRow, columns: tuple[str, ...]) -> list[Any]:
    d = row.to_dict(with_top1=True, with_chip=True)
    return [d[c] for c in columns]


def _differences(old: object, new: Mapping[str, Any]) -> str:
    if not isinstance(old, dict):
        return "its settings record is not a JSON object"
    keys = sorted(set(old) | set(new))
    diff = [f"{k} {json.dumps(old.get(k))} -> {json.dumps(new.get(k))}" for k in keys
            if old.get(k) != new.get(k)]
    return "; ".join(diff)


__all__ = ["Label", "SweepLog", "file_digest", "label_of", "parse_rows", "settings_path"]
