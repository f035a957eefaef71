"""The sandbox's HTTP layer: read a request, route it (`routes`), keys, rate limit, faults, then write the answer."""

from __future__ import annotations

import json
import random
import socket
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from hmac import compare_digest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lsq_pipeline.sandbox.account import Account
from lsq_pipeline.sandbox.backend import SandboxBackend
from lsq_pipeline.sandbox.exceptions import (
    MXAPINotFoundException,
    MXInvalidJsonException,
    MXRequestTooLargeException,
    MXUnAuthorizedAccessException,
    SandboxError,
)
from lsq_pipeline.sandbox.payloads import MAX_BODY_BYTES
from lsq_pipeline.sandbox.profiles import ProfileName, get_profile
from lsq_pipeline.sandbox.rate_limit import PLAN_SECONDS, PLANS, AccountLimiter
from lsq_pipeline.sandbox.responses import SandboxRequest
from lsq_pipeline.sandbox.routes import API_ENDPOINTS, Route, find_route

DEFAULT_ACCESS_KEY = "sandbox-access-key"
DEFAULT_SECRET_KEY = "sandbox-secret-key"
DEFAULT_RATE_LIMIT_CALLS = 25
DEFAULT_RATE_LIMIT_SECONDS = 5.0
KEEP_ALIVE_SECONDS = 60
FAULT_KINDS = ("500", "503", "drop")


class SandboxOptions(BaseModel):
    """How the server behaves: keys, profile, rate limits, latency and injected faults.

    `rate_limit_status`, `rate_limit_refused_count` and `read_lag_seconds` default to the profile's switches.
    Rate limits: a `plan` (LeadSquared's older table) sets the general and bulk windows and the
    daily limit; a value given explicitly overrides it. Without a plan: 25/5 for both classes
    and no daily limit. `rate_limit_calls=0` turns the general window off (and the bulk one,
    unless it is given).
    """

    model_config = ConfigDict(extra="forbid")

    access_key: str = DEFAULT_ACCESS_KEY
    secret_key: str = DEFAULT_SECRET_KEY
    profile: ProfileName = "documented"
    plan: Literal["lite", "pro", "super", "basic", "standard", "enterprise"] | None = None
    rate_limit_calls: int | None = Field(None, ge=0)
    rate_limit_seconds: float | None = Field(None, gt=0)
    bulk_rate_limit_calls: int | None = Field(None, ge=0)
    bulk_rate_limit_seconds: float | None = Field(None, gt=0)
    daily_limit: int | None = Field(None, ge=0)
    """Calls a day, all classes (0 = none); `POST /sandbox/day` starts a new day."""
    bulk_counts_against_general: bool = True
    rate_limit_status: Literal[429, 200] | None = None
    rate_limit_refused_count: bool | None = None
    """Refused calls count against the window (and the day) like admitted ones."""
    read_lag_seconds: float | None = Field(None, ge=0)
    """How far GetOpportunitiesById lags writes (sandbox README, "Reads lag writes")."""
    latency_ms: float = Field(0, ge=0)
    fault_rate: float = Field(0.0, ge=0, le=1)
    lost_response_rate: float = Field(0.0, ge=0, le=1)
    fault_endpoints: list[str] | None = None
    """Endpoint names (e.g. `Capture`) that faults and lost answers hit; None: every endpoint."""
    seed: int | None = None
    idle_timeout: float | None = Field(None, gt=0)
    verbose: bool = False

    @model_validator(mode="after")
    def _known_fault_endpoints(self) -> SandboxOptions:
        unknown = sorted(set(self.fault_endpoints or ()) - API_ENDPOINTS)
        if unknown:
            raise ValueError(f"unknown endpoints in fault_endpoints: {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(API_ENDPOINTS))})")
        return self

    @model_validator(mode="after")
    def _profile_defaults(self) -> SandboxOptions:
        profile = get_profile(self.profile)
        if self.rate_limit_status is None:
            self.rate_limit_status = profile.rate_limit_status
        if self.rate_limit_refused_count is None:
            self.rate_limit_refused_count = profile.refused_calls_count
        if self.read_lag_seconds is None:
            self.read_lag_seconds = profile.read_lag_seconds
        return self

    @model_validator(mode="after")
    def _limits_from_plan(self) -> SandboxOptions:
        general, bulk, daily = PLANS[self.plan] if self.plan else (DEFAULT_RATE_LIMIT_CALLS, None, 0)
        seconds = PLAN_SECONDS if self.plan else DEFAULT_RATE_LIMIT_SECONDS
        if self.rate_limit_calls is None:
            self.rate_limit_calls = general
        if self.rate_limit_seconds is None:
            self.rate_limit_seconds = seconds
        if self.bulk_rate_limit_calls is None:
            self.bulk_rate_limit_calls = self.rate_limit_calls if bulk is None else bulk
        if self.bulk_rate_limit_seconds is None:
            self.bulk_rate_limit_seconds = self.rate_limit_seconds if bulk is None else seconds
        if self.daily_limit is None:
            self.daily_limit = daily
        return self

    def limiter(self) -> AccountLimiter:
        return AccountLimiter(
            (self.rate_limit_calls, self.rate_limit_seconds),
            (self.bulk_rate_limit_calls, self.bulk_rate_limit_seconds),
            self.daily_limit,
            bulk_counts_against_general=self.bulk_counts_against_general,
            counts_refused=self.rate_limit_refused_count,
        )


