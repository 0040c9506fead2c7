"""The server's TCP port: the one it had before if still free, else a new one (no Twisted import:
``start_all`` picks it before spawning the server, and W5 counts every millisecond before that)."""
from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    """A TCP port free on all interfaces now (bound with SO_REUSEADDR, listened on, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 0))
        s.listen(1)
        return s.getsockname()[1]


def pick_port(home: Path, wanted: int) -> int:
    """*wanted* if given; else the port saved in ``home/server.port`` if free; else a new one (saved)."""
    if wanted:
        return wanted
    saved = Path(home) / "server.port"
    if saved.exists():
        try:
            port = int(saved.read_text().strip())
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
            return port
        except (ValueError, OSError):
            pass
    port = free_port()
    saved.write_text(str(port))
    return port
