"""The child process, driven directly over its pipes (no Twisted): the job protocol contract."""
import os
import select
import subprocess
import sys
import time

import cloudpickle
import msgpack
import pytest

from dsage_core.worker.framing import FrameDecoder, pack_frame

pytestmark = pytest.mark.timeout(60)


class ChildDriver:
    """Starts ``python -m dsage_core.worker.child`` with fd 3 as its message pipe."""

    def __init__(self, tmp_path, nice="0"):
        r, w = os.pipe()
        env = dict(os.environ, DSAGE_SCRATCH=str(tmp_path / "scratch"), DSAGE_NICE=nice)
        self.proc = subprocess.Popen([sys.executable, "-m", "dsage_core.worker.child"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                     close_fds=False, preexec_fn=lambda: os.dup2(w, 3))
        os.close(w)
        self.r = r
        self.dec = FrameDecoder()
        self.inbox = []

    def send(self, obj):
        self.proc.stdin.write(pack_frame(obj))
        self.proc.stdin.flush()

    def run(self, *jobs):
        self.send(["run", list(jobs)])

    def next(self, kind, timeout=30):
        end = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.inbox):
                if m[0] == kind:
                    return self.inbox.pop(i)
            left = end - time.monotonic()
            assert left > 0, f"no {kind} frame; got {self.inbox}"
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                data = os.read(self.r, 1 << 20)
                assert data, "child closed its pipe"
                self.inbox += self.dec.feed(data)

    def dones(self, n, timeout=30):
        out = []
        while len(out) < n:
            out += self.next("done", timeout)[1]
        return {d[0]: d for d in out}

    def close(self):
        self.proc.kill()
        self.proc.wait()
        os.close(self.r)


@pytest.fixture
def child(tmp_path):
    c = ChildDriver(tmp_path)
    yield c
    c.close()


def code(job_id, text, mode="expr", **extra):
    return [job_id, msgpack.packb({"k": mode, "code": text, "fname": "<dsage>", **extra}), None, None, {}]


def decoded(d):
    from dsage_core import codec
    return codec.decode_value(d[2]) if d[2] is not None else None


def test_hello_and_expression(child):
    """The child says hello, then runs 2+2 -> 4."""
    assert child.next("hello")[1] == child.proc.pid
    child.run(code(1, "2+2"))
    d = child.dones(1)[1]
    assert d[1] == "completed" and decoded(d) == 4 and d[4] == "4"


def test_exec_result_vars_and_files(child):
    """exec mode returns DSAGE_RESULT; user vars and loaded files are visible."""
    files = [["helper.py", b"def h(x):\n    return x + 1\n"], ["data.txt", b"abc"]]
    child.run(code(1, "DSAGE_RESULT = (h(a), open('data.txt').read())", "exec",
                   vars=cloudpickle.dumps({"a": 41}), files=files))
    assert decoded(child.dones(1)[1]) == (42, "abc")


def test_function_blob_sent_once(child):
    """A function blob is cached: the second job references it without the bytes."""
    import hashlib
    blob = cloudpickle.dumps(lambda x: x * 10)
    bid = hashlib.sha256(blob).hexdigest()
    p = lambda x: msgpack.packb({"k": "func", "args": cloudpickle.dumps(((x,), {}))})
    child.run([1, p(1), bid, blob, {}], [2, p(2), bid, None, {}])
    d = child.dones(2)
    assert decoded(d[1]) == 10 and decoded(d[2]) == 20


def test_errors_are_tracebacks(child):
    """An exception and a syntax error fail the job with traceback text naming the user's line,
    starting at the user's code (no frames of dsage's child or of the parser)."""
    child.run(code(1, "x = 1\n1/0", "exec"), code(2, "x = 1\ndef (:", "exec"),
              code(3, "def f():\n    raise KeyError('k')\nf()", "expr"))
    d = child.dones(3)
    assert d[1][1] == "failed" and "ZeroDivisionError" in d[1][3] and "1/0" in d[1][3]
    assert d[2][1] == "failed" and d[2][3].startswith('  File "<dsage>", line 2\n')
    assert "def (:" in d[2][3] and d[2][3].rstrip().endswith("SyntaxError: invalid syntax")
    assert "line 3" in d[3][3] and "line 2, in f" in d[3][3] and "KeyError: 'k'" in d[3][3]
    for job in (1, 3):
        assert d[job][3].startswith("Traceback (most recent call last):\n  File \"<dsage>\"")
    assert not any("child.py" in d[j][3] or "ast.py" in d[j][3] for j in d)


