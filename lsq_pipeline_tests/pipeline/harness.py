"""A pipeline under test: generated source files, a warehouse (a DuckDB file or a PostgreSQL URL),
the sandbox over real HTTP, and the sync job run in process on an ephemeral Dagster instance."""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import dagster as dg
import requests

from lsq_pipeline.orchestration.definitions import build_definitions
from lsq_pipeline.orchestration.runs import run_config
from lsq_pipeline.settings import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY, AccountSettings, source_days

REPO = Path(__file__).resolve().parents[2]
MAPPING = REPO / "data" / "mapping.yaml"


def key_variable(value: str) -> str:
    """The name of a variable holding `value` (set here): keys reach the pipeline only by name."""
    name = "LSQ_TEST_KEY_" + hashlib.sha256(value.encode()).hexdigest()[:12].upper()
    os.environ[name] = value
    return name


def range_tags(first: date, last: date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


@dataclass
class Pipeline:
    source_dir: Path
    warehouse: Path | str
    """A DuckDB file, or a postgresql:// URL."""
    sandbox_url: str
    instance: dg.DagsterInstance = field(default_factory=dg.DagsterInstance.ephemeral)
    access_key: str = SANDBOX_ACCESS_KEY
    secret_key: str = SANDBOX_SECRET_KEY
    mapping: Path = MAPPING
    leads_in_bulk: bool = True
    overrides: dict = field(default_factory=dict)  # other settings, e.g. {"max_attempts": 2}
    account: str = "default"

    def settings(self) -> AccountSettings:
        return AccountSettings(
            account=self.account,
            api_host=self.sandbox_url,
            access_key_env=key_variable(self.access_key),
            secret_key_env=key_variable(self.secret_key),
            source_dir=str(self.source_dir),
            warehouse=str(self.warehouse),
            mapping=str(self.mapping),
            leads_in_bulk=self.leads_in_bulk,
            **{"rate_limit_calls": 0, "max_reject_rate": 0.5,
               "first_day": min(source_days(self.source_dir), default=date(2026, 11, 1)).isoformat(),
               "rate_limit_db": str(self.source_dir.parent / "rate_limit.sqlite"), **self.overrides},
        )

    def job_name(self, job: str) -> str:
        return self.settings().name(job)

    def definitions(self) -> dg.Definitions:
        return build_definitions(self.settings())

    def run(
        self, first: date, last: date | None = None, job: str = "sync_job", full: bool = False,
        config: dict | None = None,
    ):
        """One run over first..last, in process; returns the ExecuteInProcessResult."""
        if config is None:
            config = run_config(self.settings(), full) if job == "sync_job" else {}
        return self.definitions().resolve_job_def(self.job_name(job)).execute_in_process(
            instance=self.instance,
            tags=range_tags(first, last or first),
            run_config=config,
            raise_on_error=False,
        )

    def record(self, result) -> dict | None:
        """Write the run to sync_runs, as the run-status sensors do under the daemon."""
        from lsq_pipeline.orchestration.history import record_run_outcome
        from lsq_pipeline.orchestration.jobs import keys_of_job

        run = self.instance.get_run_by_id(result.run_id)
        definitions = self.definitions()
        keys = keys_of_job(definitions.resolve_job_def(self.job_name("sync_job")))
        return record_run_outcome(self.instance, run, definitions.resources[self.settings().resource_key("warehouse")], keys)

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with self.settings().warehouse_location().connect(read_only=True) as conn:
            return conn.execute(sql, params or []).fetchall()

    def scalar(self, sql: str, params: list | None = None):
        return self.query(sql, params)[0][0]

    def key_headers(self) -> dict[str, str]:
        return {"x-LSQ-AccessKey": self.access_key, "x-LSQ-SecretKey": self.secret_key}

    def remote(self, what: str = "opportunities") -> list[dict]:
        answer = requests.get(f"{self.sandbox_url}/sandbox/{what}", headers=self.key_headers(), timeout=10)
        answer.raise_for_status()
        return answer.json()[what.capitalize()]

    def stats(self) -> dict:
        answer = requests.get(f"{self.sandbox_url}/sandbox/stats", headers=self.key_headers(), timeout=10)
        answer.raise_for_status()
        return answer.json()

    def remote_by_source(self) -> dict[str, list[dict]]:
        """The sandbox's opportunities grouped by the source id they carry (mx_Custom_1)."""
        grouped: dict[str, list[dict]] = {}
        for opportunity in self.remote():
            grouped.setdefault(opportunity["Fields"].get("mx_Custom_1"), []).append(opportunity)
        return grouped


def rewrite_rows(path: Path, change) -> None:
    """Apply `change(row) -> row | None` to every row of a CSV export."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames
        rows = [change(row) for row in reader]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(row for row in rows if row is not None)
