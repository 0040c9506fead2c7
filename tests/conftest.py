"""Session-wide test settings: never touch the user's real dsage home or Qt settings."""
import os
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_home = tempfile.mkdtemp(prefix="dsage-test-home-")
os.environ["DSAGE_HOME"] = _home
os.environ.setdefault("DSAGE_SETTINGS_DIR", os.path.join(_home, "qsettings"))