def test_an_expression_job_without_a_final_expression_may_set_dsage_result(child):
    """``D('x = 1; DSAGE_RESULT = 5')`` gives 5; a final expression still wins; neither gives None."""
    child.run(code(1, "x = 1\nDSAGE_RESULT = 5"), code(2, "DSAGE_RESULT = 5\n7"), code(3, "x = 1"))
    d = child.dones(3)
    assert [decoded(d[i]) for i in (1, 2, 3)] == [5, 7, None]


def test_output_streamed_and_truncated(child):
    """print output arrives as out frames; past the limit a marker is added and the rest dropped."""
    child.run([1, msgpack.packb({"k": "exec", "code": "for i in range(1000): print('z' * 99)"}), None, None,
               {"out": 5000}])
    child.dones(1)
    texts = "".join(m[2] for m in child.inbox if m[0] == "out")
    assert "output truncated after 5000 bytes" in texts and len(texts) < 6000


def test_memory_limit(child):
    """Allocating past the job's memory limit fails it with a clear reason; the child keeps serving
    jobs the same limit allows, and hands back (recycle) a job its lowered hard limit would bind."""
    lim = {"mem": 300 * 1024**2}
    child.run([1, msgpack.packb({"k": "exec", "code": "x = bytearray(1024**3)"}), None, None, lim],
              [2, msgpack.packb({"k": "expr", "code": "'still alive'"}), None, None, lim],
              code(3, "'no limit'"))
    d = child.dones(2)
    assert d[1][1] == "failed" and "memory limit of 300 MiB exceeded" in d[1][3]
    assert decoded(d[2]) == "still alive"
    child.next("recycle")
    assert child.proc.wait(30) == 0
    assert not [m for m in child.inbox if m[0] == "done"]   # job 3 never ran here


def test_progress_in_order(child):
    """progress() from job code sends increasing values ending at 1.0."""
    child.run(code(1, "import dsage_core\nfor i in range(5): dsage_core.progress(i / 4, str(i))", "exec"))
    child.dones(1)
    values = [m[2] for m in child.inbox if m[0] == "progress"]
    assert values == sorted(values) and values[-1] == 1.0


def test_no_twisted_in_child(child):
    """The child never imports Twisted or Foolscap."""
    child.run(code(1, "import sys\n('twisted' in sys.modules, 'foolscap' in sys.modules)"))
    assert decoded(child.dones(1)[1]) == (False, False)


@pytest.mark.normal_latency
def test_many_jobs_coalesce_done_frames(child):
    """64 no-op jobs sent in one frame come back in a few done frames, not 64."""
    child.next("hello")
    child.run(*[code(i, "None") for i in range(64)])
    frames, got = 0, 0
    while got < 64:
        got += len(child.next("done")[1])
        frames += 1
    assert frames <= 8


def test_scratch_dir_is_empty_for_each_job(child):
    """Files a job leaves in its working directory are gone before the next job."""
    child.run(code(1, "open('left.txt', 'w').write('x')\nimport os\nos.listdir('.')"),
              code(2, "import os\nos.listdir('.')"))
    d = child.dones(2)
    assert decoded(d[1]) == ["left.txt"] and decoded(d[2]) == []


