"""Redeeming an invite code, on the reactor: ``dsage worker --invite``, ``dsage tray --invite`` and
the tray's first-run paste box all go through :func:`redeem`.

Nothing here blocks: the caller's reactor (the worker's, or the tray's Qt loop) keeps running while
the server registers the key. The invite is spent only when that succeeds (the server spends it in
the transaction that registers the key), and this side writes ``server.furl`` only after the
server said yes, having checked before asking that it can write it and that the key it will log
in with exists.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks

from dsage_core import keys
from dsage_core.home import SERVER_FURL
from dsage_core.protocol.errors import DsageError

#: seconds to reach the server and hear its answer
REDEEM_TIMEOUT = 30.0


class InviteRefused(DsageError):
    """The invite could not be used; the message says why (the invite was not spent for it)."""


def key_for(home: Path, key_path: Path | None) -> tuple[Path, str]:
    """The private key the caller will log in with and its public half; the default key
    (``HOME/dsage_key``) is created when missing, another one must exist."""
    path = home / keys.KEY_FILE if key_path is None else Path(key_path).expanduser()
    if path == home / keys.KEY_FILE:
        return keys.ensure_keypair(home)
    if not path.exists():
        raise InviteRefused(f"no key file {path}: the invite was not used")
    return path, keys.public_key_of(keys.load_private_key(path))


@inlineCallbacks
def redeem(code: str, home: Path, reactor: Any, *, session: str = "worker",
           key_path: Path | None = None, timeout: float = REDEEM_TIMEOUT) -> Any:
    """Use *code* once: register the key (``key_path``, default ``HOME/dsage_key``) under the
    invite's role, then save the server's furl as ``HOME/server.furl``; fires with the furl.

    Fails with :class:`InviteRefused` (and leaves the invite usable) when the code is damaged,
    unknown, expired, used up, revoked, for another role than *session*, when the key cannot be
    registered, or when the server cannot be reached."""
    from dsage_core.client.core import translate
    from dsage_core.protocol import tubs
    from dsage_core.protocol.connect import redeem_invite
    try:
        furl, invite_id, secret = keys.parse_invite_code(code)
    except keys.InviteCodeError as e:
        raise InviteRefused(str(e)) from None
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    _, pub = key_for(home, key_path)
    target = home / SERVER_FURL
    staged = target.with_name(SERVER_FURL + ".new")
    try:
        staged.write_text(furl + "\n")  # before the server spends anything: the home is writable
    except OSError as e:
        raise InviteRefused(f"cannot write {target} ({e.strerror}): the invite was not used") from None
    tub = tubs.peer_tub(home)
    tub.startService()
    try:
        d: Deferred = redeem_invite(tub, furl, f"{invite_id}:{secret}", pub, session)
        d.addTimeout(timeout, reactor)
        yield d.addErrback(translate)
    except Exception as e:
        staged.unlink(missing_ok=True)
        raise InviteRefused(f"invite refused: {_why(e, timeout)}") from None
    finally:
        yield tub.stopService()
    os.replace(staged, target)
    return furl


def _why(e: Exception, timeout: float) -> str:
    from twisted.internet.defer import TimeoutError as DeferTimeout
    if isinstance(e, DeferTimeout):
        return f"no answer from the server within {timeout:g} s"
    text = str(e).strip()
    if not text or text.startswith("["):  # a bare Failure repr (e.g. connection refused)
        return f"cannot reach the server ({type(e).__name__}{': ' + text if text else ''})"
    return text
