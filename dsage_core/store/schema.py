"""Schema migrations, applied in order; ``PRAGMA user_version`` records how many ran."""
from __future__ import annotations

import sqlite3

#: per-connection settings; WAL + synchronous=NORMAL survives a process crash without an fsync per commit
PRAGMAS = (
    "PRAGMA page_size=4096",  # new databases only; a small commit writes 4 KiB pages, large results are files
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)

#: the condition of the partial index of queued and running jobs (queries repeat it word for word)
OPEN_JOBS = "(status='queued' OR status='running')"
#: the condition of the partial index of ended jobs other than completed ones (failed, killed, ...)
ENDED_JOBS = "(status<>'queued' AND status<>'running' AND status<>'completed')"

#: append only: migration ``i`` (1-based) brings a database from user_version ``i-1`` to ``i``
MIGRATIONS = [
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY, owner TEXT NOT NULL, name TEXT, kind TEXT, status TEXT NOT NULL,
        priority INT DEFAULT 0, trusted_only INT DEFAULT 0, needs TEXT DEFAULT '', payload BLOB,
        blob_id TEXT, timeout REAL, limits BLOB, code TEXT, created REAL, started REAL, finished REAL,
        worker TEXT, attempts INT DEFAULT 0, failures INT DEFAULT 0, result BLOB, result_preview TEXT,
        error TEXT, output TEXT, progress REAL, progress_message TEXT);
    CREATE INDEX jobs_owner ON jobs (owner, id);
    CREATE INDEX jobs_status ON jobs (status, id);
    CREATE TABLE blobs (id TEXT PRIMARY KEY, data BLOB NOT NULL, owner TEXT, created REAL);
    CREATE TABLE users (name TEXT PRIMARY KEY, pubkey TEXT UNIQUE NOT NULL, role TEXT NOT NULL, created REAL);
    CREATE TABLE invites (id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, role TEXT NOT NULL, expires REAL,
        uses_left INT, created REAL, revoked INT DEFAULT 0);
    CREATE TABLE audit (id INTEGER PRIMARY KEY, time REAL, event TEXT, user TEXT, address TEXT, detail TEXT)
    """,
    # large results live in files next to the database (written on the store thread, like the WAL)
    "ALTER TABLE jobs ADD COLUMN result_file TEXT",
    # extra job options (dsage_core.model.ext), JSON
    "ALTER TABLE jobs ADD COLUMN ext TEXT",
    # replicas: the answers of a replicated job's copies until it is decided (dsage_core.server.replicas)
    """CREATE TABLE replica_answers (job_id INTEGER NOT NULL, attempt INTEGER NOT NULL, worker TEXT,
        user TEXT, anonymous INT, status TEXT, digest BLOB, result BLOB, preview TEXT, error TEXT,
        started REAL, finished REAL, PRIMARY KEY (job_id, attempt))""",
    # the exception a failed job raised (dsage_core.model.exc_info, msgpack; never unpickled here)
    "CREATE TABLE job_exceptions (id INTEGER PRIMARY KEY, data BLOB)",   # no foreign key: a withdrawn
    # job's late result must not fail the batch it rides in
    # 1: the result was made by a worker that may not pickle for the job's owner (another user's or an
    # anonymous one): a dependent's worker never receives it unless it is plain data (server/deps.py)
    "ALTER TABLE jobs ADD COLUMN result_untrusted INT",
    # the status index holds only jobs that are not completed (the bulk): a job's dispatch and end
    # no longer add an entry for every completed job, and the index stays small. A query uses one of
    # these partial indexes only if its WHERE repeats the index's condition (OPEN_JOBS, ENDED_JOBS).
    # An older dsage refuses a database migrated past the version it knows.
    f"""DROP INDEX jobs_status;
    CREATE INDEX jobs_open ON jobs (status, id) WHERE {OPEN_JOBS};
    CREATE INDEX jobs_ended ON jobs (status, id) WHERE {ENDED_JOBS}""",
]


def connect(path: str) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (transactions are explicit) with :data:`PRAGMAS` applied."""
    c = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    for pragma in PRAGMAS:
        c.execute(pragma)
    return c


def migrate(c: sqlite3.Connection, migrations: list[str] = MIGRATIONS) -> int:
    """Apply the migrations ``c`` has not seen yet, each in its own transaction; return the new version."""
    version: int = c.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise sqlite3.DatabaseError(f"database schema version {version} is newer than this dsage "
                                    f"(knows {len(migrations)}); upgrade dsage")
    for i, sql in enumerate(migrations[version:], start=version + 1):
        try:
            c.executescript(f"BEGIN IMMEDIATE; {sql}; PRAGMA user_version={i}; COMMIT;")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        version = i
    return version
