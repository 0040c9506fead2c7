"""Session-wide test settings: never touch the user's real dsage home or Qt settings."""
import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_home = tempfile.mkdtemp(prefix="dsage-test-home-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)  # each run left its home in /tmp
os.environ["DSAGE_HOME"] = _home
os.environ.setdefault("DSAGE_SETTINGS_DIR", os.path.join(_home, "qsettings"))

from tests.pg_fixture import pg_server, pg_url  # noqa: E402,F401  (a real PostgreSQL, on first use)


def pytest_addoption(parser):
    """``--latency plain|normal``: the latency policy of this run (sets DSAGE_LATENCY, which the
    servers, workers and children the tests start inherit)."""
    parser.addoption("--latency", choices=("normal", "plain"), default=None,
                     help="latency policy for this run (default: $DSAGE_LATENCY, else normal)")


def pytest_configure(config):
    """Apply ``--latency`` before any dsage module reads its policy."""
    import sys
    mode = config.getoption("--latency")
    if mode is None:
        return
    if "dsage_core.latency" in sys.modules and sys.modules["dsage_core.latency"]._current is not None \
            and sys.modules["dsage_core.latency"].current().name != mode:
        raise pytest.UsageError("--latency came after dsage read its policy: set DSAGE_LATENCY instead")
    os.environ["DSAGE_LATENCY"] = mode


def pytest_collection_modifyitems(config, items):
    """Under the plain policy, skip the tests of a hold, lazy read or coalescing mechanism itself."""
    if (os.environ.get("DSAGE_LATENCY") or "normal").strip().lower() != "plain":
        return
    skip = pytest.mark.skip(reason="tests a latency trick itself; DSAGE_LATENCY=plain turns it off")
    for item in items:
        if item.get_closest_marker("normal_latency"):
            item.add_marker(skip)
