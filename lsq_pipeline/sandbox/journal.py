"""Durable sandbox state: a JSON-lines journal of committed changes, replayed and compacted at start."""

from __future__ import annotations

import json
import os
from pathlib import Path


class Journal:
    """Appends one JSON line per committed change; `sync()` flushes and fsyncs before an answer goes out."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = None

    def load(self) -> list[dict]:
        """Every record of the journal; a torn last line (a crash mid-write) is skipped."""
        if not self.path.exists():
            return []
        records = []
        with self.path.open("rb") as handle:
            for line in handle:
                try:
                    records.append(json.loads(line))
                except (ValueError, UnicodeDecodeError):
                    continue
        return records

    def compact(self, records: list[dict]) -> None:
        """Replace the journal by `records` (the current state), atomically, and reopen it for appends."""
        self.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._file = self.path.open("a", encoding="utf-8")

    def append(self, record: dict) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
