"""``dsage desktop-install`` / ``desktop-uninstall``: desktop entries, icons and the .sage MIME type
in the user's XDG dirs; and the tray's "start at login" (XDG autostart).

Every ``Exec=`` line names the absolute path of this installation's ``dsage`` (the venv's, for the
README's ``make run`` set-up): a desktop session's PATH does not contain a venv, so a bare
``dsage`` would start nothing from the menu, a double-clicked .sage file, or at login.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

#: the Exec= arguments of each desktop entry dsage installs
EXEC_ARGS = {"dsage.desktop": "gui %F", "dsage-tray.desktop": "tray"}


def dsage_command() -> str:
    """The ``dsage`` of this installation, quoted for an ``Exec=`` line: the console script beside
    this Python (a venv's ``bin/``), else the one on PATH, else ``python -m dsage_core.cli``."""
    here = Path(sys.executable).parent / "dsage"
    if here.is_file() and os.access(here, os.X_OK):
        return _quote(str(here.absolute()))
    found = shutil.which("dsage")
    if found:
        return _quote(str(Path(found).absolute()))
    return f"{_quote(sys.executable)} -m dsage_core.cli"


def _quote(arg: str) -> str:
    """Quote one Exec= argument as the Desktop Entry spec wants (only when needed): inside double
    quotes ``"`$\\`` take a backslash, and every backslash is then escaped once more, because the
    value is a string (whose own ``\\\\`` escape is undone before the quotes are read)."""
    if not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`'):
        return arg
    quoted = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return '"' + quoted.replace("\\", "\\\\") + '"'


def with_exec(text: str, exec_line: str) -> str:
    """A desktop entry's text with its ``Exec=`` line replaced."""
    return "\n".join(f"Exec={exec_line}" if line.startswith("Exec=") else line for line in text.splitlines()) + "\n"


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
    cmd = dsage_command()
    for rel, target in _targets(home):
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel in EXEC_ARGS:
            target.write_text(with_exec(path(rel).read_text(), f"{cmd} {EXEC_ARGS[rel]}"))
        else:
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


def set_autostart(enabled: bool, config_home: Path | None = None, exec_line: str | None = None) -> Path:
    """Write or remove the XDG autostart entry that starts the tray worker at login (by default
    with this installation's ``dsage``, see :func:`dsage_command`)."""
    p = autostart_path(config_home)
    if enabled:
        from dsage_resources import path
        text = with_exec(path("dsage-tray.desktop").read_text(), exec_line or f"{dsage_command()} tray")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text + "X-GNOME-Autostart-enabled=true\n")
    elif p.exists():
        p.unlink()
    return p
