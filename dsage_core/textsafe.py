"""Text from other peers made safe to show: no control characters, no bidi tricks.

Worker host names, worker ids, job names, previews and errors travel from one peer (possibly an
anonymous worker) to other users' terminals and windows. An escape sequence in a host name would
reach every ``dsage workers`` user's terminal; a right-to-left override would reorder what the GUI
shows. :func:`line` and :func:`block` replace every such character by ``?``. Both are a single
``str.isprintable()`` call for ordinary text, so they cost nothing on the common path.
"""
from __future__ import annotations

from typing import Any

#: what a removed character is shown as (visible, so tampering is not hidden)
MARK = "?"


def line(value: Any, max_len: int | None = None) -> str:
    """*value* as one printable line: control, format (bidi, zero-width) and separator characters
    other than the space become ``?``; None becomes ""."""
    return _clean(value, max_len, "")


def block(value: Any, max_len: int | None = None) -> str:
    """Like :func:`line` but keeps newlines and tabs (output, tracebacks)."""
    return _clean(value, max_len, "\n\t")


def _clean(value: Any, max_len: int | None, keep: str) -> str:
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    if max_len is not None and len(s) > max_len:
        s = s[:max_len]
    if s.isprintable():
        return s
    if keep:
        s = s.replace("\r\n", "\n")
    return "".join(c if c.isprintable() or c in keep else MARK for c in s)
