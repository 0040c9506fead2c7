"""The wheel carries resources/: installed into a fresh venv, `dsage --version` and
`dsage desktop-install` work there (against a temporary XDG_DATA_HOME)."""
import os
import subprocess
import sys
import venv

import pytest

pytestmark = pytest.mark.timeout(300)


def test_wheel_installs_and_desktop_install_works(tmp_path):
    """Build the wheel, install it (no deps needed for these commands), run the desktop commands."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                          str(tmp_path / "dist"), root], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("dsage-*.whl"))
    import zipfile
    names = zipfile.ZipFile(wheel).namelist()
    assert "dsage_resources/icons/hicolor/512x512/apps/dsage.png" in names
    assert "dsage_resources/dsage.desktop" in names and "dsage_gui/tray/ui.py" in names
    # every package of the source tree is in the wheel (a new subpackage must be listed in pyproject)
    import pathlib
    for init in pathlib.Path(root).glob("dsage_*/**/__init__.py"):
        rel = init.relative_to(root).as_posix()
        assert rel in names, f"{rel} missing from the wheel: add its package to pyproject.toml"
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    v = subprocess.run([str(env_dir / "bin" / "dsage"), "--version"], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("dsage "), v.stderr
    xdg = tmp_path / "xdg"
    env = dict(os.environ, XDG_DATA_HOME=str(xdg))
    d = subprocess.run([str(env_dir / "bin" / "dsage"), "desktop-install"], capture_output=True, text=True,
                       env=env)
    assert d.returncode == 0, d.stderr
    assert (xdg / "applications" / "dsage.desktop").exists()
    assert (xdg / "mime" / "packages" / "dsage-sage.xml").exists()
    assert (xdg / "icons" / "hicolor" / "48x48" / "apps" / "dsage.png").exists()
    u = subprocess.run([str(env_dir / "bin" / "dsage"), "desktop-uninstall"], capture_output=True, text=True,
                       env=env)
    assert u.returncode == 0 and not (xdg / "applications" / "dsage.desktop").exists()


def test_autostart_entry(tmp_path):
    """The tray's start-at-login writes and removes an XDG autostart entry."""
    from dsage_core import desktop
    p = desktop.set_autostart(True, config_home=tmp_path)
    assert p.exists() and f"Exec={desktop.dsage_command()} tray" in p.read_text() and desktop.dsage_command().startswith("/")
    desktop.set_autostart(False, config_home=tmp_path)
    assert not p.exists()
