"""A small Python syntax highlighter for the code editor."""
from __future__ import annotations

import keyword
import re
from typing import Any

from PySide6.QtGui import QColor, QFont, QSyntaxHighlighter, QTextCharFormat


def _fmt(color: str, bold: bool = False, italic: bool = False) -> QTextCharFormat:
    f = QTextCharFormat()
    f.setForeground(QColor(color))
    if bold:
        f.setFontWeight(QFont.Weight.Bold)
    f.setFontItalic(italic)
    return f


class PythonHighlighter(QSyntaxHighlighter):
    RULES = [
        (r"\b(" + "|".join(keyword.kwlist) + r")\b", _fmt("#7d3c98", bold=True)),
        (r"\b(True|False|None|DSAGE_RESULT)\b", _fmt("#b9770e", bold=True)),
        (r"\b\d+(\.\d*)?([eE][+-]?\d+)?\b", _fmt("#1f618d")),
        (r"\bdef\s+(\w+)|\bclass\s+(\w+)", _fmt("#117864", bold=True)),
        (r"'[^'\\\n]*(\\.[^'\\\n]*)*'|\"[^\"\\\n]*(\\.[^\"\\\n]*)*\"", _fmt("#a04000")),
        (r"#[^\n]*", _fmt("#7f8c8d", italic=True)),
    ]

    def __init__(self, document: Any) -> None:
        super().__init__(document)
        self.rules = [(re.compile(p), f) for p, f in self.RULES]

    def highlightBlock(self, text: str) -> None:
        for rx, fmt in self.rules:
            for m in rx.finditer(text):
                self.setFormat(m.start(), m.end() - m.start(), fmt)
