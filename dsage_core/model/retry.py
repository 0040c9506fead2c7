"""The ``retries`` and ``retry_on`` job options (declared in :mod:`dsage_core.model.ext`).

``retries=N``: a job that raises runs again, up to N more times, before it ends ``failed``.
``retry_on=("ValueError", MyError, ...)``: only when the exception is one of these (by type name:
the qualified or bare name of its class or of any class in its MRO; classes given on the client are
sent as their names). Distinct from the requeue of a job whose worker died (``max_failures``):
kills, timeouts, crashes and limits are never retried; only an exception the job raised is.
"""
from __future__ import annotations

from typing import Any

from dsage_core.model.exc_info import MAX_TYPE_NAME, type_name

MAX_RETRIES = 100
MAX_RETRY_ON = 16


def check_retries(v: Any) -> int:
    """A whole number of extra runs, 0..MAX_RETRIES."""
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_RETRIES:
        raise ValueError(f"retries must be a whole number from 0 to {MAX_RETRIES}, not {v!r}")
    return v


def check_retry_on(v: Any) -> list[str]:
    """Exception type names (or, on the client, exception classes: sent as their names)."""
    items = [v] if isinstance(v, (str, type)) else v
    if not isinstance(items, (list, tuple)) or not 0 < len(items) <= MAX_RETRY_ON:
        raise ValueError(f"retry_on must be an exception type or name, or a list of at most "
                         f"{MAX_RETRY_ON} of them, not {v!r}")
    out = []
    for item in items:
        if isinstance(item, type) and issubclass(item, BaseException):
            item = type_name(item)
        if not isinstance(item, str) or not item or len(item) > MAX_TYPE_NAME or not \
                all(part.isidentifier() or part == "<locals>" for part in item.split(".")):
            raise ValueError(f"retry_on: {item!r} is not an exception type or its name")
        out.append(item)
    return out
