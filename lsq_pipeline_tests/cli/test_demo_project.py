"""The demo outside any dg project: it lays out a small dg project of its own (in ./lsq-demo or
--dir), and the commands then work on it from its folder, from any folder below it, or with
--project from anywhere, on its warehouse and its Dagster instance (DAGSTER_HOME when set);
`ui` serves it with `dg dev`."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import time

import pytest
import requests
import yaml

from lsq_pipeline.commands.demo import DEMO_DIR
from lsq_pipeline.demo.project import DATA, FIRST_DAY
from lsq_pipeline.orchestration.runs import SHIPPED_INSTANCE
from lsq_pipeline_tests.cli.test_first_run import COMMAND, clean_env, lsq
from lsq_pipeline_tests.processes import free_port, stop_group

STARTUP_SECONDS = 180


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory):
    """`demo` run where ./lsq-demo holds one packaged day of source: the layout keeps it and syncs
    that day. (The whole demo in an empty folder: the team environment test.)"""
    folder = tmp_path_factory.mktemp("here")
    shutil.copytree(DATA / "source" / FIRST_DAY, folder / DEMO_DIR / "data" / "source" / FIRST_DAY)
    demo = lsq(folder, "demo", timeout=600)
    assert demo.returncode == 0, demo.stderr
    assert "Overall: in_sync" in demo.stdout
    return folder / DEMO_DIR


@pytest.mark.timeout(900)
def test_the_commands_find_the_demo_project_from_inside_it_or_by_project(demo_project, tmp_path):
    assert (demo_project / "pyproject.toml").is_file() and (demo_project / "instance" / "dagster.yaml").is_file()
    inside = demo_project / "data" / "source"
    state = lsq(inside, "state")
    assert state.returncode == 0, state.stderr
    assert str(demo_project / "data" / "warehouse.duckdb") in state.stdout and "in_sync" in state.stdout
    history = lsq(tmp_path, "history", "--project", str(demo_project), "--last", "1")
    assert history.returncode == 0 and "demo_sync_job" in history.stdout
    wrong = lsq(demo_project, "state", "--account", "acme")
    assert wrong.returncode == 2 and "--account acme: no such account (defined: demo)" in wrong.stderr
    nowhere = lsq(tmp_path, "state", "--project", str(tmp_path))
    assert nowhere.returncode == 2 and f"--project {tmp_path}: no dg project there" in nowhere.stderr


@pytest.mark.parametrize("command, expected", [
    (("sync", "--partition", FIRST_DAY, "--dry-run"), f"{FIRST_DAY} (dry run, nothing sent): create 0, update 0,"),
    (("retry", "--all-failed", "--dry-run"), "Nothing to retry: no failed record matches."),
    (("warehouse", "upgrade"), "DuckDB {warehouse} already opens with this release's DuckDB: nothing to upgrade."),
    (("warehouse", "copy", "--to", "{postgres}"), "Copying DuckDB {warehouse} into PostgreSQL {postgres}, schema demo"),
], ids=["sync", "retry", "warehouse-upgrade", "warehouse-copy"])
@pytest.mark.timeout(300)
def test_every_command_works_on_the_project_named_by_project_from_a_folder_outside_it(
        demo_project, tmp_path, request, command, expected):
    # From an empty folder the packaged default account would find no data/source there, and
    # would write its warehouse and instance into that folder.
    places = {"warehouse": demo_project / "data" / "warehouse.duckdb"}
    if "{postgres}" in command:
        places["postgres"] = request.getfixturevalue("postgres_url")
    result = lsq(tmp_path, *(part.format(**places) for part in command), "--project", str(demo_project))
    assert result.returncode == 0, result.stdout + result.stderr
    assert expected.format(**places) in result.stdout
    for run_id in re.findall(r"^Run (\S+) succeeded", result.stdout, re.MULTILINE):
        assert (demo_project / "instance" / "history" / "runs" / f"{run_id}.db").is_file(), "not the project's instance"
    assert list(tmp_path.iterdir()) == []


def test_without_dagster_home_the_project_instance_is_made_with_the_shipped_settings(demo_project):
    shipped = SHIPPED_INSTANCE.read_text()
    assert (demo_project / "instance" / "dagster.yaml").read_text() == shipped
    settings = yaml.safe_load(shipped)
    assert settings["run_retries"]["enabled"] and settings["run_retries"]["retry_on_asset_or_op_failure"] is False
    assert settings["run_monitoring"]["enabled"] and settings["concurrency"]["pools"]["default_limit"] == 1


@pytest.mark.timeout(300)
def test_demo_dir_lays_out_the_project_there_and_dagster_home_holds_its_runs(tmp_path):
    here, home, folder = tmp_path / "here", tmp_path / "home", tmp_path / "elsewhere" / "my-demo"
    here.mkdir()
    # One packaged day where the demo looks for its source: the layout keeps it, and one run is synced.
    shutil.copytree(DATA / "source" / FIRST_DAY, folder / "data" / "source" / FIRST_DAY)
    demo = lsq(here, "demo", "--dir", str(folder), env=clean_env(DAGSTER_HOME=str(home)))
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert f"Demo project: {folder}" in demo.stdout and f"{FIRST_DAY}  created" in demo.stdout
    assert f"Warehouse: DuckDB {folder / 'data' / 'warehouse.duckdb'}" in demo.stdout
    assert list(here.iterdir()) == []
    assert {path.name for path in folder.iterdir()} == {"pyproject.toml", "lsq_demo", "data"}, "no instance/"
    assert (folder / "lsq_demo" / "defs" / "demo" / "defs.yaml").is_file()
    assert (folder / "data" / "mapping.yaml").is_file() and (folder / "data" / "sandbox").is_dir()
    assert (home / "dagster.yaml").read_text() == SHIPPED_INSTANCE.read_text()
    sync = lsq(here, "sync", "--project", str(folder), "--partition", FIRST_DAY, env=clean_env(DAGSTER_HOME=str(home)))
    assert sync.returncode == 0, sync.stdout + sync.stderr
    run_id = re.search(r"^Run (\S+) succeeded", sync.stdout, re.MULTILINE)[1]
    with sqlite3.connect(home / "history" / "runs.db") as storage:
        runs = {found for (found,) in storage.execute("SELECT run_id FROM runs")}
    assert run_id in runs and (home / "history" / "runs" / f"{run_id}.db").is_file()
    assert not (folder / "instance").exists() and list(here.iterdir()) == []


@pytest.mark.slow
@pytest.mark.timeout(STARTUP_SECONDS + 120)
def test_ui_serves_the_demo_project_with_dg_dev(demo_project):
    port = free_port()
    log = demo_project / "ui.log"
    with log.open("w") as out:
        ui = subprocess.Popen([str(COMMAND), "ui", "--port", str(port)], cwd=demo_project,
                              env=clean_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    query = '{ repositoriesOrError { ... on RepositoryConnection { nodes { name jobs { name } } } } }'
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                answer = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=10).json()
                nodes = answer["data"]["repositoriesOrError"]["nodes"]
                if nodes:
                    break
            except (requests.RequestException, KeyError, TypeError, json.JSONDecodeError):
                pass
            time.sleep(1)
        else:
            raise AssertionError("the UI did not load the demo project:\n" + log.read_text(errors="replace")[-3000:])
    finally:
        stop_group(ui)
    assert "/dg dev --use-active-venv" in log.read_text(errors="replace")
    assert "demo_sync_job" in {job["name"] for node in nodes for job in node["jobs"]}
