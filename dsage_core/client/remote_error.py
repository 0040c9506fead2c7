"""The exception a failed job raised, rebuilt on its owner's client.

From the job's exception map (:mod:`dsage_core.model.exc_info`): the original exception when the
server forwarded its pickle (only from a keyed worker of the same user) and it unpickles here;
otherwise an instance of a :class:`RemoteError` subclass named after the remote type, made once per
type name: ``RemoteError[ValueError]``, which for a builtin exception type is also a subclass of that
builtin (so ``except ValueError`` works), with the remote args when they were plain data. Either
way the remote traceback text is attached as ``__cause__`` (a :class:`RemoteTraceback`), as
``concurrent.futures.ProcessPoolExecutor`` does.
"""
from __future__ import annotations

import threading
from typing import Any

from dsage_core.model import exc_info


class JobFailed(RuntimeError):
    """A job did not complete (killed, timed out, lost, crashed...); its message names the job, its
    state and the error text. ``Job.get()`` raises it when there is no exception to raise."""


class RemoteError(JobFailed):
    """A job raised an exception that could not be rebuilt as itself here (an anonymous worker's,
    another user's worker's, or one that does not unpickle). ``remote_type`` is the remote class's
    qualified name, ``remote_mro`` the names of its classes; ``args`` are the remote args when they
    were plain data (else the error's last line)."""

    remote_type: str = ""
    remote_mro: tuple[str, ...] = ()


class RemoteTraceback(Exception):
    """The traceback text of a job's exception, as the worker formatted it (``__cause__`` of it)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


_classes: dict[tuple[str, tuple[str, ...]], type] = {}
_lock = threading.Lock()
#: builtins never mixed into a RemoteError: raising them here would end the program or a generator
_NOT_MIXED = (StopIteration, StopAsyncIteration, GeneratorExit)


def remote_error_class(type_name: str, mro: tuple[str, ...] = ()) -> type:
    """``RemoteError[type_name]``: one class per remote type, a subclass of the builtin exception
    the remote type is or derives from (the first one in its MRO), when their layouts allow it."""
    key = (type_name, mro)
    with _lock:
        cls = _classes.get(key)
        if cls is None:
            cls = _classes[key] = _make_class(type_name, mro)
    return cls


def _make_class(type_name: str, mro: tuple[str, ...]) -> type:
    bare = type_name.rsplit(".", 1)[-1] or "RemoteError"
    if not bare.isidentifier():
        bare = "RemoteError"
    ns = {"remote_type": type_name, "remote_mro": mro, "__module__": "dsage.remote",
          "__qualname__": f"RemoteError[{type_name}]"}
    for name in (type_name, *mro):
        base = exc_info.is_builtin_exception(name)
        if base is None or not issubclass(base, Exception) or issubclass(base, _NOT_MIXED):
            continue
        if base is Exception:
            break
        try:
            return type(bare, (base, RemoteError), dict(ns))   # the builtin first: its __init__, __str__
        except TypeError:  # an incompatible layout (OSError...): RemoteError alone
            break
    return type(bare, (RemoteError,), ns)


def rebuild(info: dict[str, Any] | None, tb_text: str | None, summary: str) -> BaseException | None:
    """The exception described by *info* (see module docstring); None without *info*."""
    if not isinstance(info, dict) or not isinstance(info.get("type"), str):
        return None
    exc = _unpickled(info.get("pickle"))
    if exc is None:
        exc = _remote_error(info, tb_text, summary)
    exc.__cause__ = RemoteTraceback(tb_text or "")
    return exc


def _unpickled(data: Any) -> BaseException | None:
    if not isinstance(data, bytes):
        return None
    try:
        import cloudpickle
        exc = cloudpickle.loads(data)
    except Exception:  # noqa: BLE001 - its class is not importable here, a broken __reduce__...
        return None
    return exc if isinstance(exc, BaseException) else None


def _remote_error(info: dict[str, Any], tb_text: str | None, summary: str) -> BaseException:
    mro = tuple(m for m in info.get("mro") or () if isinstance(m, str))
    cls = remote_error_class(info["type"], mro)
    args = _plain_args(info.get("args"))
    if args is None:
        last = (tb_text or "").strip().splitlines()[-1:] or [summary]
        args = (last[0],)
    try:
        exc = cls(*args)
    except Exception:  # noqa: BLE001 - a builtin base with a fixed signature (UnicodeError...)
        exc = cls.__new__(cls)
        exc.args = args
    return exc


def _plain_args(data: Any) -> tuple[Any, ...] | None:
    from dsage_core import codec
    if not isinstance(data, bytes) or not codec.is_plain(data):
        return None
    try:
        v = codec.decode_value(data, allow_pickle=False)
    except Exception:  # noqa: BLE001 - malformed: fall back to the error text
        return None
    return tuple(v) if isinstance(v, (tuple, list)) else None
