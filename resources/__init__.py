"""dsage's icons, desktop entries, AppStream metainfo and MIME type, installed as package data.

Qt and ``dsage desktop-install`` read them from here (importlib.resources), never from the source tree.
"""
from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
TRAY_STATES = ("idle", "working", "paused", "disconnected", "error")


def path(name: str) -> Traversable:
    """A resource by relative name, e.g. ``path("icons/dsage.svg")``."""
    return files(__name__).joinpath(name)
