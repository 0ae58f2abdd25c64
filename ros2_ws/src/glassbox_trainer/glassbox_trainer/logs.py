"""The run's CSV logs: ``train_log.csv`` (every step), ``eval.csv`` (every evaluation), ``entropy.csv``.

Rows are appended and flushed (fsync) with every checkpoint; on resume the rows after the checkpoint's step
(written before a crash, complete or not) are dropped, so a resumed run writes the same logs as an
uninterrupted one.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TRAIN_LOG, EVAL_LOG, ENTROPY_LOG = "train_log.csv", "eval.csv", "entropy.csv"


class CsvLog:
    """An append-only CSV file with a fixed header (from the first row); flushed on :meth:`sync`."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None
        self._writer: csv.DictWriter | None = None

    def write(self, row: Mapping[str, Any]) -> None:
        if self._writer is None:
            exists = self.path.exists() and self.path.stat().st_size > 0
            if exists:
                with open(self.path, newline="") as fh:
                    header = next(csv.reader(fh))
            else:
                header = list(row)
            self._fh = open(self.path, "a", newline="")
            self._writer = csv.DictWriter(self._fh, fieldnames=header, extrasaction="ignore", restval="")
            if not exists:
                self._writer.writeheader()
        self._writer.writerow({k: (repr(float(v)) if isinstance(v, float) else v) for k, v in row.items()})

    def sync(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh, self._writer = None, None


def truncate_log(path: Path, max_step: int) -> None:
    """Keep the header and the complete rows with ``step <= max_step`` (rows a crash left behind go)."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    header, keep = rows[0], [rows[0]]
    for row in rows[1:]:
        if len(row) != len(header):
            continue
        try:
            if int(row[0]) <= max_step:
                keep.append(row)
        except ValueError:
            continue
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerows(keep)
    os.replace(tmp, path)


def read_log(path: str | Path) -> list[dict[str, float]]:
    """Rows of a CSV log as dicts of floats (empty cells skipped)."""
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]


class RunLogs:
    """The three logs of a run folder; only the main process writes them."""

    def __init__(self, out: Path):
        self.train, self.eval, self.entropy = (CsvLog(out / n) for n in (TRAIN_LOG, EVAL_LOG, ENTROPY_LOG))

    def truncate(self, max_step: int) -> None:
        for log in (self.train, self.eval, self.entropy):
            truncate_log(log.path, max_step)

    def sync(self) -> None:
        for log in (self.train, self.eval, self.entropy):
            log.sync()

    def close(self) -> None:
        for log in (self.train, self.eval, self.entropy):
            log.close()
