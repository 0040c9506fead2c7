"""Bulk data on the wire: one msgpack ``bytes`` value per batch (never Foolscap lists, never pickle).

Foolscap serialises each list element in Python (slow); a batch packed here crosses as one string.
Unpacking is safe on untrusted input: msgpack builds only plain containers, and the sizes are bounded.
"""
from __future__ import annotations

from typing import Any

import msgpack

from dsage_core.protocol.errors import BadRequest

_MAX = 512 * 1024 * 1024


def pack(obj: Any) -> bytes:
    """Pack plain data (lists, dicts, str, bytes, numbers, None) into one bytes value."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes, *, max_len: int = _MAX, what: str = "message") -> Any:
    """Unpack bytes made by :func:`pack`; malformed input raises :class:`BadRequest`."""
    if not isinstance(data, bytes):
        raise BadRequest(f"{what} must be bytes, not {type(data).__name__}")
    if len(data) > max_len:
        raise BadRequest(f"{what} too large: {len(data)} bytes > limit {max_len}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated types
        raise BadRequest(f"malformed {what}: {e}") from None


def expect_list(obj: Any, what: str, max_items: int) -> list[Any]:
    """Check *obj* is a list of at most *max_items* entries."""
    if not isinstance(obj, list):
        raise BadRequest(f"{what} must be a list")
    if len(obj) > max_items:
        raise BadRequest(f"{what}: {len(obj)} entries > limit {max_items}")
    return obj
