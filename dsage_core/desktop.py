"""``dsage desktop-install`` / ``desktop-uninstall``: desktop entries, icons and the .sage MIME type
in the user's XDG dirs; and the tray's "start at login" (XDG autostart)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def _data_home(data_home: Path | None) -> Path:
    return Path(data_home or os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def _config_home(config_home: Path | None) -> Path:
    return Path(config_home or os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def _targets(data_home: Path) -> list[tuple[str, Path]]:
    from dsage_resources import ICON_SIZES
    out = [("dsage.desktop", data_home / "applications" / "dsage.desktop"),
           ("dsage-tray.desktop", data_home / "applications" / "dsage-tray.desktop"),
           ("dsage-sage.xml", data_home / "mime" / "packages" / "dsage-sage.xml"),
           ("io.github.dsage.dsage.metainfo.xml", data_home / "metainfo" / "io.github.dsage.dsage.metainfo.xml"),
           ("icons/dsage.svg", data_home / "icons" / "hicolor" / "scalable" / "apps" / "dsage.svg")]
    for n in ICON_SIZES:
        rel = f"icons/hicolor/{n}x{n}/apps/dsage.png"
        out.append((rel, data_home / rel))
    return out


def _refresh(data_home: Path) -> None:
    for cmd in (["update-mime-database", str(data_home / "mime")],
                ["update-desktop-database", str(data_home / "applications")]):
        if shutil.which(cmd[0]):
            subprocess.run(cmd, check=False, capture_output=True)


def desktop_install(data_home: Path | None = None) -> list[Path]:
    """Install the desktop files, icons and MIME type; returns the paths written."""
    from dsage_resources import path
    home = _data_home(data_home)
    written = []
    for rel, target in _targets(home):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path(rel).read_bytes())
        written.append(target)
    _refresh(home)
    return written


def desktop_uninstall(data_home: Path | None = None) -> list[Path]:
    """Remove exactly what :func:`desktop_install` wrote; returns the paths removed."""
    home = _data_home(data_home)
    removed = []
    for _, target in _targets(home):
        if target.exists():
            target.unlink()
            removed.append(target)
    _refresh(home)
    return removed


def autostart_path(config_home: Path | None = None) -> Path:
    return _config_home(config_home) / "autostart" / "dsage-tray.desktop"


def set_autostart(enabled: bool, config_home: Path | None = None, exec_line: str = "dsage tray") -> Path:
    """Write or remove the XDG autostart entry that starts the tray worker at login."""
    p = autostart_path(config_home)
    if enabled:
        from dsage_resources import path
        text = path("dsage-tray.desktop").read_text()
        text = "\n".join(f"Exec={exec_line}" if line.startswith("Exec=") else line for line in text.splitlines())
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text + "\nX-GNOME-Autostart-enabled=true\n")
    elif p.exists():
        p.unlink()
    return p
