"""Writing a large bytes value to a file readable by its owner only (results, both by the store
and by a worker that shares the server's home)."""
from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """Create or truncate *path* (mode 0600, never through a symlink) and write all of *data*."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
