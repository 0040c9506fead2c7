"""Resource requests: ``cpus=``, ``memory=``, ``gpus=``, ``needs=`` per job.

A worker offers ``slots`` cpus (one job process per slot: ``dsage worker --cpus N``; more slots
than cores if the user says so), its memory (``--memory 8G``, default the machine's) and its gpus
(``--gpus K``). The scheduler places a job that asks for more than one slot, for memory or for gpus
only on a worker whose free resources cover it (:class:`Request`); such a job takes the slots it
asked for while it runs. ``memory=`` is also the job's memory limit (RLIMIT_AS). ``needs=`` lists
capabilities the worker must have (e.g. ``["sage"]``); it travels in the job's ``needs`` field.
"""
from __future__ import annotations

import re
from typing import Any, NamedTuple

from dsage_core.model.ext import ExtOption, register

MAX_CPUS = 1024
MAX_GPUS = 64
MAX_MEMORY = 1 << 50


class Request(NamedTuple):
    """What one job asks for (cpus are slots)."""

    cpus: int = 1
    memory: int = 0
    gpus: int = 0

    def describe(self) -> str:
        """Human text: ``2 cpus, 4.0 GiB of memory``."""
        parts = [f"{self.cpus} cpu{'s' if self.cpus != 1 else ''}"] if self.cpus != 1 else []
        if self.memory:
            parts.append(f"{format_bytes(self.memory)} of memory")
        if self.gpus:
            parts.append(f"{self.gpus} gpu{'s' if self.gpus != 1 else ''}")
        return ", ".join(parts) or "1 cpu"


def request_of(ext: dict[str, Any] | None) -> Request | None:
    """The request in a job's ext options; None for a plain one-slot job (the fast path)."""
    if not ext:
        return None
    r = Request(ext.get("cpus", 1), ext.get("memory", 0), ext.get("gpus", 0))
    return None if r == (1, 0, 0) else r


def with_requests(ext: dict[str, Any], needs: list[str], limits: dict[str, Any] | None
                  ) -> tuple[list[str], dict[str, Any] | None]:
    """A job's ``needs`` and per-job limits with its ext requests folded in: ``needs=`` adds to the
    needs, ``memory=`` becomes the memory limit unless a smaller one was given."""
    if "needs" in ext:
        needs = sorted(set(needs) | set(ext["needs"]))
    mem = ext.get("memory")
    if mem:
        limits = dict(limits or {})
        limits["mem"] = min(mem, limits.get("mem") or mem)
    return needs, limits


def _int(name: str, lo: int, hi: int) -> Any:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{name} must be an integer from {lo} to {hi}, not {v!r}")
        return v
    return check


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", re.I)


def parse_bytes(v: Any) -> int:
    """Bytes from an int or a text such as ``8G``, ``512M``, ``1.5GiB`` (powers of 1024)."""
    if isinstance(v, bool):
        raise ValueError(f"memory must be a number of bytes or a size such as 8G, not {v!r}")
    if isinstance(v, int):
        n = v
    elif isinstance(v, str) and (m := _SIZE.fullmatch(v)):
        n = int(float(m.group(1)) * 1024 ** "_kmgt".index(m.group(2).lower() or "_"))
    else:
        raise ValueError(f"memory must be a number of bytes or a size such as 8G, not {v!r}")
    if not 0 < n <= MAX_MEMORY:
        raise ValueError(f"memory must be from 1 byte to {MAX_MEMORY} bytes, not {v!r}")
    return n


def format_bytes(n: int) -> str:
    """``4.0 GiB``, ``512 MiB``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if unit == "GiB" else f"{n // size} {unit}"
    return f"{n} bytes"


def check_needs(v: Any) -> list[str]:
    """Capability names the worker must have (a short list of short names)."""
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or len(v) > 8 or \
            not all(isinstance(n, str) and 0 < len(n) < 32 for n in v):
        raise ValueError(f"needs must be a short list of capability names such as ['sage'], not {v!r}")
    return sorted(set(v))


CPUS = register(ExtOption("cpus", _int("cpus", 1, MAX_CPUS), doc="slots the job takes while it runs"))
MEMORY = register(ExtOption("memory", parse_bytes, doc="bytes the job needs; also its memory limit"))
GPUS = register(ExtOption("gpus", _int("gpus", 0, MAX_GPUS), doc="gpus the job needs"))
NEEDS = register(ExtOption("needs", check_needs, doc="capabilities the worker must have, e.g. ['sage']"))
