"""The in-process null transport: RemoteReferences without a Tub, for tests (after Tahoe's
``no_network.LocalWrapper`` and Buildbot's ``protocols/null.py``).

A :class:`NullReference` has the part of Foolscap's RemoteReference dsage uses (``callRemote``,
``callRemoteOnly``, ``notifyOnDisconnect``, ``isConnected``, ``getPeer``, and the
``tracker.broker.transport`` a server aborts), like :class:`dsage_core.protocol.localwire.LocalReference`,
and behaves like Foolscap where a test can tell:

- **eventual send**: a call is delivered on a later turn of the given clock (a ``Clock`` in tests:
  nothing happens until it advances), its answer on another; calls on one connection arrive in order;
- **the same checks**: the receiver applies the method's RemoteInterface constraints to the
  arguments and to the answer, and refuses unknown methods, as Foolscap does on the receiving side;
  failures arrive as ``RemoteException`` (a Tub with ``expose-remote-exception-types=False``), a
  lost connection as ``DeadReferenceError``;
- **references cross**: a ``Referenceable`` in the arguments or the answer arrives as a
  NullReference on the same connection (the worker's runner, the client's listener, a session);
- **per-connection views**: a root with ``for_connection(address, abort)`` (the server's Login)
  gives each connection its own view, told ``connection_lost()`` at the end (as ``tubs.ServerBroker``).

Faults (on a :class:`NullConnection`): :meth:`~NullConnection.disconnect` drops it (pending calls
fail, disconnect watchers run), :meth:`~NullConnection.fail_next` fails the next call(s),
``delay`` holds every delivery that many seconds, and :class:`NullServer` ``refuse`` fails dials.
Arguments are copied (lists, tuples, dicts), as a real hop would, so neither end shares them.
"""
from __future__ import annotations

from itertools import count
from typing import Any, Callable

from foolscap.api import DeadReferenceError, Referenceable, RemoteException
from foolscap.ipb import IRemoteReference
from foolscap.remoteinterface import RemoteInterfaceRegistry, RemoteMethodSchema
from foolscap.tokens import Violation
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

log = Logger(namespace="dsage.null")


