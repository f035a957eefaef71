"""Whether a run may still be sending: the instance's word, and for a command-line run of this
machine, whether its launching process is still there (no daemon watches those)."""

from __future__ import annotations

import os
import socket

import dagster as dg

# Who launched a command-line run, so a later command can tell that its process is gone.
PID_TAG = "lsq_pipeline/launcher_pid"
HOST_TAG = "lsq_pipeline/launcher_host"


def release_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Command-line runs of this machine whose launching process is gone (killed with SIGKILL,
    machine rebooted) stay `STARTED` and keep their pool slots forever: no daemon watches them.
    Mark them failed and give their slots back, so the next run does not wait on a dead one."""
    released = []
    host = socket.gethostname()
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
                              tags={HOST_TAG: host})
    )
    for record in records:
        run = record.dagster_run
        pid = int(run.tags.get(PID_TAG, "0") or 0)
        if not pid or _alive(pid):
            continue
        instance.report_run_failed(run, f"its process {pid} is gone (killed); pool slots released")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released


# Runs in these states may still send and answer; every other state is over.
_LIVE_STATUSES = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
}


def run_is_alive(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether a run may still be sending: the instance knows it, it has not ended, and, for a
    command-line run of this machine, its launching process is still there (a SIGKILLed run
    stays `STARTED` on the instance). A run the instance does not know is taken as dead."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.status not in _LIVE_STATUSES:
        return False
    pid = int(run.tags.get(PID_TAG, "0") or 0)
    if pid and run.tags.get(HOST_TAG) == socket.gethostname():
        return _alive(pid)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
