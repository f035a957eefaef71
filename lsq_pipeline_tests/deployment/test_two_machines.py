"""Two machines, as a deployment has them: two copies of what a deployment needs (the mapping, the
source folder, a DAGSTER_HOME holding deploy/dagster.yaml) in two folders that share no disk, each
running the installed `lsq-pipeline sync` in its own folder. They share only what the deployment
docs say they must: one PostgreSQL warehouse (LSQ_WAREHOUSE), one Dagster instance on PostgreSQL
(DAGSTER_PG_*), one Redis API budget (LSQ_RATE_LIMIT_REDIS) and one LeadSquared (LSQ_API_HOST:
a sandbox this test starts, enforcing the same 25 calls / 5 s the two machines are given, in a
process of its own, as LeadSquared's servers are: its clock of arrivals is not held up by the
machines' work on a busy 2-core test machine).

They sync overlapping ranges of days at the same time. Both succeed, their runs overlap in time
and are in the shared instance's `runs` table, LeadSquared refuses no call for the rate although
the machines' steps had to wait for the window (the two machines together keep one window), and
every record has one opportunity and is in_sync.

Then a sync of every day from each machine, one after the other. An event of one machine's days
whose record only the other machine's days create waits for its opportunity (as when days are
synced out of order: pipeline/test_postgres_concurrency.py), so the first full re-sync may still
send such activities; the second, from the other machine, must send nothing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from lsq_pipeline.settings import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY
from lsq_pipeline.demo.generate import generate
from lsq_pipeline_tests.chaos.checks import assert_end_state
from lsq_pipeline_tests.deployment.harness import BIN, REPO, tail
from lsq_pipeline_tests.pipeline.harness import Pipeline
from lsq_pipeline_tests.postgres import PASSWORD, PASSWORD_ROLE
from lsq_pipeline_tests.processes import free_port, stop_group

FIRST_DAY = date(2026, 11, 1)
D1, D2, D3 = (FIRST_DAY + timedelta(days=i) for i in range(3))
WINDOW_CALLS, WINDOW_SECONDS = 25, 5.0
LATENCY_MS = 100
SYNC_SECONDS = 480
WRITES = ("BulkAdd", "Capture", "BulkUpdate", "BulkActivities")
RUN_LINE = re.compile(r"^Run (?P<run_id>[0-9a-f-]{36}) (succeeded|FAILED)", re.MULTILINE)


@dataclass
class Machine:
    name: str
    folder: Path
    env: dict

    def start(self, first: date, last: date, log_name: str) -> subprocess.Popen:
        """`lsq-pipeline sync --from first --to last` in this machine's folder, in a process group."""
        log_path = self.folder / f"{log_name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [str(BIN / "lsq-pipeline"), "sync", "--from", first.isoformat(), "--to", last.isoformat()],
                cwd=self.folder, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        process.log_path = log_path
        return process

    def sync(self, first: date, last: date, log_name: str) -> str:
        """A sync run to its end: its output; it must exit 0."""
        process = self.start(first, last, log_name)
        try:
            code = process.wait(timeout=SYNC_SECONDS)
        finally:
            stop_group(process)
        output = process.log_path.read_text(errors="replace")
        assert code == 0, f"machine {self.name}: lsq-pipeline sync exited {code}:\n{output[-6000:]}"
        return output


def machine(name: str, folder: Path, source: Path, shared_env: dict) -> Machine:
    """A folder holding what a deployment needs and nothing shared: data/mapping.yaml, the source
    files (a copy of its own), DAGSTER_HOME with deploy/dagster.yaml; its rate-limit SQLite file
    and embedded sandbox folder are the defaults under data/, unused (Redis, LSQ_API_HOST)."""
    (folder / "data").mkdir(parents=True)
    shutil.copy(REPO / "data" / "mapping.yaml", folder / "data" / "mapping.yaml")
    shutil.copytree(source, folder / "data" / "source")
    home = folder / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LSQ_", "DAGSTER_"))}
    env.update(shared_env, DAGSTER_HOME=str(home), PATH=f"{BIN}:{env.get('PATH', '')}")
    return Machine(name, folder, env)


