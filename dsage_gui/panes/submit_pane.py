"""Submit pane: a code editor (Ctrl+Enter submits), job options, and "Submit files…"."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox,
                               QHBoxLayout, QLineEdit, QPlainTextEdit, QPushButton, QSpinBox, QVBoxLayout,
                               QWidget)

from dsage_gui.bridge import deferred_slot
from dsage_gui.highlighter import PythonHighlighter

#: the title of the box of options saved with the editor text and restored at the next start
REMEMBERED = "Options kept for next time"
EXAMPLE = "# Ctrl+Enter submits. The value of the last expression is the result.\nsum(i * i for i in range(10**6))\n"


class CodeEditor(QPlainTextEdit):
    """A plain-text editor where Ctrl+Enter means "submit" (handled here, so it works without focus
    tricks or window activation, e.g. offscreen)."""

    submit_requested = Signal()

    def keyPressEvent(self, event: Any) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and \
                event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.submit_requested.emit()
            event.accept()
            return
        super().keyPressEvent(event)


class SubmitPane(QWidget):
    submitted = Signal(int)           # job id
    files_requested = Signal(list)    # paths chosen in the file dialog

    def __init__(self, session: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("submitPane")
        self.session = session
        self.editor = CodeEditor(self)
        self.editor.submit_requested.connect(self.submit)
        self.editor.setObjectName("codeEditor")
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.editor.setFont(font)
        self.editor.setPlainText(EXAMPLE)
        self.highlighter = PythonHighlighter(self.editor.document())
        self.name = QLineEdit(self)
        self.name.setPlaceholderText("(first line of the code)")
        self.mode = QComboBox(self)
        self.mode.addItems(["value of the last expression", "DSAGE_RESULT (exec)"])
        self.timeout = QDoubleSpinBox(self)
        self.timeout.setRange(0, 7 * 86400)
        self.timeout.setSpecialValueText("none")
        self.timeout.setSuffix(" s")
        self.priority = QSpinBox(self)
        self.priority.setRange(-1000, 1000)
        self.trusted = QCheckBox("trusted workers only", self)
        self.sage = QCheckBox("Sage code", self)
        form = QFormLayout()
        form.addRow("Name", self.name)   # per job: not kept
        # these persist between sessions (QSettings): say so where they are set
        self.remembered = QGroupBox(REMEMBERED, self)
        self.remembered.setObjectName("rememberedOptions")
        self.remembered.setToolTip("These options stay as you set them, for every job you submit, "
                                   "also after restarting dsage")
        kept = QFormLayout(self.remembered)
        kept.addRow("Result", self.mode)
        kept.addRow("Timeout", self.timeout)
        kept.addRow("Priority", self.priority)
        kept.addRow("", self.trusted)
        kept.addRow("", self.sage)
        self.submit_button = QPushButton("Submit (Ctrl+Enter)", self)
        self.submit_button.setObjectName("submitButton")
        self.submit_button.clicked.connect(self.submit)
        self.files_button = QPushButton("Submit files…", self)
        self.files_button.clicked.connect(self.choose_files)
        buttons = QHBoxLayout()
        buttons.addWidget(self.submit_button)
        buttons.addWidget(self.files_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.editor, 1)
        layout.addLayout(form)
        layout.addWidget(self.remembered)
        layout.addLayout(buttons)
        self._load_settings()

    def options(self) -> dict[str, Any]:
        return {"name": self.name.text().strip() or None,
                "timeout": self.timeout.value() or None, "priority": self.priority.value(),
                "trusted_only": self.trusted.isChecked()}

    @deferred_slot()
    def submit(self) -> Any:
        """Submit the editor's text as one job with the options shown (Ctrl+Enter, Submit button)."""
        code = self.editor.toPlainText()
        if not code.strip():
            self.session.post("warning", "nothing to submit: the editor is empty")
            return None
        self.save_settings()
        mode = "expr" if self.mode.currentIndex() == 0 else "exec"
        d = self.session.client.submit_code(code, mode=mode, sage=self.sage.isChecked(), **self.options())
        return d.addCallback(self._done)

    def _done(self, job_id: int) -> int:
        self.submitted.emit(job_id)
        self.session.post("info", f"submitted job {job_id}")
        return job_id

    def choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Submit files", "", "Python or Sage files (*.py *.sage)")
        if paths:
            self.files_requested.emit(paths)

    def set_code(self, code: str) -> None:
        self.editor.setPlainText(code)

    def save_settings(self) -> None:
        """Editor text and options (restored by the next window)."""
        s = QSettings()
        s.setValue("editor/code", self.editor.toPlainText())
        s.setValue("editor/mode", self.mode.currentIndex())
        s.setValue("editor/timeout", self.timeout.value())
        s.setValue("editor/priority", self.priority.value())
        s.setValue("editor/trusted", self.trusted.isChecked())
        s.setValue("editor/sage", self.sage.isChecked())

    def _load_settings(self) -> None:
        s = QSettings()
        code = s.value("editor/code")
        if code:
            self.editor.setPlainText(str(code))
        self.mode.setCurrentIndex(int(s.value("editor/mode", 0)))
        self.timeout.setValue(float(s.value("editor/timeout", 0.0)))
        self.priority.setValue(int(s.value("editor/priority", 0)))
        self.trusted.setChecked(str(s.value("editor/trusted", "false")).lower() == "true")
        self.sage.setChecked(str(s.value("editor/sage", "false")).lower() == "true")
