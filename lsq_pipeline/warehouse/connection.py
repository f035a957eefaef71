"""Where an account's warehouse lives and how a connection to it opens: a DuckDB file, or a
PostgreSQL database that DuckDB attaches through its `postgres` extension, so every query of the
pipeline is the same DuckDB SQL on either. A burst of writes shares one connection while it lasts
(`ReusedConnection`).

A DuckDB file takes one writing process at a time: a connection waits out another process's lock
(a notebook, a second run) up to a timeout, saying every 30 s who holds it. PostgreSQL takes any
number of writers and readers; correctness between runs comes from its transactions, not from a
single writer (see docs/guarantees.md)."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import duckdb

from lsq_pipeline.extras import require

POSTGRES_SCHEMES = ("postgresql", "postgres")
POSTGRES_CATALOG = "warehouse"
"""The name the attached PostgreSQL database has inside DuckDB."""
LOCK_REPORT_SECONDS = 30.0
FILE_CONFIG: dict[str, str] = {"storage_compatibility_version": "latest"}
"""How a warehouse file is opened: a new one is written in DuckDB 1.5's own storage format, whose
zstd compression the record tables ask for (the default, readable by DuckDB 0.10, has none)."""
NUL_STORED_AS = "\u2400"
"""What a NUL byte of the source becomes in PostgreSQL, whose text holds none, and how a reject shows
one on either backend: validation takes either as the NUL byte it is, and rejects it."""
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
_NEWER_STORAGE = re.compile(r"Trying to read a database file with version number (?P<found>\d+), "
                            r"but we can only read versions between \d+ and (?P<newest>\d+)")
"""DuckDB's IOException on a file of a newer storage version (DuckDB 2.0.1's files say 999)."""
UPGRADE_COMMAND = "lsq-pipeline warehouse upgrade"
UPGRADE_DOC = 'docs/deployment.md, "Warehouses made by the previous release (DuckDB 2.0)"'


class WarehouseError(RuntimeError):
    """The warehouse cannot be opened: the message is one line naming the cause and the fix."""


class NewerDuckDBFile(WarehouseError):
    """The DuckDB file was written by a newer DuckDB than this one (the previous release's 2.x):
    `lsq-pipeline warehouse upgrade` rewrites it (lsq_pipeline.warehouse.upgrade)."""


def newer_storage_version(error: BaseException) -> bool:
    """Whether DuckDB refused a file because a newer DuckDB wrote it, and for no other reason."""
    found = _NEWER_STORAGE.search(str(error)) if isinstance(error, duckdb.IOException) else None
    return found is not None and int(found["found"]) > int(found["newest"])


def is_postgres(target: str) -> bool:
    return urlsplit(target).scheme in POSTGRES_SCHEMES


def postgres_url_problem(url: str) -> str | None:
    """Why `url` cannot name the warehouse's PostgreSQL database, or None. A password is refused:
    URLs are shown in the UI, logs and errors; libpq reads it from PGPASSWORD or ~/.pgpass."""
    parts = urlsplit(url)
    if parts.password is not None:
        return ("a PostgreSQL URL must not carry a password (URLs are shown in the UI and in logs): remove it and "
                "give it to libpq through the PGPASSWORD variable or ~/.pgpass")
    if not parts.hostname or not parts.path.strip("/"):
        return "a PostgreSQL URL names a host and a database: postgresql://user@host:5432/dbname"
    return None


def schema_problem(schema: str) -> str | None:
    if _SCHEMA_NAME.match(schema):
        return None
    return f"{schema!r} is not a schema name (lower-case letters, digits and _, not starting with a digit)"


@dataclass(frozen=True)
class Warehouse:
    """An account's warehouse: `target` is a DuckDB file's path or a `postgresql://` URL without a
    password; `schema` is the PostgreSQL schema its tables live in (accounts may share a database)."""

    target: str
    schema: str = "public"
    memory_limit: str = "768MB"
    lock_timeout_seconds: float = 600.0

    @property
    def on_postgres(self) -> bool:
        return is_postgres(self.target)

    def describe(self) -> str:
        """How messages name it (never a secret: a URL with a password is refused)."""
        return f"PostgreSQL {self.target}, schema {self.schema}" if self.on_postgres else f"DuckDB {self.target}"

    @property
    def kind(self) -> str:
        """The Dagster kind of its tables: `postgres` or `duckdb`."""
        return "postgres" if self.on_postgres else "duckdb"

    def table_name(self, table: str) -> str:
        """`database.schema.table`, as Dagster's `dagster/table_name` shows it."""
        if self.on_postgres:
            return f"{urlsplit(self.target).path.strip('/')}.{self.schema}.{table}"
        return f"{Path(self.target).stem}.main.{table}"

    def exists(self) -> bool:
        """False for a DuckDB file not made yet (nothing has run); a database is taken to exist."""
        return self.on_postgres or Path(self.target).exists()

    @contextmanager
    def connect(self, log: Callable[[str], None] = print, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection whose unqualified tables are the warehouse's, closed on exit. `log`
        hears about a DuckDB file's lock while the connection waits for it."""
        _mark_pandas_absent()
        conn = self._open_postgres() if self.on_postgres else self._open_file(log, read_only)
        try:
            yield conn
        finally:
            with nullcontext() if self.on_postgres else _file_handles:
                conn.close()

    @contextmanager
    def writer_lock(self, log: Callable[[str], None] = print) -> Iterator[None]:
        """On PostgreSQL, the account's writer lock, held while a step writes: a session advisory
        lock on a connection of its own, so runs on any machines take turns without any pool, and
        a run whose process or machine dies loses it as soon as PostgreSQL drops its connection
        (TCP keepalives: within about 25 s). Readers never wait for it. A DuckDB file needs none:
        it takes one writing process at a time, and the pools pace its steps."""
        if not self.on_postgres:
            yield
            return
        psycopg2 = require("psycopg2", "postgres", "a PostgreSQL warehouse's writer lock")

        key = f"lsq_pipeline:{urlsplit(self.target).path.strip('/')}:{self.schema}"
        try:
            session = psycopg2.connect(self.target, application_name="lsq_pipeline writer", keepalives=1,
                                       keepalives_idle=10, keepalives_interval=5, keepalives_count=3)
        except psycopg2.Error as error:
            raise WarehouseError(f"cannot connect to the warehouse {self.target}: {first_line(error)}") from None
        try:
            session.autocommit = True
            with session.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [key])
                if not cursor.fetchone()[0]:
                    log(f"waiting for the warehouse's writer lock ({key}): another run is writing to it")
                    cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
            yield
        finally:
            session.close()  # ends the session, and with it the lock

    # -- a DuckDB file --------------------------------------------------------------------------
    def _open_file(self, log: Callable[[str], None], read_only: bool) -> duckdb.DuckDBPyConnection:
        """Open the file, waiting up to `lock_timeout_seconds` while another process holds it."""
        config = {**FILE_CONFIG, "memory_limit": self.memory_limit}
        if not read_only:  # a new file's folder may not exist yet (an account whose source is a table)
            Path(self.target).parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        next_report, delay = started + LOCK_REPORT_SECONDS, 0.02
        while True:
            try:
                with _file_handles:
                    return duckdb.connect(self.target, read_only=read_only, config=config)
            except duckdb.IOException as error:
                if newer_storage_version(error):
                    raise NewerDuckDBFile(
                        f"the warehouse {self.target} was written by a newer DuckDB (2.x, the previous lsq_pipeline "
                        f"release) than this one ({duckdb.__version__}), which cannot open it: rewrite it once with "
                        f"`{UPGRADE_COMMAND}` (--account NAME for another account; the old file is kept), see "
                        f"{UPGRADE_DOC}"
                    ) from None
                holder = _LOCK_HOLDER.search(str(error))
                if holder is None:
                    raise
                who = f"{holder['program']} (PID {holder['pid']})"
                now = time.monotonic()
                if now - started >= self.lock_timeout_seconds:
                    raise WarehouseError(
                        f"the warehouse {self.target} is locked by {who}: waited {self.lock_timeout_seconds:g} s "
                        f"(warehouse_lock_timeout_seconds). Close that connection or end that process, then run "
                        f"again; nothing was written. `lsq-pipeline state` reads without holding the lock"
                    ) from None
                if now >= next_report:
                    log(f"waiting for the warehouse {self.target}: {who} holds its lock "
                        f"({now - started:.0f} s of {self.lock_timeout_seconds:g} s)")
                    next_report += LOCK_REPORT_SECONDS
                time.sleep(min(delay, max(0.0, started + self.lock_timeout_seconds - now)))
                delay = min(delay * 2, 1.0)

    # -- PostgreSQL -----------------------------------------------------------------------------
    def _open_postgres(self) -> duckdb.DuckDBPyConnection:
        """A cursor of the process's DuckDB that has the database attached (attached once per
        process: a connection then costs a cursor), with the account's schema as the default."""
        conn = _attached(self.target, self.schema, self.memory_limit).cursor()
        conn.execute(f'USE {POSTGRES_CATALOG}."{self.schema}"')
        return conn


_file_handles = threading.Lock()
"""Held while a DuckDB file's connection opens or closes. DuckDB shares one open database among a
process's connections to a file, and two threads that open it at once, or open it while the last
connection closes, can both try to attach it: one fails with "Unique file handle conflict". A run's
push lanes, two runs in one process, and a daemon's sensors all open connections from threads."""
_attached_databases: dict[tuple[int, str, str, str], duckdb.DuckDBPyConnection] = {}
_attach_lock = threading.Lock()


def _mark_pandas_absent() -> None:
    """DuckDB 1.5 looks for pandas twice for every element of a list parameter and, when pandas is
    not installed, searches the import path each time: 100 µs an element, 13 s for the read-back of
    15,000 records. Once pandas is marked absent, each lookup fails at once. An installed pandas is
    left alone."""
    if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None:
        sys.modules["pandas"] = None


def _attached(url: str, schema: str, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB with `url` attached and `schema` made: PostgreSQL resolves the
    names of views created through DuckDB in `schema` (its search_path)."""
    key = (os.getpid(), url, schema, memory_limit)
    with _attach_lock:
        if key in _attached_databases:
            return _attached_databases[key]
        problem = postgres_url_problem(url) or schema_problem(schema)
        if problem:
            raise WarehouseError(problem)
        database = duckdb.connect(config={"memory_limit": memory_limit})
        load_postgres_extension(database)
        database.execute(f"SET GLOBAL pg_null_byte_replacement = '{NUL_STORED_AS}'")
        separator = "&" if urlsplit(url).query else "?"
        dsn = f"{url}{separator}options={quote(f'-c search_path={schema}', safe='')}"
        try:
            database.execute(f"ATTACH '{dsn}' AS {POSTGRES_CATALOG} (TYPE postgres)")
        except duckdb.Error as error:
            raise WarehouseError(f"cannot connect to the warehouse {url}: {first_line(error)}") from None
        database.execute(f'CREATE SCHEMA IF NOT EXISTS {POSTGRES_CATALOG}."{schema}"')
        _attached_databases[key] = database
        return database


POSTGRES_EXTRA = "pip install 'lsq_pipeline[postgres]'"


def load_postgres_extension(database: duckdb.DuckDBPyConnection) -> None:
    """Load DuckDB's `postgres` extension: from its PyPI wheel when installed (offline; the
    postgres extra), else through DuckDB's own INSTALL from its extension repository."""
    wheel_build = _wheel_extension()
    if wheel_build is not None:
        database.execute(f"LOAD '{wheel_build}'")
        return
    try:
        database.execute("INSTALL postgres")
        database.execute("LOAD postgres")
    except duckdb.Error as error:
        raise WarehouseError(f"a PostgreSQL warehouse needs DuckDB's postgres extension, which DuckDB "
                             f"{duckdb.__version__} could not install ({first_line(error)}): {POSTGRES_EXTRA}") from None


def _wheel_extension() -> Path | None:
    """The extension of the `duckdb-extension-postgres` wheel for this DuckDB, under the file name
    DuckDB expects (`postgres_scanner`): a link made once in the temporary folder. None when the
    wheel is not installed or has no build for this DuckDB."""
    spec = importlib.util.find_spec("duckdb_extension_postgres")
    if spec is None or spec.origin is None:
        return None
    version = duckdb.__version__
    binary = Path(spec.origin).parent / "extensions" / f"v{version}" / "postgres.duckdb_extension"
    if not binary.is_file():
        return None
    link = Path(tempfile.gettempdir()) / f"lsq_pipeline-duckdb-{version}-{os.getuid()}" / "postgres_scanner.duckdb_extension"
    if not (link.is_symlink() and link.resolve() == binary.resolve()):
        link.parent.mkdir(parents=True, exist_ok=True)
        staged = link.with_name(f".{os.getpid()}.{threading.get_ident()}")
        staged.unlink(missing_ok=True)
        staged.symlink_to(binary)
        staged.replace(link)
    return link


def first_line(error: BaseException) -> str:
    """An error's first line, for messages of one line."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


class ReusedConnection:
    """A connection factory over `connect` (e.g. `WarehouseResource.get_connection`) that keeps its
    connection open between uses that follow each other closely, so a burst of small writes
    (a push's journal rows and answers between fast calls) opens the DuckDB file once, not once
    a write: an open costs ~11 ms and a close 2-4 ms however small the file, while a `connect`
    made when one is already open in the process reuses the open database (~0.05 ms).

    The file stays as free for other processes as one connection a write leaves it: an idle
    connection is closed `linger` seconds after its last use, and one open for `max_hold`
    seconds is closed when its current use ends, however busy. A call while the kept
    connection is lent to another thread, or nested in a use, gets a connection of its own
    (cheap while the kept one is open). A use that raises closes the connection. `close()`
    closes it at once; call it when the burst is over."""

    def __init__(self, connect: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]],
                 linger: float = 0.05, max_hold: float = 0.5) -> None:
        self._connect = connect
        self.linger = linger
        self.max_hold = max_hold
        self._lock = threading.Lock()
        self._manager: AbstractContextManager | None = None  # the kept connection's context manager
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._opened = 0.0
        self._lent = False
        self._close_requested = False
        self._closer: threading.Timer | None = None
        self.opened = 0
        """Connections opened through `connect` (kept or not): what the reuse saves shows here."""

    def __call__(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self._use()

    @contextmanager
    def _use(self) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = self._borrow()
        if conn is None:  # the kept one is in use: a connection of this use's own
            with self._lock:
                self.opened += 1
            with self._connect() as own:
                yield own
            return
        try:
            yield conn
        except BaseException:
            self._give_back(failed=True)
            raise
        self._give_back(failed=False)

    def _borrow(self) -> duckdb.DuckDBPyConnection | None:
        with self._lock:
            if self._lent:
                return None
            if self._closer is not None:
                self._closer.cancel()
                self._closer = None
            if self._conn is None:
                manager = self._connect()
                self._conn = manager.__enter__()
                self._manager, self._opened = manager, time.monotonic()
                self.opened += 1
            self._lent = True
            return self._conn

    def _give_back(self, failed: bool) -> None:
        with self._lock:
            self._lent = False
            if (failed or self._close_requested or self.linger <= 0
                    or time.monotonic() - self._opened >= self.max_hold):
                self._close_locked()
                return
            self._closer = threading.Timer(self.linger, self._close_if_idle)
            self._closer.daemon = True
            self._closer.start()

    def _close_if_idle(self) -> None:
        with self._lock:
            if not self._lent:
                self._close_locked()

    def _close_locked(self) -> None:
        self._close_requested = False
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        manager, self._manager, self._conn = self._manager, None, None
        if manager is not None:
            manager.__exit__(None, None, None)

    def close(self) -> None:
        """Close the kept connection now (a use in progress keeps it until it ends)."""
        with self._lock:
            if self._lent:
                self._close_requested = True
            else:
                self._close_locked()
