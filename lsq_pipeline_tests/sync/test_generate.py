"""The generator: same arguments, same bytes; the shape of the day folders."""

from __future__ import annotations

import csv
import hashlib
from datetime import date
from pathlib import Path

from lsq_pipeline.cli import main
from lsq_pipeline.demo.generate import generate
from lsq_pipeline.warehouse.schema import APPLICATION_COLUMNS, EVENT_COLUMNS


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.csv")):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_same_arguments_same_bytes(tmp_path: Path):
    generate(tmp_path / "a", 600, 5, seed=11)
    generate(tmp_path / "b", 600, 5, seed=11)
    generate(tmp_path / "c", 600, 5, seed=12)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_shape_of_the_day_folders(tmp_path: Path):
    counts = generate(tmp_path, 1000, 4, seed=3, start_day=date(2026, 12, 30), dirty_rate=0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2026-12-30", "2026-12-31", "2027-01-01", "2027-01-02"]
    applications = []
    for day_dir in sorted(tmp_path.iterdir()):
        with (day_dir / "applications.csv").open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            assert tuple(reader.fieldnames) == APPLICATION_COLUMNS
            applications += [(day_dir.name, row) for row in reader]
        with (day_dir / "events.csv").open(encoding="utf-8", newline="") as handle:
            assert tuple(csv.DictReader(handle).fieldnames) == EVENT_COLUMNS
    assert len(applications) == counts["applications"] == 1000
    ids_by_day = {}
    for day, row in applications:
        ids_by_day.setdefault(row["application_id"], set()).add(day)
    assert any(len(days) > 1 for days in ids_by_day.values()), "later days update earlier applications"
    assert counts["dirty"] > 50 and counts["duplicates"] > 0
    assert any(not row["applicant_name"].isascii() for _, row in applications)


def test_cli_prints_what_it_wrote(tmp_path: Path, capsys):
    assert main(["generate", "--rows", "50", "--days", "2", "--seed", "1", "--out", str(tmp_path),
                 "--start-day", "2026-11-05", "--dirty-rate", "0"]) == 0
    assert "wrote 50 application rows" in capsys.readouterr().out
    assert (tmp_path / "2026-11-06" / "events.csv").is_file()
