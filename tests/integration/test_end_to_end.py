"""End-to-end: real server, worker, child processes and Foolscap on loopback, one job at a time."""
import pytest

import dsage_core as dsage
from dsage_core.client.payload import SubmitError

pytestmark = pytest.mark.timeout(60)


def square(x):
    return x * x


def test_expression_job_returns_its_value(cluster):
    """D('2+2') completes with 4; its repr names the job and previews the result."""
    j = cluster.client("2+2")
    assert j.wait(30) is j
    assert j.status == "completed"
    assert j.result == 4
    assert repr(j) == f"<Job {j.id} completed: 4>"


def test_eval_result_is_dsage_result_and_user_vars(cluster):
    """eval() returns DSAGE_RESULT and sees user_vars."""
    j = cluster.client.eval("DSAGE_RESULT = [a * 2, big ** 3]", user_vars={"a": 21, "big": 10**30}).wait(30)
    assert j.result == [42, 10**90]


def test_eval_file_sends_content(cluster, tmp_path):
    """eval_file ships the file's content; the result is DSAGE_RESULT."""
    f = tmp_path / "job.py"
    f.write_text("DSAGE_RESULT = sorted(set(range(10**5)))[-1]\n")
    j = cluster.client.eval_file(str(f)).wait(30)
    assert (j.status, j.result, j.name) == ("completed", 99999, "job.py")


def test_submit_and_map_functions_in_input_order(cluster):
    """submit() runs a function; map() returns jobs in input order with right results."""
    assert cluster.client.submit(square, 12).wait(30).result == 144
    jobs = cluster.client.map(square, range(50))
    assert [j.wait(30).result for j in jobs] == [x * x for x in range(50)]


def test_failed_job_has_traceback_and_wait_returns(cluster):
    """A job that raises ends 'failed' with the traceback text; wait() does not hang."""
    j = cluster.client("1/0").wait(30)
    assert j.status == "failed"
    assert "ZeroDivisionError" in j.error
    assert j.result is None
    assert repr(j).startswith(f"<Job {j.id} failed: ZeroDivisionError")


def test_syntax_error_fails_the_job_not_the_server(cluster):
    """Code with a syntax error fails with the traceback and the server keeps serving."""
    j = cluster.client.eval("def (:\n").wait(30)
    assert j.status == "failed" and "SyntaxError" in j.error
    assert cluster.client("1+1").wait(30).result == 2


def test_timeout_is_enforced_from_outside(cluster):
    """A job past its wall-clock timeout is killed and ends timed_out; the slot keeps working."""
    j = cluster.client.eval("import time\ntime.sleep(60)", timeout=0.5).wait(30)
    assert j.status == "timed_out"
    assert "timed out" in j.error
    assert cluster.client("3*3").wait(30).result == 9


def test_kill_running_job(cluster):
    """kill() ends a running job as killed and wait() returns."""
    j = cluster.client.eval("import time\nprint('started', flush=True)\ntime.sleep(60)")
    # wait until it runs and printed (output is streamed live)
    import time as _t
    deadline = _t.monotonic() + 20
    while "started" not in j.output:
        assert _t.monotonic() < deadline, "job never started"
        j._s.event.wait(0.05)  # bounded wait on the job's own event, not a sleep
    assert j.kill() is True
    assert j.wait(30).status == "killed"


def test_output_is_captured(cluster):
    """stdout and stderr of a job are kept with it."""
    j = cluster.client.eval("import sys\nprint('hello')\nprint('oops', file=sys.stderr)\nDSAGE_RESULT=1").wait(30)
    out = j.output
    assert "hello" in out and "oops" in out


def test_as_completed_and_recovery_by_id(cluster):
    """as_completed yields every job once; get_job and jobs() recover handles by id."""
    jobs = [cluster.client(f"{i}*2") for i in range(10)]
    seen = [j.id for j in dsage.as_completed(jobs, timeout=30)]
    assert sorted(seen) == sorted(j.id for j in jobs)
    again = cluster.client.get_job(jobs[3].id)
    assert again.wait(10).result == 6
    listed = {j.id for j in cluster.client.jobs()}
    assert {j.id for j in jobs} <= listed
    with pytest.raises(KeyError):
        cluster.client.get_job(10**9)


def test_non_picklable_function_fails_at_submit(cluster):
    """A function that cannot be pickled gives a clear error on the client; nothing is sent."""
    import threading
    lock = threading.Lock()
    with pytest.raises(SubmitError, match="cannot be pickled"):
        cluster.client.submit(lambda: lock)


def test_missing_file_is_a_clear_error(cluster, tmp_path):
    """eval_file of a missing file raises SubmitError naming it."""
    with pytest.raises(SubmitError, match="no such file"):
        cluster.client.eval_file(str(tmp_path / "nope.py"))


