"""Connected workers as the server sees them, and the check of what a worker says of itself."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dsage_core import textsafe
from dsage_core.model.records import WorkerInfo
from dsage_core.protocol.errors import BadRequest


@dataclass
class Worker:
    """A connected worker as the server sees it."""

    id: str
    link: Any
    user: str
    anonymous: bool
    info: WorkerInfo
    slots: int
    joined: float
    last_heartbeat: float
    jobs_done: int = 0
    busy: int = 0
    paused: bool = False
    sent_blobs: set[str] = field(default_factory=set)
    dispatcher: Any = None
    local: bool = False   #: shares the server's home: writes large results as files there

    @property
    def capabilities(self) -> frozenset[str]:
        """What the worker said it can run (its inventory's ``capabilities`` list, e.g. sage)."""
        return capabilities_of(self.info)

    def describe(self) -> dict[str, Any]:
        """The worker as ``dsage workers`` and the desktop app list it."""
        i = self.info
        return {"id": self.id, "host": i.host or "?", "slots": self.slots, "busy": self.busy,
                "cpus": i.cpus, "memory": i.memory, "gpus": i.gpus, "os": i.os,
                "python": i.python, "anonymous": self.anonymous, "user": self.user,
                "last_heartbeat": self.last_heartbeat, "jobs_done": self.jobs_done,
                "sage": "sage" in self.capabilities, "paused": self.paused, "pid": i.pid,
                "address": i.address}


def capabilities_of(info: WorkerInfo) -> frozenset[str]:
    """The capability names a worker's inventory lists (anything malformed counts as none)."""
    caps = info.capabilities
    if not isinstance(caps, (list, tuple)):
        return frozenset()
    return frozenset(c for c in caps[:16] if isinstance(c, str) and 0 < len(c) < 32)


def _int_in(v: Any, lo: int, hi: int, what: str, default: int) -> int:
    if v is None:
        return default
    if type(v) is not int or not lo <= v <= hi:
        raise BadRequest(f"worker info: {what} must be an integer from {lo} to {hi}")
    return v


def _text_in(v: Any, max_len: int, what: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str) or len(v) > max_len:
        raise BadRequest(f"worker info: {what} must be text of at most {max_len} characters")
    return textsafe.line(v)


def clean_worker_info(info: Any) -> WorkerInfo:
    """The worker inventory a peer registered, checked field by field (types and ranges; text
    without control characters); unknown fields are dropped. Raises :class:`BadRequest`."""
    if not isinstance(info, dict):
        raise BadRequest("worker info must be a map")
    i = WorkerInfo.from_wire({k: v for k, v in info.items() if v is not None})
    caps = i.capabilities or []
    if not isinstance(caps, list) or len(caps) > 32 or \
            not all(isinstance(c, str) and 0 < len(c) <= 64 for c in caps):
        raise BadRequest("worker info: capabilities must be a list of at most 32 short names")
    if not isinstance(i.sage, bool):
        raise BadRequest("worker info: sage must be true or false")
    token = i.local_token
    if token is not None and (not isinstance(token, str) or len(token) > 200):
        raise BadRequest("worker info: local_token must be short text")
    return WorkerInfo(host=_text_in(i.host, 255, "host")[:64],   # a DNS name has at most 253
                      pid=_int_in(i.pid, 0, 2**32, "pid", default=0),
                      slots=_int_in(i.slots, 0, 1024, "slots", default=1),
                      capabilities=[textsafe.line(c) for c in caps],
                      cpus=_int_in(i.cpus, 0, 1 << 20, "cpus", default=0) or None,
                      memory=_int_in(i.memory, 0, 1 << 62, "memory", default=0) or None,
                      os=_text_in(i.os, 200, "os"), python=_text_in(i.python, 40, "python"),
                      version=_text_in(i.version, 40, "version"), sage=i.sage,
                      gpus=_int_in(i.gpus, 0, 1024, "gpus", default=0), local_token=token,
                      address=_text_in(i.address, 200, "address"))
