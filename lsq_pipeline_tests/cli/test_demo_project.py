"""The demo outside any dg project: it lays out a small dg project of its own, and the commands
then work on it from its folder, from any folder below it, or with --project; `ui` serves it with
`dg dev`."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import requests

from lsq_pipeline.commands.demo import DEMO_DIR
from lsq_pipeline_tests.cli.test_first_run import COMMAND, clean_env, lsq
from lsq_pipeline_tests.processes import free_port, stop_group

STARTUP_SECONDS = 180


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("empty")
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