def test_dones_of_short_jobs_do_not_wait_for_a_long_one(child):
    """Dones buffered before a long job go out while it runs (the monitor times the next job from them)."""
    child.next("hello")
    slow = code(3, "import time\nprint('slow started', flush=True)\ntime.sleep(3)\n'slow'")
    child.run(code(1, "1"), code(2, "2"), slow)
    t0 = time.monotonic()
    got = {}
    while not {1, 2} <= set(got):
        got.update({d[0]: d for d in child.next("done", timeout=10)[1]})
    assert 3 not in got and time.monotonic() - t0 < 2.0
    assert any(m[0] == "out" and m[1] == 3 for m in child.inbox) or child.next("out")[1] == 3


def test_cpu_time_limit(child):
    """A job past its CPU-time cap fails with a clear reason; the child serves the next job."""
    child.run([1, msgpack.packb({"k": "exec", "code": "while True: pass"}), None, None, {"cpu": 1}],
              code(2, "'next'"))
    d = child.dones(2, timeout=30)
    assert d[1][1] == "failed" and "CPU time limit" in d[1][3]
    assert decoded(d[2]) == "next"


def test_jobs_run_at_lower_priority(tmp_path):
    """By default job processes are niced (10), so a desktop stays responsive."""
    c = ChildDriver(tmp_path, nice="10")
    try:
        base = os.nice(0)
        c.run(code(1, "import os\nos.nice(0)"))
        assert decoded(c.dones(1)[1]) == base + 10
    finally:
        c.close()


def test_monitor_paces_a_child_per_function():
    """A child fast on one function is not handed a deep pipeline of another, unmeasured one."""
    from dsage_core.worker.children import ChildEvents, ChildProcess
    noop = lambda *a: None  # noqa: E731
    c = ChildProcess(1, None, {}, ChildEvents(noop, noop, noop, noop, noop))
    c.ready = True
    c.avg_wall, c.avg_key = 0.00003, "fast"
    assert c.allowance("fast") == 128
    assert c.allowance("other") == 1          # unknown duration: one at a time
    c.avg_wall = 0.02
    assert c.allowance("fast") == 4           # the next is there when one ends, + a lazy batch of 2
    c.avg_wall = 0.08
    assert c.allowance("fast") == 3
    c.avg_wall = 0.5
    assert c.allowance("fast") == 1


@pytest.mark.normal_latency
def test_cpu_clock_is_read_only_after_longer_jobs(monkeypatch):
    """Short jobs report their wall time as CPU (no system call); the next longer job's reading
    subtracts them, so CPU time is neither lost nor counted twice."""
    from types import SimpleNamespace
    from dsage_core.worker import child as child_mod
    reads = []
    clock = iter([10.0, 10.5])
    monkeypatch.setattr(child_mod, "_cpu", lambda: reads.append(1) or next(clock))
    c = SimpleNamespace(_cpu_mark=9.0, _cpu_unread=0.0)
    job_cpu = child_mod.Child._job_cpu
    assert job_cpu(c, 0.0001) == 0.0001 and job_cpu(c, 0.0002) == 0.0002 and reads == []
    assert abs(job_cpu(c, 0.9) - (1.0 - 0.0003)) < 1e-9 and len(reads) == 1
    assert c._cpu_mark == 10.0 and c._cpu_unread == 0.0
    assert job_cpu(c, 0.6) == 0.5 and len(reads) == 2


