"""A worker's private key on a pipe, not as a path on its command line.

Anything running as the same user can read ``/proc/<pid>/cmdline``, so a job that finds
``--key PATH`` there knows where the worker's key is. ``start_all`` and the desktop app hand their
local worker its key on an inherited pipe (``dsage worker --key-fd N``), and ``dsage worker
--key PATH`` reads PATH once and runs itself again that way before it starts any job.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from dsage_core import keys

MAX_MESSAGE = 64 * 1024


def key_pipe(key_text: str, hide: list[str] | None = None) -> int:
    """A pipe holding *key_text* (and paths the worker must hide from its jobs); returns its read
    end, inheritable. The message fits in the pipe, so nothing needs to wait for a reader."""
    data = json.dumps({"key": key_text, "hide": hide or []}).encode()
    if len(data) > 60000:
        raise ValueError("key message too large for a pipe")
    r, w = os.pipe()
    try:
        os.write(w, data)
    finally:
        os.close(w)
    os.set_inheritable(r, True)
    return r


def receive(fd: int) -> tuple[Any, list[Path]]:
    """Read and close the pipe *fd*: (private key, paths to hide)."""
    chunks = []
    try:
        while sum(map(len, chunks)) <= MAX_MESSAGE:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(fd)
    try:
        msg = json.loads(b"".join(chunks))
        text, hide = msg["key"], msg.get("hide") or []
    except (ValueError, KeyError, TypeError):
        raise keys.KeyFileError(f"no key could be read from file descriptor {fd}") from None
    return keys.parse_private_key(text.encode(), f"the key on file descriptor {fd}"), [Path(h) for h in hide]


def reexec_without_key_path(key: Path, argv: list[str] | None = None) -> None:
    """Run this ``dsage worker`` again with the key file's contents on a pipe instead of its path
    (never returns; errors in the key are reported before)."""
    keys.load_private_key(key)   # a bad key fails here, with its name
    fd = key_pipe(Path(key).read_text(), [str(Path(key).resolve())])
    args = _without_key(sys.argv[1:] if argv is None else argv) + ["--key-fd", str(fd)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "dsage_core", *args])


def _without_key(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--key":
            skip = True
        elif not a.startswith("--key="):
            out.append(a)
    return out
