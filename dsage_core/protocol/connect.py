"""Reach a server through its login furl, log in, and stay connected (the Tahoe way).

``tub.connectTo`` → login (challenge, signature) → ``on_session(session)``; on disconnect
``on_lost()`` and Foolscap's Reconnector tries again with a short backoff; every successful
reconnect logs in again and replays state through ``on_session``. Clients and workers share this.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from dsage_core import keys
from dsage_core.protocol.errors import LoginFailed, remote_message
from dsage_core.protocol.tubs import tub_id_of

log = Logger(namespace="dsage.connect")


def read_furl(server: str | Path) -> str:
    """A furl, or the content of a furl file."""
    s = str(server).strip()
    if s.startswith("pb://"):
        return s
    p = Path(s).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"no server furl or furl file: {s!r} (run 'dsage server' or pass --server)")
    furl = p.read_text().strip()
    if not furl.startswith("pb://"):
        raise ValueError(f"{p} does not contain a furl")
    return furl


class ServerConnection:
    """Keeps one logged-in session to a server; *role* is "client" or "worker"."""

    def __init__(self, tub: Any, furl: str, role: str, *, key_path: Path | None = None,
                 anonymous: bool = False, on_session: Callable[[Any], Any],
                 on_lost: Callable[[], Any] = lambda: None,
                 on_error: Callable[[Exception], Any] = lambda e: None, max_delay: float = 5.0) -> None:
        self.tub = tub
        self.furl = furl
        self.role = role
        self.server_id = tub_id_of(furl)
        self.key = keys.load_private_key(key_path) if key_path is not None else None
        self.anonymous = anonymous
        self.on_session = on_session
        self.on_lost = on_lost
        self.on_error = on_error
        self.max_delay = max_delay
        self.session: Any = None
        self.connected = False
        self._rc: Any = None

    def start(self) -> None:
        self._rc = self.tub.connectTo(self.furl, self._got_login)
        # Foolscap's backoff starts at 1 s and grows by e: far too slow for a server that is
        # starting at the same moment (start_all) or restarting after a crash. The first
        # attempt is still in flight here, so the retry delays can be set before it fails.
        self._rc.initialDelay = 0.05
        self._rc._delay = 0.05
        self._rc.factor = 1.6
        self._rc.maxDelay = self.max_delay

    def stop(self) -> None:
        if self._rc is not None:
            self._rc.stopConnecting()
            self._rc = None

    def reset(self) -> None:
        """Retry at once (e.g. after the user asked to reconnect)."""
        if self._rc is not None:
            self._rc.reset()

    @inlineCallbacks
    def _got_login(self, login: Any) -> Any:
        login.notifyOnDisconnect(self._lost)
        try:
            if self.anonymous:
                session = yield login.callRemote("login_anonymous", self.role)
            else:
                if self.key is None:
                    raise LoginFailed("no key given and not anonymous")
                nonce = yield login.callRemote("challenge")
                sig = keys.sign(self.key, keys.login_message(self.server_id, self.role, nonce))
                pub = keys.public_key_of(self.key)
                session = yield login.callRemote("login", self.role, pub, nonce, sig)
        except Exception as e:
            msg = remote_message(e)
            log.error("dsage.connect.login_failed", error=msg)
            self.stop()
            self.on_error(LoginFailed(msg))
            return
        self.session = session
        self.connected = True
        try:
            yield self.on_session(session)
        except Exception as e:
            log.failure("dsage.connect.on_session_failed")
            self.on_error(e)

    def _lost(self) -> None:
        was = self.connected
        self.connected = False
        self.session = None
        if was:
            self.on_lost()


def redeem_invite(tub: Any, furl: str, invite: str, pubkey: str) -> Deferred:
    """Use an invite: register *pubkey* with the server; fires with the new user name."""
    d = tub.getReference(furl)
    d.addCallback(lambda login: login.callRemote("redeem_invite", invite, pubkey))
    return d
