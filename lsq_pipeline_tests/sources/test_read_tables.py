"""Extract from a table or a query: in a DuckDB file (a table, and a view whose SQL names the file's
stem, as dbt-duckdb writes), in PostgreSQL and in the warehouse; the day range pushed down on each
column type, typed values as canonical text, and every bad source as one clear line."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from lsq_pipeline.mapping import load_mapping
from lsq_pipeline.sources import Sources, SourceTable
from lsq_pipeline.steps.extract import extract_days
from lsq_pipeline.steps.read_tables import SourceError, day_ranges
from lsq_pipeline.steps.transform import transform_days
from lsq_pipeline.warehouse.schema import ensure_schema

from ..sync.conftest import DEMO_MAPPING

DAYS = [date(2026, 1, 1), date(2026, 1, 2)]
APPLICATIONS = """
    SELECT 'A-' || i AS application_id, 'Asha Rao' AS applicant_name, 'a' || i || '@x.example' AS email,
           '9876543210' AS phone, 'Home Loan' AS product, CAST(150000 + i AS DOUBLE) AS amount, 'New' AS stage,
           'priya.sharma@lendco.example' AS owner_email,
           TIMESTAMPTZ '2026-01-01 10:00:00+00' + i * INTERVAL 12 HOUR AS created_at,
           TIMESTAMPTZ '2026-01-01 10:00:00+00' + i * INTERVAL 12 HOUR AS updated_at,
           CAST(TIMESTAMPTZ '2026-01-01 10:00:00+00' + i * INTERVAL 12 HOUR AS TIMESTAMP) AS updated_ts,
           CAST(TIMESTAMPTZ '2026-01-01 10:00:00+00' + i * INTERVAL 12 HOUR AS DATE) AS updated_on,
           i % 2 = 0 AS even
    FROM range(5) t(i)"""


@pytest.fixture
def mapping():
    return load_mapping(DEMO_MAPPING)


@pytest.fixture
def analytics(tmp_path: Path) -> Path:
    """A DuckDB file `analytics.duckdb` with a table and a view naming the file's stem, as dbt-duckdb writes it."""
    path = tmp_path / "analytics.duckdb"
    with duckdb.connect(str(path)) as source:
        source.execute(f"CREATE TABLE loan_applications AS {APPLICATIONS}")
        source.execute("CREATE VIEW loan_view AS SELECT * FROM analytics.main.loan_applications")
    return path


@pytest.fixture
def wh(tmp_path: Path):
    conn = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    ensure_schema(conn)
    yield conn
    conn.close()


def _apps(**source) -> Sources:
    return Sources(applications=SourceTable(**source))


def _raw(conn) -> list[tuple]:
    return conn.execute("""SELECT day, application_id, amount, updated_at, source_problem FROM raw_applications
                           ORDER BY day, row_number""").fetchall()


@pytest.mark.parametrize("table", ["loan_applications", "analytics.loan_applications", "main.loan_applications",
                                   "analytics.main.loan_applications", "loan_view"])
