"""Captured stdout/stderr of the running job, streamed to the monitor: bounded and rate-limited.

Output goes out when more than 4 KiB is buffered, when 0.2 s passed since the last send (checked
on write and by a flusher thread, so a job that prints once and computes for an hour is still
live), and at the end of the job. Past the job's limit one marker line is sent and the rest dropped.
"""
from __future__ import annotations

import io
import sys
import threading
import time
from typing import Any

from dsage_core import latency

FLUSH_BYTES = latency.current().flush_bytes
FLUSH_SECONDS = latency.current().flush_seconds


class _Stream(io.TextIOBase):
    def __init__(self, capture: "Capture", name: str) -> None:
        self.capture = capture
        self.name = name

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self.capture.write(s)
        return len(s)

    def flush(self) -> None:
        self.capture.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class Capture:
    """Replaces sys.stdout/sys.stderr while a job runs."""

    def __init__(self, channel: Any) -> None:
        self.chan = channel
        self.lock = threading.Lock()
        self.job_id: int | None = None
        self.buf: list[str] = []
        self.buffered = 0
        self.sent = 0
        self.limit = 1 << 20
        self.truncated = False
        self.last_send = time.monotonic()
        self.stdout = _Stream(self, "<stdout>")
        self.stderr = _Stream(self, "<stderr>")
        self._wake = threading.Event()
        threading.Thread(target=self._flusher, name="dsage-output", daemon=True).start()

    def begin(self, job_id: int, limit: int) -> None:
        with self.lock:
            self.job_id, self.limit = job_id, limit
            self.buf, self.buffered, self.sent, self.truncated = [], 0, 0, False
            self.last_send = time.monotonic()
        sys.stdout, sys.stderr = self.stdout, self.stderr

    def end(self) -> None:
        """Restore sys.stdout/stderr and send what is buffered (one lock: it runs after every job)."""
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        with self.lock:
            jid, self.job_id = self.job_id, None
            if not self.buf or jid is None:
                return
            text = "".join(self.buf)
            self.buf, self.sent, self.buffered = [], self.sent + self.buffered, 0
            self.last_send = time.monotonic()
        self.chan.send(["out", jid, text])

    def write(self, s: str) -> None:
        with self.lock:
            if self.job_id is None or self.truncated:
                return
            room = self.limit - self.sent - self.buffered
            if len(s) > room:
                s = s[:max(0, room)] + f"\n[dsage: output truncated after {self.limit} bytes]\n"
                self.truncated = True
            self.buf.append(s)
            self.buffered += len(s)
            due = self.buffered > FLUSH_BYTES or time.monotonic() - self.last_send > FLUSH_SECONDS
        if due or self.truncated:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            if not self.buf or self.job_id is None:
                return
            text, jid = "".join(self.buf), self.job_id
            self.buf, self.sent, self.buffered = [], self.sent + self.buffered, 0
            self.last_send = time.monotonic()
        self.chan.send(["out", jid, text])

    def _flusher(self) -> None:
        while True:
            self._wake.wait(0.25)  # a periodic flush: the whole point of this thread
            if self.buf:
                self.flush()
