"""Where dsage keeps its files: ``DSAGE_HOME`` or the platform's user data dir."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

KEY_FILE = "dsage_key"
PUBKEY_FILE = "dsage_key.pub"
WORKER_KEY = "worker_key"          #: the local worker's own key (role worker, never admin)
WORKER_PUBKEY = "worker_key.pub"
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


def secure_home(home: Path) -> str | None:
    """Make *home* and what dsage keeps in it readable by its owner only. Returns what was wrong
    (to tell the user), or None when it was already private."""
    try:
        mode = home.stat().st_mode & 0o777
    except OSError:
        return None
    fixed = []
    if mode & 0o077:
        home.chmod(0o700)
        fixed.append(f"{home} was readable by others (mode {mode:04o}); changed it to 0700")
    opened = 0
    try:
        entries = list(os.scandir(home))
    except OSError:
        entries = []
    for e in entries:   # the top level only: nobody else can enter the home now anyway
        try:
            st = e.stat(follow_symlinks=False)
            if not e.is_symlink() and st.st_mode & 0o077:
                os.chmod(e.path, st.st_mode & 0o700)
                opened += 1
        except OSError:
            pass
    if opened:
        fixed.append(f"{opened} file(s) in it were readable by others; now only by you")
    return "; ".join(fixed) or None
