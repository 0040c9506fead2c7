"""Login: challenge-response with Ed25519 keys, roles, anonymous workers, invites; all audited."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from dsage_core import keys
from dsage_core.protocol.errors import LoginFailed

log = Logger(namespace="dsage.auth")

#: which user roles may open which kind of session
ALLOWED = {"client": {"client", "admin"}, "worker": {"worker", "admin"}}
ROLES = ("client", "worker", "admin")


@dataclass(frozen=True)
class Identity:
    """Who is on the other end of a session."""

    name: str
    role: str          #: the user's role: client, worker, admin, or "anonymous"
    session: str       #: what the session is for: client or worker

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    @property
    def anonymous(self) -> bool:
        return self.role == "anonymous"


class Authenticator:
    """Checks logins against the users table; never trusts anything the caller chose alone."""

    def __init__(self, store: Any, clock: Any, server_id: str, *, allow_anonymous: bool = False,
                 challenge_ttl: float = 30.0) -> None:
        self.store = store
        self.server_id = server_id
        self.allow_anonymous = allow_anonymous
        self.challenges = keys.ChallengeBook(clock, ttl=challenge_ttl)

    def challenge(self) -> bytes:
        return self.challenges.issue()

    def _fail(self, why: str, who: str, address: str) -> None:
        self.store.audit("login_failed", who, address, why).addErrback(lambda f: None)
        log.warn("dsage.auth.login_failed", reason=why, user=who, address=address)
        raise LoginFailed(why)

    @inlineCallbacks
    def login(self, role: str, pubkey: str, nonce: bytes, signature: bytes, address: str = "") -> Any:
        """Verify a signed challenge; returns the :class:`Identity` or raises :class:`LoginFailed`."""
        if role not in ALLOWED:
            self._fail(f"unknown session role {role!r} (use client or worker)", "?", address)
        try:
            pub = keys.load_public_key(pubkey)
        except Exception:
            self._fail("malformed public key", "?", address)
        if not self.challenges.consume(nonce):
            self._fail("challenge unknown, already used or expired: ask for a new one", "?", address)
        user = yield self.store.user_by_pubkey(pub)
        if user is None:
            self._fail(f"unknown key {keys.fingerprint(pub)}: ask the server's admin to run "
                       f"'dsage user add NAME --key ...'", "?", address)
        if not keys.verify(pub, keys.login_message(self.server_id, role, nonce), signature):
            self._fail("bad signature", user["name"], address)
        if user["role"] not in ALLOWED[role]:
            self._fail(f"user {user['name']!r} has role {user['role']!r} and may not log in as a {role}",
                       user["name"], address)
        self.store.audit("login", user["name"], address, role).addErrback(lambda f: None)
        return Identity(user["name"], user["role"], role)

    def login_anonymous(self, role: str, address: str = "") -> Identity:
        if role != "worker":
            self._fail("only workers may join anonymously", "anonymous", address)
        if not self.allow_anonymous:
            self._fail("this server does not accept anonymous workers (start it with --allow-anonymous)",
                       "anonymous", address)
        self.store.audit("login", "anonymous", address, "worker").addErrback(lambda f: None)
        return Identity("anonymous", "anonymous", "worker")

    @inlineCallbacks
    def redeem_invite(self, code_id: str, secret: str, pubkey: str, address: str = "",
                      session: str | None = None) -> Any:
        """Register *pubkey* under the invite's role; returns the user name.

        The invite loses a use only in the transaction that registers the key (see
        ``SqliteStore.redeem_invite``): a refused or failed registration leaves it usable. With
        *session* (what the caller will log in as), an invite whose role could not log in that way
        is refused unspent."""
        if session is not None and session not in ALLOWED:
            raise LoginFailed(f"unknown session role {session!r} (use client or worker)")
        pub = keys.load_public_key(pubkey)
        tag = keys.fingerprint(pub)[7:15].replace("/", "_").replace("+", "-")
        name, role, spent = yield self.store.redeem_invite(
            code_id, keys.hash_secret(secret), _now(self.challenges), pub, lambda r: f"{r}-{tag}",
            session, frozenset(ALLOWED.get(session or "", ())))
        detail = f"{code_id} role={role}" if spent else f"{code_id} (key already known, nothing spent)"
        yield self.store.audit("invite_used", name, address, detail)
        log.info("dsage.auth.invite_used", user=name, role=role, spent=spent, address=address)
        return name


def _now(book: Any) -> float:
    return book.clock.seconds()
