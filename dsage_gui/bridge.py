"""Deferred ⇄ asyncio helpers and a slot decorator for calls into the client.

Everything here runs on the one shared loop (Qt + qasync + asyncioreactor, see :mod:`dsage_gui.app`).
A slot that starts network work must (a) keep a reference to what it started until it ends, or the
result and its errors vanish, and (b) send failures somewhere a user sees them: :func:`deferred_slot`
does both, routing errors to the :class:`~dsage_gui.notifications.NoticeHub`.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure


def failure_text(f: Any) -> str:
    """A one-line message for a Failure or an exception (remote failures carry a str value)."""
    if isinstance(f, Failure):
        inner = getattr(f.value, "subFailure", None)  # gatherResults wraps the first failure
        if inner is not None:
            return failure_text(inner)
        return f.getErrorMessage()
    return str(f) or type(f).__name__


def as_future(d: Deferred, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Future:
    """A Future for *d* that always resolves: a Failure becomes a plain exception.

    ``Deferred.asFuture`` never resolves for a foolscap ``CopiedFailure`` (STACK.md), so the
    failure is converted before it reaches asyncio.
    """
    loop = loop or asyncio.get_event_loop()
    fut = loop.create_future()

    def ok(result: Any) -> None:
        if not fut.done():
            fut.set_result(result)

    def bad(f: Failure) -> None:
        if not fut.done():
            v = f.value
            fut.set_exception(v if isinstance(v, BaseException) and not isinstance(v, str)
                              else RuntimeError(failure_text(f)))
    d.addCallbacks(ok, bad)
    return fut


class Pending:
    """Holds the Deferreds started by slots until they end (so none is garbage collected early)."""

    def __init__(self) -> None:
        self.running: set[Deferred] = set()

    def track(self, d: Deferred) -> Deferred:
        self.running.add(d)

        def done(r: Any) -> Any:
            self.running.discard(d)
            return r
        d.addBoth(done)
        return d


PENDING = Pending()


def deferred_slot(report: Callable[[Any], Any] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a method used as a Qt slot that returns a Deferred, a coroutine or nothing.

    The result is tracked until it ends; a failure (or a synchronous exception) goes to *report*,
    or to ``self.report_error`` / ``self.session.report_error`` when *report* is None.
    """
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        limit = _positional_limit(fn)

        @functools.wraps(fn)
        def slot(*args: Any, **kw: Any) -> Any:
            args = args[:limit]  # signals may pass more (clicked's `checked`): drop them as Qt would
            sink = report or _owner_report(args[0] if args else None)
            try:
                r = fn(*args, **kw)
            except Exception:
                sink(Failure())
                return None
            if inspect.iscoroutine(r):
                r = ensureDeferred(r)
            if isinstance(r, Deferred):
                PENDING.track(r)
                r.addErrback(sink)
            return r
        return slot
    return wrap


def _positional_limit(fn: Callable[..., Any]) -> int | None:
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _owner_report(owner: Any) -> Callable[[Any], Any]:
    for obj in (owner, getattr(owner, "session", None)):
        fn = getattr(obj, "report_error", None)
        if fn is not None:
            return fn
    return lambda f: None
