"""The tray worker's behaviour: one in-process :class:`WorkerService` (the same worker as
``dsage worker``), pause / snooze / cores / CPU time / finish-and-quit, and the automatic suspend
rules (idle-only, on battery, busy machine). Qt only for timers and signals; no widgets here."""
from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

import psutil
from PySide6.QtCore import QObject, QSettings, QTimer, Signal

STATES = ("idle", "working", "paused", "disconnected", "error")


def x11_idle_seconds() -> float | None:
    """Seconds since the last user input on X11, or None when it cannot be known here."""
    if shutil.which("xprintidle"):
        try:
            out = subprocess.run(["xprintidle"], capture_output=True, text=True, timeout=2)
            return int(out.stdout.strip()) / 1000.0
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return None
    return None


def on_battery() -> bool | None:
    b = psutil.sensors_battery() if hasattr(psutil, "sensors_battery") else None
    return None if b is None else not b.power_plugged


class TrayController(QObject):
    """Drives one WorkerService. ``state`` is one of :data:`STATES`."""

    state_changed = Signal(str)
    quit_requested = Signal()

    def __init__(self, worker: Any, reactor: Any, parent: QObject | None = None, poll_ms: int = 1000) -> None:
        super().__init__(parent)
        self.worker = worker
        self.reactor = reactor
        self.user_paused = False
        self.auto_reason: str | None = None
        self.paused_since: float | None = None
        self.snooze_until: float | None = None
        self.state = "disconnected"
        s = QSettings()
        self.pause_limit = float(s.value("tray/pause_limit_s", 3600))
        self.idle_minutes = int(s.value("tray/idle_minutes", 0))
        self.suspend_on_battery = str(s.value("tray/battery", "false")).lower() == "true"
        self.busy_percent = int(s.value("tray/busy_percent", 0))
        self.timer = QTimer(self)
        self.timer.setInterval(poll_ms)
        self.timer.timeout.connect(self.poll)
        self.timer.start()
        worker.on_state(lambda _s: self.poll())

    # -------------------------------------------------------------- actions
    @property
    def paused(self) -> bool:
        return self.worker.pool.paused

    def pause(self) -> None:
        self.user_paused = True
        self._apply_pause()

    def resume(self) -> None:
        self.user_paused = False
        self.snooze_until = None
        self._apply_pause()

    def snooze(self, seconds: float = 3600) -> None:
        """Pause now and resume by itself after *seconds*."""
        self.snooze_until = time.monotonic() + seconds
        self.pause()

    def set_cores(self, n: int) -> None:
        self.worker.set_slots(n)
        QSettings().setValue("tray/cores", n)
        self.poll()

    def set_cpu_fraction(self, f: float) -> None:
        self.worker.pool.set_cpu_fraction(f)
        QSettings().setValue("tray/cpu", f)

    def finish_and_quit(self) -> Any:
        """Let running jobs complete (queued ones go back to the server), then quit."""
        self.resume()
        d = self.worker.stop(drain=True)
        d.addBoth(lambda _: self.quit_requested.emit())
        return d

    def quit(self) -> Any:
        d = self.worker.stop()
        d.addBoth(lambda _: self.quit_requested.emit())
        return d

    # -------------------------------------------------------------- state
    def _apply_pause(self) -> None:
        want = self.user_paused or self.auto_reason is not None
        if want != self.paused:
            self.worker.pause(want)
            self.paused_since = time.monotonic() if want else None
        self.poll()

    def auto_suspend_reason(self) -> str | None:
        """Why the rules say to suspend now (None: run)."""
        if self.suspend_on_battery and on_battery():
            return "on battery"
        if self.idle_minutes:
            idle = x11_idle_seconds()
            if idle is not None and idle < self.idle_minutes * 60:
                return f"computer in use (runs after {self.idle_minutes} min idle)"
        if self.busy_percent:
            load = psutil.cpu_percent(interval=None)
            if load > self.busy_percent and not self.worker.pool.busy:
                return f"other programs use {load:.0f}% CPU"
        return None

    def poll(self) -> None:
        now = time.monotonic()
        if self.snooze_until is not None and now >= self.snooze_until:
            self.snooze_until = None
            self.user_paused = False
        reason = self.auto_suspend_reason()
        if reason != self.auto_reason:
            self.auto_reason = reason
            self._apply_pause_quiet()
        if self.paused and self.paused_since is not None and now - self.paused_since > self.pause_limit:
            self.worker.pool.hand_back_running("paused longer than the worker's limit")
            self.paused_since = now
        self._set_state(self._compute())

    def _apply_pause_quiet(self) -> None:
        want = self.user_paused or self.auto_reason is not None
        if want != self.paused:
            self.worker.pause(want)
            self.paused_since = time.monotonic() if want else None

    def _compute(self) -> str:
        w = self.worker
        if w.state == "error":
            return "error"
        if w.state != "connected":
            return "disconnected"
        if self.paused:
            return "paused"
        return "working" if w.pool.busy else "idle"

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    def status_lines(self) -> list[str]:
        w = self.worker
        lines = [f"Server: {w.config.furl.split('@', 1)[-1].rsplit('/', 1)[0]}",
                 f"State: {self.state}" + (f" ({self.auto_reason})" if self.auto_reason else ""),
                 f"Jobs running: {w.pool.busy} of {w.pool.slots} cores · done: {w.pool.jobs_done}"]
        if self.snooze_until is not None:
            lines.append(f"Snoozed for {max(0, int(self.snooze_until - time.monotonic()) // 60)} more min")
        if w.error:
            lines.append(f"Error: {w.error}")
        return lines
