"""The WAL stays bounded under a steady stream of commits (issue 18: cost that stays flat): the
checkpointer truncates it once it passes its limit, with the writer's connection still open."""
import time

from dsage_core.store.checkpoint import Checkpointer
from dsage_core.store.schema import connect


def _write(conn, rows, size=2000):
    for i in range(rows):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (v) VALUES (?)", (b"x" * size,))
        conn.execute("COMMIT")


def test_wal_is_truncated_past_its_limit_and_left_alone_below(tmp_path):
    """Below the limit only PASSIVE checkpoints run (the file keeps its size); past it the WAL
    file is emptied, every row is still there, and the writer goes on writing."""
    db = tmp_path / "db.sqlite"
    writer = connect(str(db))
    writer.execute("PRAGMA wal_autocheckpoint=0")   # as the store's writer: checkpoints are ours
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    reader = connect(str(db))
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()   # an old snapshot: no passive rewind now
    _write(writer, 300)
    reader.execute("COMMIT")
    cp = Checkpointer(db, truncate_above=10 * 2**20)
    conn = connect(str(db))
    cp.checkpoint(conn)
    grown = cp.wal_size()
    assert grown > 1 * 2**20 and cp.truncations == 0     # under the limit: untouched
    cp.truncate_above = 2**20
    cp.checkpoint(conn)
    assert cp.truncations == 1 and cp.wal_size() == 0
    _write(writer, 10)
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 310
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 310


def test_truncate_gives_up_quickly_while_a_reader_holds_an_old_snapshot(tmp_path):
    """A long read keeps its snapshot: the TRUNCATE checkpoint returns busy after a short wait
    (the writer is not held up behind it) and succeeds on a later turn."""
    db = tmp_path / "db.sqlite"
    writer = connect(str(db))
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    _write(writer, 5)
    reader = connect(str(db))
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()
    _write(writer, 300)
    cp = Checkpointer(db, truncate_above=2**20)
    conn = connect(str(db))
    t0 = time.monotonic()
    cp.checkpoint(conn)
    assert time.monotonic() - t0 < 2.5   # gave up after TRUNCATE_WAIT_MS, not the 5 s busy_timeout
    assert cp.truncations == 0 and cp.wal_size() > 2**20
    reader.execute("COMMIT")
    cp.checkpoint(conn)
    assert cp.truncations == 1 and cp.wal_size() == 0
