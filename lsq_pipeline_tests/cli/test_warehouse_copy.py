"""`lsq-pipeline warehouse copy`: an account's DuckDB warehouse moved into PostgreSQL whole, so the
next run there knows what was sent and sends nothing; never into a schema that holds rows, and
never with a password in the URL."""

from __future__ import annotations

from urllib.parse import urlsplit

import duckdb
import pytest

from lsq_pipeline_tests.cli.test_first_run import clean_env, lsq, project
from lsq_pipeline_tests.postgres import PASSWORD, PASSWORD_ROLE

TABLES = (
    "raw_applications", "raw_events", "opportunity_records", "activity_records", "rejects", "sync_plan",
    "activity_plan", "opportunity_state", "activity_state", "push_journal", "opportunity_adoption", "sync_runs",
    "sync_errors", "schema_version",
)


@pytest.mark.timeout(900)
def test_a_synced_warehouse_moves_to_postgres_and_the_next_run_sends_nothing(tmp_path, postgres_server, postgres_url):
    folder = project(tmp_path, rows=30, days=3)
    first = lsq(folder, "demo")
    assert first.returncode == 0, first.stdout + first.stderr
    with duckdb.connect(str(folder / "data" / "warehouse.duckdb"), read_only=True) as conn:
        in_duckdb = {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}
    assert in_duckdb["push_journal"] and in_duckdb["opportunity_state"] and in_duckdb["sync_runs"], in_duckdb

    copy = lsq(folder, "warehouse", "copy", "--to", postgres_url)
    assert copy.returncode == 0, copy.stdout + copy.stderr
    for table, rows in in_duckdb.items():
        assert f"  {table} " in copy.stdout and copy.stdout.split(f"  {table} ")[1].split()[0] == str(rows), table
    assert f"LSQ_WAREHOUSE={postgres_url}" in copy.stdout
    database = urlsplit(postgres_url).path.strip("/")
    in_postgres = {table: int(postgres_server.psql(f"SELECT count(*) FROM public.{table}", database))
                   for table in TABLES}
    assert in_postgres == in_duckdb

    again = lsq(folder, "demo", env=clean_env(LSQ_WAREHOUSE=postgres_url))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Nothing to send: LeadSquared already matches the source (0 write calls)." in again.stdout
    assert f"PostgreSQL {postgres_url}" in again.stdout
    runs = int(postgres_server.psql("SELECT count(*) FROM public.sync_runs", database))
    assert runs == in_duckdb["sync_runs"] + 3  # the history goes on where the file's ended

    twice = lsq(folder, "warehouse", "copy", "--to", postgres_url)
    assert twice.returncode == 2
    assert "schema public of" in twice.stderr and "already holds rows" in twice.stderr
    assert int(postgres_server.psql("SELECT count(*) FROM public.sync_runs", database)) == runs


def test_a_password_in_the_url_is_refused_and_never_shown(tmp_path, postgres_server):
    folder = project(tmp_path, rows=5, days=1)
    url = f"postgresql://{PASSWORD_ROLE}:{PASSWORD}@127.0.0.1:{postgres_server.port}/postgres"
    copy = lsq(folder, "warehouse", "copy", "--to", url)
    assert copy.returncode == 2
    assert "must not carry a password" in copy.stderr and "PGPASSWORD" in copy.stderr
    assert PASSWORD not in copy.stdout + copy.stderr
    assert "Traceback" not in copy.stderr


def test_no_duckdb_file_no_copy(tmp_path, postgres_url):
    folder = project(tmp_path, rows=5, days=1)
    copy = lsq(folder, "warehouse", "copy", "--to", postgres_url, "--schema", "moved")
    assert copy.returncode == 2
    assert "there is no DuckDB warehouse at" in copy.stderr
    assert not (folder / "data" / "warehouse.duckdb").exists()