@pytest.mark.normal_latency
def test_when_a_child_is_read_lazily():
    """A child is read lazily only with >= 3 jobs of its measured function and no kill pending;
    the read comes half-way through its second-to-last job, or when a queued job could time out."""
    from dsage_core.worker.children import (LAZY_MAX_SLEEP, LAZY_MIN_WALL, Assigned, ChildEvents,
                                             ChildProcess)

    class Pipe:
        fd = 5
    noop = lambda *a: None  # noqa: E731
    c = ChildProcess(1, None, {}, ChildEvents(noop, noop, noop, noop, noop))
    c.ready, c.messages = True, Pipe()
    c.avg_wall, c.avg_key = 0.02, "f"

    def hold(*timeouts):
        c.inflight.clear()
        c.inflight.extend(Assigned(i, 1, b"", "f", t, None) for i, t in enumerate(timeouts))
        c.inflight[0].started = 100.0
    hold(None, None)
    assert c.lazy_until(100.0) is None                 # nothing behind the next job
    hold(None, None, None, None)
    assert c.lazy_until(100.0) == pytest.approx(100.05)  # 2.5 jobs of 20 ms
    assert c.lazy_until(100.049) is None               # too close to be worth it
    hold(None, None, 0.03, None)
    assert c.lazy_until(100.0) == pytest.approx(100.03)  # job 2 cannot start before 100.0
    hold(None, None, None, None)
    c.inflight[2].kill_reason = "killed"
    assert c.lazy_until(100.0) is None
    hold(None, None, None, None)
    c.inflight[3].blob_id = "g"                        # its pace is unknown
    assert c.lazy_until(100.0) is None
    c.avg_wall = LAZY_MIN_WALL / 2                     # short jobs: the child coalesces dones
    hold(None, None, None, None)
    assert c.lazy_until(100.0) is None
    c.avg_wall = 0.09
    hold(*[None] * 6)                                   # a pace skewed up: capped sleep
    assert c.lazy_until(100.0) == pytest.approx(100.0 + LAZY_MAX_SLEEP)
    c.avg_wall = 0.5                                    # long jobs are read at once
    assert c.lazy_until(100.0) is None


def test_child_past_its_memory_threshold_asks_to_be_recycled(tmp_path, monkeypatch):
    """After jobs that ran a while the child checks its memory; past DSAGE_CHILD_MAX_RSS it sends
    its dones, then "recycle", and exits cleanly."""
    monkeypatch.setenv("DSAGE_CHILD_MAX_RSS", "1")
    c = ChildDriver(tmp_path)
    try:
        c.run(code(1, "import time\ntime.sleep(0.15)\n'slept'"), code(2, "'never run'"))
        assert decoded(c.dones(1)[1]) == "slept"
        c.next("recycle")
        assert c.proc.wait(30) == 0
        assert not [m for m in c.inbox if m[0] == "done"]
    finally:
        c.close()


def test_scratch_dir_is_emptied_after_the_dir_aged(child):
    """Once the scratch dir is old enough for its ctime to be trusted (the one-stat fast path),
    files, directories and a changed cwd a job leaves are still undone before the next job."""
    age = "import os, time\nwhile time.time_ns() - os.stat('.').st_ctime_ns < 3e8: time.sleep(0.01)\n1"
    child.run(code(1, age),
              code(2, "open('left.txt', 'w').write('x')\nimport os\nos.listdir('.')"),
              code(3, "import os\nos.listdir('.')"),
              code(4, "import os\nos.makedirs('d/e')\nopen('d/e/f', 'w').close()\nos.getcwd()"),
              code(5, "import os\nos.listdir('.')"),
              code(6, "import os\nos.chdir('/')\nos.getcwd()"),
              code(7, "import os\nos.getcwd(), os.listdir('.')"))
    d = child.dones(7)
    assert decoded(d[2]) == ["left.txt"] and decoded(d[3]) == []
    assert decoded(d[5]) == [] and decoded(d[6]) == "/"
    assert decoded(d[7]) == (decoded(d[4]), [])


def test_an_untouched_scratch_dir_costs_one_stat(tmp_path, monkeypatch):
    """After a job that left the (aged) scratch dir as it was, cleaning it does not scan it."""
    from dsage_core.worker import child as child_mod
    monkeypatch.chdir(tmp_path)
    c = child_mod.Child.__new__(child_mod.Child)
    c.scratch = tmp_path
    st = os.stat(".")
    c._scratch_id, c._clean_ctime = (st.st_dev, st.st_ino), None
    monkeypatch.setattr(child_mod, "SCRATCH_CTIME_AGE_NS", -10**18)   # as if the dir were old
    c._clean_scratch()                       # a scan: nothing known yet
    assert c._clean_ctime == os.stat(".").st_ctime_ns
    scans = []
    real = os.scandir
    monkeypatch.setattr(child_mod.os, "scandir", lambda p: scans.append(p) or real(p))
    c._clean_scratch()
    assert scans == []
    (tmp_path / "x").write_text("x")         # a change: the next clean scans and removes it
    c._clean_scratch()
    assert scans == [tmp_path] and not (tmp_path / "x").exists()


