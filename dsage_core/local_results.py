"""Large results on one machine go through files, not through three processes' sockets.

When a worker or a client shares the server's home directory (``start_all``, the desktop app, any
process started with the same ``--home``), a large result is written once by the worker monitor
into the server's ``results/`` directory and read once by the client; only its name crosses the
network. Sharing is proven, not assumed: the server writes a fresh random token to
``results/.local-token`` at every start, and a peer that sends it back has read that very
directory. Everyone else (other hosts, other homes) gets the bytes over Foolscap as before.

A worker may only name the one file the server expects for that job and attempt
(:func:`result_name`), whose size must match what it reported: a file is never taken on trust.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

TOKEN_FILE = ".local-token"
LARGE = 256 * 1024   #: results above this go through files (same threshold as the store's files)


def results_dir(home: Path) -> Path:
    return Path(home) / "results"


def write_token(home: Path) -> str:
    """A new token for this server run (the file is readable by the server's user only)."""
    d = results_dir(home)
    d.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    tmp = d / (TOKEN_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.replace(tmp, d / TOKEN_FILE)
    return token


def read_token(home: Path | None) -> str | None:
    """The token in *home*'s results directory, if there is one to read."""
    if home is None:
        return None
    try:
        text = (results_dir(home) / TOKEN_FILE).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) == 32 else None


def result_name(job_id: int, attempt: int) -> str:
    """The only name a worker may write a result of (job, attempt) under, relative to the home."""
    return f"results/{job_id // 1000:06d}/{job_id}-{attempt}.bin"


def write_result(home: Path, job_id: int, attempt: int, data: bytes) -> str:
    """Write a result where the server expects it; returns its name relative to the home."""
    rel = result_name(job_id, attempt)
    p = Path(home) / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    return rel


def check_result(home: Path, job_id: int, attempt: int, rel: object, size: object) -> str | None:
    """Why a worker's result file is unacceptable, or None if it is the expected file and size."""
    if rel != result_name(job_id, attempt):
        return f"the worker named an unexpected result file {str(rel)[:100]!r}"
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "the worker sent a malformed result size"
    try:
        actual = (Path(home) / rel).stat().st_size
    except OSError:
        return f"the worker's result file {rel} is missing"
    if actual != size:
        return f"the worker's result file {rel} has {actual} bytes, not the {size} it reported"
    return None
