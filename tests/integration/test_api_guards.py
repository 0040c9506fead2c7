"""The Python API refuses what cannot work, at once and clearly: calls after ``D.shutdown()``,
unknown job options (client-side, and server-side for raw submits); and what it shows is true
(``D.workers()`` sage flag; a kill does not make the server hand out more jobs than slots)."""
import subprocess
import sys
import time

import pytest

import dsage_core as dsage
from dsage_core.client.payload import UnknownOption
from dsage_core.protocol import envelope
from dsage_core.protocol.errors import BadRequest, ClientClosed

pytestmark = pytest.mark.timeout(90)


def square(x):
    return x * x


def test_calls_after_shutdown_raise_at_once(cluster):
    """After D.shutdown() every call that needs the server raises ClientClosed at once (D('1+1')
    once blocked a notebook cell forever), on the client and on its pending job handles."""
    D = cluster.connect()
    pending = D("import time\ntime.sleep(60)")
    done = D("2+2").wait(30)
    D.shutdown()
    calls = {
        "D('1+1')": lambda: D("1+1"),
        "D.eval": lambda: D.eval("DSAGE_RESULT = 1"),
        "D.submit": lambda: D.submit(square, 3),
        "D.map": lambda: D.map(square, [1, 2]),
        "D.workers": D.workers,
        "D.stats": D.stats,
        "D.jobs": D.jobs,
        "D.get_job": lambda: D.get_job(done.id),
        "D.kill": lambda: D.kill(pending.id),
        "D.admin": lambda: D.admin("user_list"),
        "D.executor": D.executor,
        "D.scatter": lambda: D.scatter(square),
        "job.wait": pending.wait,
        "job.kill": pending.kill,
        "job.output": lambda: pending.output,
        "job.deferred": pending.deferred,
        "as_completed": lambda: list(dsage.as_completed([pending])),
        "dsage.wait": lambda: dsage.wait([pending]),
    }
    for what, call in calls.items():
        t = time.monotonic()
        with pytest.raises(ClientClosed, match=r"shut down \(D.shutdown\(\)\)"):
            call()
        assert time.monotonic() - t < 5, what
    assert done.wait() is done and done.result == 4  # what already finished stays readable
    D.shutdown()  # twice is fine
    cluster.client.kill(pending.id)


def test_start_all_calls_after_shutdown_raise(tmp_path):
    """The notebook case through start_all: D('1+1') after D.shutdown() raises ClientClosed."""
    code = ("import dsage_core as dsage\n"
            f"D = dsage.start_all(workers=1, home={str(tmp_path / 'h')!r})\n"
            "print(D('2+2').wait(30).result)\n"
            "D.shutdown()\n"
            "try:\n    D('1+1')\nexcept dsage.ClientClosed as e:\n    print('refused:', e)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "4" and lines[1].startswith("refused: submitting: this client was shut down")


@pytest.mark.parametrize("call", [
    lambda D: D.submit(square, 2, dsage_options={"timout": 5}),
    lambda D: D("1", retrys=3),
    lambda D: D.eval("DSAGE_RESULT = 1", resources={"gpu": 1}),
    lambda D: D.map(square, [1], timout=5),
    lambda D: D.executor(timout=5),
    lambda D: D.scatter(square, [], replicaz=2),
], ids=["submit-dsage_options", "call-retries", "eval-resources", "map", "executor", "scatter"])
def test_unknown_job_options_are_refused_with_the_valid_ones(cluster, call):
    """A misspelt or unsupported job option is refused before anything is sent, naming the
    valid options (and the close match for a typo); no job is created."""
    before = len(cluster.client.jobs())
    with pytest.raises(UnknownOption) as e:
        call(cluster.client)
    msg = str(e.value)
    from dsage_core.client.payload import all_option_names
    assert "valid job options: " + ", ".join(sorted(all_option_names())) in msg
    assert "timeout, trusted_only" in msg
    if "timout" in msg:
        assert "did you mean 'timeout'?" in msg
    assert isinstance(e.value, TypeError) and isinstance(e.value, ValueError)
    assert len(cluster.client.jobs()) == before


def _raw_submit(D, record):
    from dsage_core.client import reactor_thread as rt
    return rt.blocking(lambda: D.aclient._call("submit", envelope.pack([record])), timeout=20)


def test_raw_submit_with_unknown_limit_is_refused(cluster):
    """A submit made without the client library (a raw call) with an unknown job limit key is
    refused by the server with the valid names, and so are an unknown extra option and a field too many. (An unmet capability
    is not an unknown option: the job waits, visibly, see waiting_reason.)"""
    D = cluster.client
    payload = envelope.pack({"k": "expr", "code": "1", "fname": "<dsage>"})
    base = ["raw", "expr", 0, False, [], payload, None, None, None, "1"]
    with pytest.raises(BadRequest, match=r"unknown job limit 'retries'; valid: mem, cpu, out"):
        _raw_submit(D, base[:8] + [{"retries": 3}] + base[9:])
    with pytest.raises(BadRequest, match=r"unknown ext job option 'bogus'; valid: .*packages"):
        _raw_submit(D, base + [{"bogus": 3}])
    with pytest.raises(BadRequest, match=r"each job must be a list of 10 or 11 fields"):
        _raw_submit(D, base + [None, None])
    assert _raw_submit(D, base)  # the same record without them is accepted


def test_workers_show_whether_they_run_sage(cluster):
    """D.workers() says sage: True exactly when the worker advertises the sage capability (the
    server read a key workers never send, so it always said False)."""
    from dsage_core.client.sage_check import sage_available
    if not sage_available():
        pytest.skip("the sage extra is not installed here: a worker would rightly say sage: False")
    (w,) = cluster.client.workers()
    assert w["sage"] is True


def test_kill_right_after_start_does_not_over_dispatch(cluster):
    """After a job is killed right after it started, the next batch gets no more jobs than the
    worker's 2 slots (the kill's tiny run time once opened the prefetch: running=3 on 2 slots)."""
    D = cluster.client
    first = D("import time\ntime.sleep(60)")
    D.kill(first.id)
    assert first.wait(30).status == "killed"
    batch = [D("import time\ntime.sleep(60)") for _ in range(3)]
    try:
        s = D.stats()
        # held = running + assigned + paused: what the worker was handed, started or not
        assert (s["held"], s["queued"], s["total_slots"]) == (2, 1, 2), s
    finally:
        for j in batch:
            D.kill(j.id)



def test_a_thread_blocked_in_wait_is_woken_by_shutdown(cluster):
    """j.wait() in another thread (a notebook's background cell) raises ClientClosed when the
    client shuts down, instead of blocking forever."""
    import threading
    D = cluster.connect()
    pending = D("import time\ntime.sleep(60)")
    assert D("1").wait(30).result == 1
    raised, entered = [], threading.Event()

    def waiter():
        entered.set()
        try:
            pending.wait()
        except ClientClosed as e:
            raised.append(e)
    t = threading.Thread(target=waiter)
    t.start()
    entered.wait(10)
    D.shutdown()
    t.join(10)
    assert not t.is_alive() and raised and "shut down" in str(raised[0])
    cluster.client.kill(pending.id)
