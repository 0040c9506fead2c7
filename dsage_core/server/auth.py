"""Login: challenge-response with Ed25519 keys, roles, anonymous workers, invites; all audited."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from dsage_core import keys
from dsage_core.protocol.errors import LoginFailed

log = Logger(namespace="dsage.auth")

#: unanswered challenges one connection may hold; one more and the connection is closed
MAX_NONCES_PER_CONNECTION = 16
#: unanswered challenges all connections from one address may hold together
MAX_NONCES_PER_HOST = 1024
#: failed logins one connection may make before it is closed (a real peer stops at the first)
MAX_FAILURES_PER_CONNECTION = 8

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
        self._clock = clock
        self._ttl = challenge_ttl
        self.nonces_by_host: dict[str, int] = {}   #: unanswered challenges per peer address

    def challenge(self) -> bytes:
        """A nonce from the server-wide book (transport-free callers and tests; remote peers get
        theirs from their connection's :class:`ConnectionGate`)."""
        return self.challenges.issue()

    def gate(self, address: str, abort: Any) -> "ConnectionGate":
        """The login state of one connection from *address*; *abort* closes that connection."""
        return ConnectionGate(self, address, abort)

    def _fail(self, why: str, who: str, address: str) -> None:
        self.store.audit("login_failed", who, address, why).addErrback(lambda f: None)
        log.warn("dsage.auth.login_failed", reason=why, user=who, address=address)
        raise LoginFailed(why)

    @inlineCallbacks
    def login(self, role: str, pubkey: str, nonce: bytes, signature: bytes, address: str = "",
              book: Any = None) -> Any:
        """Verify a signed challenge from *book* (default: the server-wide one); returns the
        :class:`Identity` or raises :class:`LoginFailed`."""
        book = self.challenges if book is None else book
        if not isinstance(role, str) or role not in ALLOWED:
            self._fail(f"unknown session role {str(role)[:20]!r} (use client or worker)", "?", address)
        try:
            pub = keys.parse_public_key(pubkey)   # text only: never a file a peer names
        except keys.KeyFileError as e:
            book.consume(nonce)
            self._fail(str(e), "?", address)
        if not isinstance(signature, bytes):
            self._fail("malformed signature", "?", address)
        if not book.consume(nonce):
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
        if not isinstance(role, str) or role != "worker":
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
        is refused unspent. *pubkey* is key text only: never a file a peer names."""
        def failed(reason: Any) -> None:
            self.store.audit("invite_failed", "?", address, f"{str(code_id)[:20]}: {reason}").addErrback(
                lambda f: None)
            log.warn("dsage.auth.invite_failed", reason=str(reason), address=address)
        if session is not None and session not in ALLOWED:
            failed("unknown session role")
            raise LoginFailed(f"unknown session role {session!r} (use client or worker)")
        try:
            pub = keys.parse_public_key(pubkey)
        except keys.KeyFileError as e:
            failed(e)
            raise LoginFailed(str(e)) from None
        tag = keys.fingerprint(pub)[7:15].replace("/", "_").replace("+", "-")
        try:
            name, role, spent = yield self.store.redeem_invite(
                code_id, keys.hash_secret(secret), _now(self.challenges), pub, lambda r: f"{r}-{tag}",
                session, frozenset(ALLOWED.get(session or "", ())))
        except Exception as e:
            failed(e)
            raise
        detail = f"{code_id} role={role}" if spent else f"{code_id} (key already known, nothing spent)"
        yield self.store.audit("invite_used", name, address, detail)
        log.info("dsage.auth.invite_used", user=name, role=role, spent=spent, address=address)
        return name


class ConnectionGate:
    """Challenges and failed logins of one connection, bounded per connection and per address.

    A peer that asks for more challenges than it answers, or keeps failing, loses its own
    connection; nonces of other connections are never evicted (a flood from one connection
    cannot make another peer's login fail).
    """

    def __init__(self, auth: Authenticator, address: str, abort: Any) -> None:
        self.auth = auth
        self.address = address
        self.host = address.rsplit(":", 1)[0] if address else ""
        self.abort = abort
        self.book = keys.ChallengeBook(auth._clock, ttl=auth._ttl,
                                       max_outstanding=MAX_NONCES_PER_CONNECTION)
        self.failures = 0
        self.closed = False

    def _held(self) -> int:
        return len(self.book)

    def _count(self, before: int) -> None:
        delta = self._held() - before
        if delta:
            by_host = self.auth.nonces_by_host
            n = by_host.get(self.host, 0) + delta
            if n > 0:
                by_host[self.host] = n
            else:
                by_host.pop(self.host, None)

    def challenge(self) -> bytes:
        if self.closed:
            raise LoginFailed("this connection is closed")
        before = self._held()
        self.book.expire()
        self._count(before)
        if self._held() >= MAX_NONCES_PER_CONNECTION or \
                self.auth.nonces_by_host.get(self.host, 0) >= MAX_NONCES_PER_HOST:
            self._refuse("too many unanswered challenges")
        before = self._held()
        nonce = self.book.issue()
        self._count(before)
        return nonce

    def consume(self, nonce: Any) -> bool:
        before = self._held()
        ok = self.book.consume(nonce)
        self._count(before)
        return ok

    def failed(self) -> None:
        """A login on this connection failed; too many and the connection is closed."""
        self.failures += 1
        if self.failures >= MAX_FAILURES_PER_CONNECTION:
            self._refuse("too many failed logins")

    def _refuse(self, why: str) -> None:
        log.warn("dsage.auth.connection_closed", reason=why, address=self.address)
        self.auth.store.audit("login_failed", "?", self.address,
                              f"{why}: connection closed").addErrback(lambda f: None)
        self.close()
        try:
            self.abort()
        except Exception:
            pass
        raise LoginFailed(f"{why} on this connection: it is closed")

    def close(self) -> None:
        """The connection ended: its nonces no longer count against its address."""
        if self.closed:
            return
        self.closed = True
        before = self._held()
        self.book.clear()
        self._count(before)


def _now(book: Any) -> float:
    return book.clock.seconds()
