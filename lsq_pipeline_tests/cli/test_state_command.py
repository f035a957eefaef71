"""`lsq-pipeline state`: the state of a DuckDB file or a PostgreSQL warehouse, read and closed at
once: the file is free for a run the moment the command ends."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pytest

from lsq_pipeline_tests.cli.test_first_run import clean_env, lsq, project

SPOILT = "APP-9999999"
NEW_HIRE = "new.hire@lendco.example"


def with_an_event_of_a_new_hire(folder: Path) -> Path:
    """The project with one event owned by a user the mapping knows and LeadSquared does not: an
    activity LeadSquared refuses."""
    mapping = folder / "data" / "mapping.yaml"
    mapping.write_text(mapping.read_text().replace(
        "    users:\n", f"    users:\n      {NEW_HIRE}: 0b6f2c1e-1a2b-4c3d-8e9f-000000000099\n", 1))
    [events] = (folder / "data" / "source").glob("*/events.csv")
    with events.open(newline="") as file:
        rows = list(csv.DictReader(file))
    rows[0]["owner_email"] = NEW_HIRE
    with events.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return folder


def with_a_spoilt_record(folder: Path) -> Path:
    """The project with one more application whose amount is no number: a `rejected` record."""
    [applications] = (folder / "data" / "source").glob("*/applications.csv")
    with applications.open(newline="") as file:
        rows = list(csv.DictReader(file))
    spoilt = {**rows[-1], "application_id": SPOILT, "amount": "lots"}
    with applications.open("a", newline="") as file:
        csv.DictWriter(file, fieldnames=list(rows[0]), lineterminator="\n").writerow(spoilt)
    return folder


def test_state_of_a_missing_warehouse_creates_nothing(tmp_path):
    folder = project(tmp_path, rows=5, days=1)
    state = lsq(folder, "state")
    assert state.returncode == 0, state.stderr
    assert "No warehouse yet" in state.stdout
    assert not (folder / "data" / "warehouse.duckdb").exists()


@pytest.mark.timeout(600)
def test_state_of_a_duckdb_file_reads_and_leaves_the_file_free(tmp_path):
    folder = with_an_event_of_a_new_hire(with_a_spoilt_record(project(tmp_path, rows=20, days=1)))
    demo = lsq(folder, "demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    warehouse = folder / "data" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        counts = dict(conn.execute("SELECT status, count(*) FROM opportunity_state GROUP BY ALL").fetchall())
        events = dict(conn.execute("SELECT status, count(*) FROM activity_state GROUP BY ALL").fetchall())
        [synced] = conn.execute("SELECT min(source_id) FROM opportunity_state WHERE status = 'in_sync'").fetchone()
    assert counts.get("in_sync") and counts.get("rejected"), counts
    assert events.get("created") and events.get("failed") == 1, events
    [day_line] = [line for line in demo.stdout.splitlines() if "  created " in line]
    assert f"activities {events['created']:3d} (1 failed)  API calls" in day_line  # a refusal is said

    state = lsq(folder, "state")
    assert state.returncode == 0, state.stderr
    assert f"{sum(counts.values())} source records" in state.stdout
    for status, count in counts.items():
        assert f"  {status:<10} {count}" in state.stdout
    assert f"{sum(events.values())} source events: created {events['created']}, failed 1" in state.stdout
    with duckdb.connect(str(warehouse)) as conn:  # read-write, at once: the command holds nothing
        conn.execute("SELECT count(*) FROM opportunity_state").fetchone()

    listed = lsq(folder, "state", "--status", "rejected")
    assert listed.returncode == 0, listed.stderr
    assert f"{counts['rejected']} records rejected:" in listed.stdout
    assert listed.stdout.splitlines()[-1 - counts["rejected"]].split() == [
        "source_id", "opportunity_id", "error", "last_synced_at"]
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(SPOILT + " ")]
    assert "amount: " in line, line  # the field and the reason it was rejected

    record = lsq(folder, "state", "--source-id", synced)
    assert record.returncode == 0, record.stderr
    assert f"{synced} in opportunity_state:" in record.stdout
    assert "status" in record.stdout and "in_sync" in record.stdout and "opportunity_id" in record.stdout
    journal = record.stdout.split(f"{synced} in push_journal")[1]
    assert "kind" in journal.splitlines()[1] and "answered_at" in journal.splitlines()[1]
    assert any(line.startswith(("create ", "capture ")) and " ok " in line for line in journal.splitlines())
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("SELECT 1").fetchone()

    none = lsq(folder, "state", "--status", "drifted")
    assert none.returncode == 0, none.stderr
    assert none.stdout.rstrip().endswith("0 records drifted.")

    rejected = lsq(folder, "state", "--source-id", SPOILT)
    assert rejected.returncode == 0, rejected.stderr
    assert f"{SPOILT} in push_journal: no rows (nothing was ever sent for it)" in rejected.stdout

    unknown = lsq(folder, "state", "--source-id", "NO-SUCH-ID")
    assert unknown.returncode == 1
    assert "no record NO-SUCH-ID" in unknown.stderr


@pytest.mark.timeout(600)
def test_state_of_a_postgres_warehouse(tmp_path, postgres_url):
    folder = project(tmp_path, rows=10, days=1)
    env = clean_env(LSQ_WAREHOUSE=postgres_url)
    demo = lsq(folder, "demo", env=env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert not (folder / "data" / "warehouse.duckdb").exists()

    state = lsq(folder, "state", env=env)
    assert state.returncode == 0, state.stderr
    assert f"PostgreSQL {postgres_url}, schema public:" in state.stdout
    assert "in_sync" in state.stdout

    synced = next(line.split()[0] for line in lsq(folder, "state", "--status", "in_sync", env=env).stdout.splitlines()
                  if line.startswith("APP"))
    record = lsq(folder, "state", "--source-id", synced, env=env)
    assert record.returncode == 0, record.stderr
    assert f"{synced} in push_journal" in record.stdout
    assert lsq(folder, "state", "--source-id", "NO-SUCH-ID", env=env).returncode == 1
