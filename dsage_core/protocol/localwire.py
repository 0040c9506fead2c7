"""The same-host transport: Foolscap-style calls over a UNIX socket in the server's home.

On one machine (``start_all``, the desktop app, a worker started beside its server) TLS over TCP
loopback and Banana's per-token Python cost are most of what a job costs: a Foolscap call takes
about 0.45 ms here, the same call over this socket about 0.17 ms. So a peer whose home holds the
server's socket talks over it; everything else uses Foolscap as before.

Security is the same as over Foolscap, plus the file system:

- the socket lives in the home (mode 0700), is created 0600, and the server refuses a peer whose
  ``SO_PEERCRED`` uid is not its own;
- a peer first checks that the server behind the socket has the id its furl pins, then logs in
  with its key exactly as over Foolscap (challenge, signature bound to that server id);
- every inbound call is checked against the same :class:`RemoteInterface` constraints as Foolscap
  checks, and frames are bounded (:data:`MAX_FRAME`).

Wire format: a 4-byte big-endian length, then one msgpack list:
``[0, call_id, object_id, method, args, kwargs]`` (call_id 0: no answer wanted), ``[1, call_id,
value]``, ``[2, call_id, error_type, message]``. A :class:`Referenceable` in a value crosses as an
ExtType holding ``[object_id, interface name]`` and arrives as a :class:`LocalReference`, which has
the part of Foolscap's RemoteReference that dsage uses (``callRemote``, ``callRemoteOnly``,
``notifyOnDisconnect``, ``isConnected``, ``getPeer``), so sessions cannot tell the transports apart.
"""
from __future__ import annotations

import os
import socket
import struct
from itertools import count
from pathlib import Path
from typing import Any, Callable

import msgpack
from foolscap.api import DeadReferenceError, Referenceable, RemoteException
from foolscap.ipb import IRemoteReference
from foolscap.remoteinterface import RemoteInterfaceRegistry, RemoteMethodSchema
from foolscap.tokens import Violation
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.protocol import ClientCreator, Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from dsage_core.protocol.eagerwrite import write_now
from dsage_core.server_lock import SOCKET_NAME, socket_path
from dsage_core.worker.framing import HEADER as _HEADER   # the one length-prefixed framing

log = Logger(namespace="dsage.localwire")

#: one frame at most: the largest batch Foolscap would accept (256 MiB) plus room for the envelope
MAX_FRAME = 256 * 1024 * 1024 + 64 * 1024
#: longest error text sent back (tracebacks travel as job data, not as call errors)
MAX_ERROR = 4000
_REF = 1
_CALL, _ANSWER, _ERROR = 0, 1, 2


