"""dsage_core.desktop: ``dsage desktop-install`` writes Exec= lines that start this installation's
``dsage`` from a desktop session (whose PATH has no venv), for the menu, the .sage files and login."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dsage_core import desktop

pytestmark = pytest.mark.timeout(120)

DSAGE = Path(sys.executable).parent / "dsage"
SESSION_PATH = "/usr/bin:/bin"   #: what a desktop session's PATH holds: no venv


def entry(path: Path) -> dict[str, str]:
    """The key=value lines of a desktop entry."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def split_exec(value: str) -> list[str]:
    """An Exec= value's arguments, read as the Desktop Entry spec says a launcher reads them: first
    the string escapes (``\\s``, ``\\\\`` ...), then double quotes, inside which ``\\`` escapes "`$\\."""
    text = re.sub(r"\\(.)", lambda m: {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(m[1], m[0]), value)
    args, cur, quoted, i = [], None, False, 0
    while i < len(text):
        c = text[i]
        if quoted and c == "\\" and i + 1 < len(text) and text[i + 1] in '"`$\\':
            cur, i = (cur or "") + text[i + 1], i + 2
            continue
        if c == '"':
            quoted, cur = not quoted, cur or ""
        elif c == " " and not quoted:
            if cur is not None:
                args.append(cur)
            cur = None
        else:
            cur = (cur or "") + c
        i += 1
    assert not quoted, f"unbalanced quotes in {value!r}"
    return args + ([cur] if cur is not None else [])


def run_exec(exec_line: str, field_args: list[str]) -> subprocess.CompletedProcess:
    """Run an Exec= line as a desktop launcher would (field codes replaced), with a session's PATH."""
    argv = []
    for tok in split_exec(exec_line):
        argv += field_args if tok in ("%F", "%f", "%U", "%u") else [tok]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PATH=SESSION_PATH))


def test_desktop_install_exec_lines_start_the_installed_dsage(tmp_path):
    """`dsage desktop-install` (the command, run as typed) writes Exec= lines naming this venv's dsage
    by absolute path; they work with a session's PATH: the app entry (which opens .sage files) and the tray."""
    xdg = tmp_path / "xdg"
    r = subprocess.run([str(DSAGE), "desktop-install"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, XDG_DATA_HOME=str(xdg)))
    assert r.returncode == 0, r.stderr
    app = entry(xdg / "applications" / "dsage.desktop")
    tray = entry(xdg / "applications" / "dsage-tray.desktop")
    assert split_exec(app["Exec"]) == [str(DSAGE.absolute()), "gui", "%F"]
    assert split_exec(tray["Exec"]) == [str(DSAGE.absolute()), "tray"]
    assert "text/x-sage" in app["MimeType"].split(";")
    assert 'pattern="*.sage"' in (xdg / "mime" / "packages" / "dsage-sage.xml").read_text()
    opened = run_exec(app["Exec"], ["--help"])   # a file manager would pass the .sage file here
    assert opened.returncode == 0 and "the dsage desktop app" in opened.stdout, opened.stderr
    tray_help = run_exec(tray["Exec"] + " --help", [])
    assert tray_help.returncode == 0 and "a dsage worker in the system tray" in tray_help.stdout, tray_help.stderr


def test_autostart_exec_line_starts_the_tray(tmp_path):
    """Start-at-login's entry runs this installation's `dsage tray` (its --help, here) with a session's PATH."""
    p = desktop.set_autostart(True, config_home=tmp_path)
    e = entry(p)
    assert split_exec(e["Exec"]) == [str(DSAGE.absolute()), "tray"] and e["X-GNOME-Autostart-enabled"] == "true"
    r = run_exec(e["Exec"] + " --help", [])
    assert r.returncode == 0 and "a dsage worker in the system tray" in r.stdout, r.stderr
    desktop.set_autostart(False, config_home=tmp_path)
    assert not p.exists()


def test_dsage_command_falls_back_to_path_then_to_python_m(tmp_path, monkeypatch):
    """Without a dsage beside the interpreter: the one on PATH (absolute), else `python -m dsage_core.cli`."""
    py = tmp_path / "env" / "bin" / "python"
    py.parent.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(py))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert desktop.dsage_command() == f"{py} -m dsage_core.cli"
    bindir = tmp_path / "elsewhere"
    bindir.mkdir()
    (bindir / "dsage").write_text("#!/bin/sh\n")
    (bindir / "dsage").chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    assert desktop.dsage_command() == str(bindir / "dsage")
    (py.parent / "dsage").write_text("#!/bin/sh\n")
    (py.parent / "dsage").chmod(0o755)
    assert desktop.dsage_command() == str(py.parent / "dsage")   # the interpreter's own comes first


def test_exec_arguments_with_spaces_and_specials_are_quoted():
    """A venv path with spaces, `$`, quotes or backslashes is quoted so a launcher (as the spec reads
    an Exec= value) gets it back as one argument."""
    for path in ("/home/a b/venv/bin/dsage", "/opt/$x/dsage", '/tmp/q"uote/dsage', "/tmp/back\\slash/dsage",
                 "/tmp/tick`/dsage", "/plain/dsage"):
        quoted = desktop._quote(path)
        # a desktop entry's value is a string: every backslash in it starts one of the spec's escapes
        assert re.fullmatch(r"(?:[^\\]|\\[\\sntr;])*", quoted), quoted
        assert split_exec(f"{quoted} gui %F") == [path, "gui", "%F"]
    assert desktop._quote("/plain/dsage") == "/plain/dsage"


def test_with_exec_replaces_only_the_exec_line():
    """Every other line of the entry stays as it was."""
    text = "[Desktop Entry]\nName=dsage\nExec=dsage gui %F\nTryExec=dsage\n"
    assert desktop.with_exec(text, "/v/bin/dsage gui %F") == \
        "[Desktop Entry]\nName=dsage\nExec=/v/bin/dsage gui %F\nTryExec=dsage\n"


def test_uninstall_removes_exactly_what_install_wrote(tmp_path):
    """desktop_uninstall removes the files install wrote and leaves the user's other files alone."""
    written = desktop.desktop_install(tmp_path)
    mine = tmp_path / "applications" / "other.desktop"
    mine.write_text("[Desktop Entry]\n")
    assert all(p.exists() for p in written)
    assert sorted(desktop.desktop_uninstall(tmp_path)) == sorted(written)
    assert not any(p.exists() for p in written) and mine.exists()
    assert desktop.desktop_uninstall(tmp_path) == []