def test_a_duckdb_table_or_view_by_day_column(wh, analytics, mapping, table):
    loaded = extract_days(wh, _apps(table=table, database=str(analytics), day_column="updated_at"), DAYS, mapping)
    assert [loaded[day]["applications"] for day in DAYS] == [2, 2]
    assert loaded[DAYS[0]]["events"] == 0
    assert _raw(wh) == [
        (DAYS[0], "A-0", "150000", "2026-01-01 10:00:00", None), (DAYS[0], "A-1", "150001", "2026-01-01 22:00:00", None),
        (DAYS[1], "A-2", "150002", "2026-01-02 10:00:00", None), (DAYS[1], "A-3", "150003", "2026-01-02 22:00:00", None)]
    assert "analytics" not in {name for (name,) in wh.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
    counts = transform_days(wh, DAYS, mapping)
    assert counts["accepted"] == 4 and counts["rejected"] == 0


@pytest.mark.parametrize("day_column", ["updated_at", "updated_ts", "updated_on"])
def test_each_day_column_type_reads_its_utc_day_pushed_down(wh, analytics, mapping, day_column):
    source = _apps(table="loan_applications", database=str(analytics), day_column=day_column)
    loaded = extract_days(wh, source, [DAYS[1]], mapping)
    assert loaded[DAYS[1]]["applications"] == 2
    wh.execute(f"ATTACH '{analytics}' AS analytics (READ_ONLY)")
    kind = {"updated_at": "TIMESTAMP WITH TIME ZONE", "updated_ts": "TIMESTAMP", "updated_on": "DATE"}[day_column]
    plan = "\n".join(row[1] for row in wh.execute(
        f"EXPLAIN SELECT * FROM analytics.loan_applications WHERE {day_ranges(day_column, kind, [DAYS[1]])}").fetchall())
    scan = plan[plan.index("SEQ_SCAN"):]
    assert "Filters" in scan and day_column in scan  # the range is a filter of the scan, not after it
    wh.execute("DETACH analytics")


def test_a_query_and_typed_columns_as_canonical_text(wh, analytics, mapping):
    query = """SELECT * REPLACE (CAST(amount AS DECIMAL(12, 2)) + 0.5 AS amount, CAST(even AS VARCHAR) AS stage)
               FROM analytics.loan_applications"""
    extract_days(wh, _apps(query=query, database=str(analytics), day_column="updated_on"), DAYS[:1], mapping)
    assert wh.execute("SELECT amount, stage, created_at, source_file FROM raw_applications ORDER BY row_number"
                      ).fetchall() == [("150000.50", "true", "2026-01-01 10:00:00", "applications query"),
                                       ("150001.50", "false", "2026-01-01 22:00:00", "applications query")]


def test_a_table_in_the_warehouse_itself_as_a_snapshot(wh, mapping):
    wh.execute(f"CREATE TABLE apps AS {APPLICATIONS}")
    extract_days(wh, _apps(table="apps", day_column="updated_at"), DAYS, mapping)
    loaded = extract_days(wh, _apps(table="apps"), [date(2026, 2, 1)], mapping)
    assert loaded[date(2026, 2, 1)]["applications"] == 5
    assert {day for day, *_ in _raw(wh)} == {date(2026, 2, 1)}  # the snapshot replaced every day's rows


def test_a_snapshot_rejects_every_row_of_a_duplicated_key(wh, mapping):
    wh.execute(f"CREATE TABLE apps AS {APPLICATIONS} UNION ALL SELECT * REPLACE ('Approved' AS stage) FROM ({APPLICATIONS}) "
               "WHERE application_id = 'A-1'")
    day = date(2026, 2, 1)
    extract_days(wh, _apps(table="apps"), [day], mapping)
    counts = transform_days(wh, [day], mapping)
    assert counts["accepted"] == 4 and counts["rejected"] == 2
    assert wh.execute("SELECT DISTINCT field, value, reason FROM rejects").fetchall() == [
        ("application_id", "A-1", "key A-1 is in 2 rows of the source: which is the record is unknown, each is rejected")]


def test_empty_day_column_rows_are_rejected_once_a_run(wh, analytics, mapping):
    with duckdb.connect(str(analytics)) as source:
        source.execute("UPDATE loan_applications SET updated_at = NULL WHERE application_id = 'A-4'")
    extract_days(wh, _apps(table="loan_applications", database=str(analytics), day_column="updated_at"), DAYS, mapping)
    counts = transform_days(wh, DAYS, mapping)
    assert counts["rejected"] == 1
    assert wh.execute("SELECT day, value, reason FROM rejects WHERE field = 'application_id'").fetchall() == [
        (DAYS[1], "A-4", "day_column updated_at is empty: the row belongs to no day")]


def test_bad_sources_are_one_clear_line(wh, analytics, mapping, tmp_path):
    database = str(analytics)
    cases = {
        "applications: table analytics.nope does not exist in DuckDB": _apps(table="analytics.nope", database=database),
        "no column updated_at_typo (its columns: application_id": _apps(
            table="loan_applications", database=database, day_column="updated_at_typo"),
        "the applications query 'SELECT * FROM nowhere' in DuckDB": _apps(query="SELECT * FROM nowhere", database=database),
        "day_column stage is VARCHAR: a day column is DATE, TIMESTAMP or TIMESTAMPTZ": _apps(
            table="loan_applications", database=database, day_column="stage"),
        "the DuckDB file": _apps(table="t", database=str(tmp_path / "missing.duckdb")),
    }
    for message, source in cases.items():
        with pytest.raises(SourceError, match=message.replace("(", r"\(").replace("*", r"\*")) as caught:
            extract_days(wh, source, DAYS, mapping)
        assert "\n" not in str(caught.value)
    with duckdb.connect(str(analytics)) as source:
        source.execute("ALTER TABLE loan_applications DROP COLUMN email")
    with pytest.raises(SourceError, match=r"no column email \(its columns: application_id, applicant_name, phone"):
        extract_days(wh, _apps(table="loan_applications", database=database), DAYS, mapping)
    assert wh.execute("SELECT count(*) FROM raw_applications").fetchone()[0] == 0


def test_a_duckdb_source_locked_by_a_writer_names_the_holder(wh, analytics, mapping, tmp_path):
    import subprocess
    import sys
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(analytics)!r}); "
                               "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(SourceError, match=rf"is locked by .+ \(PID {holder.pid}\)"):
            extract_days(wh, _apps(table="loan_applications", database=str(analytics)), DAYS, mapping)
    finally:
        holder.kill()
        holder.wait()


