"""Sage mode runs what the sage: prompt runs (the namespace of ``from sage.all import *``), returns
plain data when a value is plain and the Sage object itself otherwise, with its string form for
clients without Sage and for results of anonymous workers."""
import pytest

from dsage_core import codec
from dsage_core.client.sage_check import sage_available
from tests.integration.cluster import start_cluster

pytestmark = pytest.mark.skipif(not sage_available(), reason="the sage extra is not installed")

#: the examples of issue 17, as typed at the sage: prompt, with their string forms
EXAMPLES = [
    ("matrix(QQ,2,[1,2,3,4]).det()", "-2"),
    ("EllipticCurve([0,0,0,-1,0]).conductor()", "32"),
    ("x = var('x'); NumberField(x^2+1,'i').discriminant()", "-4"),
    ("RealField(20)(pi)", "3.1416"),
]


def test_the_sage_prompt_examples_run_as_typed(cluster):
    """Linear algebra, elliptic curves, number fields and symbolic constants: all of sage.all."""
    jobs = [cluster.client(code, kind="sage") for code, _ in EXAMPLES]
    for job, (code, text) in zip(jobs, EXAMPLES):
        job.wait(120)
        assert job.status == "completed", (code, job.error)
        assert str(job.result) == text, code
    # a Sage Integer is plain data; a Rational and a real number come back as Sage objects
    assert type(jobs[1].result) is int
    assert type(jobs[0].result).__name__ == "Rational"
    assert type(jobs[3].result).__name__.startswith("RealNumber")
    assert jobs[3].result.prec() == 20


def test_symbolics_and_plotting_to_png(cluster, tmp_path):
    """Calculus through Maxima, and a plot saved as a PNG by the job."""
    j = cluster.client("integrate(sin(x)^2, x)", kind="sage").wait(120)
    assert j.status == "completed", j.error
    assert str(j.result) == "1/2*x - 1/4*sin(2*x)"
    png = tmp_path / "plot.png"
    j = cluster.client.eval(f"plot(sin(x), (x, 0, 3)).save({str(png)!r})", kind="sage").wait(120)
    assert j.status == "completed", j.error
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_client_without_sage_gets_the_string_form(cluster, monkeypatch):
    """The result bytes decode to the Sage object here, and to its text where Sage is missing."""
    j = cluster.client("1/3 + 1/6", kind="sage").wait(120)
    assert j.status == "completed", j.error
    data = j._s.result_bytes  # the bytes as they came, before the first decode
    assert isinstance(data, bytes) and data[:1] == codec.SAGE
    assert type(codec.decode_value(data)).__name__ == "Rational"
    monkeypatch.setattr(codec, "_sage_importable", lambda: False)
    assert codec.decode_value(data) == "1/2"
    assert codec.decode_value(data, allow_pickle=False) == "1/2"
    assert codec.text_form(data) == codec.encode_value("1/2")


def test_an_anonymous_workers_sage_object_reaches_the_client_as_text(tmp_path):
    """The server never passes on a pickle from an anonymous worker: a Sage object becomes its text."""
    c = start_cluster(tmp_path / "home", workers=0, allow_anonymous=True)
    try:
        c.add_worker(1, anonymous=True)
        j = c.client("matrix(QQ, 2, [1, 2, 3, 4])", kind="sage").wait(120)
        assert j.status == "completed", j.error
        assert j.result == "[1 2]\n[3 4]"
    finally:
        c.stop()


def test_dsage_job_shows_a_sage_object_as_at_the_sage_prompt(tmp_path):
    """`dsage submit f.sage --wait` and `dsage job ID` print the string form, not a pickle's repr."""
    from tests.integration.test_cli import dsage
    import os
    import signal
    import subprocess
    import sys
    home = tmp_path / "home"
    dsage(home, "setup", "--yes")
    env = dict(os.environ, DSAGE_HOME=str(home))
    server = subprocess.Popen([sys.executable, "-m", "dsage_core", "server", "--quiet"], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith("pb://")
        worker = subprocess.Popen([sys.executable, "-m", "dsage_core", "worker", "--workers", "1", "--quiet"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            f = tmp_path / "m.sage"
            f.write_text("DSAGE_RESULT = matrix(QQ, 2, [1, 2, 3, 4])^-1\n")
            out = dsage(home, "submit", str(f), "--wait", timeout=120).stdout
            assert "[  -2    1]\n[ 3/2 -1/2]" in out, out
            job_id = dsage(home, "jobs").stdout.strip().splitlines()[-1].split()[0]
            detail = dsage(home, "job", job_id).stdout
            assert "---- result ----\n[  -2    1]\n[ 3/2 -1/2]" in detail, detail
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(20)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)