@contextmanager
def sandbox_process(folder: Path) -> Iterator[str]:
    """The sandbox in its own process, first in line for the CPU where the test may ask for it
    (root): the server counts a call when its thread reads it, so a server starved of CPU for
    longer than the client's safety margin would count two windows' calls in one."""
    def first_in_line() -> None:
        with suppress(PermissionError):
            os.nice(-10)
    port = free_port()
    log_path = folder / "sandbox.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(BIN / "lsq-pipeline"), "sandbox", "--port", str(port), "--rate-limit", f"{WINDOW_CALLS}/{WINDOW_SECONDS:g}",
             "--latency-ms", str(LATENCY_MS), "--access-key", SANDBOX_ACCESS_KEY, "--secret-key", SANDBOX_SECRET_KEY],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=first_in_line)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in log_path.read_text(errors="replace"):
            assert process.poll() is None and time.monotonic() < deadline, tail(log_path)
            time.sleep(0.1)
        yield url
    finally:
        stop_group(process)


def write_calls(pipeline: Pipeline) -> dict[str, int]:
    calls = pipeline.stats()["Calls"]
    return {name: calls.get(name, 0) for name in WRITES if calls.get(name)}


def api_spending(cursor, run_id: str) -> dict[str, float]:
    """What a run's steps say they spent of the budget (their materializations' metadata, read from
    the shared instance's event log): calls, 429s and seconds waited for the window."""
    cursor.execute("SELECT event FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
                   [run_id])
    spent = {"run_api_calls": 0.0, "run_api_rate_limited_429": 0.0, "run_api_seconds_waiting_for_window": 0.0}
    seen = set()
    for (text,) in cursor.fetchall():
        materialization = dg.deserialize_value(text, dg.EventLogEntry).asset_materialization
        if materialization is None or materialization.asset_key in seen:  # a range run repeats it per day
            continue
        seen.add(materialization.asset_key)
        for name in spent:
            if name in materialization.metadata:
                spent[name] += materialization.metadata[name].value
    return {name: round(value, 2) for name, value in spent.items()}


def run_id_of(output: str) -> str:
    found = RUN_LINE.search(output)
    assert found, f"no `Run <id> succeeded` line in:\n{output[-3000:]}"
    return found["run_id"]