def _postgres_source(server, mapping) -> str:
    database = server.new_database("source")
    server.psql("""CREATE TABLE loan_applications AS SELECT 'A-' || i AS application_id, 'Asha Rao' AS applicant_name,
                      'a' || i || '@x.example' AS email, '9876543210' AS phone, 'Home Loan' AS product,
                      150000.0 + i AS amount, 'New' AS stage, 'priya.sharma@lendco.example' AS owner_email,
                      TIMESTAMPTZ '2026-01-01 10:00:00+00' + i * INTERVAL '12 hours' AS created_at,
                      TIMESTAMPTZ '2026-01-01 10:00:00+00' + i * INTERVAL '12 hours' AS updated_at
                   FROM generate_series(0, 4) i;
                   CREATE INDEX ON loan_applications (updated_at);""", database)
    return database


def test_a_postgres_table_and_query_pushed_down(wh, postgres_server, mapping):
    database = _postgres_source(postgres_server, mapping)
    url = postgres_server.url(database)
    for source in (_apps(table="public.loan_applications", database=url, day_column="updated_at"),
                   _apps(query="SELECT * FROM loan_applications WHERE stage = 'New'", database=url,
                         day_column="updated_at")):
        loaded = extract_days(wh, source, DAYS[1:], mapping)
        assert loaded[DAYS[1]]["applications"] == 2
        assert [row[:4] for row in _raw(wh)] == [(DAYS[1], "A-2", "150002", "2026-01-02 10:00:00"),
                                                 (DAYS[1], "A-3", "150003", "2026-01-02 22:00:00")]
    # The range reaches PostgreSQL: its own plan of what DuckDB's scan sends filters by the index.
    wh.execute(f"ATTACH '{url}' AS pg (TYPE postgres, READ_ONLY)")
    ranges = day_ranges('"updated_at"', "TIMESTAMP WITH TIME ZONE", DAYS[1:])
    plan = "\n".join(row[1] for row in wh.execute(f"EXPLAIN SELECT * FROM pg.public.loan_applications WHERE {ranges}").fetchall())
    assert "updated_at" in plan[plan.index("POSTGRES_SCAN"):]
    sent = postgres_server.psql(f"EXPLAIN SELECT * FROM (SELECT * FROM loan_applications) q WHERE {ranges}", database)
    assert "updated_at >=" in sent and "updated_at <" in sent
    wh.execute("DETACH pg")


def test_a_missing_postgres_table_names_the_tables_there_without_postgres_catalogs(wh, postgres_server, mapping):
    url = postgres_server.url(_postgres_source(postgres_server, mapping))
    with pytest.raises(SourceError, match=r"^applications: table public.loan_application does not exist in "
                                          r"PostgreSQL .* \(tables there: public.loan_applications\)$"):
        extract_days(wh, _apps(table="public.loan_application", database=url), DAYS, mapping)


def test_a_failing_postgres_query_is_one_line(wh, postgres_server, mapping):
    url = postgres_server.url(_postgres_source(postgres_server, mapping))
    with pytest.raises(SourceError, match=r"^the applications query 'SELECT nope FROM loan_applications' in "
                                          r"PostgreSQL .* failed: ") as caught:
        extract_days(wh, _apps(query="SELECT nope FROM loan_applications", database=url), DAYS, mapping)
    assert "\n" not in str(caught.value)
