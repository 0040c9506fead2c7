"""Admin commands over the client session: users, invites, audit log. Every change is audited."""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from dsage_core import keys
from dsage_core.protocol.errors import BadRequest
from dsage_core.server.auth import ROLES


def _name(v: Any) -> str:
    if not isinstance(v, str) or not v or len(v) > 64 or not all(c.isalnum() or c in "-_.@" for c in v):
        raise BadRequest("user names are 1-64 letters, digits, '-', '_', '.', '@'")
    return v


#: longest invite lifetime: ten years
MAX_INVITE_SECONDS = 10 * 365 * 86400.0
#: most uses one invite may grant
MAX_INVITE_USES = 100_000

#: how many arguments each command takes (at least, at most)
ARITY = {"user_add": (3, 3), "user_remove": (1, 1), "user_list": (0, 0), "invite_add": (3, 3),
         "invite_list": (0, 0), "invite_revoke": (1, 1), "audit": (0, 1)}


def invite_seconds(v: Any) -> float:
    """An invite lifetime in seconds: a finite number above 0 and at most ten years."""
    import math
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or not 0 < v <= MAX_INVITE_SECONDS:
        raise BadRequest("an invite expires after a positive, finite duration of at most 10 years")
    return float(v)


def _int(v: Any, lo: int, hi: int, what: str) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise BadRequest(f"{what} must be an integer from {lo} to {hi}")
    return v


def _pubkey(v: Any) -> str:
    try:
        return keys.parse_public_key(v)   # key text only: the server never opens a path it is sent
    except keys.KeyFileError as e:
        raise BadRequest(f"{e} (send the key text; 'dsage user add --key FILE' reads the file "
                         f"on your machine)") from None


@inlineCallbacks
def run(store: Any, who: Any, address: str, command: str, args: list[Any], server: Any = None) -> Any:
    """Run one admin command; returns plain data for the CLI to print."""
    if command not in ARITY:
        raise BadRequest(f"unknown admin command {command[:40]!r}")
    lo, hi = ARITY[command]
    if not lo <= len(args) <= hi:
        raise BadRequest(f"{command} takes {lo}{'' if lo == hi else f' to {hi}'} arguments")
    if command == "user_add":
        name, pubkey, role = _name(args[0]), _pubkey(args[1]), args[2]
        if role not in ROLES:
            raise BadRequest(f"role must be one of {', '.join(ROLES)}")
        yield store.add_user(name, pubkey, role)
        yield store.audit("user_add", who.name, address, f"{name} role={role} key={keys.fingerprint(pubkey)}")
        return {"name": name, "role": role, "fingerprint": keys.fingerprint(pubkey)}
    if command == "user_remove":
        name = _name(args[0])
        ok = yield store.remove_user(name)
        yield store.audit("user_remove", who.name, address, name)
        return bool(ok)
    if command == "user_list":
        users = yield store.list_users()
        return [{**u, "fingerprint": keys.fingerprint(u["pubkey"])} for u in users]
    if command == "invite_add":
        role, expires = args[0], invite_seconds(args[1])
        uses = _int(args[2], 1, MAX_INVITE_USES, "uses")
        if role not in ("worker", "client"):
            raise BadRequest("invites grant the worker or client role")
        invite_id, secret = keys.new_invite_secret()
        now = server.clock.seconds() if server is not None else 0.0
        yield store.add_invite(invite_id, keys.hash_secret(secret), role, now + expires, uses)
        yield store.audit("invite_add", who.name, address, f"{invite_id} role={role} uses={uses}")
        return {"id": invite_id, "secret": secret, "role": role, "expires": now + expires, "uses": uses,
                "listen": getattr(server, "listen", None)}   # lets `dsage invite` warn about loopback
    if command == "invite_list":
        rows = yield store.list_invites()
        return [{k: v for k, v in r.items() if k != "secret_hash"} for r in rows]
    if command == "invite_revoke":
        if not isinstance(args[0], str) or len(args[0]) > 64:
            raise BadRequest("invite ids are short text")
        ok = yield store.revoke_invite(args[0])
        yield store.audit("invite_revoke", who.name, address, args[0])
        return bool(ok)
    if command == "audit":
        rows = yield store.recent_audit(_int(args[0], 1, 100_000, "count") if args else 100)
        return rows
    raise BadRequest(f"unknown admin command {command!r}")