def test_inbox_reads_frames_larger_than_one_read():
    """A frame of several reads' worth (a large payload or function blob) arrives whole, and the
    frames after it in order, though each read asks for READ_SIZE bytes only."""
    import threading
    from dsage_core.worker import child as child_mod
    r, w = os.pipe()
    big = os.urandom(5 * child_mod.READ_SIZE + 123)
    data = pack_frame(["run", [[1, big, None, None, {}], [2, b"x", None, None, {}]]]) + pack_frame(["exit"])
    writer = threading.Thread(target=lambda: (os.write(w, data[:7]), os.write(w, data[7:]), os.close(w)))
    writer.start()
    try:
        inbox = child_mod.Inbox(r)
        got = [inbox.get() for _ in range(3)]
    finally:
        writer.join()
        os.close(r)
    assert [k for k, _ in got] == ["job", "job", "exit"]
    assert got[0][1][1] == big and got[1][1][0] == 2


def test_run_entries_of_every_wire_shape(child):
    """ChildRun's wire shapes (5 fields, 6 with a result path, 7 with ext options: what the monitor
    sends) all run, unpacked directly; the done is ChildDone's wire form (9 fields, 10 with the
    exception)."""
    from dsage_core.model.records import ChildDone
    child.run(code(1, "1"), code(2, "2") + [None], code(3, "3") + [None, None], code(4, "1/0") + [None],
              code(5, "5") + [None, {"unused": 1}], code(6, "1/0") + [None, None])
    d = child.dones(6)
    assert [decoded(d[i]) for i in (1, 2, 3, 5)] == [1, 2, 3, 5]
    for i in (1, 2, 3, 4, 5, 6):
        rec = ChildDone.from_wire(d[i])
        assert rec.job_id == i and rec.wall >= 0 and rec.end_time
        assert len(d[i]) == (10 if i in (4, 6) else 9)
    for i in (4, 6):
        rec = ChildDone.from_wire(d[i])
        assert rec.status == "failed" and rec.exc and "ZeroDivisionError" in rec.error


def test_malformed_run_entries_are_wire_errors():
    """An entry of another shape than ChildRun's is refused as before (WireError), before any job state."""
    from dsage_core.model.records import ChildRun, WireError
    from dsage_core.worker import child as child_mod
    c = child_mod.Child.__new__(child_mod.Child)
    for bad in ([1, b"", None, None], [1, b"", None, None, {}, None, None, None], {"job_id": 1}, "12345"):
        with pytest.raises(WireError):
            c.run_one(bad)
    assert ChildRun._fields[5:] == ("result_path", "ext")   # the order run_one unpacks


@pytest.mark.parametrize("ext", [False, True])
def test_a_large_result_goes_to_the_result_path(child, tmp_path, ext):
    """A result past local_results.LARGE is written at the entry's result path (6 and 7 fields):
    the done carries its size instead of the bytes; a small one comes back in the done."""
    from dsage_core import codec, local_results
    big, small = tmp_path / "res" / "r1", tmp_path / "res" / "r2"
    tail = [None] if ext else []
    child.run(code(1, f"b'x' * {local_results.LARGE + 10}") + [str(big)] + tail,
              code(2, "'small'") + [str(small)] + tail)
    d = child.dones(2)
    assert d[1][1] == "completed" and d[1][2] is None and d[1][7] == big.stat().st_size
    assert codec.decode_value(big.read_bytes()) == b"x" * (local_results.LARGE + 10)
    assert decoded(d[2]) == "small" and d[2][7] is None and not small.exists()


