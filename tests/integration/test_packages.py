"""``packages=``: a job's requirements are installed on the worker before it runs, into a cached
directory keyed by the set (the second job installs nothing), and never leak into other jobs."""
import pytest

from dsage_core.client.payload import SubmitError
from tests.integration.cluster import start_cluster

pytestmark = pytest.mark.timeout(300)


def _cowsay():
    import cowsay
    return cowsay.get_output_string("cow", "hi").splitlines()[1].strip()


def _can_import(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    c = start_cluster(tmp_path / "home", workers=1, slots=1)
    yield c
    c.stop()


def test_a_job_gets_its_packages_installed_once_and_cached(cluster, tmp_path):
    """First use installs cowsay into the cache; the second job reuses it; a job without the
    option does not see it (not even in the same child)."""
    pytest.importorskip("pip")
    if _can_import("cowsay"):
        pytest.skip("cowsay is installed in the test environment itself")
    pool = cluster.workers[0].pool
    j = cluster.client.submit(_cowsay, dsage_options={"packages": ["cowsay==6.1"]}).wait(240)
    assert j.status == "completed", j.error
    assert j.result == "| hi |"
    assert pool.envs.installs == 1
    envs = list((tmp_path / "cache" / "dsage" / "envs").iterdir())
    assert len(envs) == 1 and (envs[0] / "cowsay").is_dir()
    j2 = cluster.client.submit(_cowsay, dsage_options={"packages": ["cowsay == 6.1"]}).wait(60)
    assert j2.status == "completed" and j2.result == "| hi |"
    assert pool.envs.installs == 1   # the same set, cached
    plain = cluster.client.submit(_can_import, "cowsay").wait(60)
    assert plain.status == "completed" and plain.result is False


def test_a_failed_install_fails_the_job_with_the_installers_message(cluster):
    """A requirement that cannot be satisfied: the job fails, naming it; the worker carries on."""
    j = cluster.client.submit(_can_import, "x", dsage_options={"packages": ["dsage-no-such-package-xyz==0.0.1"]})
    j.wait(240)
    assert j.status == "failed"
    assert "installing packages dsage-no-such-package-xyz==0.0.1 failed" in j.error
    assert cluster.client("6*7").wait(60).result == 42


@pytest.mark.parametrize("bad", [["--index-url=http://evil/"], ["git+https://x/y.git"], ["../here"],
                                 ["a; os_name=='posix'"], "sympy", [3]])
def test_requirements_that_are_not_plain_names_and_versions_are_refused(cluster, bad):
    """No pip options, URLs, paths or markers: refused on the client before anything is sent."""
    with pytest.raises(SubmitError, match="packages|requirement"):
        cluster.client.submit(_can_import, "x", dsage_options={"packages": bad})


def test_the_server_refuses_them_too_and_keeps_packages_jobs_off_anonymous_workers(cluster):
    """A raw submit with a bad requirement is a BadRequest; a good one is made trusted-only."""
    import msgpack
    from dsage_core.client import reactor_thread as rt
    from dsage_core.protocol.errors import BadRequest
    core = cluster.server.core
    rec = ["x", "expr", 0, False, [], msgpack.packb({"k": "expr", "code": "1"}), None, None, None, None]

    def submit(ext):
        return core.submit("alice", [rec + [ext]])
    with pytest.raises(BadRequest, match="not a package requirement"):
        rt.blocking(submit, {"packages": ["-e ."]}, timeout=10)
    [jid] = rt.blocking(submit, {"packages": ["cowsay==6.1"]}, timeout=10)
    row = rt.blocking(core.store.get_job, jid, timeout=10)
    assert row["trusted_only"] and "cowsay==6.1" in row["ext"]
