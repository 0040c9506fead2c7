"""The tray icon and its menu; a small status window with the same actions where no tray exists."""
from __future__ import annotations

import os
import sys
from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtGui import QAction, QActionGroup, QCursor, QIcon
from PySide6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QMenu, QSpinBox,
                               QSystemTrayIcon, QToolButton, QVBoxLayout, QWidget)

from dsage_core import desktop
from dsage_gui.tray.controller import TrayController, x11_idle_seconds

NO_TRAY = ("The system tray is not available on this desktop, so dsage shows this window instead. "
           "Closing it quits the worker.")


def state_icon(state: str) -> QIcon:
    from dsage_resources import path
    return QIcon(str(path(f"icons/tray-{state}.png")))


class TrayMenu(QMenu):
    """Status lines and every action; shared by the tray icon and the status window."""

    def __init__(self, ctl: TrayController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctl = ctl
        self.status_actions: list[QAction] = []
        self.status_section = self.addSection("dsage worker")
        self.pause_action = self._add("Pause", self._toggle_pause)
        self.snooze_action = self._add("Snooze 1 h", lambda: ctl.snooze(3600))
        self.cores_menu = self.addMenu("Cores")
        group = QActionGroup(self)
        self.core_actions: dict[int, QAction] = {}
        for n in range(1, (os.cpu_count() or 1) + 1):
            a = QAction(str(n), self, checkable=True)
            a.triggered.connect(lambda _=False, n=n: ctl.set_cores(n))
            group.addAction(a)
            self.cores_menu.addAction(a)
            self.core_actions[n] = a
        self.cpu_menu = self.addMenu("CPU time")
        cgroup = QActionGroup(self)
        self.cpu_actions: dict[int, QAction] = {}
        for pct in (25, 50, 75, 100):
            a = QAction(f"{pct} %", self, checkable=True)
            a.triggered.connect(lambda _=False, p=pct: ctl.set_cpu_fraction(p / 100))
            cgroup.addAction(a)
            self.cpu_menu.addAction(a)
            self.cpu_actions[pct] = a
        self.cpu_actions[100].setChecked(True)
        self.addSeparator()
        self.finish_action = self._add("Finish current jobs and quit", ctl.finish_and_quit)
        self.open_action = self._add("Open dsage", self.open_app)
        self.prefs_action = self._add("Preferences…", self.preferences)
        self.quit_action = self._add("Quit", ctl.quit)
        self.aboutToShow.connect(self.refresh)
        ctl.state_changed.connect(lambda _s: self.refresh())
        self.refresh()

    def _add(self, label: str, slot: Any) -> QAction:
        a = QAction(label, self)
        a.triggered.connect(lambda _=False: slot())
        self.addAction(a)
        return a

    def _toggle_pause(self) -> None:
        self.ctl.resume() if self.ctl.paused else self.ctl.pause()

    def refresh(self) -> None:
        for a in self.status_actions:
            self.removeAction(a)
        self.status_actions = []
        for line in self.ctl.status_lines():
            a = QAction(line, self)
            a.setEnabled(False)
            self.insertAction(self.pause_action, a)
            self.status_actions.append(a)
        self.pause_action.setText("Resume" if self.ctl.paused else "Pause")
        slots = self.ctl.worker.pool.slots
        if slots in self.core_actions:
            self.core_actions[slots].setChecked(True)

    def open_command(self) -> list[str]:
        """The desktop app on this worker's server and home."""
        return [sys.executable, "-m", "dsage_gui", "--server", self.ctl.worker.config.furl,
                "--home", str(self.ctl.worker.config.home)]

    def open_app(self) -> Any:
        """Start the desktop app as a child the reactor reaps when it exits (a bare Popen nobody
        waits for stays a zombie until the tray quits). Returns the process transport."""
        from twisted.internet import protocol
        argv = self.open_command()
        return self.ctl.reactor.spawnProcess(protocol.ProcessProtocol(), argv[0], argv, env=dict(os.environ),
                                             childFDs={0: "w", 1: 1, 2: 2})

    def preferences(self) -> None:
        Preferences(self.ctl).exec()


class Preferences(QDialog):
    def __init__(self, ctl: TrayController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("dsage worker preferences")
        self.ctl = ctl
        form = QFormLayout(self)
        form.addRow("Server", QLabel(ctl.worker.config.furl))
        ident = "anonymous" if ctl.worker.config.anonymous else str(ctl.worker.config.key_path)
        form.addRow("Identity", QLabel(ident))
        self.idle = QSpinBox(self)
        self.idle.setRange(0, 240)
        self.idle.setSuffix(" min idle (0: always)")
        self.idle.setValue(ctl.idle_minutes)
        if x11_idle_seconds() is None:
            self.idle.setEnabled(False)
            self.idle.setToolTip("'no user input' is unknown here (needs X11 and xprintidle)")
        form.addRow("Run only when idle", self.idle)
        self.battery = QCheckBox("suspend on battery", self)
        self.battery.setChecked(ctl.suspend_on_battery)
        form.addRow("", self.battery)
        self.busy = QSpinBox(self)
        self.busy.setRange(0, 100)
        self.busy.setSuffix(" % CPU used by others (0: never)")
        self.busy.setValue(ctl.busy_percent)
        form.addRow("Suspend above", self.busy)
        self.pause_limit = QSpinBox(self)
        self.pause_limit.setRange(1, 24 * 60)
        self.pause_limit.setSuffix(" min, then hand jobs back")
        self.pause_limit.setValue(int(ctl.pause_limit // 60))
        form.addRow("Pause limit", self.pause_limit)
        self.autostart = QCheckBox("start at login", self)
        self.autostart.setChecked(desktop.autostart_path().exists())
        form.addRow("", self.autostart)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def save(self) -> None:
        s = QSettings()
        c = self.ctl
        c.idle_minutes, c.suspend_on_battery = self.idle.value(), self.battery.isChecked()
        c.busy_percent, c.pause_limit = self.busy.value(), self.pause_limit.value() * 60.0
        s.setValue("tray/idle_minutes", c.idle_minutes)
        s.setValue("tray/battery", c.suspend_on_battery)
        s.setValue("tray/busy_percent", c.busy_percent)
        s.setValue("tray/pause_limit_s", c.pause_limit)
        desktop.set_autostart(self.autostart.isChecked())
        self.accept()


class StatusWindow(QWidget):
    """The tray's stand-in: the same menu as buttons, and a line saying why it is here."""

    def __init__(self, ctl: TrayController, menu: TrayMenu) -> None:
        super().__init__()
        self.setObjectName("trayStatusWindow")
        self.setWindowTitle("dsage worker")
        self.ctl = ctl
        self.menu = menu
        layout = QVBoxLayout(self)
        self.notice = QLabel(NO_TRAY, self)
        self.notice.setWordWrap(True)
        layout.addWidget(self.notice)
        self.status = QLabel(self)
        layout.addWidget(self.status)
        self.buttons: dict[str, QToolButton] = {}
        for a in (menu.pause_action, menu.snooze_action, menu.cores_menu.menuAction(), menu.cpu_menu.menuAction(),
                  menu.finish_action, menu.open_action, menu.prefs_action, menu.quit_action):
            b = QToolButton(self)
            b.setDefaultAction(a)
            b.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
            layout.addWidget(b)
            self.buttons[a.text()] = b
        ctl.state_changed.connect(lambda _s: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        self.setWindowIcon(state_icon(self.ctl.state))
        self.status.setText("\n".join(self.ctl.status_lines()))
        self.menu.refresh()


class TrayUI:
    """Shows the worker in the system tray, or in a status window when there is no tray."""

    def __init__(self, ctl: TrayController, tray_available: bool | None = None) -> None:
        self.ctl = ctl
        self.menu = TrayMenu(ctl)
        self.icon: QSystemTrayIcon | None = None
        self.window: StatusWindow | None = None
        if tray_available if tray_available is not None else QSystemTrayIcon.isSystemTrayAvailable():
            self.icon = QSystemTrayIcon(state_icon(ctl.state))
            self.icon.setContextMenu(self.menu)
            # a left click opens the menu too (only a right click does by default), a double click the app
            self.icon.activated.connect(self._activated)
            self.icon.show()
            ctl.state_changed.connect(self._update_icon)
            self._update_icon(ctl.state)
        else:
            self.window = StatusWindow(ctl, self.menu)
            self.window.show()

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        R = QSystemTrayIcon.ActivationReason
        if reason == R.Trigger:
            self.menu.popup(QCursor.pos())
        elif reason == R.DoubleClick:
            self.menu.hide()
            self.menu.open_app()

    def _update_icon(self, state: str) -> None:
        if self.icon is not None:
            self.icon.setIcon(state_icon(state))
            self.icon.setToolTip("\n".join(["dsage worker"] + self.ctl.status_lines()))
