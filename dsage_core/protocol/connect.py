"""Reach a server through its login furl, log in, and stay connected (the Tahoe way).

``tub.connectTo`` → login (challenge, signature) → ``on_session(session)``; on disconnect
``on_lost()`` and Foolscap's Reconnector tries again with a short backoff; every successful
reconnect logs in again and replays state through ``on_session``. Clients and workers share this.

A peer whose home holds the server's local socket (:mod:`dsage_core.protocol.localwire`) first
checks that the server behind it is the one its furl names, then logs in over the socket instead;
it reconnects there while the socket file exists, and falls back to Foolscap when it does not.
A connection given a *dial* function (an in-process transport: :mod:`dsage_core.protocol.null`)
uses only that, and dials again after a loss.

Servers sharing a PostgreSQL database (one serves, the others wait as standbys) have one Tub id
and one furl naming all of them; ``get_version`` tells it (``"furl"``). A connection adopts that
furl (only for the same Tub id: a server can only point at itself), asks again every
:data:`GROUP_REFRESH` seconds, and reconnects with the newest one after a loss: peers follow a
takeover by themselves. A peer on the local socket of a group server goes to Foolscap as soon as
no live server holds its home (the one that served may be gone for good; another host serves).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.logger import Logger

from dsage_core import keys, server_lock
from dsage_core.protocol.errors import LoginFailed, remote_message
from dsage_core.protocol.tubs import tub_id_of

log = Logger(namespace="dsage.connect")

#: local connections in a row that the socket accepted but that reached no session, before a peer
#: falls back to Foolscap (it tries the socket again after its next Foolscap session ends). Connects
#: the socket refuses (a server still starting, or restarting) do not count.
MAX_LOCAL_FAILURES = 8
#: first delay between local reconnect attempts when no live server announces the socket
LOCAL_RETRY_START = 0.05
#: seconds between two ``get_version`` calls of a peer of a server group (learns new standbys)
GROUP_REFRESH = 10.0
#: the longest group furl a peer accepts
MAX_FURL = 8192


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


def read_own_furl(home: Path, grace: float) -> str:
    """The furl of the server of *home* (``HOME/server.furl``). A server started a moment ago
    writes that file once it listens (``dsage server &`` then ``dsage worker``, pasted together):
    in a home that is set up but has no furl file yet, wait up to *grace* seconds for it."""
    import time
    from dsage_core.home import SERVER_CERT, SERVER_FURL
    p = Path(home) / SERVER_FURL
    if not p.exists() and (Path(home) / SERVER_CERT).exists():
        deadline = time.monotonic() + grace
        while not p.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return read_furl(p)


class ServerConnection:
    """Keeps one logged-in session to a server; *role* is "client" or "worker".

    *tub*: a Tub, or a function making a started one (peers on the local socket never need it); a
    Tub this connection made is stopped by :meth:`close`. *reactor*: where every timer goes (a
    ``Clock`` in tests). *dial*: a function returning (a Deferred of) the server's login reference,
    used instead of the local socket and Foolscap.
    """

    def __init__(self, tub: Any, furl: str, role: str, *, reactor: Any, key_path: Path | None = None,
                 key: Any = None, anonymous: bool = False, on_session: Callable[[Any], Any],
                 on_lost: Callable[[], Any] = lambda: None,
                 on_error: Callable[[Exception], Any] = lambda e: None, max_delay: float = 5.0,
                 local_socket: Path | None = None, dial: Callable[[], Any] | None = None) -> None:
        self._tub = tub
        self.made_tub: Any = None   #: the Tub this connection made (and stops on close), if any
        self.reactor = reactor
        self.dial = dial
        self.furl = furl
        self.role = role
        self.server_id = tub_id_of(furl)
        # *key*: a key already in memory (a worker that got it on a pipe keeps no path to it)
        self.key = key if key is not None else keys.load_private_key(key_path) if key_path is not None else None
        self.anonymous = anonymous
        self.on_session = on_session
        self.on_lost = on_lost
        self.on_error = on_error
        self.max_delay = max_delay
        self.session: Any = None
        self.connected = False
        self.transport = ""   #: "local" or "foolscap" once connected
        self.local_socket = local_socket
        self._rc: Any = None
        self._stopped = False
        self._local: Any = None          # the LocalBroker of the current local connection
        self._local_retry: Any = None
        self._local_delay = LOCAL_RETRY_START
        self._local_failures = 0   # local attempts in a row that did not reach a session
        #: the server is one of a group sharing a database (its home says so, or it told us)
        self.group = local_socket is not None and server_lock.is_group(local_socket.parent)
        self.group_refresh = GROUP_REFRESH
        self.on_furl: Callable[[str], Any] = lambda furl: None   #: a newer group furl was adopted
        self._rc_furl: str | None = None   # the furl the running Reconnector uses
        self._refresh: Any = None
        self._login: Any = None

    @property
    def tub(self) -> Any:
        if callable(self._tub):
            self._tub = self.made_tub = self._tub()
        return self._tub

    def start(self) -> None:
        self._stopped = False
        if self.dial is not None:
            self._try_dial()
        elif self._local_expected():
            self._try_local()
        else:
            self._start_foolscap()

    def _local_expected(self) -> bool:
        """A live server of our home said it opens the socket (it may still be starting), or no
        live server said anything and the socket exists (a crashed server, maybe restarting)."""
        p = self.local_socket
        if p is None:
            return False
        kind = server_lock.announced(p.parent)
        if kind is None and self.group:
            return False   # the group's other servers are reached over Foolscap
        return kind == "local" if kind is not None else p.exists()

    # ------------------------------------------------------------------ local socket
    def _try_local(self) -> None:
        from dsage_core.protocol import localwire
        self._local_retry = None
        assert self.local_socket is not None
        d = localwire.connect(self.reactor, self.local_socket)

        def connected(login: Any) -> Any:
            self._local = login.tracker.broker
            if self._stopped:
                self._local.transport.loseConnection()
                return None
            return login.callRemote("get_version").addCallback(check, login)

        def check(version: Any, login: Any) -> Any:
            if not isinstance(version, dict) or version.get("server_id") != self.server_id:
                # another server's socket in our home: this furl is reached over Foolscap only
                self._local.transport.loseConnection()
                self._local = None
                self.local_socket = None
                self._start_foolscap()
                return None
            self._local_delay = LOCAL_RETRY_START
            self.transport = "local"
            self._adopt(version)
            return self._got_login(login)

        def failed(f: Any) -> None:
            reached = self._local is not None   # the socket answered, yet no session came of it
            if reached and self._local.transport is not None:
                self._local.transport.loseConnection()
            self._local = None
            if self._stopped:
                return
            if reached:
                self._local_failures += 1   # a refused connect (a server still starting) is no failure
            if self._local_expected() and self._local_failures < MAX_LOCAL_FAILURES:
                self._retry_local()   # the server is (re)starting: it opens (or replaces) the socket
            else:
                self._start_foolscap()
        d.addCallback(connected)
        d.addErrback(failed)

    def _retry_local(self) -> None:
        if self._stopped or self._local_retry is not None:
            return
        if self.local_socket is not None and server_lock.announced(self.local_socket.parent) == "local":
            delay = 0.02   # a live server is starting: a refused connect costs microseconds
        else:
            delay = self._local_delay
            self._local_delay = min(self._local_delay * 1.6, self.max_delay)
        self._local_retry = self.reactor.callLater(delay, self._try_local)

    # ------------------------------------------------------------------ a given dial function
    def _try_dial(self) -> None:
        self._local_retry = None
        self.transport = "dialed"
        d = maybeDeferred(self.dial)   # type: ignore[misc]

        def connected(login: Any) -> Any:
            self._local = login.tracker.broker   # the same surface as a LocalBroker
            if self._stopped:
                self._local.transport.loseConnection()
                return None
            self._local_delay = LOCAL_RETRY_START
            return self._got_login(login)

        def failed(f: Any) -> None:
            log.info("dsage.connect.dial_failed", error=str(f.value))
            self._retry_dial()
        d.addCallbacks(connected, failed)

    def _retry_dial(self) -> None:
        if self._stopped or self._local_retry is not None:
            return
        delay = self._local_delay
        self._local_delay = min(self._local_delay * 1.6, self.max_delay)
        self._local_retry = self.reactor.callLater(delay, self._try_dial)

    # ------------------------------------------------------------------ foolscap
    def _start_foolscap(self) -> None:
        if self._stopped or self._rc is not None:
            return
        self.transport = "foolscap"
        self._rc_furl = self.furl
        self._rc = self.tub.connectTo(self.furl, self._got_login)
        # Foolscap's backoff starts at 1 s and grows by e: far too slow for a server that is
        # starting at the same moment (start_all) or restarting after a crash. The first
        # attempt is still in flight here, so the retry delays can be set before it fails.
        self._rc.initialDelay = 0.05
        self._rc._delay = 0.05
        self._rc.factor = 1.6
        self._rc.maxDelay = self.max_delay

    def stop(self) -> None:
        """Stop reconnecting; a live connection stays until :meth:`close` (or the Tub stops)."""
        self._stopped = True
        self._stop_refresh()
        if self._rc is not None:
            self._rc.stopConnecting()
            self._rc = None
        if self._local_retry is not None and self._local_retry.active():
            self._local_retry.cancel()
        self._local_retry = None

    def close(self) -> Deferred:
        """Stop, and drop a local connection; fires when it is gone (Foolscap's go with the Tub)."""
        self.stop()
        b, self._local = self._local, None
        d: Deferred = Deferred()
        if b is None or b.disconnected or b.transport is None:
            d.callback(None)
        else:
            b.notify_on_disconnect(d.callback, (None,), {})
            b.transport.loseConnection()
        return d.addCallback(lambda _: self._stop_tub())

    def _stop_tub(self) -> Any:
        tub, self.made_tub = self.made_tub, None
        return tub.stopService() if tub is not None else None

    def reset(self) -> None:
        """Retry at once (e.g. after the user asked to reconnect)."""
        if self._rc is not None:
            self._rc.reset()
        elif self._local_retry is not None and self._local_retry.active():
            self._local_retry.reset(0)

    @inlineCallbacks
    def _got_login(self, login: Any) -> Any:
        if (self.transport == "foolscap" and self._local_failures < MAX_LOCAL_FAILURES
                and self._local_expected()):
            # the server (re)started with its socket since we fell back: move over to it
            self._rc.stopConnecting()
            self._rc = None
            login.tracker.broker.transport.loseConnection()
            self._try_local()
            return
        login.notifyOnDisconnect(self._lost)
        self._login = login
        if self.transport == "foolscap":
            self._ask_version(login)
        else:
            self._schedule_refresh()   # the local path asked already
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
            if self._local is not None:
                self._local.transport.loseConnection()
            self.on_error(LoginFailed(msg))
            return
        self.session = session
        self.connected = True
        self._local_failures = 0
        try:
            yield self.on_session(session)
        except Exception as e:
            log.failure("dsage.connect.on_session_failed")
            self.on_error(e)

    # ------------------------------------------------------------------ server groups
    def _ask_version(self, login: Any) -> None:
        d = login.callRemote("get_version")
        d.addCallbacks(self._adopt, lambda f: None)
        d.addBoth(lambda _: self._schedule_refresh())

    def _adopt(self, version: Any) -> None:
        """Take the group furl a server told (same Tub id only), for the next reconnect."""
        furl = version.get("furl") if isinstance(version, dict) else None
        if not isinstance(furl, str) or len(furl) > MAX_FURL or not furl.startswith("pb://"):
            return
        try:
            if tub_id_of(furl) != self.server_id or not furl.endswith("/login"):
                return
        except ValueError:
            return
        self.group = True
        if furl != self.furl:
            self.furl = furl
            log.info("dsage.connect.group_furl", furl=furl)
            self.on_furl(furl)

    def _schedule_refresh(self) -> None:
        if not self.group or self._stopped or self._login is None or self._refresh is not None:
            return
        self._refresh = self.reactor.callLater(self.group_refresh, self._refresh_now)

    def _refresh_now(self) -> None:
        self._refresh = None
        if self._login is not None:
            self._ask_version(self._login)

    def _stop_refresh(self) -> None:
        if self._refresh is not None and self._refresh.active():
            self._refresh.cancel()
        self._refresh = None

    def _lost(self) -> None:
        was = self.connected
        self.connected = False
        self.session = None
        self._login = None
        self._stop_refresh()
        if was:
            self.on_lost()
        if self.transport == "local":
            self._local = None
            if not was:
                self._local_failures += 1   # dropped before a session: e.g. refused by the server
            if self._local_failures < MAX_LOCAL_FAILURES and (not self.group or self._local_expected()):
                self._retry_local()
            else:
                self._start_foolscap()
        elif self.transport == "dialed":
            self._local = None
            self._retry_dial()
        elif self._rc is not None and self._rc_furl != self.furl and not self._stopped:
            # reconnect with the newest group furl (it names the standbys that joined since)
            self._rc.stopConnecting()
            self._rc = None
            self._start_foolscap()


def redeem_invite(tub: Any, furl: str, invite: str, pubkey: str, session: str | None = None) -> Deferred:
    """Use an invite: register *pubkey* with the server; fires with the user name. *session*
    ("worker" or "client"): what the key will log in as (the server refuses, unspent, an invite
    whose role cannot)."""
    d = tub.getReference(furl)
    if session is None:
        d.addCallback(lambda login: login.callRemote("redeem_invite", invite, pubkey))
    else:
        d.addCallback(lambda login: login.callRemote("redeem_invite", invite, pubkey, session=session))
    return d
