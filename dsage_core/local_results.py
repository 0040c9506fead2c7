"""Large results on one machine go through files, not through three processes' sockets.

When a worker or a client shares the server's home directory (``start_all``, the desktop app, any
process started with the same ``--home``), a large result is written once, by the job's child
process (the monitor tells it the name; the monitor writes it only if the child could not), into
the server's ``results/`` directory and read once by the client; only its name crosses the
network and the child's pipe. Sharing is proven, not assumed: the server writes a fresh random token to
``results/.local-token`` at every start, and a peer that sends back an HMAC of it bound to the
server's id (:func:`proof`) has read that very directory. Everyone else (other hosts, other homes) gets the bytes over Foolscap as before.

A worker may only name the one file the server expects for that job and attempt
(:func:`result_name`), whose size must match what it reported: a file is never taken on trust.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from dsage_core.fileio import write_private
from dsage_core.result_files import ResultFileError, ResultsDir, result_name as _name

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
    try:
        tmp.unlink()  # a fresh file: created 0600 by us, not a leftover or a link
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
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


def proof(token: str, server_id: str) -> str:
    """What a peer sends to show it read *token*: bound to the server it talks to, so a server that
    receives it by mistake (a worker of this home joining another server) cannot use it here."""
    import hashlib
    import hmac
    return hmac.new(token.encode(), b"dsage-local:" + server_id.encode(), hashlib.sha256).hexdigest()


def server_id_of(furl: str) -> str:
    """The tub id in a furl (``pb://<id>@...``)."""
    return furl.split("://", 1)[-1].split("@", 1)[0]


def result_name(job_id: int, attempt: int) -> str:
    """The only name a worker may write a result of (job, attempt) under, relative to the home."""
    return _name(job_id, attempt)


def write_result(home: Path, job_id: int, attempt: int, data: bytes) -> str:
    """Write a result where the server expects it; returns its name relative to the home."""
    rel = result_name(job_id, attempt)
    write_result_at(Path(home) / rel, data)
    return rel


def write_result_at(p: Path, data: bytes) -> None:
    """Write *data* to *p* (a name from :func:`result_name` under the home): in a temporary file
    renamed into place, so it is never seen half-written, even by a rival writer. Job children
    call this directly: a large result then never crosses the pipe to the monitor."""
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
    write_private(tmp, data)
    os.replace(tmp, p)


def check_result(home: Path, job_id: int, attempt: int, rel: object, size: object,
                 results: "ResultsDir | None" = None) -> str | None:
    """Why a worker's result file is unacceptable, or None if it is the expected file and size:
    opened without following links and checked by ``fstat`` (see :mod:`dsage_core.result_files`:
    a regular file with one link, owned by the server's uid). Does file I/O: never on the reactor."""
    if rel != result_name(job_id, attempt):
        return f"the worker named an unexpected result file {str(rel)[:100]!r}"
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "the worker sent a malformed result size"
    try:
        rd = results or ResultsDir(home, uid=os.geteuid())
    except ResultFileError as e:
        return str(e)
    return rd.check(rel, size)
