"""A real PostgreSQL table as the source, synced from a dg project by `lsq-pipeline sync`: a snapshot
after an update, an insert and a delete (one Bulk Update of the changed fields, one create, one
record gone from source with nothing sent); a table split into days by a column, backfilled over
three days in one run with the range read in PostgreSQL; a snapshot that lost half its rows,
stopped by the gone-share check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from lsq_pipeline_tests.postgres import PostgresServer
from lsq_pipeline_tests.sources.dg_project import TeamProject

TABLE = "crm.loan_applications"
COLUMNS = ("application_id", "applicant_name", "email", "phone", "product", "amount", "stage", "owner_email",
           "created_at", "updated_at")
CREATE_TABLE = f"""
CREATE SCHEMA crm;
CREATE TABLE {TABLE} (
    application_id text NOT NULL, applicant_name text, email text, phone text, product text,
    amount bigint, stage text, owner_email text, created_at timestamptz, updated_at timestamptz
);
CREATE INDEX ON {TABLE} (updated_at);
"""
OWNERS = ("priya.sharma@lendco.example", "arjun.mehta@lendco.example", "meera.iyer@lendco.example")
PRODUCTS = ("Personal Loan", "Home Loan", "Auto Loan")
STAGES = ("New", "Documents Pending", "Under Review")
FIRST_DAY = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def crm(postgres_server: PostgresServer) -> Iterator[tuple[PostgresServer, str]]:
    """A new database holding an empty `crm.loan_applications`: the server and the database's name."""
    database = postgres_server.new_database("crm")
    postgres_server.psql(CREATE_TABLE, database)
    return postgres_server, database


def application(number: int, updated_at: datetime, amount: int | None = None) -> dict:
    """One loan application of the demo mapping's shape."""
    return {"application_id": f"APP-{number:07d}", "applicant_name": f"Applicant Number{number}",
            "email": f"applicant{number}@mail.example", "phone": f"09{number:09d}",
            "product": PRODUCTS[number % 3], "amount": amount or 100000 + number * 1000,
            "stage": STAGES[number % 3], "owner_email": OWNERS[number % 3],
            "created_at": updated_at - timedelta(minutes=30), "updated_at": updated_at}


