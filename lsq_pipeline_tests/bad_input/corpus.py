"""The bad-input corpus on disk, and helpers that put its files into a source folder."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

from lsq_pipeline.warehouse.schema import EVENT_COLUMNS

CORPUS = Path(__file__).resolve().parent / "corpus"
BAD_FILES = CORPUS / "bad_files"
GOOD_FILES = CORPUS / "good_files"
ROWS = CORPUS / "rows"
DAY = date(2026, 11, 2)
EVENTS_HEADER_ONLY = (",".join(EVENT_COLUMNS) + "\n").encode()


def names(folder: Path) -> list[str]:
    """The corpus files of a folder, by name without `.csv` (the test ids)."""
    return sorted(path.stem for path in folder.glob("*.csv"))


def place(source_dir: Path, day: date, applications: Path | bytes, events: Path | bytes = EVENTS_HEADER_ONLY) -> Path:
    """One day folder holding the given files (copied byte for byte) or bytes."""
    day_dir = source_dir / day.isoformat()
    day_dir.mkdir(parents=True, exist_ok=True)
    for name, content in (("applications.csv", applications), ("events.csv", events)):
        if isinstance(content, Path):
            shutil.copyfile(content, day_dir / name)
        else:
            (day_dir / name).write_bytes(content)
    return day_dir


def expected_rejects(name: str) -> dict[str, set[tuple[str, str]]]:
    """`rows/<name>.expected.csv`: id -> {(field, reason)}; reasons may hold commas (last column)."""
    lines = (ROWS / f"{name}.expected.csv").read_text(encoding="utf-8").splitlines()[1:]
    expected: dict[str, set[tuple[str, str]]] = {}
    for line in lines:
        source_id, field, reason = line.split(",", 2)
        expected.setdefault(source_id, set()).add((field, reason))
    return expected
