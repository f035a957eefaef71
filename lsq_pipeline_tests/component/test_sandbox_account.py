"""An account's embedded sandbox on the team's own account definition (`sandbox_account`): the
team's loan officers, unknown to the packaged account, own what its mapping sends; without the
attribute the same records are refused; a missing or invalid file fails the run in one line naming
the account and the attribute."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from lsq_pipeline.demo.generate import generate
from lsq_pipeline.sandbox import stop_sandbox
from lsq_pipeline.sandbox.account import DEFAULT_ACCOUNT_PATH
from lsq_pipeline_tests.component.test_component import load
from lsq_pipeline_tests.pipeline.conftest import FIRST_DAY
from lsq_pipeline_tests.pipeline.harness import MAPPING

DEMO_OFFICERS = ("priya.sharma", "arjun.mehta", "meera.iyer", "rahul.verma")
TEAM_USERS = {f"officer{number}@acme.example": f"7a3e9d40-0c1b-4e2f-9a8b-00000000010{number}"
              for number in range(1, len(DEMO_OFFICERS) + 1)}
"""The team's loan officers: owner e-mails and user ids the packaged account does not know."""


def account_yaml(folder: Path, sandbox_account: str = "") -> str:
    return (f"type: lsq_pipeline.LeadSquaredSyncComponent\nattributes:\n  account: acme\n  sandbox: true\n"
            f"  source_dir: {folder / 'source'}\n  mapping: {folder / 'mapping.yaml'}\n"
            f"  warehouse: {folder / 'warehouse.duckdb'}\n  sandbox_dir: {folder / 'sandbox'}\n"
            f"  first_day: '{FIRST_DAY}'\n  rate_limit_calls: 0\n  rate_limit_db: ''\n"
            + (f"  sandbox_account: {sandbox_account}\n" if sandbox_account else ""))


def team_files(folder: Path) -> Path:
    """A day of exports and a mapping whose owners are the team's officers, and the account
    definition that gives the sandbox those users (the packaged one with its users replaced)."""
    generate(folder / "source", rows=8, days=1, seed=21, start_day=FIRST_DAY, dirty_rate=0.0)
    renamed = dict(zip((f"{name}@lendco.example" for name in DEMO_OFFICERS), TEAM_USERS))
    for export in (folder / "source").glob("*/*.csv"):
        text = export.read_text()
        for demo, team in renamed.items():
            text = text.replace(demo, team)
        export.write_text(text)
    mapping = yaml.safe_load(MAPPING.read_text())
    mapping["opportunity"]["owner"]["users"] = TEAM_USERS
    (folder / "mapping.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
    account = yaml.safe_load(DEFAULT_ACCOUNT_PATH.read_text())
    account["users"] = [{"id": user_id, "email": email} for email, user_id in TEAM_USERS.items()]
    (folder / "team_account.yaml").write_text(yaml.safe_dump(account, sort_keys=False))
    return folder / "team_account.yaml"


def sync(defs_yaml: str) -> dg.ExecuteInProcessResult:
    job = load(defs_yaml).resolve_job_def("acme_sync_job")
    return job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), partition_key=FIRST_DAY.isoformat(),
                                  raise_on_error=False)


def states(folder: Path, table: str) -> list[tuple[str, str | None]]:
    with duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(f"SELECT status, error FROM {table}").fetchall()


@pytest.fixture
def folders(tmp_path):
    """One folder per account tried, each with its own sandbox, stopped when the test ends."""
    made: list[Path] = []

    def make(name: str) -> Path:
        made.append(tmp_path / name)
        return made[-1]

    yield make
    for folder in made:
        stop_sandbox(folder / "sandbox")


def test_the_sandbox_takes_the_teams_users_from_sandbox_account(folders):
    own = folders("own")
    result = sync(account_yaml(own, str(team_files(own))))
    assert result.success
    opportunities, activities = states(own, "opportunity_state"), states(own, "activity_state")
    assert opportunities and {status for status, _ in opportunities} == {"in_sync"}
    assert activities and {status for status, _ in activities} == {"created"}

    packaged = folders("packaged")
    team_files(packaged)
    sync(account_yaml(packaged))  # the same account on the packaged definition: its users are other people
    refused = states(packaged, "opportunity_state")
    assert len(refused) == len(opportunities) and not any(status == "in_sync" for status, _ in refused)
    assert all("no user has this id" in (error or "") for _, error in refused)


@pytest.mark.parametrize(("content", "expected"), [
    (None, "{path} is not a file"),
    ("users: []\n", "invalid account file {path}: users: List should have at least 1 item"),
])
def test_a_missing_or_invalid_sandbox_account_fails_the_run_naming_the_account_and_attribute(folders, content,
                                                                                            expected):
    folder = folders("acme")
    team_files(folder)
    roots: list[Path] = []
    if content is not None:
        (folder / "broken_account.yaml").write_text(content)
        name = str(folder / "broken_account.yaml")
    else:
        name = "no_such_account.yaml"  # relative: taken from the project root
    job = load(account_yaml(folder, name), roots).resolve_job_def("acme_sync_job")
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), partition_key=FIRST_DAY.isoformat(),
                                    raise_on_error=False)
    assert not result.success
    [failure, *_] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error = failure.step_failure_data.error
    while error.cause:  # dagster's step error wraps the one the step raised
        error = error.cause
    path = Path(name) if Path(name).is_absolute() else roots[0] / name
    message = error.message.strip()
    assert error.cls_name == "SettingsError", message
    assert message.startswith(f"lsq_pipeline.settings.SettingsError: account acme: sandbox_account: "
                              f"{expected.format(path=path)}"), message
    assert "\n" not in message and "did not start" not in message
    assert not (folder / "sandbox" / "server.json").exists()  # refused before any server started