class CopiedError:
    """What a remote failure carries (Foolscap's CopiedFailure has the same parts)."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type = type_name
        self.value = message

    def check(self, *types: Any) -> Any:
        names = {t if isinstance(t, str) else t.__name__ for t in types}
        return self.type if self.type in names else None

    def __str__(self) -> str:
        return f"{self.type}: {self.value}"


def remote_error(type_name: str, message: str) -> RemoteException:
    """The exception a caller sees when the other end raised *type_name* with *message*."""
    return RemoteException(CopiedError(type_name, message))


class _Transport:
    """``tracker.broker.transport`` of a reference: what servers and connections abort."""

    def __init__(self, conn: "NullConnection") -> None:
        self.conn = conn

    def loseConnection(self) -> None:
        self.conn.disconnect()

    def abortConnection(self) -> None:
        self.conn.disconnect()


class _Peer:
    def __init__(self, n: int) -> None:
        self.host = "null"
        self.port = n


class _Tracker:
    def __init__(self, conn: "NullConnection", iface_name: str) -> None:
        self.broker = conn
        self.interfaceName = iface_name
        self.interface = RemoteInterfaceRegistry.get(iface_name)


_numbers = count(1)


class NullConnection:
    """One in-process connection; both ends' references share it (and its faults).

    Has the surface of a :class:`dsage_core.protocol.localwire.LocalBroker` that
    ``ServerConnection`` uses: ``disconnected``, ``transport``, ``notify_on_disconnect``."""

    def __init__(self, clock: Any, delay: float = 0.0) -> None:
        self.clock = clock
        self.delay = delay           #: seconds every call and every answer waits before delivery
        self.number = next(_numbers)
        self.disconnected = False
        self.transport = _Transport(self)
        self.calls: list[str] = []   #: every method delivered, in order (for tests)
        self._failures: list[BaseException] = []
        self._pending: set[Deferred] = set()
        self._watchers: dict[int, tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = {}
        self._marks = count(1)

    # ------------------------------------------------------------------ faults
    def disconnect(self) -> None:
        """Drop the connection: calls not answered yet fail with ``DeadReferenceError``, nothing
        in flight is delivered, and every disconnect watcher runs (on a later turn, as Foolscap's)."""
        if self.disconnected:
            return
        self.disconnected = True
        pending, self._pending = self._pending, set()
        for d in pending:
            d.errback(DeadReferenceError("null connection lost"))
        watchers, self._watchers = self._watchers, {}
        for cb, args, kwargs in watchers.values():
            self.clock.callLater(0, _safely, cb, args, kwargs)

    def fail_next(self, exc: BaseException | None = None, times: int = 1) -> None:
        """The next *times* calls on this connection fail with *exc* without being delivered
        (default: a remote ``Exception``, as if the other end raised)."""
        for _ in range(times):
            self._failures.append(exc if exc is not None else remote_error("Exception", "injected failure"))

    # ------------------------------------------------------------------ LocalBroker's surface
    def notify_on_disconnect(self, cb: Callable[..., Any], args: tuple[Any, ...] = (),
                             kwargs: dict[str, Any] | None = None) -> int:
        marker = next(self._marks)
        if self.disconnected:
            self.clock.callLater(0, _safely, cb, args, kwargs or {})
        else:
            self._watchers[marker] = (cb, args, kwargs or {})
        return marker

    def dont_notify(self, marker: int) -> None:
        self._watchers.pop(marker, None)

    def reference(self, obj: Referenceable) -> "NullReference":
        """A reference to *obj* (the other end's object) over this connection."""
        return NullReference(self, obj)

    # ------------------------------------------------------------------ delivery
    def call(self, obj: Referenceable, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
             answer: bool) -> Deferred | None:
        if self.disconnected:
            return fail(DeadReferenceError("null connection lost")) if answer else None
        if self._failures:
            exc = self._failures.pop(0)
            return fail(exc) if answer else None
        args, kwargs = self._copy(list(args)), self._copy(dict(kwargs))
        d: Deferred | None = Deferred() if answer else None
        if d is not None:
            self._pending.add(d)
        self.clock.callLater(self.delay, self._deliver, obj, method, args, kwargs, d)
        return d

    def _deliver(self, obj: Referenceable, method: str, args: list[Any], kwargs: dict[str, Any],
                 d: Deferred | None) -> None:
        if self.disconnected:
            return   # lost on the way; the caller's Deferred failed already
        self.calls.append(method)
        iface = obj.getInterface()
        schema = iface.get(method) if iface is not None else None
        if not isinstance(schema, RemoteMethodSchema):
            self._answer(d, None, Failure(remote_error("Violation", f"no such remote method: {method!r}")))
            return
        try:
            schema.checkAllArgs(args, kwargs, True)
        except Violation as v:
            self._answer(d, None, Failure(remote_error("Violation", str(v))))
            return
        r = maybeDeferred(obj.doRemoteCall, method, args, kwargs)
        if d is None:
            r.addErrback(lambda f: log.failure("dsage.null.unanswered_call_failed", f, method=method))
            return
        r.addCallbacks(self._checked, self._remote_failure, callbackArgs=(schema, d), errbackArgs=(d,))

    def _checked(self, value: Any, schema: RemoteMethodSchema, d: Deferred) -> None:
        try:
            schema.checkResults(value, False)
        except Violation as v:
            self._answer(d, None, Failure(remote_error("Violation", f"bad answer: {v}")))
            return
        self._answer(d, self._copy(value), None)

    def _remote_failure(self, f: Failure, d: Deferred) -> None:
        t = getattr(f, "type", None)
        self._answer(d, None, Failure(remote_error(getattr(t, "__name__", "Exception"), str(f.value))))

    def _answer(self, d: Deferred | None, value: Any, failure: Failure | None) -> None:
        if d is None or self.disconnected:
            return
        self.clock.callLater(self.delay, self._fire, d, value, failure)

    def _fire(self, d: Deferred, value: Any, failure: Failure | None) -> None:
        if d not in self._pending:
            return   # failed by a disconnect meanwhile
        self._pending.discard(d)
        if failure is not None:
            d.errback(failure)
        else:
            d.callback(value)

    def _copy(self, v: Any) -> Any:
        """*v* as the other end receives it: containers copied, Referenceables as references."""
        if isinstance(v, Referenceable):
            return NullReference(self, v)
        if isinstance(v, list):
            return [self._copy(x) for x in v]
        if isinstance(v, tuple):
            return tuple(self._copy(x) for x in v)
        if isinstance(v, dict):
            return {k: self._copy(x) for k, x in v.items()}
        return v


def _safely(cb: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    try:
        cb(*args, **kwargs)
    except Exception:
        log.failure("dsage.null.disconnect_callback_failed")


@implementer(IRemoteReference)
class NullReference:
    """A reference to an object on the other end of a :class:`NullConnection`."""

    def __init__(self, conn: NullConnection, obj: Referenceable) -> None:
        self.obj = obj
        self.tracker = _Tracker(conn, obj.getInterfaceName() or "")

    @property
    def connection(self) -> NullConnection:
        return self.tracker.broker

    def callRemote(self, method: str, *args: Any, **kwargs: Any) -> Deferred:
        kwargs.pop("_useSchema", None)
        kwargs.pop("_resultConstraint", None)
        d = self.tracker.broker.call(self.obj, method, args, kwargs, True)
        assert d is not None
        return d

    def callRemoteOnly(self, method: str, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("_useSchema", None)
        kwargs.pop("_resultConstraint", None)
        self.tracker.broker.call(self.obj, method, args, kwargs, False)

    def notifyOnDisconnect(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
        return self.tracker.broker.notify_on_disconnect(callback, args, kwargs)

    def dontNotifyOnDisconnect(self, marker: int) -> None:
        self.tracker.broker.dont_notify(marker)

    def isConnected(self) -> bool:
        return not self.tracker.broker.disconnected

    def getPeer(self) -> _Peer:
        return _Peer(self.tracker.broker.number)

    def __repr__(self) -> str:
        return f"<NullReference {self.tracker.interfaceName} on #{self.tracker.broker.number}>"


class NullServer:
    """Serves *root* (e.g. the server's Login) over null connections: :meth:`dial` is what a
    ``ServerConnection(dial=...)`` calls. Each dial is a new connection (``connections``)."""

    def __init__(self, root: Referenceable, clock: Any, delay: float = 0.0) -> None:
        self.root = root
        self.clock = clock
        self.delay = delay
        self.refuse = False   #: dials fail (a server that is down)
        self.connections: list[NullConnection] = []

    def dial(self) -> Deferred:
        """A new connection; fires (on a later turn) with a reference to its view of the root."""
        d: Deferred = Deferred()
        if self.refuse:
            self.clock.callLater(self.delay, d.errback, ConnectionRefusedError("null server refuses"))
            return d
        conn = NullConnection(self.clock, self.delay)
        root = self.root
        make = getattr(root, "for_connection", None)
        if make is not None:
            root = make(f"null:{conn.number}", conn.disconnect)
            conn.notify_on_disconnect(root.connection_lost)
        self.connections.append(conn)
        self.clock.callLater(self.delay, d.callback, NullReference(conn, root))
        return d

    def live(self) -> list[NullConnection]:
        """The connections not dropped yet."""
        return [c for c in self.connections if not c.disconnected]
