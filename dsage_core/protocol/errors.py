"""Exceptions that are part of the API; they cross the wire as RemoteException text."""
from __future__ import annotations


class DsageError(Exception):
    """Base class of dsage's own errors."""


class BadRequest(DsageError):
    """A remote call had malformed or oversized arguments; nothing was changed."""


class UnknownBlob(BadRequest):
    """A job names a function blob the server does not hold for this user (never uploaded, or
    freed once no unfinished job needed it): upload it again and resubmit."""


class NotFound(DsageError):
    """No such job (also what another user's job looks like)."""


class PermissionDenied(DsageError):
    """The caller's role does not allow this call."""


class LoginFailed(DsageError):
    """The login was refused: unknown key, bad signature, replayed or expired challenge, wrong role."""


class ServerUnavailable(DsageError):
    """The server could not be reached, or refused the work (e.g. its database cannot be written)."""


class QuotaExceeded(DsageError):
    """A per-user quota is reached: queued jobs, or bytes of function blobs."""


class ClientClosed(DsageError, RuntimeError):
    """The client was shut down (``D.shutdown()``): it sends nothing and waits for nothing more."""

    def __init__(self, what: str = "") -> None:
        super().__init__(f"{what + ': ' if what else ''}this client was shut down (D.shutdown()); "
                         f"connect again with dsage.connect() or dsage.start_all()")


def remote_message(failure_or_exc: object) -> str:
    """A one-line message from a local exception or a Foolscap remote failure."""
    from foolscap.api import RemoteException  # local import: keeps this module light

    exc = getattr(failure_or_exc, "value", failure_or_exc)
    if isinstance(exc, RemoteException):
        f = exc.failure
        text = getattr(f, "value", None) or str(f)
        t = getattr(f, "type", "")
        name = getattr(t, "__name__", None) or str(t).rsplit(".", 1)[-1].rstrip("'>")
        return f"{name}: {text}" if name else str(text)
    return f"{type(exc).__name__}: {exc}"