class _CopiedError:
    """What a remote failure looks like to callers (Foolscap's CopiedFailure has the same parts)."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type = type_name
        self.value = message

    def __str__(self) -> str:
        return f"{self.type}: {self.value}"


class _Peer:
    def __init__(self, pid: int) -> None:
        self.host = "local"
        self.port = pid


class _Tracker:
    """Foolscap code reads ``rref.tracker.interface``; dsage reads ``tracker.broker.transport``."""

    def __init__(self, broker: "LocalBroker", iface_name: str) -> None:
        self.broker = broker
        self.interfaceName = iface_name
        self.interface = RemoteInterfaceRegistry.get(iface_name)


@implementer(IRemoteReference)
class LocalReference:
    """A remote object on the other end of a :class:`LocalBroker`."""

    def __init__(self, broker: "LocalBroker", oid: int, iface_name: str) -> None:
        self.oid = oid
        self.tracker = _Tracker(broker, iface_name)

    # Foolscap's own options (local schema checks) mean nothing here: the receiver checks every call
    def callRemote(self, method: str, *args: Any, **kwargs: Any) -> Deferred:
        kwargs.pop("_useSchema", None)
        kwargs.pop("_resultConstraint", None)
        return self.tracker.broker.call(self.oid, method, args, kwargs, True)

    def callRemoteOnly(self, method: str, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("_useSchema", None)
        kwargs.pop("_resultConstraint", None)
        self.tracker.broker.call(self.oid, method, args, kwargs, False)

    def notifyOnDisconnect(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.tracker.broker.notify_on_disconnect(callback, args, kwargs)

    def dontNotifyOnDisconnect(self, marker: Any) -> None:
        self.tracker.broker.dont_notify(marker)

    def isConnected(self) -> bool:
        return not self.tracker.broker.disconnected

    def getPeer(self) -> _Peer:
        return _Peer(self.tracker.broker.peer_pid)

    def __repr__(self) -> str:
        return f"<LocalReference {self.tracker.interfaceName} #{self.oid}>"


class LocalBroker(Protocol):
    """One end of a local connection: exports Referenceables, imports LocalReferences."""

    def __init__(self, root: Referenceable | None = None, check_uid: bool = False) -> None:
        self.root = root
        self.check_uid = check_uid
        self.exports: dict[int, Referenceable] = {}
        self._export_ids: dict[int, int] = {}
        self._next_oid = count(1)
        self._next_cid = count(1)
        self.pending: dict[int, Deferred] = {}
        self.disconnected = False
        self._closing = False   # aborted by us: nothing more is read or answered
        self.peer_pid = 0
        self._watchers: dict[int, tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = {}
        self._next_watch = count(1)
        self._buf = bytearray()
        self._packer = msgpack.Packer(default=self._default, use_bin_type=True)
        self.connected_deferred: Deferred = Deferred()
        if root is not None:
            self.exports[0] = root
            self._export_ids[id(root)] = 0

    # ------------------------------------------------------------------ connection
    def connectionMade(self) -> None:
        try:
            raw = self.transport.getHandle().getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                         struct.calcsize("3i"))
            pid, uid, _gid = struct.unpack("3i", raw)
        except (OSError, AttributeError):
            pid, uid = 0, -1
        self.peer_pid = pid
        if self.check_uid and uid != os.getuid():
            log.warn("dsage.localwire.refused_peer", uid=uid, pid=pid)
            self._abort()
            return
        make = getattr(self.root, "for_connection", None)
        if make is not None:  # this connection's own view of the root (see tubs.ServerBroker)
            view = make(f"local:{pid}", self._abort)
            self.exports[0] = view
            self._export_ids[id(view)] = 0
            self.notify_on_disconnect(view.connection_lost, (), {})
        self.connected_deferred.callback(self)

    def _abort(self) -> None:
        self._closing = True
        self.transport.abortConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.disconnected = True
        pending, self.pending = self.pending, {}
        for d in pending.values():
            d.errback(DeadReferenceError("local connection lost"))
        watchers, self._watchers = self._watchers, {}
        for cb, args, kwargs in watchers.values():
            try:
                cb(*args, **kwargs)
            except Exception:
                log.failure("dsage.localwire.disconnect_callback_failed")
        self.exports.clear()
        self._export_ids.clear()

    def notify_on_disconnect(self, cb: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
        marker = next(self._next_watch)
        if self.disconnected:
            cb(*args, **kwargs)
        else:
            self._watchers[marker] = (cb, args, kwargs)
        return marker

    def dont_notify(self, marker: int) -> None:
        self._watchers.pop(marker, None)

    def root_reference(self, iface_name: str) -> LocalReference:
        return LocalReference(self, 0, iface_name)

    # ------------------------------------------------------------------ encoding
    def _default(self, obj: Any) -> Any:
        if isinstance(obj, Referenceable):
            key = id(obj)
            oid = self._export_ids.get(key)
            if oid is None:
                oid = next(self._next_oid)
                self._export_ids[key] = oid
                self.exports[oid] = obj
            return msgpack.ExtType(_REF, msgpack.packb([oid, obj.getInterfaceName() or ""]))
        raise TypeError(f"cannot send a {type(obj).__name__} over the local transport")

    def _ext(self, code: int, data: bytes) -> Any:
        if code != _REF:
            raise ValueError(f"unknown extension type {code}")
        oid, name = msgpack.unpackb(data, raw=False)
        if not isinstance(oid, int) or not isinstance(name, str):
            raise ValueError("malformed reference")
        return LocalReference(self, oid, name)

    def _send(self, msg: list[Any]) -> None:
        if self._closing:
            return
        body = self._packer.pack(msg)
        if len(body) < 65536:
            write_now(self.transport, _HEADER.pack(len(body)) + body)
        else:  # no copy of a large frame to prepend 4 bytes
            write_now(self.transport, _HEADER.pack(len(body)))
            write_now(self.transport, body)

    # ------------------------------------------------------------------ outbound calls
    def call(self, oid: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
             answer: bool) -> Any:
        if self.disconnected:
            return fail(DeadReferenceError("local connection lost")) if answer else None
        cid = next(self._next_cid) if answer else 0
        try:
            self._send([_CALL, cid, oid, method, list(args), kwargs])
        except (TypeError, ValueError, OverflowError) as e:
            return fail(Violation(f"cannot send arguments of {method}: {e}")) if answer else None
        if not answer:
            return None
        d: Deferred = Deferred()
        self.pending[cid] = d
        return d

    # ------------------------------------------------------------------ inbound
    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        buf = self._buf
        buf += data
        while len(buf) >= 4 and not self._closing:
            (n,) = _HEADER.unpack_from(buf)
            if n > MAX_FRAME:
                log.warn("dsage.localwire.frame_too_large", size=n)
                self._abort()
                return
            if len(buf) < 4 + n:
                return
            try:
                with memoryview(buf) as view:
                    msg = msgpack.unpackb(view[4:4 + n], ext_hook=self._ext, raw=False,
                                          strict_map_key=False)
            except Exception as e:
                log.warn("dsage.localwire.malformed_frame", error=str(e))
                self._abort()
                return
            del buf[:4 + n]
            if self.disconnected:
                return
            self._handle(msg)

    def _handle(self, msg: Any) -> None:
        if not isinstance(msg, list) or not msg:
            self._abort()
            return
        kind = msg[0]
        if kind == _CALL and len(msg) == 6:
            self._call_in(*msg[1:])
        elif kind == _ANSWER and len(msg) == 3:
            _, cid, value = msg
            d = self.pending.pop(cid, None)
            if d is not None:
                d.callback(value)
        elif kind == _ERROR and len(msg) == 4:
            _, cid, etype, message = msg
            d = self.pending.pop(cid, None)
            if d is not None:
                d.errback(RemoteException(_CopiedError(str(etype), str(message))))
        else:
            log.warn("dsage.localwire.malformed_message")
            self._abort()

    def _call_in(self, cid: Any, oid: Any, method: Any, args: Any, kwargs: Any) -> None:
        if not isinstance(cid, int):
            self._abort()
            return
        obj = self.exports.get(oid) if isinstance(oid, int) else None
        schema = None
        if obj is not None and isinstance(method, str):
            iface = obj.getInterface()
            schema = iface.get(method) if iface is not None else None
        if not isinstance(schema, RemoteMethodSchema):
            self._error_out(cid, "Violation", f"no such remote method: {method!r}")
            return
        if not isinstance(args, list) or not isinstance(kwargs, dict) \
                or not all(isinstance(k, str) for k in kwargs):
            self._error_out(cid, "Violation", "malformed call")
            return
        try:
            schema.checkAllArgs(args, kwargs, True)
        except Violation as v:
            self._error_out(cid, "Violation", str(v))
            return
        d = maybeDeferred(obj.doRemoteCall, method, args, kwargs)
        if cid:
            d.addCallbacks(self._answer_out, self._failure_out, callbackArgs=(cid, schema),
                           errbackArgs=(cid,))
        else:
            d.addErrback(lambda f: log.failure("dsage.localwire.unanswered_call_failed", f, method=method))

    def _answer_out(self, value: Any, cid: int, schema: RemoteMethodSchema) -> None:
        if self.disconnected:
            return
        try:
            schema.checkResults(value, False)
            self._send([_ANSWER, cid, value])
        except (Violation, TypeError, ValueError, OverflowError) as e:
            self._error_out(cid, "Violation", f"bad answer: {e}")

    def _failure_out(self, f: Any, cid: int) -> None:
        t = getattr(f, "type", None)
        self._error_out(cid, getattr(t, "__name__", "Exception"), str(f.value))

    def _error_out(self, cid: int, type_name: str, message: str) -> None:
        if cid and not self.disconnected:
            self._send([_ERROR, cid, type_name, message[:MAX_ERROR]])


class LocalServerFactory(Factory):
    """Accepts local peers of the same uid; each gets *root* (the Login object) as object 0."""

    def __init__(self, root: Referenceable) -> None:
        self.root = root
        self.brokers: set[LocalBroker] = set()

    def buildProtocol(self, addr: Any) -> LocalBroker:
        b = LocalBroker(self.root, check_uid=True)
        self.brokers.add(b)
        b.notify_on_disconnect(self.brokers.discard, (b,), {})
        return b

    def abort_all(self) -> None:
        for b in list(self.brokers):
            if b.transport is not None:
                b.transport.abortConnection()


def remove_stale(home: Path) -> None:
    """Remove the socket a crashed server left (the caller holds the server lock)."""
    try:
        (Path(home) / SOCKET_NAME).unlink()
    except FileNotFoundError:
        pass


def listen(reactor: Any, home: Path, root: Referenceable) -> tuple[Any, LocalServerFactory] | None:
    """Listen on the home's socket (replacing a stale one: the caller holds the server lock)."""
    remove_stale(home)
    path = socket_path(home)
    if path is None:
        log.info("dsage.localwire.path_too_long", home=str(home))
        return None
    factory = LocalServerFactory(root)
    port = reactor.listenUNIX(str(path), factory, mode=0o600)
    return port, factory


def connect(reactor: Any, path: Path, timeout: float = 5.0) -> Deferred:
    """Fires with a LocalReference to the server's Login object."""
    def made(broker: LocalBroker) -> Deferred:
        from dsage_core.protocol.interfaces import RILogin
        return broker.connected_deferred.addCallback(lambda b: b.root_reference(RILogin.__remote_name__))
    return ClientCreator(reactor, LocalBroker).connectUNIX(str(path), timeout=timeout).addCallback(made)
