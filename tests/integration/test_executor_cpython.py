"""CPython's own ``concurrent.futures`` tests (ExecutorTest, ExecutorShutdownTest, WaitTests,
AsCompletedTests) run against ``D.executor()`` of a real ``start_all`` cluster.

The tests come from CPython's test suite: ``test.test_concurrent_futures`` when this Python has
it, else Debian's copy (package ``libpython3.11-testsuite``, /usr/lib/python3.11/test). Without
either the module is skipped; tests/integration/test_executor_contract.py checks the same named
behaviours with our own tests either way. The test functions travel by value
(``cloudpickle.register_pickle_by_value``), as any module the workers cannot import would.
"""
import importlib.util
import sys
import unittest
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

_DEBIAN = Path(f"/usr/lib/python{sys.version_info.major}.{sys.version_info.minor}/test/test_concurrent_futures.py")


def _cpython_tests():
    try:
        import test.test_concurrent_futures as mod   # noqa: PLC0415
        return mod
    except ImportError:
        pass
    if not _DEBIAN.exists():
        return None
    spec = importlib.util.spec_from_file_location("cpython_test_concurrent_futures", _DEBIAN)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception:  # noqa: BLE001 - another Python's copy that does not load here
        del sys.modules[spec.name]
        return None
    return mod


if not _DEBIAN.exists() and sys.version_info[:2] == (3, 11):   # Debian 12: its 3.11 test package
    from tests.launch.debian import Unavailable, ensure
    try:
        ensure(str(_DEBIAN), f"libpython{sys.version_info.major}.{sys.version_info.minor}-testsuite")
    except Unavailable:
        pass   # skipped below, saying what to install
cft = _cpython_tests()
_MIXINS = ("ExecutorMixin", "ExecutorTest", "ExecutorShutdownTest", "WaitTests", "AsCompletedTests")
if cft is None or not all(hasattr(cft, name) for name in _MIXINS):   # 3.12 split it into a package
    pytest.skip("CPython's test.test_concurrent_futures is not available (install the Debian package "
                "libpython3.11-testsuite); test_executor_contract.py covers the same cases",
                allow_module_level=True)

_cluster = {}


@pytest.fixture(scope="module", autouse=True)
def dsage_cluster(tmp_path_factory):
    """One start_all cluster (a server and a worker with 2 slots, as processes) for the module."""
    import cloudpickle
    import dsage_core as dsage
    cloudpickle.register_pickle_by_value(cft)   # the workers cannot import CPython's test module
    D = dsage.start_all(workers=2, home=tmp_path_factory.mktemp("cf") / "home")
    _cluster["D"] = D
    yield D
    D.shutdown()
    cloudpickle.unregister_pickle_by_value(cft)


def _executor(max_workers=None, **kw):
    return _cluster["D"].executor(max_workers=max_workers, **kw)


class DsageMixin(cft.ExecutorMixin):
    """CPython's ExecutorMixin with ``D.executor()`` as the executor type."""

    executor_type = staticmethod(_executor)


_NOT_OURS = "starts a new interpreter that imports concurrent.futures.<executor_type.__name__>"


class DsageExecutorTest(DsageMixin, cft.ExecutorTest, unittest.TestCase):
    """CPython's ExecutorTest (submit, map, map exceptions and timeouts, free and stale references,
    max_workers) against D.executor()."""


class DsageShutdownTest(DsageMixin, cft.ExecutorShutdownTest, unittest.TestCase):
    """CPython's ExecutorShutdownTest (run after shutdown, cancel_futures, hang issues)."""

    @unittest.skip(_NOT_OURS)
    def test_interpreter_shutdown(self):
        """Not applicable: the stdlib executor's atexit hook, by class name."""

    @unittest.skip(_NOT_OURS)
    def test_submit_after_interpreter_shutdown(self):
        """Not applicable: the stdlib executor's atexit hook, by class name."""

    @unittest.skip(_NOT_OURS)
    def test_hang_gh83386(self):
        """Not applicable: the stdlib executor at interpreter exit, by class name."""


class DsageWaitTests(DsageMixin, cft.WaitTests, unittest.TestCase):
    """CPython's WaitTests: concurrent.futures.wait over dsage futures and plain ones."""


class DsageAsCompletedTests(DsageMixin, cft.AsCompletedTests, unittest.TestCase):
    """CPython's AsCompletedTests: concurrent.futures.as_completed over dsage futures."""