def test_a_function_blob_never_sent_fails_the_job(child):
    """A function job naming a blob this child has not seen (and without its bytes) fails; a
    cached blob is still found after it."""
    blob = cloudpickle.dumps(lambda x: x + 1)
    p = lambda x: msgpack.packb({"k": "func", "args": cloudpickle.dumps(((x,), {}))})
    child.run([1, p(1), "unknown", None, {}], [2, p(1), "b", blob, {}], [3, p(2), "b", None, {}])
    d = child.dones(3)
    assert d[1][1] == "failed" and "function blob unknown was not sent" in d[1][3]
    assert decoded(d[2]) == 2 and decoded(d[3]) == 3


def test_a_job_without_limits_has_nothing_to_undo(tmp_path, monkeypatch):
    """No memory or CPU limit (and no hard memory limit left by an earlier job): no rlimit is read."""
    from dsage_core.worker import child as child_mod
    c = child_mod.Child.__new__(child_mod.Child)
    c._mem_hard = None
    calls = []
    monkeypatch.setattr(child_mod.resource, "getrlimit", lambda *a: calls.append(a))
    assert c._apply_limits({"out": 10}) is child_mod._nothing and calls == []


def _out(child, job_id):
    return "".join(m[2] for m in child.inbox if m[0] == "out" and m[1] == job_id)


def test_output_of_a_job_thread_writing_while_the_job_ends(child):
    """A thread the job started writes on while the job returns: the job's output is a whole,
    in-order prefix of what the thread wrote, at least all it wrote before the job ended; once the
    job is over the thread's writes are not the ended job's (the next job stops and joins it)."""
    start = (
        "import sys, threading\n"
        "stop, written = threading.Event(), threading.Event()\n"
        "def bg(out):\n"
        "    i = 0\n"
        "    while not stop.is_set() and i < 10**6:\n"
        "        out.write(f'{i}\\n'); i += 1\n"
        "        if i == 300: written.set()\n"
        "    written.set()\n"
        "t = threading.Thread(target=bg, args=(sys.stdout,), daemon=True)\n"
        "t.start(); written.wait()\n"
        "sys._dsage_test_bg = (stop, t)\n")
    finish = "import sys\nstop, t = sys._dsage_test_bg\nstop.set(); t.join()\n'joined'"
    child.run([1, msgpack.packb({"k": "exec", "code": start}), None, None, {"out": 1 << 30}],
              code(2, finish), code(3, "print('third'); 3"))
    d = child.dones(3)
    assert d[1][1] == "completed" and decoded(d[2]) == "joined" and decoded(d[3]) == 3
    first = _out(child, 1).split("\n")
    assert first[-1] == "" and len(first) - 1 >= 300
    assert first[:-1] == [str(i) for i in range(len(first) - 1)]
    second = _out(child, 2).split("\n")[:-1]   # the thread's writes until job 2 stopped it
    assert all(int(x) >= len(first) - 1 for x in second) and second == sorted(second, key=int)
    assert _out(child, 3) == "third\n"


def test_output_then_an_exception(child):
    """Output a job wrote before it raised is sent; the done is a failure with the traceback."""
    child.run(code(1, "print('before'); import sys; sys.stderr.write('err\\n'); 1/0", "exec"), code(2, "2"))
    d = child.dones(2)
    assert d[1][1] == "failed" and "ZeroDivisionError" in d[1][3]
    assert _out(child, 1) == "before\nerr\n" and _out(child, 2) == ""


def test_a_cpu_limit_hit_while_the_job_prints(child):
    """The CPU limit's exception can land inside a write (the capture's lock held): the job fails
    with its reason, its output (truncated) is sent, and the next job's output still works."""
    child.run([1, msgpack.packb({"k": "exec", "code": "while True: print('x' * 50)"}), None, None,
               {"cpu": 1, "out": 20000}],
              code(2, "print('after'); 2"))
    d = child.dones(2, timeout=30)
    assert d[1][1] == "failed" and "CPU time limit" in d[1][3]
    assert "output truncated after 20000 bytes" in _out(child, 1)
    assert decoded(d[2]) == 2 and _out(child, 2) == "after\n"
