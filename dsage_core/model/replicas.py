"""Replicas: one job run on k distinct workers, accepted when a quorum agree on the encoded result.

The ``replicas`` job option (an ext option, :mod:`dsage_core.model.ext`) asks for k copies; ``dsage
server --anonymous-replicas K`` gives every job that may run on anonymous workers (not
``trusted_only``) K copies unless it asks for its own number. The quorum is a strict majority of k
(:func:`quorum`): 2 of 2, 2 of 3, 3 of 4, 3 of 5. Answers agree when their status and their result
bytes are identical (:func:`answer_digest`). When no answer can reach the quorum any more the job is
re-run on a keyed (non-anonymous) worker, whose answer decides; without one it fails, showing every
answer (bounded previews, :func:`disagreement_text`).

Pure values and text: the scheduler decides with digests (``dsage_core.scheduler``), the server keeps
the answers (``dsage_core.server.replicas``).
"""
from __future__ import annotations

import hashlib
from typing import Any

from dsage_core.model.status import JobStatus

#: the most copies a job may ask for
MAX_REPLICAS = 9
#: characters of each answer shown when replicas disagree
PREVIEW_CHARS = 120


def check_replicas(v: Any) -> int:
    """The ``replicas`` option: an int from 1 to :data:`MAX_REPLICAS` (raises ``ValueError``)."""
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_REPLICAS:
        raise ValueError(f"replicas must be an integer from 1 to {MAX_REPLICAS}, not {v!r}")
    return v


def quorum(k: int) -> int:
    """How many agreeing answers accept a job run k times: a strict majority."""
    return k // 2 + 1


def answer_digest(status: str, result: bytes | None, error: str | None) -> bytes:
    """What two answers must share to agree: the status and the encoded result, byte for byte (a
    failure: its error's last line, e.g. ``ZeroDivisionError: division by zero``; tracebacks name
    paths that differ between machines)."""
    h = hashlib.sha256(status.encode())
    if status == JobStatus.COMPLETED:
        h.update(b"\0" + (result or b""))
    else:
        lines = (error or "").strip().splitlines()
        h.update(b"\1" + (lines[-1] if lines else "").encode("utf-8", "replace"))
    return h.digest()


def agree_text(agree: int, of: int, decided_by: str | None = None) -> str:
    """``"2/2 agree"``; after a disagreement ``"1/2 agree: disagreement, decided by keyed worker W"``."""
    if decided_by is None:
        return f"{agree}/{of} agree"
    return f"{agree}/{of} agree: disagreement, decided by keyed worker {decided_by}"


def answer_line(worker: str, user: str, status: str, preview: str | None, error: str | None) -> str:
    """One answer as a bounded line: worker, user, and the result preview (or the error's last line)."""
    if status == JobStatus.COMPLETED:
        shown = preview if preview is not None else "?"
    else:
        lines = (error or "").strip().splitlines()
        shown = f"{status}: {lines[-1] if lines else ''}"
    if len(shown) > PREVIEW_CHARS:
        shown = shown[:PREVIEW_CHARS] + "..."
    return f"{worker} ({user or 'anonymous'}): {shown}"


def disagreement_text(agree: int, of: int, lines: list[str], why: str) -> str:
    """The error of a job whose replicas disagree: the count, why nothing decided, every answer."""
    body = "\n".join(f"  {line}" for line in lines[:MAX_REPLICAS + 1])
    return f"replicas disagree ({agree}/{of} agree; {why}); the answers:\n{body}"
