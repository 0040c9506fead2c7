"""Where dsage keeps its files: ``DSAGE_HOME`` or the platform's user data dir."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

KEY_FILE = "dsage_key"
PUBKEY_FILE = "dsage_key.pub"
SERVER_CERT = "server.pem"
SERVER_FURL = "server.furl"
DATABASE = "dsage.sqlite"
SCRATCH = "scratch"
CERTS = "certs"
LOGS = "logs"


def resolve_home(home: str | os.PathLike[str] | None = None, create: bool = True) -> Path:
    """The dsage home directory: *home*, else ``$DSAGE_HOME``, else the user data dir."""
    if home is None:
        home = os.environ.get("DSAGE_HOME") or platformdirs.user_data_dir("dsage", appauthor=False)
    path = Path(home).expanduser().resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