class _Dropped(Exception):
    """Close the connection without an answer (an injected fault or a lost response)."""


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threading HTTP/1.1 server bound to one backend (one account)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], backend: SandboxBackend, options: SandboxOptions):
        self.backend = backend
        self.options = options
        self.limiter = options.limiter()
        self.last_call = time.monotonic()
        self._random = random.Random(options.seed)
        self._random_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        self.held = 0  # API calls waiting for `release`
        self._held_lock = threading.Lock()
        super().__init__(address, SandboxRequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._random_lock:
            return self._random.random() < rate

    def pick_fault(self) -> str:
        with self._random_lock:
            return self._random.choice(FAULT_KINDS)

    def hold(self) -> None:
        """API calls from now on wait, received but unanswered, until `release`: calls in the air on demand."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def wait_if_held(self) -> None:
        if self._released.is_set():
            return
        with self._held_lock:
            self.held += 1
        try:
            self._released.wait()
        finally:
            with self._held_lock:
                self.held -= 1

    def log(self, line: str) -> None:
        if self.options.verbose:
            print(line, file=sys.stderr, flush=True)

    # Track live connections so that closing the server also ends its keep-alive connections.
    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        if self.options.verbose:
            traceback.print_exc()

    def watch_idle(self) -> None:
        """Shut the server down after `idle_timeout` seconds without a request."""
        while True:
            time.sleep(min(1.0, self.options.idle_timeout / 4))
            if time.monotonic() - self.last_call > self.options.idle_timeout:
                self.log("sandbox: idle timeout reached, stopping")
                self.shutdown()
                return


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """One request: route, keys, rate limit, faults, then the backend."""

    protocol_version = "HTTP/1.1"
    server_version = "LeadSquaredSandbox/1.0"
    timeout = KEEP_ALIVE_SECONDS
    disable_nagle_algorithm = True  # headers and body go out without a 40 ms delayed-ACK stall
    wbufsize = -1  # buffered: one write per answer (flushed by the base class after each request)
    server: SandboxHTTPServer

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    # Never let the standard logging print the request line: its query string may hold keys.
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass

    def _handle(self, method: str) -> None:
        self.received = time.monotonic()
        self.server.last_call = self.received
        try:
            request = self._parse(method)
            route = find_route(request.method, request.path)
            if route is None:
                raise MXAPINotFoundException()
            if route.checks_keys:
                self._check_keys(request)
            if route.endpoint is None:
                self._send(200, route.handler(request, self.server))
            else:
                self._send(*self._call_api(route, request))
        except _Dropped:
            self._drop()
        except SandboxError as error:
            self._send(error.http_status, error.body())
        except Exception:  # a bug must not kill the connection's thread silently
            self.server.log(traceback.format_exc())
            self._send(500, {"Status": "Error", "ExceptionType": "MXInternalServerException",
                             "ExceptionMessage": "Internal error of the sandbox."})

    def _parse(self, method: str) -> SandboxRequest:
        """The request as the routes read it; the body first, so an oversized one is refused before anything else."""
        body = self._read_body()
        parts = urlsplit(self.path)
        query = {k.lower(): v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
        return SandboxRequest(
            method=method,
            path=unquote(parts.path).rstrip("/").lower() or "/",
            query=query,
            body=body,
            content_type=self.headers.get("Content-Type", ""),
            access_key=query.get("accesskey") or self.headers.get("x-LSQ-AccessKey") or "",
            secret_key=query.get("secretkey") or self.headers.get("x-LSQ-SecretKey") or "",
        )

    def _check_keys(self, request: SandboxRequest) -> None:
        options = self.server.options
        if not (compare_digest(request.access_key.encode(), options.access_key.encode())
                and compare_digest(request.secret_key.encode(), options.secret_key.encode())):
            raise MXUnAuthorizedAccessException()

    def _call_api(self, route: Route, request: SandboxRequest) -> tuple[int, Any]:
        """A LeadSquared API call: held, delayed, rate limited and perhaps faulted before its handler runs."""
        server, options, backend = self.server, self.server.options, self.server.backend
        endpoint = route.endpoint
        backend.stats.count("calls", endpoint)
        server.wait_if_held()
        # The call arrives `latency_ms` after it was received, and is counted then: at that time,
        # not whenever this thread wakes from its sleep (on a busy machine, hundreds of ms later).
        arrival = self.received + options.latency_ms / 1000
        time.sleep(max(0.0, arrival - time.monotonic()))
        refusal = server.limiter.admit(endpoint, at=arrival)
        if refusal is not None:
            backend.stats.count("rate_limited")
            return options.rate_limit_status, refusal.error.body()
        targeted = options.fault_endpoints is None or endpoint in options.fault_endpoints
        if targeted and server.chance(options.fault_rate):
            kind = server.pick_fault()
            backend.stats.count("faults", kind)
            server.log(f"sandbox: injected fault {kind} on {endpoint}")
            if kind == "drop":
                raise _Dropped()
            if kind == "503":
                return 503, {"Message": "Service Unavailable"}
            return 500, {"Message": "An error has occurred."}
        answer = route.handler(request, server)
        if route.is_write and targeted and server.chance(options.lost_response_rate):
            backend.stats.count("lost_responses")
            server.log(f"sandbox: dropping the answer of a committed {endpoint}")
            raise _Dropped()
        return 200, answer

    def _read_body(self) -> bytes:
        """The body, at most MAX_BODY_BYTES: a larger declared length is refused before anything is read."""
        length = self.headers.get("Content-Length")
        if length is None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked()
            return b""
        try:
            size = int(length)
        except ValueError:
            self.close_connection = True
            raise MXInvalidJsonException("Invalid Content-Length.") from None
        self._check_size(size)
        return self.rfile.read(size) if size > 0 else b""

    def _read_chunked(self) -> bytes:
        chunks, total = [], 0
        while True:
            try:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            except ValueError:
                self.close_connection = True
                raise MXInvalidJsonException("Invalid chunk size.") from None
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            self._check_size(total)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _check_size(self, size: int) -> None:
        if size > MAX_BODY_BYTES:
            self.close_connection = True  # the rest of the body is never read
            raise MXRequestTooLargeException(size, MAX_BODY_BYTES)

    def _send(self, status: int, answer: Any) -> None:
        payload = json.dumps(answer, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.server.log(f"{self.command} {urlsplit(self.path).path} {status}")

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@dataclass
class RunningSandbox:
    """A sandbox serving in a background thread: `.url` (no trailing slash) and `.backend`."""

    url: str
    backend: SandboxBackend
    server: SandboxHTTPServer


@contextmanager
def run_sandbox(
    *,
    account: Account | str | Path | None = None,
    state_path: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> Iterator[RunningSandbox]:
    """Serve a sandbox on `host:port` (a free port by default) in a background thread, shut down on exit.

    Options are those of `SandboxOptions`: access_key, secret_key, profile ("documented", "terse",
    "field"), plan, rate_limit_calls (0 = off), rate_limit_seconds, bulk_rate_limit_calls,
    bulk_rate_limit_seconds, daily_limit, bulk_counts_against_general, rate_limit_status,
    rate_limit_refused_count, read_lag_seconds, latency_ms, fault_rate, lost_response_rate,
    fault_endpoints, seed.
    """
    settings = SandboxOptions(**options)
    backend = SandboxBackend(account, state_path, profile=settings.profile, read_lag_seconds=settings.read_lag_seconds)
    server = SandboxHTTPServer((host, port), backend, settings)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="lsq-sandbox", daemon=True)
    thread.start()
    try:
        yield RunningSandbox(server.url, backend, server)
    finally:
        stop_server(server)
        thread.join(timeout=5)


def stop_server(server: SandboxHTTPServer) -> None:
    """Stop serving, answer held calls, end open connections, close the state journal."""
    server.release()
    server.shutdown()
    server.server_close()
    server.close_connections()
    server.backend.close()
