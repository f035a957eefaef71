"""`python -m lsq_pipeline.sandbox`: run a sandbox server in the foreground (used by `embedded`)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from lsq_pipeline.sandbox.backend import SandboxBackend
from lsq_pipeline.sandbox.profiles import PROFILES
from lsq_pipeline.sandbox.rate_limit import PLANS
from lsq_pipeline.sandbox.server import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
    SandboxHTTPServer,
    SandboxOptions,
)


def parse_rate_limit(text: str) -> tuple[int, float]:
    """`CALLS/SECONDS` (e.g. `25/5`) or `0` (off)."""
    text = text.strip()
    if text == "0":
        return 0, 5.0
    try:
        calls, seconds = text.split("/")
        result = int(calls), float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CALLS/SECONDS like 25/5, or 0; got {text!r}") from None
    if result[0] < 0 or result[1] <= 0:
        raise argparse.ArgumentTypeError("CALLS must be >= 0 and SECONDS > 0")
    return result


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by `lsq-pipeline sandbox` and `python -m lsq_pipeline.sandbox`."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--access-key", default=os.environ.get("LSQ_ACCESS_KEY") or DEFAULT_ACCESS_KEY)
    parser.add_argument("--secret-key", default=os.environ.get("LSQ_SECRET_KEY") or DEFAULT_SECRET_KEY)
    parser.add_argument("--profile", choices=list(PROFILES), default="documented",
                        help="behaviour where the pages are silent (sandbox README, Profiles)")
    parser.add_argument("--state", type=Path, default=None, help="JSON-lines state journal (persist across restarts)")
    parser.add_argument("--plan", choices=sorted(PLANS), default=None,
                        help="LeadSquared plan (older table): sets both windows and the daily limit")
    parser.add_argument("--rate-limit", type=parse_rate_limit, default=None, metavar="CALLS/SECONDS",
                        help="general sliding window per account (default: the plan's, else 25/5); 0 turns it off")
    parser.add_argument("--bulk-rate-limit", type=parse_rate_limit, default=None, metavar="CALLS/SECONDS",
                        help="window of the Bulk APIs class (default: the plan's 1/5, else the general one)")
    parser.add_argument("--daily-limit", type=int, default=None, metavar="N",
                        help="calls a day, all classes (default: the plan's, else none); POST /sandbox/day starts a new day")
    parser.add_argument("--rate-limit-status", type=int, choices=(429, 200), default=None,
                        help="default: the profile's")
    parser.add_argument("--read-lag-seconds", type=float, default=None, metavar="N",
                        help="GetOpportunitiesById lags writes by N seconds (default: the profile's)")
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--lost-response-rate", type=float, default=0.0)
    parser.add_argument("--fault-endpoints", type=lambda text: text.split(","), default=None,
                        help="comma-separated endpoint names (e.g. Capture) that faults and lost answers hit; default all")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--account", type=Path, default=None, help="account definition (YAML)")
    parser.add_argument("--idle-timeout", type=float, default=None, help="exit after S seconds without calls")
    parser.add_argument("--server-file", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true", help="no access log")


def serve(args: argparse.Namespace) -> int:
    """Run until Ctrl-C / SIGTERM / idle timeout; print the URL once listening."""
    calls, seconds = args.rate_limit or (None, None)
    bulk_calls, bulk_seconds = args.bulk_rate_limit or (None, None)
    options = SandboxOptions(
        access_key=args.access_key, secret_key=args.secret_key, profile=args.profile, plan=args.plan,
        rate_limit_calls=calls, rate_limit_seconds=seconds, bulk_rate_limit_calls=bulk_calls,
        bulk_rate_limit_seconds=bulk_seconds, daily_limit=args.daily_limit, rate_limit_status=args.rate_limit_status,
        read_lag_seconds=args.read_lag_seconds,
        latency_ms=args.latency_ms, fault_rate=args.fault_rate, lost_response_rate=args.lost_response_rate,
        fault_endpoints=args.fault_endpoints, seed=args.seed, idle_timeout=args.idle_timeout, verbose=not args.quiet,
    )
    backend = SandboxBackend(args.account, args.state, profile=options.profile,
                             read_lag_seconds=options.read_lag_seconds)
    server = SandboxHTTPServer((args.host, args.port), backend, options)
    if args.server_file:
        _write_server_file(args.server_file, server.url)
    print(f"LeadSquared sandbox listening on {server.url}", flush=True)
    print(f"profile: {options.profile}", flush=True)
    if options.read_lag_seconds:
        print(f"reads lag writes by {options.read_lag_seconds:g} s", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    if options.idle_timeout:
        threading.Thread(target=server.watch_idle, daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.close_connections()
        backend.close()
        print("LeadSquared sandbox stopped", flush=True)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _write_server_file(path: Path, url: str) -> None:
    """Tell `ensure_sandbox` where this server listens (atomic replace)."""
    info = json.loads(path.read_text()) if path.exists() else {}
    info.update(url=url, pid=os.getpid())
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lsq_pipeline.sandbox", description=__doc__)
    add_server_arguments(parser)
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
