"""Result files and stored exceptions alone: which named files the server takes, reading them
(off the reactor when a reader is set), removing a stale attempt's file, and exception maps."""
import threading
from types import SimpleNamespace

import pytest
from twisted.internet.defer import succeed

from dsage_core import local_results as lr
from dsage_core.limits import Limits
from dsage_core.model.records import JobUpdate
from dsage_core.server.results import ResultFiles, pack_exc, unpack_exc, viewed


class Store:
    """The one store call ResultFiles makes: records the files it is asked to drop."""

    def __init__(self):
        self.dropped = []

    def drop_result_file(self, rel):
        self.dropped.append(rel)
        return succeed(None)


@pytest.fixture
def files(tmp_path):
    r = ResultFiles(Limits(), Store())
    r.home = tmp_path
    return r


LOCAL = SimpleNamespace(local=True)
REMOTE = SimpleNamespace(local=False)
JOB = SimpleNamespace(id=12, attempt=2)


def test_check_takes_only_the_expected_name_from_a_local_worker(files):
    """A local worker's file of this job and attempt is taken; any other name, a worker that does
    not share the home, a bad or oversize size are refused with a reason."""
    good = {"file": lr.result_name(12, 2), "size": 10}
    assert files.check(LOCAL, JOB, good) is None
    assert "does not share" in files.check(REMOTE, JOB, good)
    assert "unexpected result file" in files.check(LOCAL, JOB, {"file": "../../etc/passwd", "size": 1})
    assert "malformed result size" in files.check(LOCAL, JOB, {**good, "size": True})
    files.limits.max_result = 5
    assert "result too large" in files.check(LOCAL, JOB, good)


def test_drop_removes_only_that_attempts_file(files):
    """Only the file named for the job and attempt is dropped; other names and non-local workers
    are ignored."""
    files.drop(LOCAL, 12, 2, {"file": lr.result_name(12, 2)})
    files.drop(LOCAL, 12, 2, {"file": "results/other.bin"})
    files.drop(REMOTE, 12, 2, {"file": lr.result_name(12, 2)})
    files.drop(LOCAL, 12, 2, None)
    assert files.store.dropped == [lr.result_name(12, 2)]


def test_read_gives_bytes_or_a_missing_marker(files, tmp_path):
    """A written result reads back; a missing file gives a clear marker, not an exception."""
    rel = lr.write_result(tmp_path, 12, 2, b"x" * 100)
    assert files.read(rel) == b"x" * 100
    missing = files.read(lr.result_name(13, 1))
    assert set(missing) == {"missing"} and "result file" in missing["missing"]


def test_read_later_runs_on_the_file_reader(files, tmp_path):
    """With a file reader set, the read happens on its thread, not the caller's."""
    rel = lr.write_result(tmp_path, 12, 2, b"data")
    threads = []

    class Reader:
        def run(self, fn, *args):
            out = []
            t = threading.Thread(target=lambda: (threads.append(threading.current_thread()), out.append(fn(*args))))
            t.start()
            t.join(10)
            return succeed(out[0])
    files.file_reader = Reader()
    got = []
    files.read_later(rel).addCallback(got.append)
    assert got == [b"data"] and threads and threads[0] is not threading.current_thread()


def test_exceptions_pack_and_a_damaged_one_is_none():
    """Exception maps round-trip through their stored form; damaged bytes give None."""
    exc = {"type": "ValueError", "text": "no"}
    assert unpack_exc(pack_exc(exc)) == exc
    assert unpack_exc(b"\xc1") is None and unpack_exc(None) is None and unpack_exc(pack_exc([1])) is None


def test_viewed_keeps_the_pickle_from_other_users():
    """Another user sees a failed job's exception without its pickle; the owner gets it."""
    exc = {"type": "ValueError", "text": "no", "pickle": b"\x80"}
    u = list(JobUpdate(1, "failed", None, None, None, None, None, "tb", None, "", 1, "x", 0.0, 0,
                       "func", None, exc).to_wire())
    assert JobUpdate.from_wire(viewed(list(u), "alice", "alice")).exc == exc
    assert "pickle" not in (JobUpdate.from_wire(viewed(list(u), "alice", "bob")).exc or {})
    short = u[:15]
    assert viewed(short, "alice", "bob") == short
