"""Per-job Python packages (the ``packages=`` job option): installed once per requirement set into a
cached directory, which a child puts first on ``sys.path`` for that job.

Each set (sorted, with the Python version) names one directory under the cache root
(``$XDG_CACHE_HOME/dsage/envs`` or ``~/.cache/dsage/envs``; outside DSAGE_HOME, so jobs can read
it). The monitor installs with ``uv pip install --target`` when uv is on PATH, else with
``python -m pip install --target``, into a temporary directory renamed into place when the install
succeeded: a half-made environment is never used, and two workers sharing the cache at worst both
install. A child that ran a job with packages is replaced before its next job (modules stay
imported), so jobs never see each other's packages.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue


#: the end of pip's output kept in a failed job's error
MAX_LOG = 4000


def default_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dsage" / "envs"


def env_key(requirements: list[str]) -> str:
    text = "\n".join([f"python{sys.version_info.major}.{sys.version_info.minor}", *requirements])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class EnvCache:
    """Installs requirement sets on demand, one install per set at a time; :meth:`ready` answers
    at once for a set already installed."""

    def __init__(self, reactor: Any, root: Path | None = None) -> None:
        self.reactor = reactor
        self.root = Path(root) if root is not None else default_root()
        self.installs = 0   #: installs run (a cached set runs none)
        self._pending: dict[str, list[Deferred]] = {}

    def path(self, requirements: list[str]) -> Path:
        return self.root / env_key(requirements)

    def ready(self, requirements: list[str]) -> Path | None:
        p = self.path(requirements)
        return p if (p / ".dsage-ready").exists() else None

    def ensure(self, requirements: list[str]) -> Deferred:
        """Fires with the directory to put on ``sys.path``, or fails with a ``RuntimeError``
        carrying the end of the installer's output."""
        p = self.ready(requirements)
        d: Deferred = Deferred()
        if p is not None:
            d.callback(p)
            return d
        key = env_key(requirements)
        waiting = self._pending.setdefault(key, [])
        waiting.append(d)
        if len(waiting) == 1:
            self._install(requirements, key)
        return d

    def _install(self, requirements: list[str], key: str) -> None:
        self.installs += 1
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        uv = shutil.which("uv")
        if uv:
            exe, args = uv, ["pip", "install", "--quiet", "--python", sys.executable, "--target", str(tmp)]
        else:
            exe, args = sys.executable, ["-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                         "--no-input", "--target", str(tmp)]
        d = getProcessOutputAndValue(exe, [*args, "--", *requirements], env=dict(os.environ),
                                     reactor=self.reactor)
        d.addCallback(self._installed, requirements, key, tmp)
        d.addErrback(lambda f: self._finish(key, RuntimeError(f"could not run the installer: {f.value}")))

    def _installed(self, out: tuple[bytes, bytes, int], requirements: list[str], key: str, tmp: Path) -> None:
        stdout, stderr, code = out
        if code != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            log = (stdout + stderr).decode("utf-8", "replace").strip()[-MAX_LOG:]
            self._finish(key, RuntimeError(f"installing packages {', '.join(requirements)} failed "
                                           f"(exit {code}):\n{log}"))
            return
        (tmp / ".dsage-ready").write_text("\n".join(requirements) + "\n")
        final = self.root / key
        try:
            tmp.rename(final)
        except OSError:  # another worker sharing the cache finished first: use its copy
            shutil.rmtree(tmp, ignore_errors=True)
        self._finish(key, final)

    def _finish(self, key: str, outcome: Path | Exception) -> None:
        for d in self._pending.pop(key, []):
            if isinstance(outcome, Exception):
                d.errback(outcome)
            else:
                d.callback(outcome)


def on_ready(d: Deferred, ok: Callable[[Path], None], failed: Callable[[str], None]) -> None:
    """Call *ok(path)* or *failed(message)* when *d* fires."""
    d.addCallbacks(ok, lambda f: failed(str(f.value)))
