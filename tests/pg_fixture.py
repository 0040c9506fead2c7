"""A real PostgreSQL for the tests: ``initdb`` into a temp dir, a server on a UNIX socket only,
started once per test session (on first use) and removed at its end. Each test takes a fresh
database from it. Skipped, with the reason, where PostgreSQL cannot be installed or started."""
from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


def _find(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    return hits[-1] if hits else None


def _install() -> str | None:
    """Debian's postgresql, when we are root and apt works; None (and why) otherwise."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "PostgreSQL (initdb) is not installed and this user cannot apt-get install postgresql"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        p = subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], capture_output=True, text=True,
                           timeout=300, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"apt-get install postgresql failed: {e}"
    if p.returncode != 0:
        return f"apt-get install postgresql failed: {p.stderr.strip().splitlines()[-1:]}"
    return None


class PgServer:
    """One running cluster; :meth:`new_database` makes an empty database and returns its URL."""

    def __init__(self, base: Path, bindir: str, as_postgres: bool) -> None:
        self.base = base
        self.data = base / "data"
        self.bindir = bindir
        self.as_postgres = as_postgres
        self.port = 5432   # only names the socket file: there is no TCP listener
        self.user = "postgres"
        self._n = itertools.count(1)

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [os.path.join(self.bindir, argv[0]), *argv[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(self.base))

    def start(self) -> str | None:
        """Why it could not start, or None."""
        p = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8")
        if p.returncode != 0:
            return f"initdb failed: {(p.stderr or p.stdout).strip()[-300:]}"
        opts = f"-p {self.port} -k {self.base} -c listen_addresses='' -c max_connections=200"
        p = self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.base / "log"), "-w", "start")
        if p.returncode != 0:
            log = (self.base / "log").read_text(errors="replace") if (self.base / "log").exists() else ""
            return f"pg_ctl start failed: {(p.stderr or p.stdout).strip()[-200:]} {log[-300:]}"
        return None

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql:///{db}?host={self.base}&port={self.port}&user={self.user}"

    def new_database(self) -> str:
        import psycopg
        name = f"t{os.getpid()}_{next(self._n)}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for this test session (skips with the reason if there can be none)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'dsage[postgresql]')")
    initdb = _find("initdb")
    if initdb is None:
        why = _install()
        initdb = _find("initdb")
        if initdb is None:
            pytest.skip(why or "PostgreSQL's initdb not found after installing postgresql")
    as_postgres = os.geteuid() == 0   # initdb refuses to run as root
    if as_postgres and not shutil.which("runuser"):
        pytest.skip("running as root without runuser: cannot start PostgreSQL as user postgres")
    base = Path(tempfile.mkdtemp(prefix="dsage-pg-"))
    try:
        if as_postgres:
            shutil.chown(base, "postgres")
        base.chmod(0o755)   # the socket directory: reachable by the tests' own user
        srv = PgServer(base, os.path.dirname(initdb), as_postgres)
        why = srv.start()
    except (OSError, LookupError, subprocess.TimeoutExpired) as e:
        why = f"cannot prepare PostgreSQL: {e}"
    if why:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(why)
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server):
    """The URL of a fresh, empty database."""
    return pg_server.new_database()
