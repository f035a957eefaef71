"""A team's dg project in a test's folder, driven by its command-line tools as the team drives
them (`dbt`, `dg`, `lsq-pipeline`), with accounts on the embedded sandbox, and the dbt project of
this folder copied into it with a profile that points at a DuckDB file by an absolute path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import requests
import yaml
from dagster._core.instance.ref import InstanceRef

from lsq_pipeline.sandbox import stop_sandbox
from lsq_pipeline.settings import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY

REPO = Path(__file__).resolve().parents[2]
DBT_PROJECT = Path(__file__).parent / "dbt_project"
MAPPING = REPO / "data" / "mapping.yaml"
BIN = Path(sys.executable).parent
STEP_TIMEOUT = 180  # seconds for any one command
WRITES = ("BulkAdd", "BulkUpdate", "Capture", "BulkActivities", "LeadBulkCreate", "LeadBulkCreateOrUpdate")
"""The sandbox's endpoints that write to LeadSquared."""
PYPROJECT = """\
[project]
name = "acme_data"
version = "0.1.0"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "acme_data"
"""
DEFINITIONS = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""


@dataclass
class TeamProject:
    """The dg project `acme_data` at `root`: its package beside pyproject.toml, a `defs/` folder per
    component, and `data/` for the accounts' mapping, warehouses and sandboxes."""

    root: Path
    home: Path

    @property
    def defs(self) -> Path:
        return self.root / "acme_data" / "defs"

    @property
    def analytics(self) -> Path:
        """The dbt project's DuckDB file."""
        return self.root / "data" / "analytics.duckdb"

    def env(self) -> dict[str, str]:
        """This venv's tools first, no LSQ_* variable, a Dagster home of the test's own."""
        env = {name: value for name, value in os.environ.items() if not name.startswith(("LSQ_", "DAGSTER_"))}
        env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(BIN.parent),
                    "DAGSTER_HOME": str(self.home), "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0"})
        return env

    def run(self, *command: str, ok: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=cwd or self.root, env=self.env(),
                              capture_output=True, text=True, timeout=STEP_TIMEOUT)
        if ok:
            assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-4000:]}\n" \
                                         f"{done.stderr[-6000:]}"
        return done

    # --- the dbt project ---------------------------------------------------------------------

    def add_dbt_project(self) -> Path:
        """This folder's dbt project copied in, its profile's `path:` absolute (dagster-dbt runs dbt
        from a copy under `defs/.local_defs_state/`), and a DbtProjectComponent loading it."""
        project = self.root / "dbt_project"
        shutil.copytree(DBT_PROJECT, project)
        profile = {"loan_analytics": {"target": "dev", "outputs": {"dev": {
            "type": "duckdb", "path": str(self.analytics), "threads": 1}}}}
        (project / "profiles.yml").write_text(yaml.safe_dump(profile))
        self.write_defs("dbt", {"type": "dagster_dbt.DbtProjectComponent",
                                "attributes": {"project": "{{ project_root }}/dbt_project"}})
        return project

    def dbt(self, *arguments: str) -> subprocess.CompletedProcess:
        project = self.root / "dbt_project"
        return self.run("dbt", *arguments, "--project-dir", str(project), "--profiles-dir", str(project), cwd=project)

    def set_seed_value(self, application_id: str, **values: str) -> None:
        """Change one application's row in the seed CSV."""
        seed = self.root / "dbt_project" / "seeds" / "loan_application_rows.csv"
        header, *rows = seed.read_text().splitlines()
        columns = header.split(",")
        changed = []
        for row in rows:
            cells = dict(zip(columns, row.split(",")))
            if cells["application_id"] == application_id:
                cells.update(values)
            changed.append(",".join(cells[column] for column in columns))
        seed.write_text("\n".join([header, *changed]) + "\n")

    # --- accounts ---------------------------------------------------------------------------

    def add_account(self, account: str, source: dict, **attributes) -> None:
        """An account on the embedded sandbox reading `source` (the `source:` attribute) with the
        demo's mapping."""
        (self.root / "data" / "mapping.yaml").write_bytes(MAPPING.read_bytes())
        (self.root / "data" / account).mkdir()
        self.write_defs(account, {"type": "lsq_pipeline.LeadSquaredSyncComponent", "attributes": {
            "account": account, "sandbox": True, "source": source, "mapping": "data/mapping.yaml",
            "warehouse": f"data/{account}/warehouse.duckdb", "sandbox_dir": f"data/{account}/sandbox",
            "rate_limit_db": "", **attributes}})

    def write_defs(self, folder: str, document: dict) -> None:
        (self.defs / folder).mkdir(parents=True, exist_ok=True)
        (self.defs / folder / "defs.yaml").write_text(yaml.safe_dump(document, sort_keys=False))

    def sync(self, account: str, *arguments: str, ok: bool = True) -> subprocess.CompletedProcess:
        return self.run("lsq-pipeline", "sync", "--account", account, *arguments, ok=ok)

    def listed_assets(self) -> dict[str, dict]:
        """`dg list defs --json`'s assets by key."""
        listed = json.loads(self.run("dg", "list", "defs", "--json").stdout)
        return {asset["asset_key"]: asset for asset in listed["assets"]}

    def warehouse(self, account: str, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.root / "data" / account / "warehouse.duckdb"), read_only=True) as conn:
            return conn.execute(sql).fetchall()

    def statuses(self, account: str) -> dict[str, int]:
        return dict(self.warehouse(account, "SELECT status, count(*) FROM opportunity_state GROUP BY 1"))

    def failed_checks(self) -> set[str]:
        """The asset checks that failed in the latest run on the project's Dagster instance."""
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home))) as instance:
            [run] = instance.get_runs(limit=1)
            evaluations = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            return {event.dagster_event.event_specific_data.check_name for event in evaluations
                    if not event.dagster_event.event_specific_data.passed}

    def sandbox(self, account: str, what: str) -> dict:
        """The account's embedded sandbox's `/sandbox/<what>` (stats, opportunities)."""
        server = json.loads((self.root / "data" / account / "sandbox" / "server.json").read_text())
        headers = {"x-LSQ-AccessKey": SANDBOX_ACCESS_KEY, "x-LSQ-SecretKey": SANDBOX_SECRET_KEY}
        answer = requests.get(f"{server['url']}/sandbox/{what}", headers=headers, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def writes(self, account: str) -> dict[str, int]:
        """The calls that write (WRITES) the account's sandbox has answered so far, by endpoint."""
        calls = self.sandbox(account, "stats")["Calls"]
        return {name: calls[name] for name in WRITES if calls.get(name)}

    def sent_since(self, account: str, before: dict[str, int]) -> dict[str, int]:
        """The write calls (by endpoint) made since `writes(account)` returned `before`."""
        after = self.writes(account)
        return {name: count - before.get(name, 0) for name, count in after.items() if count != before.get(name, 0)}

    def stop_sandboxes(self) -> None:
        for state in (self.root / "data").glob("*/sandbox"):
            stop_sandbox(state)


def team_project(folder: Path) -> TeamProject:
    """A new dg project in `folder`: pyproject.toml with [tool.dg], the package, an empty defs/."""
    root = folder / "acme_data"
    (root / "acme_data" / "defs").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "acme_data" / "__init__.py").write_text("")
    (root / "acme_data" / "definitions.py").write_text(DEFINITIONS)
    home = folder / "dagster_home"
    home.mkdir()
    return TeamProject(root, home)
