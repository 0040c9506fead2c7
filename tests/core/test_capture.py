"""Capture (worker/capture.py) in-process: what a job's output becomes when the job ends while
its own threads still write. Deterministic: threads are sequenced with events and joined."""
import sys
import threading

import pytest

from dsage_core.worker import capture as capture_mod
from dsage_core.worker.capture import Capture

pytestmark = pytest.mark.timeout(60)


class Chan:
    """A channel that records what is sent (the flusher thread sends too: a lock)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = []

    def send(self, msg):
        with self.lock:
            self.sent.append(msg)

    def text(self, job_id):
        with self.lock:
            assert all(m[0] == "out" for m in self.sent)
            return "".join(m[2] for m in self.sent if m[1] == job_id)


@pytest.fixture
def cap(monkeypatch):
    monkeypatch.setattr(sys, "stdout", sys.stdout)   # begin/end swap them: pytest's come back
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    # output stays buffered until the end (DSAGE_LATENCY=plain sends every write at once); the
    # flusher thread may still send some of it first, so the tests compare the text sent
    monkeypatch.setattr(capture_mod, "FLUSH_BYTES", 1 << 40)
    monkeypatch.setattr(capture_mod, "FLUSH_SECONDS", 1e9)
    return Capture(Chan())


def test_end_sends_what_is_buffered_once_and_restores_the_streams(cap):
    cap.begin(7, 1 << 20)
    assert sys.stdout is cap.stdout and sys.stderr is cap.stderr
    print("a")
    sys.stderr.write("b\n")
    cap.end()
    assert sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__
    assert cap.chan.text(7) == "a\nb\n"
    assert cap.job_id is None and cap.buf == [] and cap.buffered == 0
    sends = len(cap.chan.sent)
    cap.stdout.write("late\n")   # the job is over: dropped, nothing buffered for the next job
    cap.end()                    # a second end sends nothing
    assert len(cap.chan.sent) == sends and cap.buf == []


def test_end_without_output_sends_nothing(cap):
    cap.begin(1, 1 << 20)
    cap.end()
    assert cap.chan.sent == []


def test_truncated_output_ends_with_its_marker(cap):
    cap.begin(2, 10)
    cap.stdout.write("x" * 8)
    cap.stdout.write("y" * 8)
    cap.stdout.write("z")
    cap.end()
    text = cap.chan.text(2)
    assert text == "x" * 8 + "yy" + "\n[dsage: output truncated after 10 bytes]\n"


def test_output_of_a_background_thread_of_the_job_while_it_ends(cap):
    """A thread the job started writes on while the job ends: every write that returned before
    end() is sent, whole and in order; writes racing end() are sent whole or dropped, never
    half; once end() returned nothing of the job stays buffered and nothing more is sent, and
    the next job's output is its own."""
    lines = [f"line {i}\n" for i in range(100_000)]
    written = threading.Event()
    stop = threading.Event()
    count = [0]

    def job_thread(out):
        for i, s in enumerate(lines):
            if stop.is_set():
                break
            out.write(s)
            count[0] = i + 1
            if i == 200:
                written.set()
        written.set()

    cap.begin(1, 1 << 30)
    t = threading.Thread(target=job_thread, args=(sys.stdout,))   # the job's sys.stdout: the capture's
    t.start()
    assert written.wait(30)
    before = count[0]            # writes that had returned before the job ended
    cap.end()
    with cap.chan.lock:
        sends_at_end = len(cap.chan.sent)
    assert cap.buf == [] and cap.buffered == 0 and cap.job_id is None
    stop.set()
    t.join()
    with cap.chan.lock:
        assert len(cap.chan.sent) == sends_at_end   # the thread's later writes were dropped
    text = cap.chan.text(1)
    n = text.count("\n")
    assert n >= before and text == "".join(lines[:n])   # a prefix of the writes, none lost or split
    cap.begin(2, 1 << 20)
    cap.stdout.write("second\n")
    cap.end()
    assert cap.chan.text(2) == "second\n"


def test_a_write_waiting_on_the_lock_when_the_job_ends_is_sent_or_dropped_whole(cap):
    """end() takes the lock once: a write blocked on it is either before the end (sent with the
    rest) or after it (dropped) - never left buffered for the next job."""
    cap.begin(3, 1 << 20)
    cap.stdout.write("first\n")
    cap.lock.acquire()           # as if the flusher or another writer held it
    t = threading.Thread(target=cap.stdout.write, args=("blocked\n",))
    t.start()
    e = threading.Thread(target=cap.end)
    e.start()
    cap.lock.release()
    t.join()
    e.join()
    assert cap.job_id is None and cap.buf == []
    assert cap.chan.text(3) in ("first\n", "first\nblocked\n")
    cap.begin(4, 1 << 20)
    cap.end()
    assert cap.chan.text(4) == ""


def test_a_send_that_fails_at_the_end_still_ends_the_job(cap):
    """The pipe to the monitor broke while the last output went out: the job is ended anyway (its
    threads' later writes are dropped, not buffered)."""
    def broken(msg):
        raise BrokenPipeError
    cap.begin(5, 1 << 20)
    cap.stdout.write("x\n")
    cap.chan.send = broken
    with pytest.raises(BrokenPipeError):
        cap.end()
    assert cap.job_id is None and cap.buf == []
    cap.stdout.write("late\n")
    assert cap.buf == []
