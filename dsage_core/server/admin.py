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


@inlineCallbacks
def run(store: Any, who: Any, address: str, command: str, args: list[Any], server: Any = None) -> Any:
    """Run one admin command; returns plain data for the CLI to print."""
    if command == "user_add":
        name, pubkey, role = _name(args[0]), keys.load_public_key(str(args[1])), str(args[2])
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
        role, expires, uses = str(args[0]), float(args[1]), int(args[2])
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
        ok = yield store.revoke_invite(str(args[0]))
        yield store.audit("invite_revoke", who.name, address, str(args[0]))
        return bool(ok)
    if command == "audit":
        rows = yield store.recent_audit(int(args[0]) if args else 100)
        return rows
    raise BadRequest(f"unknown admin command {command!r}")
