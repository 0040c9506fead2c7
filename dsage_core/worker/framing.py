"""Length-prefixed msgpack frames: 4-byte big-endian length + msgpack body.

The one framing of dsage's pipes and local sockets: the monitor and its children (this module's
encoder and decoder) and the local transport (``protocol/localwire.py``, which packs its bodies with
its own hooks and uses :data:`HEADER`)."""
from __future__ import annotations

import struct
from typing import Any

import msgpack

HEADER = struct.Struct(">I")   #: a frame's length prefix
_LEN = HEADER


class FrameTooLarge(ValueError):
    """A frame announced a size above the limit (a corrupt stream or a runaway child)."""


def pack_frame(obj: Any) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return _LEN.pack(len(body)) + body


def frame_parts(obj: Any) -> tuple[bytes, bytes]:
    """(header, body) of a frame, for ``os.writev`` (no copy of a large body to prepend 4 bytes)."""
    body = msgpack.packb(obj, use_bin_type=True)
    return _LEN.pack(len(body)), body


class FrameDecoder:
    """Incremental decoder: ``feed(bytes) -> [messages]``."""

    def __init__(self, max_frame: int = 512 * 1024 * 1024) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buf = self._buf
        buf += data
        out = []
        pos = 0
        n = len(buf)
        with memoryview(buf) as view:  # no copy of a large result on its way through
            while n - pos >= 4:
                (size,) = _LEN.unpack_from(buf, pos)
                if size > self.max_frame:
                    raise FrameTooLarge(f"frame of {size} bytes > limit {self.max_frame}")
                if n - pos - 4 < size:
                    break
                out.append(msgpack.unpackb(view[pos + 4:pos + 4 + size], raw=False, strict_map_key=False))
                pos += 4 + size
        if pos:
            del buf[:pos]
        return out
