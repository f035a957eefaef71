"""What the deployment tests share: Dagster's commands in process groups of their own, bounded
waits, the webserver's GraphQL and a backfill launched through it."""

from __future__ import annotations

import subprocess
import time
from datetime import date, timedelta
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
STARTUP_SECONDS = 120

# What a launch may answer besides success, for both mutations.
LAUNCH_ERRORS = """
    ... on PythonError { message stack }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on UnauthorizedError { message }
    ... on ConflictingExecutionParamsError { message }
    ... on NoModeProvidedError { message }
    ... on InvalidSubsetError { message }
    ... on RunConflict { message }
"""

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId launchedRunIds }
    ... on PartitionSetNotFoundError { message }""" + LAUNCH_ERRORS + """
  }
}
"""

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PipelineNotFoundError { message }
    ... on PresetNotFoundError { message }""" + LAUNCH_ERRORS + """
  }
}
"""

BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      numPartitions
      runs { runId status tags { key value } }
      error { message }
    }
    ... on PythonError { message }
  }
}
"""

TERMINAL_RUN = {"SUCCESS", "FAILURE", "CANCELED"}
TERMINAL_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    answer = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=30)
    answer.raise_for_status()
    body = answer.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def wait_until(what: str, predicate, timeout: float, every: float = 0.5, log: Path | None = None,
               process: subprocess.Popen | None = None):
    """`predicate()`'s first truthy value, polled until `timeout`; the process must stay up."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{process.args[0]} exited while waiting for {what}:\n{tail(log)}")
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail(log)}")
        time.sleep(every)


def tail(log: Path | None, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log is not None and log.exists() else ""


def start(command: list[str], folder: Path, env: dict, log_path: Path) -> subprocess.Popen:
    """A Dagster command of the venv in `folder`, in a process group of its own."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [str(BIN / command[0]), *command[1:]], cwd=folder,
            env={**env, "PATH": f"{BIN}:{env.get('PATH', '')}"},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


def wait_for_location(url: str, process: subprocess.Popen, log: Path) -> None:
    """The webserver at `url` serves the `lsq_pipeline` code location, loaded without error."""
    query = """{ workspaceOrError { ... on Workspace { locationEntries { name
                 locationOrLoadError { __typename ... on PythonError { message } } } } } }"""

    def loaded():
        try:
            entries = graphql(url, query)["workspaceOrError"]["locationEntries"]
        except (requests.RequestException, ValueError, KeyError):
            return None
        return next((e["locationOrLoadError"] for e in entries
                     if e["name"] == "lsq_pipeline" and e["locationOrLoadError"]), None)

    state = wait_until("the webserver to serve the code location", loaded, STARTUP_SECONDS, every=1,
                       log=log, process=process)
    assert state["__typename"] == "RepositoryLocation", state


def launch_backfill(url: str, days: list[str]) -> str:
    """A backfill of sync_job over `days`, launched as the UI does; its id."""
    launched = graphql(url, LAUNCH_BACKFILL, {"params": {
        "selector": {
            "repositorySelector": {"repositoryLocationName": "lsq_pipeline", "repositoryName": "__repository__"},
            "partitionSetName": "sync_job_partition_set",
        },
        "partitionNames": days,
    }})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def wait_for_backfill(url: str, backfill_id: str, timeout: float, log: Path,
                      process: subprocess.Popen | None = None) -> list[dict]:
    """The backfill's runs once it and every run of it have ended."""
    def finished():
        backfill = graphql(url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        runs = backfill["runs"]
        done = backfill["status"] in TERMINAL_BACKFILL and runs and all(r["status"] in TERMINAL_RUN for r in runs)
        return runs if done else None

    return wait_until(f"backfill {backfill_id} to finish", finished, timeout, every=2, log=log, process=process)


def covered_days(runs: list[dict]) -> list[str]:
    """The days the runs cover, sorted: one per partition run, every day of a range run."""
    covered = []
    for run in runs:
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        if "dagster/partition" in tags:
            covered.append(tags["dagster/partition"])
        else:
            first = date.fromisoformat(tags["dagster/asset_partition_range_start"])
            last = date.fromisoformat(tags["dagster/asset_partition_range_end"])
            covered += [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    return sorted(covered)
