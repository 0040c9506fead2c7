"""The layout is the architecture: dsage_core never imports Qt; the scheduler and model stay pure."""
import os
import subprocess
import sys


def test_import_linter_contracts():
    """import-linter (contracts in pyproject.toml) passes: dsage_core does not import Qt or dsage_gui."""
    exe = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([exe], capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr


def test_pure_layers_import_no_twisted_and_no_qt():
    """The model, scheduler, codec and the top-level package import neither Twisted nor Qt."""
    code = ("import sys, dsage_core, dsage_core.scheduler, dsage_core.model.job, dsage_core.codec\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('twisted', 'foolscap', 'PySide6', 'qasync')]\n"
            "print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_desktop_app_never_reads_the_client_state_table():
    """dsage_gui learns about jobs through AsyncClient.subscribe / job_state, never client.states
    (which forgets finished jobs nobody holds: reading it directly would be a memory or a truth bug)."""
    import pathlib
    import re
    root = pathlib.Path(__file__).resolve().parent.parent / "dsage_gui"
    offenders = [f"{p.relative_to(root.parent)}:{n}" for p in root.rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\.states\b", line)]
    assert offenders == []
