"""WAL checkpoints on their own thread, never inside a commit on someone's wait.

SQLite's automatic checkpoint runs inside the commit that crosses 1,000 WAL frames: that commit
copies the WAL into the database and syncs it, 15-20 ms here, on whichever submit or result
happened to be the 1,000th frame (W2's p99, and W3's start when a batch's submit hits it). The
writer connection turns it off (``wal_autocheckpoint=0``); this thread runs PASSIVE checkpoints
instead (they never wait for, nor block, the writer), after every ``every_commits`` commits or
once per ``interval`` seconds if anything was written. SQLite's own checkpoint when the last
connection closes still empties the WAL at shutdown.

Under a steady stream of commits a PASSIVE checkpoint never finds the WAL wholly copied at the
moment a writer starts, so SQLite never rewinds it and the file grows with the history (115 MiB
after 100,000 no-op jobs, ~1 GiB for a million). Once the file passes ``truncate_above`` bytes, one
TRUNCATE checkpoint (from this thread) copies the few frames the passive ones left, and empties
the file: writers wait for that copy only, once per ``truncate_above`` bytes of WAL.
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from twisted.logger import Logger

from dsage_core.store.schema import connect

log = Logger(namespace="dsage.store.checkpoint")

#: how long a TRUNCATE checkpoint waits for readers and the writer before it gives up (ms)
TRUNCATE_WAIT_MS = 50


class Checkpointer:
    def __init__(self, path: Path, every_commits: int = 200, interval: float = 1.0,
                 truncate_above: int = 64 * 2**20) -> None:
        self.path = path
        self.truncate_above = truncate_above
        self.truncations = 0          #: how many TRUNCATE checkpoints ran
        self.every_commits = every_commits
        self.interval = interval
        self.checkpoints = 0          #: how many ran
        self.ran = threading.Event()  #: set after each checkpoint (tests wait on it)
        self._commits = 0
        self._dirty = False
        self._stopping = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dsage-db-checkpoint", daemon=True)
            self._thread.start()

    def committed(self) -> None:
        """Called by the writer thread after each commit."""
        self._dirty = True
        self._commits += 1
        if self._commits >= self.every_commits:
            self._commits = 0
            self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait(self.interval)  # a periodic task: at most one check per interval
                self._wake.clear()
                if self._stopping:
                    return
                if not self._dirty:
                    continue
                self._dirty = False
                try:
                    if conn is None:
                        conn = connect(str(self.path))
                    self.checkpoint(conn)
                except sqlite3.Error as e:  # the writer reports an unwritable database; not us
                    log.debug("dsage.store.checkpoint_failed", error=str(e))
        finally:
            if conn is not None:
                conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """One PASSIVE checkpoint, and a TRUNCATE one when the WAL file has grown too large."""
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.checkpoints += 1
        if self.wal_size() > self.truncate_above:
            # writers wait while it is pending: give up soon if a long read holds it (next time, then)
            conn.execute(f"PRAGMA busy_timeout={TRUNCATE_WAIT_MS}")
            try:
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                conn.execute("PRAGMA busy_timeout=5000")
            if not busy:
                self.truncations += 1
        self.ran.set()

    def wal_size(self) -> int:
        """The WAL file's size in bytes (0 when there is none)."""
        try:
            return Path(str(self.path) + "-wal").stat().st_size
        except OSError:
            return 0