def test_workers_and_stats(cluster):
    """workers() shows the worker's inventory; stats() counts by status and slots."""
    cluster.client("1").wait(30)
    ws = cluster.client.workers()
    assert len(ws) == 1 and ws[0]["slots"] == 2 and ws[0]["anonymous"] is False
    assert ws[0]["cpus"] >= 1 and ws[0]["memory"] > 0
    s = cluster.client.stats()
    assert s["completed"] >= 1 and s["total_slots"] == 2 and "rate_1m" in s


def test_priority_orders_queued_jobs(cluster):
    """With the slots busy, a higher-priority job runs before earlier low-priority ones."""
    blockers = [cluster.client.eval("import time\ntime.sleep(0.5)") for _ in range(2)]
    low = [cluster.client.eval("import time\nDSAGE_RESULT=time.time()", priority=0) for _ in range(3)]
    high = cluster.client.eval("import time\nDSAGE_RESULT=time.time()", priority=10)
    for j in blockers + low + [high]:
        j.wait(30)
    # When the blockers end, two slots free together: the high job takes the first and at most one
    # low job can start beside it, so it ran no later than the second low job to start.
    assert high.result <= sorted(j.result for j in low)[1]


def test_large_results_go_through_files_on_one_machine(cluster, tmp_path):
    """Worker, server and client share a home: a large result is written once, as the file the
    server expects for that job and attempt, and read by the client; a client elsewhere gets the
    bytes over the network; the stored record has them too."""
    import random
    from dsage_core import local_results
    from dsage_core.client.api import connect
    from dsage_core.client.job import LocalResult
    code = "import random\nrandom.seed(7)\nDSAGE_RESULT = random.randbytes(600_000)"
    random.seed(7)
    expected = random.randbytes(600_000)
    assert cluster.client.aclient.local_home == cluster.home
    j = cluster.client.eval(code).wait(30)
    assert j.status == "completed" and isinstance(j._s.result_bytes, LocalResult)
    assert j.result == expected
    assert (cluster.home / local_results.result_name(j.id, 1)).is_file()
    elsewhere = connect(cluster.furl, key=cluster.home / "dsage_key", home=tmp_path / "elsewhere", timeout=10)
    try:
        assert elsewhere.aclient.local_home is None
        j2 = elsewhere.eval(code).wait(30)
        assert isinstance(j2._s.result_bytes, bytes) and j2.result == expected
        assert elsewhere.get_job(j.id).result == expected   # the stored record, over the network
    finally:
        elsewhere.shutdown()


def test_finished_jobs_nobody_holds_are_not_kept_by_the_client(cluster):
    """A session that drops its handles drops their results too; the jobs stay on the server."""
    import gc
    states = cluster.client.aclient.states
    before = len(states)
    jobs = cluster.client.map(square, range(20))
    kept = jobs[7]
    assert [j.wait(30).result for j in jobs] == [x * x for x in range(20)]
    ids = [j.id for j in jobs]
    del jobs
    gc.collect()
    assert len(states) == before + 1 and kept.id in states
    assert cluster.client.get_job(ids[3]).result == 9        # fetched again from the server


def test_children_write_large_results_themselves(cluster, monkeypatch):
    """On one machine a large result goes from the job's child straight to its file: the worker
    monitor never handles the bytes (its own writer is broken here and must not be needed)."""
    from dsage_core import local_results
    from dsage_core.client.job import LocalResult

    def broken(*a, **k):
        raise AssertionError("the monitor wrote a result the child should have written")
    monkeypatch.setattr(local_results, "write_result", broken)
    j = cluster.client.eval("DSAGE_RESULT = bytes(range(256)) * 2048").wait(30)
    assert j.status == "completed", j.error
    assert isinstance(j._s.result_bytes, LocalResult)
    assert j.result == bytes(range(256)) * 2048
    assert (cluster.home / local_results.result_name(j.id, 1)).stat().st_size > local_results.LARGE


def test_result_files_are_read_off_the_reactor_for_remote_clients(cluster, tmp_path, monkeypatch):
    """A client that does not share the server's home gets large results as bytes: the server
    reads their files on its file thread, never on the reactor (which must not wait for a disk)."""
    import threading
    from dsage_core.client.api import connect
    from dsage_core.server.results import ResultFiles
    readers = []
    original = ResultFiles.read

    def spy(self, rel):
        readers.append(threading.current_thread().name)
        return original(self, rel)
    monkeypatch.setattr(ResultFiles, "read", spy)
    elsewhere = connect(cluster.furl, key=cluster.home / "dsage_key", home=tmp_path / "elsewhere", timeout=10)
    try:
        jobs = elsewhere.map(big_result, range(6))
        assert [j.wait(30).result for j in jobs] == [bytes([i]) * 400_000 for i in range(6)]
        assert elsewhere.get_job(jobs[0].id).result == bytes(400_000)
    finally:
        elsewhere.shutdown()
    assert readers and set(readers) == {"dsage-files"}, readers


def big_result(i):
    return bytes([i]) * 400_000