@pytest.mark.slow
@pytest.mark.timeout(4 * SYNC_SECONDS + 120)
def test_two_machines_share_a_warehouse_an_instance_a_budget_and_leadsquared(tmp_path, postgres_server, redis_url):
    source = tmp_path / "generated"
    generate(source, rows=180, days=3, seed=47, start_day=FIRST_DAY, dirty_rate=0.0)
    warehouse_url = postgres_server.url(postgres_server.new_database("warehouse"))
    instance_db = postgres_server.new_database("dagster")

    with sandbox_process(tmp_path) as sandbox_url:
        shared = dict(
            LSQ_WAREHOUSE=warehouse_url,
            LSQ_API_HOST=sandbox_url,
            LSQ_ACCESS_KEY=SANDBOX_ACCESS_KEY,
            LSQ_SECRET_KEY=SANDBOX_SECRET_KEY,
            LSQ_RATE_LIMIT_REDIS=redis_url,
            LSQ_RATE_LIMIT_CALLS=str(WINDOW_CALLS),
            LSQ_RATE_LIMIT_SECONDS=str(WINDOW_SECONDS),
            DAGSTER_PG_HOST="127.0.0.1",
            DAGSTER_PG_PORT=str(postgres_server.port),
            DAGSTER_PG_DB=instance_db,
            DAGSTER_PG_USERNAME=PASSWORD_ROLE,
            DAGSTER_PG_PASSWORD=PASSWORD,
        )
        a = machine("A", tmp_path / "machine_a", source, shared)
        b = machine("B", tmp_path / "machine_b", source, shared)
        # The checks read the shared warehouse and the sandbox, never a machine's folder.
        check = Pipeline(source, warehouse_url, sandbox_url)

        # The operator's one-time setup of a new instance database (docs/deployment.md): its tables
        # and the pools' rows, which two first runs at once would otherwise both insert (Dagster
        # then fails one run on the unique key).
        for command in (["instance", "migrate"], *(["instance", "concurrency", "set", pool, "1"]
                                                   for pool in ("lsq_warehouse", "leadsquared_api"))):
            subprocess.run([str(BIN / "dagster"), *command], cwd=a.folder, env=a.env, check=True,
                           capture_output=True, timeout=120)

        # Both machines at once, on overlapping days (D2 on both).
        processes, spans = {}, {}
        try:
            for m, (first, last) in ((a, (D1, D2)), (b, (D2, D3))):
                processes[m.name] = m.start(first, last, "sync")
                spans[m.name] = [time.time(), None]
            deadline = time.monotonic() + 2 * SYNC_SECONDS
            while any(spans[name][1] is None for name in spans):
                for name, process in processes.items():
                    if spans[name][1] is None and process.poll() is not None:
                        spans[name][1] = time.time()
                assert time.monotonic() < deadline, "the two syncs did not end in time:\n" + "\n".join(
                    f"--- {name}\n{tail(p.log_path)}" for name, p in processes.items())
                time.sleep(0.2)
        finally:
            for process in processes.values():
                stop_group(process)
        outputs = {name: p.log_path.read_text(errors="replace") for name, p in processes.items()}
        report = "\n".join(f"--- machine {name}\n{output[-5000:]}" for name, output in outputs.items())
        assert all(p.returncode == 0 for p in processes.values()), (
            {name: p.returncode for name, p in processes.items()}, report)
        print("\n" + report)

        (a_start, a_end), (b_start, b_end) = spans["A"], spans["B"]
        assert a_start < b_end and b_start < a_end, f"the two processes did not overlap: {spans}"

        # Both runs are in the shared instance, succeeded, and overlapped there too.
        run_ids = {name: run_id_of(output) for name, output in outputs.items()}
        with psycopg2.connect(host="127.0.0.1", port=postgres_server.port, dbname=instance_db,
                              user=PASSWORD_ROLE, password=PASSWORD) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT run_id, status, start_time, end_time FROM runs WHERE run_id = ANY(%s)",
                           [list(run_ids.values())])
            stored = {run_id: (status, started, ended) for run_id, status, started, ended in cursor.fetchall()}
            spent = {name: api_spending(cursor, run_id) for name, run_id in run_ids.items()}
        assert set(stored) == set(run_ids.values()), (run_ids, stored)
        assert {status for status, _, _ in stored.values()} == {"SUCCESS"}, stored
        (_, a_run_start, a_run_end), (_, b_run_start, b_run_end) = stored[run_ids["A"]], stored[run_ids["B"]]
        assert a_run_start < b_run_end and b_run_start < a_run_end, f"the two runs did not overlap: {stored}"

        # One budget: LeadSquared refused nothing for the rate, in any window.
        stats = check.stats()
        refused = {f"{rate_class}/{reason}": n for rate_class, reasons in stats["Refused"].items()
                   for reason, n in reasons.items() if n}
        assert stats["RateLimited"] == 0 and not refused, (stats["RateLimited"], refused, stats["Calls"], spent)
        assert all(s["run_api_rate_limited_429"] == 0 for s in spent.values()), spent
        # ... while the window was really full: the machines waited for it.
        assert sum(s["run_api_seconds_waiting_for_window"] for s in spent.values()) > 0, spent
        # The budget was Redis's: neither machine made its own SQLite file.
        assert not any((m.folder / "data" / "rate_limit.sqlite").exists() for m in (a, b))

        # One opportunity per record, every record in_sync.
        remote = check.remote_by_source()
        assert remote and all(len(opportunities) == 1 for opportunities in remote.values())
        states = dict(check.query("SELECT status, count(*) FROM opportunity_state GROUP BY status"))
        assert states == {"in_sync": len(remote)}, states
        first_calls, stats_calls = stats["TotalCalls"], stats["Calls"]

        # Every day from A, then from B: the first may send activities left waiting for an
        # opportunity the other machine created; the second sends nothing.
        before = write_calls(check)
        a.sync(D1, D3, "resync")
        after_first = write_calls(check)
        end = assert_end_state(check)
        assert end.statuses == {"in_sync": len(end.accepted)}, end.statuses
        b.sync(D1, D3, "resync")
        after_second = write_calls(check)
        assert after_second == after_first, f"the second full re-sync sent writes: {after_first} -> {after_second}"
        end = assert_end_state(check)
        assert end.statuses == {"in_sync": len(end.accepted)}, end.statuses

        stats = check.stats()
        assert stats["RateLimited"] == 0, stats
        first_resync = {k: after_first.get(k, 0) - before.get(k, 0) for k in after_first
                        if after_first.get(k, 0) != before.get(k, 0)}
        print(f"\ntwo machines: runs {run_ids}; processes A {a_end - a_start:.0f} s, B {b_end - b_start:.0f} s, "
              f"overlapping {min(a_end, b_end) - max(a_start, b_start):.0f} s; {first_calls} calls, none refused "
              f"({stats_calls}; spent {spent}); "
              f"{len(end.accepted)} records in_sync, {end.activities_created} activities; first full re-sync "
              f"sent {first_resync or 'nothing'}, the second nothing")
