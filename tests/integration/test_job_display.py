"""How jobs show themselves: the repr rule, JobList (what D.map returns), the progress bars of a
wait, the notebook HTML and streamed output, through the public API on a real cluster."""
import io
import re

import pytest

import dsage_core as dsage
from dsage_core.client.display import TextBar
from dsage_core.client.job import JobFailed

pytestmark = pytest.mark.timeout(60)


def square(x):
    return x * x


def test_repr_is_never_the_bare_value(cluster):
    """A job's repr names the job, its state and a preview of the result; .result is the value,
    so wait().result + 1 is arithmetic and a list of jobs cannot be mistaken for values."""
    D = cluster.client
    j = D("2+2")
    assert j.wait(30) is j
    assert repr(j) == f"<Job {j.id} completed: 4>"
    assert j.wait().result + 1 == 5
    with pytest.raises(TypeError):
        j.wait() + 1
    failed = D("1/0").wait(30)
    assert repr(failed) == f"<Job {failed.id} failed: ZeroDivisionError: division by zero>"
    big = D("'x' * 10**6").wait(30)
    assert len(repr(big)) < 120 and repr(big).startswith(f"<Job {big.id} completed: 'xxx")


def test_map_returns_a_joblist_that_is_a_list(cluster):
    """D.map gives a JobList: list(...) and indexing work, wait() returns it, results are the
    values in input order, get() raises for a failed job, slices stay JobLists."""
    D = cluster.client
    jobs = D.map(square, range(20))
    assert isinstance(jobs, list) and isinstance(jobs, dsage.JobList)
    assert jobs.wait(30, progress=False) is jobs
    assert jobs.results == [x * x for x in range(20)]
    assert jobs.get() == [x * x for x in range(20)]
    assert [type(j).__name__ for j in list(jobs)] == ["Job"] * 20
    assert isinstance(jobs[2:5], dsage.JobList) and jobs[3].result == 9
    assert jobs.counts() == {"completed": 20} and jobs.done()
    r = repr(jobs)
    assert r.startswith(f"[<Job {jobs[0].id} completed: 0>, ") and r.endswith("# 20 jobs: 20 completed")
    assert repr(jobs[:2]) == f"[<Job {jobs[0].id} completed: 0>, <Job {jobs[1].id} completed: 1>]"
    bad = D.map(lambda x: 1 / x, [1, 0])
    with pytest.raises(JobFailed, match=f"job {bad[1].id} failed"):
        bad.get(30, progress=False)
    assert bad.results == [1.0, None]
    assert isinstance(D.jobs(), dsage.JobList)


def test_wait_draws_the_terminal_bar(cluster, monkeypatch):
    """progress=True draws the CLI's bar on stderr, ending at total/total."""
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    cluster.client.map(square, range(30)).wait(30, progress=True)
    last = err.getvalue().split("\r")[-1]
    assert re.match(r"\[#{30}\] 30/30\s*\n$", last), err.getvalue()[-200:]


def test_wait_draws_no_bar_when_nobody_watches(cluster, capsys):
    """The default draws nothing when stderr is not a terminal and not in a notebook."""
    cluster.client.map(square, range(5)).wait(30)
    assert capsys.readouterr().err == ""


def test_text_bar_shows_eta():
    """The bar shows done/total and, before the end, an ETA."""
    out = io.StringIO()
    bar = TextBar(out)
    bar.update({"done": 3, "total": 10, "fraction": 0.3, "eta": 4.2})
    bar.close()
    assert out.getvalue().startswith("\r[#########                     ] 3/10 · ETA 4.2 s")


def test_repr_html_of_a_job_and_a_batch(cluster):
    """Jupyter's views: a job shows its status and result; a batch its counts, a progress bar with
    done/total and the first jobs; text is escaped."""
    D = cluster.client
    j = D("'<b>'").wait(30)
    h = j._repr_html_()
    assert f"Job {j.id}" in h and "completed" in h and "&#x27;&lt;b&gt;&#x27;" in h and "<b>'" not in h
    jobs = D.map(square, range(15)).wait(30, progress=False)
    h = jobs._repr_html_()
    assert "15 jobs: 15 completed" in h and "15/15 done" in h and '<progress value="100.0"' in h
    assert "… 5 more" in h and h.count("<tr>") == 1 + 10 + 1


def test_wait_show_output_streams_while_the_job_runs(cluster, tmp_path):
    """wait(show_output=True) prints output as it arrives: the job waits for a file that only the
    printed output makes the test create, so a print at the end alone would hang (and time out)."""
    go = tmp_path / "go"
    code = (f"import os, sys, time\nprint('first', flush=True)\n"
            f"while not os.path.exists({str(go)!r}): time.sleep(0.05)\nprint('second')\nDSAGE_RESULT = 1")

    class Out(io.StringIO):
        def write(self, s):
            if "first" in s:
                go.touch()
            return super().write(s)
    from dsage_core.client.streaming import wait_printing_output
    j = cluster.client.eval(code)
    out = Out()
    wait_printing_output(j, 30, out)
    assert out.getvalue() == "first\nsecond\n" and j.result == 1


def test_wait_show_output_prints_to_stdout(cluster, capsys):
    """The public form prints to stdout and still returns the job; its timeout is enforced."""
    j = cluster.client.eval("print('hello out')\nDSAGE_RESULT = 2")
    assert j.wait(30, show_output=True) is j
    assert capsys.readouterr().out == "hello out\n"
    slow = cluster.client.eval("import time\ntime.sleep(30)")
    with pytest.raises(TimeoutError):
        slow.wait(0.3, show_output=True)
    slow.kill()
