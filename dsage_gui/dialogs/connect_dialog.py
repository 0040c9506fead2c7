"""Connect dialog: a server furl (or furl file; recent servers offered) and an optional key file."""
from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLineEdit, QPushButton, QWidget)

RECENT_KEY = "servers/recent"


def recent_servers() -> list[str]:
    """Recent servers, most recent first."""
    recent = QSettings().value(RECENT_KEY) or []
    if isinstance(recent, str):
        recent = [recent]
    return [r for r in recent if r]


def remember_server(furl: str | None, key: str | None = None) -> list[str]:
    """Put *furl* first in the recent servers (at most 10) and remember its key; returns the list."""
    recent = recent_servers()
    if furl:
        recent = [furl] + [r for r in recent if r != furl][:9]
        s = QSettings()
        s.setValue(RECENT_KEY, recent)
        s.setValue("servers/last", furl)
        if key is not None:
            s.setValue("servers/last_key", key)
    return recent


class ConnectDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("connectDialog")
        self.setWindowTitle("Connect to a dsage server")
        self.server = QComboBox(self)
        self.server.setEditable(True)
        self.server.addItems(recent_servers())
        self.server.lineEdit().setPlaceholderText("pb://… or a file holding the furl")
        self.key = QLineEdit(str(QSettings().value("servers/last_key", "") or ""), self)
        self.key.setPlaceholderText("default: DSAGE_HOME/dsage_key")
        browse_furl = QPushButton("File…", self)
        browse_furl.clicked.connect(lambda: self._browse(self.server.lineEdit(), "Furl file"))
        browse_key = QPushButton("File…", self)
        browse_key.clicked.connect(lambda: self._browse(self.key, "Private key"))
        form = QFormLayout(self)
        form.addRow("Server", _row(self.server, browse_furl))
        form.addRow("Key", _row(self.key, browse_key))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(560, self.sizeHint().height())

    def _browse(self, target: QLineEdit, title: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, title)
        if path:
            target.setText(path)

    def values(self) -> tuple[str, str | None]:
        """(server, key or None) as entered."""
        return self.server.currentText().strip(), (self.key.text().strip() or None)


def _row(*widgets: QWidget) -> QWidget:
    w = QWidget()
    h = QHBoxLayout(w)
    h.setContentsMargins(0, 0, 0, 0)
    for k, x in enumerate(widgets):
        h.addWidget(x, 1 if k == 0 else 0)
    return w
