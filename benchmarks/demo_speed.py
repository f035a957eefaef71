"""Where the seconds of `lsq-pipeline demo` go: 14 days of 25 records, one in-process run a day.

Run: `.venv/bin/python benchmarks/demo_speed.py [--repeat 3] [--window default|off|C/S] [--profile]`.

Each repeat copies `data/source`, `data/mapping.yaml` and `instance/dagster.yaml` into a fresh
folder under benchmarks/out/demo_speed/ (so it never touches the project's own run state) and:

1. times the real command, `lsq-pipeline demo`, as a subprocess (the wall time a user sees);
2. runs the same command in this process with timers around each phase: the launch (project
   instance, dead-run check), `execute_job` on the in-process executor (run creation, each step, Dagster's events),
   the sync rules inside each step, DuckDB connections, HTTP calls to the sandbox, time spent
   waiting for the rate window, `record_run_outcome` and `summarize`.

It prints the medians over the repeats: seconds per phase for the whole demo and per run, and
the window-imposed floor: with W calls in S seconds and N calls in all, the N calls span at least
floor((N - 1) / W) * S seconds, whatever the compute costs. `--window off` sets
LSQ_RATE_LIMIT_CALLS=0 (client and sandbox without a window); `C/S` sets another window.
`--profile` also records the instrumented run with py-spy (if installed) into the output folder.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "demo_speed"


DAGSTER_YAML = REPO / "instance" / "dagster.yaml"


def fresh_folder(name: str) -> Path:
    folder = OUT / name
    if folder.exists():
        _stop_sandbox(folder)
        shutil.rmtree(folder)
    (folder / "data").mkdir(parents=True)
    (folder / "instance").mkdir()
    shutil.copytree(REPO / "data" / "source", folder / "data" / "source")
    shutil.copy(REPO / "data" / "mapping.yaml", folder / "data" / "mapping.yaml")
    shutil.copy(DAGSTER_YAML, folder / "instance" / "dagster.yaml")
    return folder


def _stop_sandbox(folder: Path) -> None:
    from lsq_pipeline.sandbox.embedded import stop_sandbox

    stop_sandbox(folder / "data" / "sandbox")


def window_env(window: str) -> dict[str, str]:
    if window == "default":  # the demo's own: no window unless LSQ_RATE_LIMIT_CALLS asks for one
        return {}
    if window == "off":
        return {"LSQ_RATE_LIMIT_CALLS": "0"}
    calls, seconds = window.split("/")
    return {"LSQ_RATE_LIMIT_CALLS": calls, "LSQ_RATE_LIMIT_SECONDS": seconds}


CPU: list[tuple[float, float]] = []
"""(CPU seconds of the command's process, of the sandbox server) per timed command."""


def timed_command(folder: Path, env: dict[str, str]) -> float:
    """Wall seconds of `lsq-pipeline demo` run as a user runs it, from `folder`; its CPU
    seconds and the sandbox server's go to `CPU` (less disturbed by a busy machine than wall)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).with_name("lsq-pipeline")), "demo"],
        cwd=folder, env={**os.environ, **env, "DAGSTER_HOME": str(folder / "instance")},
        check=True, stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, _sandbox_cpu(folder)))
    _stop_sandbox(folder)
    return seconds


def _sandbox_cpu(folder: Path) -> float:
    """CPU seconds used so far by the sandbox server serving `folder`."""
    try:
        pid = json.loads((folder / "data" / "sandbox" / "server.json").read_text())["pid"]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, KeyError, IndexError):
        return float("nan")


# -- the instrumented run ------------------------------------------------------------------------
class Timers:
    """Seconds and calls per phase name; `in_main` phases are wall time of the main thread,
    the others are summed over threads (HTTP calls run 8 at a time)."""

    def __init__(self) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            self.seconds[name] += seconds
            self.calls[name] += 1

    def wrap(self, owner: object, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)
        timers = self

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timers.add(name, time.perf_counter() - started)

        if hasattr(original, "cache_clear"):  # a cached function (use_project_instance) is still cleared
            wrapper.cache_clear = original.cache_clear
        setattr(owner, attribute, wrapper)

    def wrap_context(self, owner: object, attribute: str, name: str) -> None:
        """A context-manager method: times entering and leaving, not the body."""
        original = getattr(owner, attribute)
        timers = self

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            @contextmanager
            def timed():
                started = time.perf_counter()
                manager = original(*args, **kwargs)
                value = manager.__enter__()
                timers.add(name + " (open)", time.perf_counter() - started)
                try:
                    yield value
                finally:
                    started = time.perf_counter()
                    manager.__exit__(*sys.exc_info())
                    timers.add(name + " (close)", time.perf_counter() - started)

            return timed()

        setattr(owner, attribute, wrapper)


def instrumented_run(folder: Path, env: dict[str, str], profile: bool) -> dict:
    """Run `demo` in this process from `folder`, every phase timed; returns the figures."""
    if profile and shutil.which("py-spy", path=str(Path(sys.executable).parent)):
        command = [str(Path(sys.executable).with_name("py-spy")), "record", "--idle", "-r", "200", "-f", "raw",
                   "-o", str(folder / "py-spy.txt"), "--", sys.executable, __file__, "--child", str(folder)]
        subprocess.run(command, env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
    else:
        subprocess.run([sys.executable, __file__, "--child", str(folder)], env={**os.environ, **env}, check=True)
    return json.loads((folder / "figures.json").read_text())


def child(folder: Path) -> None:
    """The instrumented demo, in this process (run by `instrumented_run`)."""
    started = time.perf_counter()
    os.chdir(folder)
    os.environ["DAGSTER_HOME"] = str(folder / "instance")
    timers = Timers()
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        caller = sys._getframe(1)
        module = Path(caller.f_code.co_filename)
        timers.add(f"time.sleep in {module.parent.name}/{module.name}:{caller.f_code.co_name}, any thread", seconds)
        real_sleep(seconds)

    time.sleep = sleep

    import_started = time.perf_counter()
    import dagster as dg
    import duckdb
    from dagster._core.instance.runs.run_domain import RunDomain
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
    from lsq_pipeline.orchestration.resources import WarehouseResource

    import lsq_pipeline.cli as cli
    import lsq_pipeline.orchestration.assets as assets
    import lsq_pipeline.orchestration.history as history
    import lsq_pipeline.orchestration.metadata as metadata
    import lsq_pipeline.orchestration.runs as runs
    from lsq_pipeline.leadsquared.budget import AccountBudget
    from lsq_pipeline.leadsquared.client import LeadSquaredClient
    from lsq_pipeline.steps.push.push import Pusher
    timers.add("import dagster + load the definitions", time.perf_counter() - import_started)

    timers.wrap(runs, "use_project_instance", "launch: use_project_instance (once per process)")
    timers.wrap(runs, "release_dead_runs", "launch: release_dead_runs")
    timers.wrap(dg, "execute_job", "execute_job (all of it)")
    timers.wrap(RunDomain, "create_run", "run: create_run (+ planned events)")
    timers.wrap(SqliteEventLogStorage, "store_event", "run: Dagster events stored (SQLite)")
    timers.wrap(history, "record_run_outcome", "after: record_run_outcome")
    timers.wrap(runs, "summarize", "after: summarize (DuckDB)")
    timers.wrap(dg.DagsterInstance, "get", "DagsterInstance.get (new instance)")
    # The steps and table_metadata are wrapped under the names the assets module calls them by.
    timers.wrap(assets, "extract_days", "sync: extract_days")
    timers.wrap(assets, "transform_days", "sync: transform_days")
    timers.wrap(assets, "plan_days", "sync: plan_days")
    timers.wrap(Pusher, "push", "sync: Pusher.push")
    timers.wrap(assets, "reconcile", "sync: reconcile")
    for owner in (assets, metadata):
        timers.wrap(owner, "table_metadata", "step: table_metadata (asset metadata queries)")
    timers.wrap(duckdb, "connect", "duckdb.connect (any)")
    timers.wrap_context(WarehouseResource, "get_connection", "WarehouseResource.get_connection")
    original_attempt = LeadSquaredClient._attempt

    def attempt(self, endpoint, *args, **kwargs):
        started = time.perf_counter()
        try:
            return original_attempt(self, endpoint, *args, **kwargs)
        finally:
            timers.add(f"HTTP {endpoint.name} (round trip, summed over threads)", time.perf_counter() - started)

    LeadSquaredClient._attempt = attempt
    timers.wrap(AccountBudget, "acquire", "rate window acquire, summed over threads")

    run_starts: list[float] = []
    original_launch = runs.launch

    def launch(*args, **kwargs):
        run_starts.append(time.perf_counter())
        return original_launch(*args, **kwargs)

    runs.launch = launch
    demo_started = time.perf_counter()
    code = cli.main(["demo"])
    demo_seconds = time.perf_counter() - demo_started
    _stop_sandbox(folder)
    assert code == 0, code

    # Step durations and API figures from the runs' own events.
    instance = dg.DagsterInstance.get()
    steps: collections.Counter[str] = collections.Counter()
    window_wait = 0.0
    api_calls = []
    for record in instance.get_run_records():
        events = instance.all_logs(record.dagster_run.run_id)
        begun: dict[str, float] = {}
        calls = 0
        for event in events:
            if not event.is_dagster_event:
                continue
            kind = event.dagster_event.event_type
            if kind == dg.DagsterEventType.STEP_START:
                begun[event.step_key] = event.timestamp
            elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                steps[f"step: {event.step_key}"] += event.timestamp - begun[event.step_key]
            elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
                data = event.dagster_event.event_specific_data.materialization.metadata
                if "run_api_calls" in data:
                    calls += data["run_api_calls"].value
                    window_wait += data["run_api_seconds_waiting_for_window"].value
        api_calls.append(calls)
    with duckdb.connect("data/warehouse.duckdb", read_only=True) as conn:
        run_rows = conn.execute(
            "SELECT api_calls_total, epoch(ended_at - started_at) FROM sync_runs ORDER BY first_day"
        ).fetchall()
    return_figures = {
        "process_seconds": time.perf_counter() - started,
        "demo_seconds": demo_seconds,
        "runs": len(run_starts),
        "seconds": dict(timers.seconds),
        "calls": dict(timers.calls),
        "steps": dict(steps),
        "api_calls_per_run": [row[0] for row in run_rows],
        "run_seconds": [row[1] for row in run_rows],
        "window_wait_from_metadata": window_wait,
        "window": _window_of_settings(),
    }
    (folder / "figures.json").write_text(json.dumps(return_figures))


def _window_of_settings() -> list[float]:
    from lsq_pipeline.orchestration.runs import pick_account

    limits = pick_account(None).account_limits()
    return [limits.general.calls, limits.general.seconds]


# -- the report ------------------------------------------------------------------------------------
def median_of(figures: list[dict], pick) -> float:
    return statistics.median(pick(f) for f in figures)


def report(wall: list[float], figures: list[dict]) -> None:
    runs = figures[0]["runs"]
    print(f"\n`lsq-pipeline demo` as a subprocess, wall seconds: {', '.join(f'{s:.1f}' for s in wall)}"
          f"  -> median {statistics.median(wall):.1f} s; CPU seconds (command + sandbox server): "
          f"{', '.join(f'{c:.1f} + {b:.1f}' for c, b in CPU)}")
    print(f"instrumented run in process: demo {median_of(figures, lambda f: f['demo_seconds']):.1f} s, "
          f"whole process {median_of(figures, lambda f: f['process_seconds']):.1f} s ({runs} runs)")
    calls = figures[0]["api_calls_per_run"]
    total = sum(calls)
    window_calls, window_seconds = figures[0]["window"]
    print(f"\nAPI calls per run: {calls} = {total} in all")
    if window_calls:
        floor = (total - 1) // int(window_calls) * window_seconds
        print(f"rate window {int(window_calls)} calls / {window_seconds:g} s: the {total} calls span at least "
              f"{floor:.0f} s ({floor / runs:.2f} s a run), whatever the compute costs")
    else:
        print("rate window: off")
    print(f"waiting for the window (client, from the runs' metadata): "
          f"{median_of(figures, lambda f: f['window_wait_from_metadata']):.1f} s in all")

    names = sorted({name for f in figures for name in f["seconds"]} | {name for f in figures for name in f["steps"]})
    print(f"\n{'phase':<66} {'s in all':>9} {'s/run':>7} {'calls':>7}")
    for name in names:
        seconds = median_of(figures, lambda f: f["seconds"].get(name, f["steps"].get(name, 0.0)))
        count = median_of(figures, lambda f: f["calls"].get(name, 0))
        print(f"{name:<66} {seconds:9.2f} {seconds / runs:7.3f} {count:7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--window", default="default", help="default | off | CALLS/SECONDS")
    parser.add_argument("--profile", action="store_true", help="record the instrumented runs with py-spy")
    parser.add_argument("--skip-command", action="store_true", help="only the instrumented runs")
    parser.add_argument("--only-command", action="store_true", help="only the timed command (for A/B comparisons)")
    parser.add_argument("--dagster-yaml", type=Path, default=None, help="the instance's dagster.yaml to copy")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global DAGSTER_YAML
    DAGSTER_YAML = args.dagster_yaml.resolve() if args.dagster_yaml else DAGSTER_YAML
    if args.child:
        child(args.child)
        return
    env = window_env(args.window)
    wall, figures = [], []
    for repeat in range(args.repeat):
        if not args.skip_command:
            wall.append(timed_command(fresh_folder(f"command-{repeat}"), env))
            print(f"repeat {repeat + 1}: command {wall[-1]:.1f} s", flush=True)
        if args.only_command:
            continue
        figures.append(instrumented_run(fresh_folder(f"instrumented-{repeat}"), env, args.profile))
        print(f"repeat {repeat + 1}: instrumented {figures[-1]['demo_seconds']:.1f} s", flush=True)
    print(f"\nload average now: {os.getloadavg()[0]:.1f} (nproc {os.cpu_count()})")
    if args.only_command:
        print(f"`lsq-pipeline demo` wall seconds: {', '.join(f'{s:.1f}' for s in wall)}  -> median {statistics.median(wall):.1f} s;"
              f" CPU s (command + sandbox): {', '.join(f'{c:.1f}+{b:.1f}' for c, b in CPU)}")
        return
    report(wall or [float("nan")], figures)


if __name__ == "__main__":
    main()
