"""One sandbox server process per state folder, shared by every process that uses that folder.

Dagster runs each step in its own process; a sandbox per process would split the state and the
rate window, so the first caller spawns a detached server and the others find it in `server.json`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SERVER_FILE = "server.json"
LOCK_FILE = "server.lock"
LOG_FILE = "server.log"
STATE_FILE = "state.jsonl"
DEFAULT_IDLE_TIMEOUT = 15 * 60
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

_children: list[subprocess.Popen] = []  # kept so Python does not warn about a running child


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    with (state_dir / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_server_file(state_dir: Path) -> dict:
    try:
        return json.loads((state_dir / SERVER_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _healthy(url: str | None) -> bool:
    if not url:
        return False
    try:
        with urllib.request.urlopen(f"{url}/sandbox/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def _is_sandbox_process(pid: int | None) -> bool:
    """True if `pid` is a live (not zombie) `lsq_pipeline.sandbox` process."""
    if not pid:
        return False
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our exited child
    except ChildProcessError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return b"lsq_pipeline.sandbox" in cmdline and state not in ("Z", "X")


def _terminate(pid: int | None) -> None:
    if not _is_sandbox_process(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _is_sandbox_process(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT
        time.sleep(0.05)


def _options_fingerprint(access_key: str, secret_key: str, limits: dict, idle: float, profile: str,
                         account: Path | None) -> dict:
    """What the server was started with; keys only as a hash, never in clear in a file. The account
    definition by path and content, so an edited file starts a new server."""
    digest = hashlib.sha256(f"{access_key}\0{secret_key}".encode()).hexdigest()
    account_digest = hashlib.sha256(account.read_bytes()).hexdigest() if account else None
    return {"keys_sha256": digest, **limits, "idle_timeout": float(idle), "profile": profile,
            "account": str(account) if account else None, "account_sha256": account_digest}


def _limit_arguments(limits: dict) -> list[str]:
    """The server's command-line options for the rate limits and read lag given (None = the plan's,
    the profile's or the default)."""
    arguments = []
    if limits["plan"]:
        arguments += ["--plan", limits["plan"]]
    for option, calls, seconds in (
        ("--rate-limit", limits["rate_limit_calls"], limits["rate_limit_seconds"]),
        ("--bulk-rate-limit", limits["bulk_rate_limit_calls"], limits["bulk_rate_limit_seconds"]),
    ):
        if calls is not None:
            arguments += [option, "0" if calls == 0 else f"{calls}/{seconds or 5.0}"]
    if limits["daily_limit"] is not None:
        arguments += ["--daily-limit", str(limits["daily_limit"])]
    if limits["read_lag_seconds"] is not None:
        arguments += ["--read-lag-seconds", str(limits["read_lag_seconds"])]
    return arguments


def ensure_sandbox(
    state_dir: Path,
    *,
    access_key: str,
    secret_key: str,
    plan: str | None = None,
    rate_limit_calls: int | None = 25,
    rate_limit_seconds: float | None = 5.0,
    bulk_rate_limit_calls: int | None = None,
    bulk_rate_limit_seconds: float | None = None,
    daily_limit: int | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    profile: str = "documented",
    read_lag_seconds: float | None = None,
    account: Path | None = None,
) -> str:
    """The base URL of the one sandbox serving `state_dir`, started detached if none is alive.

    Rate limits are those of `SandboxOptions` (None = the plan's, else the default);
    `read_lag_seconds` None = the profile's; `account` (an account definition YAML) None = the
    packaged one. The server keeps its state in `state_dir/state.jsonl`, logs to
    `state_dir/server.log` and exits by itself after `idle_timeout` seconds without calls. A server
    started under another `profile` (or other options, or another content of the `account` file)
    is replaced.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    limits = {"plan": plan, "rate_limit_calls": rate_limit_calls, "rate_limit_seconds": rate_limit_seconds,
              "bulk_rate_limit_calls": bulk_rate_limit_calls, "bulk_rate_limit_seconds": bulk_rate_limit_seconds,
              "daily_limit": daily_limit, "read_lag_seconds": read_lag_seconds}
    account = Path(account).resolve() if account else None
    wanted = _options_fingerprint(access_key, secret_key, limits, idle_timeout, profile, account)
    with _locked(state_dir):
        info = _read_server_file(state_dir)
        alive = _is_sandbox_process(info.get("pid")) and _healthy(info.get("url"))
        if alive and info.get("options") == wanted:
            return info["url"]
        _terminate(info.get("pid"))
        return _spawn(state_dir, wanted, access_key, secret_key, _limit_arguments(limits))


def _spawn(state_dir: Path, options: dict, access_key: str, secret_key: str, limit_arguments: list[str]) -> str:
    server_file = state_dir / SERVER_FILE
    server_file.write_text(json.dumps({"options": options, "url": None, "pid": None}))
    command = [sys.executable, "-m", "lsq_pipeline.sandbox", "--host", "127.0.0.1", "--port", "0",
               "--state", str(state_dir / STATE_FILE), *limit_arguments,
               "--idle-timeout", str(options["idle_timeout"]), "--profile", options["profile"],
               "--server-file", str(server_file)]
    if options["account"]:
        command += ["--account", options["account"]]
    env = {**os.environ, "LSQ_ACCESS_KEY": access_key, "LSQ_SECRET_KEY": secret_key}  # not in argv: ps shows argv
    with (state_dir / LOG_FILE).open("ab") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                 start_new_session=True, close_fds=True)
    _children.append(child)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        info = _read_server_file(state_dir)
        if info.get("pid") == child.pid and _healthy(info.get("url")):
            return info["url"]
        if child.poll() is not None:
            break
        time.sleep(0.05)
    child.kill()
    tail = (state_dir / LOG_FILE).read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the sandbox server did not start; end of {state_dir / LOG_FILE}:\n{tail}")


def stop_sandbox(state_dir: Path) -> bool:
    """Stop the sandbox serving `state_dir`, if one runs; True if one was stopped."""
    state_dir = Path(state_dir)
    if not state_dir.exists():
        return False
    with _locked(state_dir):
        info = _read_server_file(state_dir)
        was_running = _is_sandbox_process(info.get("pid"))
        _terminate(info.get("pid"))
        (state_dir / SERVER_FILE).unlink(missing_ok=True)
        return was_running
