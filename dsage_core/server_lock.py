"""The home's server lock: one server per home, and what it tells peers that start meanwhile.

The lock file holds ``"<pid> local"`` (or ``"<pid> tcp"``) while a server owns the home: a peer
that finds no socket yet waits for it while that process lives, instead of falling back to
Foolscap (see :mod:`dsage_core.protocol.localwire`). ``start_all`` writes the note itself right
after spawning the server, since its client and worker connect before the server has started.
No Twisted here: ``start_all`` imports this before it spawns anything.
"""
from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import IO

LOCK_NAME = "server.lock"
SOCKET_NAME = "server.sock"
#: sun_path holds 108 bytes on Linux; a longer home simply does without the local socket
MAX_SOCKET_PATH = 100


def socket_path(home: Path) -> Path | None:
    """Where the server of *home* listens for local peers, or None: the path is too long, or the
    platform cannot tell the server who the peer is (``SO_PEERCRED`` is Linux's)."""
    if not sys.platform.startswith("linux"):
        return None
    p = Path(home) / SOCKET_NAME
    return p if len(os.fsencode(str(p))) <= MAX_SOCKET_PATH else None


def note(pid: int, local_socket: bool) -> bytes:
    return f"{pid} {'local' if local_socket else 'tcp'}\n".encode()


def take(home: Path, local_socket: bool) -> IO[bytes] | None:
    """Take the lock and write the note; None if another server holds it."""
    f = open(Path(home) / LOCK_NAME, "ab")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    rewrite(f, local_socket)
    return f


def held(home: Path) -> bool:
    """True if some process holds the lock of *home* (a server runs, or is starting, there)."""
    lock = Path(home) / LOCK_NAME
    if not lock.exists():
        return False
    with open(lock, "ab") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def rewrite(f: IO[bytes], local_socket: bool) -> None:
    """Correct the note (e.g. the socket could not be opened after all)."""
    f.truncate(0)
    f.write(note(os.getpid(), local_socket))
    f.flush()


def release(f: IO[bytes]) -> None:
    f.truncate(0)   # announces nothing to peers that reconnect later
    f.close()


GROUP_NAME = "server.group"


def mark_group(home: Path, group: bool) -> None:
    """Record whether the server of *home* is one of a group sharing a database (PostgreSQL): its
    peers then reach the group over TCP whenever no live server holds the home, instead of
    waiting for this home's server to come back (another host may serve for good)."""
    p = Path(home) / GROUP_NAME
    if group:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.write(fd, b"postgresql\n")
        os.close(fd)
    else:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def is_group(home: Path) -> bool:
    """True if the last server of *home* was one of a group (see :func:`mark_group`)."""
    return (Path(home) / GROUP_NAME).exists()


def announce(home: Path, pid: int) -> None:
    """Written by ``start_all`` for the server it just spawned (which rewrites the same note)."""
    (Path(home) / LOCK_NAME).write_bytes(note(pid, socket_path(home) is not None))


def announced(home: Path) -> str | None:
    """What the live server process of *home* said: "local" (it opens, or will open, the socket)
    or "tcp"; None when no live server process has said anything."""
    try:
        pid_s, kind = (Path(home) / LOCK_NAME).read_text().split()
        os.kill(int(pid_s), 0)
    except (OSError, ValueError):
        return None
    return kind
