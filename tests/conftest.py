"""Session-wide test settings: never touch the user's real dsage home or Qt settings."""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_home = tempfile.mkdtemp(prefix="dsage-test-home-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)  # each run left its home in /tmp
os.environ["DSAGE_HOME"] = _home
os.environ.setdefault("DSAGE_SETTINGS_DIR", os.path.join(_home, "qsettings"))

from tests.pg_fixture import pg_server, pg_url  # noqa: E402,F401  (a real PostgreSQL, on first use)
