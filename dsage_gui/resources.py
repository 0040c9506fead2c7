"""Icons from the packaged resources (``resources/`` installs as ``dsage_resources``)."""
from __future__ import annotations

from PySide6.QtGui import QIcon


def app_icon() -> QIcon:
    """dsage's icon, every packaged size (windows, the task bar, notifications)."""
    from dsage_resources import ICON_SIZES, path
    icon = QIcon()
    for n in ICON_SIZES:
        icon.addFile(str(path(f"icons/hicolor/{n}x{n}/apps/dsage.png")))
    return icon
