"""Original exceptions and retries through the user's entry points: real server, real workers,
real child processes; a script run as a subprocess with start_all for a class of its __main__."""
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import dsage_core as dsage
from tests.integration.cluster import start_cluster

pytestmark = pytest.mark.timeout(120)


class Picky(ValueError):
    """An exception class of a module the workers can import."""


def bad_value(x):
    raise ValueError("bad value", x)


def raise_picky():
    raise Picky("picky", 7)


def raise_locked():
    e = RuntimeError("holds a lock")
    e.lock = threading.Lock()   # cannot be pickled
    raise e


def fail_times(path, n, exc_name="ValueError"):
    """Raises *exc_name* the first *n* times it runs (the count lives in a file), then returns."""
    runs = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as f:
        f.write(str(runs + 1))
    if runs < n:
        raise {"ValueError": ValueError, "KeyError": KeyError}[exc_name](f"run {runs + 1}")
    return runs + 1


def test_a_value_error_comes_back_as_itself(cluster):
    """exception(), get(), D.gather and Executor futures give the ValueError the job raised, with the
    remote traceback as __cause__; JobFailed and RemoteError are exported."""
    D = cluster.client
    j = D.submit(bad_value, 3)
    e = j.exception(timeout=30)
    assert type(e) is ValueError and e.args == ("bad value", 3)
    assert isinstance(e.__cause__, dsage.RemoteTraceback) and "in bad_value" in str(e.__cause__)
    with pytest.raises(ValueError, match="bad value"):
        j.get()
    with pytest.raises(ValueError, match="bad value"):
        D.gather([D.submit(pow, 2, 3), j])
    with D.executor() as ex:
        assert type(ex.submit(bad_value, 1).exception(timeout=30)) is ValueError
    assert D.submit(pow, 2, 2).exception(timeout=30) is None
    assert issubclass(dsage.RemoteError, dsage.JobFailed)
    killed = D.eval("import time\ntime.sleep(60)")
    killed.kill()
    assert type(killed.exception(timeout=30)) is dsage.JobFailed


def test_an_exception_of_the_users_module_and_an_unpicklable_one(cluster):
    """A class the client can import comes back as itself; an unpicklable exception as
    RemoteError[RuntimeError], which is also a RuntimeError, with its args."""
    D = cluster.client
    e = D.submit(raise_picky).exception(timeout=30)
    assert type(e) is Picky and e.args == ("picky", 7)
    e = D.submit(raise_locked).exception(timeout=30)
    assert isinstance(e, dsage.RemoteError) and isinstance(e, RuntimeError) and type(e) is not RuntimeError
    assert e.args == ("holds a lock",) and type(e).__qualname__ == "RemoteError[RuntimeError]"
    assert "holds a lock" in str(e.__cause__)


def test_an_anonymous_workers_exception_brings_no_pickle(tmp_path):
    """From an anonymous worker the client gets names and plain args only: a RemoteError subclass,
    never the unpickled original, even for a class the client could import."""
    c = start_cluster(tmp_path / "home", workers=0, allow_anonymous=True)
    try:
        c.add_worker(1, anonymous=True)
        j = c.client.submit(raise_picky).wait(30)
        assert j.status == "failed" and "pickle" not in j._s.exc
        e = j.exception()
        assert isinstance(e, dsage.RemoteError) and isinstance(e, ValueError) and not isinstance(e, Picky)
        assert e.args == ("picky", 7) and e.remote_type.endswith(".Picky")
        with pytest.raises(ValueError):
            c.client.gather([j])
    finally:
        c.stop()


def test_retries_count_attempts_and_stop_at_their_limit(cluster, tmp_path):
    """Fails twice then succeeds: retries=2 completes at attempt 3; retries=1 fails; a retry_on
    that does not match fails at once; the attempts show in job.info() and `dsage job ID`."""
    D = cluster.client
    j = D.submit(fail_times, str(tmp_path / "a"), 2, dsage_options={"retries": 2})
    assert j.get(30) == 3 and j.attempts == 3 and j.info().attempts == 3
    j = D.submit(fail_times, str(tmp_path / "b"), 2, dsage_options={"retries": 1})
    assert type(j.exception(30)) is ValueError and j.attempts == 2 and "run 2" in j.error
    j = D.submit(fail_times, str(tmp_path / "c"), 2, dsage_options={"retries": 5, "retry_on": [KeyError]})
    assert type(j.exception(30)) is ValueError and j.attempts == 1
    j = D.submit(fail_times, str(tmp_path / "d"), 1, "KeyError",
                 dsage_options={"retries": 5, "retry_on": ("ValueError", "LookupError")})
    assert j.get(30) == 2 and j.attempts == 2
    timed = D.eval("import time\ntime.sleep(60)", timeout=0.5, retries=3)
    assert timed.wait(30).status == "timed_out" and timed.attempts == 1
    env = dict(os.environ, DSAGE_HOME=str(cluster.home))
    p = subprocess.run([sys.executable, "-m", "dsage_core", "job", str(j.id)], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("attempts", 1)[1].splitlines()[0].split()[-1] == "2"


SCRIPT = """
import sys, dsage_core as dsage

class NotPositive(ArithmeticError):
    def __init__(self, value):
        super().__init__(value)
        self.value = value

def check(x):
    if x <= 0:
        raise NotPositive(x)
    return x

if __name__ == "__main__":
    D = dsage.start_all(workers=1, home=sys.argv[1])
    try:
        j = D.submit(check, -4)
        e = j.exception(timeout=60)
        print(type(e) is NotPositive, e.value, type(e.__cause__).__name__)
        try:
            D.gather([D.submit(check, 1), j])
        except NotPositive as caught:
            print("caught", caught.value)
        with D.executor() as ex:
            try:
                list(ex.map(check, [2, 1, 0]))
            except NotPositive as caught:
                print("map", caught.value)
        print(D.submit(check, -1, dsage_options={"retries": 1, "retry_on": NotPositive}).wait(60).attempts)
    finally:
        D.shutdown()
"""


def test_a_class_of_a_scripts_main_comes_back_as_itself(tmp_path):
    """A script defines an exception class in __main__; with start_all its client catches that very
    class (the local worker counts as the owner's own, so the pickle reaches the client)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    p = subprocess.run([sys.executable, str(script), str(tmp_path / "home")], capture_output=True,
                       text=True, timeout=110, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:4] == ["True -4 RemoteTraceback", "caught -4", "map 0", "2"]
