"""Schema migrations, applied in order; ``PRAGMA user_version`` records how many ran."""

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
]