def insert(crm: tuple[PostgresServer, str], rows: list[dict]) -> None:
    server, database = crm

    def literal(value) -> str:
        if isinstance(value, int):
            return str(value)
        text = value.isoformat() if isinstance(value, datetime) else value
        return "'" + text.replace("'", "''") + "'"

    values = ",\n".join("(" + ", ".join(literal(row[column]) for column in COLUMNS) + ")" for row in rows)
    server.psql(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES {values}", database)


def add_account(team: TeamProject, crm: tuple[PostgresServer, str], account: str, **source) -> None:
    server, database = crm
    team.add_account(account, {"applications": {"table": TABLE, "database": server.url(database), **source}},
                     **({"first_day": FIRST_DAY.date().isoformat()} if "day_column" in source else {}))


def first_snapshot_synced(team: TeamProject, crm: tuple[PostgresServer, str], applications: int) -> None:
    """`applications` rows a minute apart in the table, read as a snapshot by the account `acme` and
    synced in full."""
    insert(crm, [application(number, FIRST_DAY + timedelta(minutes=number)) for number in range(1, applications + 1)])
    add_account(team, crm, "acme")
    team.sync("acme")
    assert team.statuses("acme") == {"in_sync": applications}


def remote(team: TeamProject, account: str) -> dict[str, list[dict]]:
    """The sandbox's opportunities by the application id they carry."""
    found: dict[str, list[dict]] = {}
    for opportunity in team.sandbox(account, "opportunities")["Opportunities"]:
        found.setdefault(opportunity["Fields"]["mx_Custom_1"], []).append(opportunity)
    return found


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_snapshot_sends_an_update_as_its_changed_fields_a_create_and_nothing_for_a_deleted_row(team, crm):
    server, database = crm
    first_snapshot_synced(team, crm, 6)

    server.psql(f"UPDATE {TABLE} SET amount = 777000, updated_at = '2026-11-05T10:00:00Z' "
                "WHERE application_id = 'APP-0000002'", database)
    insert(crm, [application(7, FIRST_DAY + timedelta(days=4))])
    server.psql(f"DELETE FROM {TABLE} WHERE application_id = 'APP-0000005'", database)
    journal_of_deleted = team.warehouse("acme", "SELECT count(*) FROM push_journal WHERE source_id = 'APP-0000005'")
    before, held = team.writes("acme"), remote(team, "acme")
    team.sync("acme")

    sent = team.sent_since("acme", before)
    assert sent.get("BulkUpdate") == 1 and sent.get("BulkAdd") == 1 and "Capture" not in sent, sent
    [payload] = [json.loads(row[0]) for row in team.warehouse(
        "acme", "SELECT payload FROM push_journal WHERE kind = 'update'")]
    assert sorted(field["SchemaName"] for field in payload["Fields"]) == ["mx_Custom_3", "mx_Custom_7"]
    now = remote(team, "acme")
    assert now["APP-0000002"][0]["Fields"]["mx_Custom_3"] == "777000" and len(now["APP-0000007"]) == 1
    assert now["APP-0000005"] == held["APP-0000005"]  # gone from the source, untouched in LeadSquared
    assert team.warehouse("acme", "SELECT count(*) FROM push_journal WHERE source_id = 'APP-0000005'") \
        == journal_of_deleted
    assert team.statuses("acme") == {"in_sync": 6, "gone_from_source": 1}
    assert team.warehouse("acme", "SELECT source_id FROM opportunity_state WHERE status = 'gone_from_source'") \
        == [("APP-0000005",)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_day_column_source_backfilled_over_three_days_sends_each_record_once_reading_each_day_in_postgres(
        team, crm):
    server, database = crm
    rows = [application(number, FIRST_DAY + timedelta(days=number % 3, minutes=number)) for number in range(1, 10)]
    later = application(1, FIRST_DAY + timedelta(days=2, hours=5), amount=999000)  # a newer version, two days on
    insert(crm, [*rows, later])
    add_account(team, crm, "acme", day_column="updated_at")
    server.psql(f'ALTER DATABASE "{database}" SET log_statement = \'all\'')
    log = server.data_dir.parent / "log"
    log_start = log.stat().st_size

    synced = team.sync("acme", "--from", "2026-11-01", "--to", "2026-11-03")

    assert "succeeded" in synced.stdout
    assert team.statuses("acme") == {"in_sync": 9}
    held = remote(team, "acme")
    assert sorted(held) == [f"APP-{number:07d}" for number in range(1, 10)]
    assert all(len(opportunities) == 1 for opportunities in held.values())  # each record once
    assert held["APP-0000001"][0]["Fields"]["mx_Custom_3"] == "999000"  # in its latest version
    assert "BulkUpdate" not in team.writes("acme")
    with log.open(errors="replace") as handle:
        handle.seek(log_start)
        reads = [line for line in handle if "COPY" in line and '"loan_applications"' in line]
    assert any('"updated_at" >=' in line and '"updated_at" <' in line for line in reads), reads  # the range
    assert all("WHERE" in line for line in reads), reads  # PostgreSQL never sends the whole table


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_snapshot_that_lost_half_its_rows_is_stopped_by_the_gone_share_check(team, crm):
    server, database = crm
    first_snapshot_synced(team, crm, 10)

    server.psql(f"DELETE FROM {TABLE} WHERE application_id IN "
                "(SELECT application_id FROM crm.loan_applications ORDER BY application_id LIMIT 5)", database)
    before, held = team.writes("acme"), remote(team, "acme")
    stopped = team.sync("acme", ok=False)

    assert stopped.returncode == 1
    assert team.failed_checks() == {"gone_share_below_threshold"}
    assert team.writes("acme") == before and remote(team, "acme") == held  # nothing sent
    assert team.statuses("acme") == {"in_sync": 10}

    team.sync("acme", "--max-gone-share", "0.6")  # the flag lets a real mass deletion through
    assert team.statuses("acme") == {"in_sync": 5, "gone_from_source": 5}
    assert team.writes("acme") == before
