"""A real PostgreSQL server of the test session's own, from the machine's `postgresql` package
(`pg_config --bindir` names its `initdb` and `pg_ctl`): one per xdist worker, on a free port,
with its data in a temporary folder, stopped when the session ends. As root it runs as the
`postgres` user (initdb refuses root).

Connections from 127.0.0.1 are trusted, except for the role `PASSWORD_ROLE`, which must give its
password (`PASSWORD`): the tests of libpq's `PGPASSWORD` and `~/.pgpass` use it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from lsq_pipeline_tests.processes import free_port

PASSWORD_ROLE = "lsq_password_role"
PASSWORD = "s3cret-Pg-password"


class PostgresUnavailable(RuntimeError):
    """The machine has no PostgreSQL server package."""


@dataclass(frozen=True)
class PostgresServer:
    port: int
    data_dir: Path
    bindir: Path
    user: str | None
    """Who the server runs as (`postgres` when the tests run as root), None for the current user."""

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` with psql as the superuser; its output, unaligned and without headers."""
        return subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", self.url(database), "-c", sql],
            check=True, capture_output=True, text=True,
        ).stdout.strip()

    def new_database(self, prefix: str = "test") -> str:
        """A new empty database; its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        self._as_server([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"],
                        check=False)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def _as_server(self, command: list[str], check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(command, user=self.user, check=check, capture_output=True, text=True)


def bindir() -> Path:
    """Where the package's `initdb` and `pg_ctl` are."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = Path(subprocess.run([pg_config, "--bindir"], check=True, capture_output=True, text=True).stdout.strip())
        if (found / "initdb").exists():
            return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if candidates:
        return candidates[-1].parent
    raise PostgresUnavailable("no PostgreSQL server: install Debian's postgresql package (initdb, pg_ctl)")


def start_server() -> PostgresServer:
    """initdb, configure, start; the caller stops it."""
    binaries = bindir()
    user = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="lsq-pg-"))
    data_dir = base / "data"
    if user:
        shutil.chown(base, user)
    server = PostgresServer(free_port(), data_dir, binaries, user)
    server._as_server([str(binaries / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust",
                       "-E", "UTF8", "--locale=C"])
    hba = f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 trust\n" \
          "local all all trust\n"
    (data_dir / "pg_hba.conf").write_text(hba)
    options = (f"-p {server.port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=300 "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    server._as_server([str(binaries / "pg_ctl"), "-D", str(data_dir), "-o", options, "-l", str(base / "log"),
                       "-w", "start"])
    server.psql(f"CREATE ROLE {PASSWORD_ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    return server
