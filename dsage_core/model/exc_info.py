"""What crosses the wire about an exception a job raised: its type names, plain args, a pickle.

The child (:func:`describe`) sends a small map with a failed job's done entry::

    {"type": "mymod.MyError",            # the qualified name (builtins bare: "ValueError")
     "mro": ["mymod.MyError", "ValueError", "Exception", "BaseException"],
     "args": b"P...",                     # dsage_core.codec plain encoding of e.args, if plain
     "pickle": b"..."}                    # cloudpickle of the exception, if it pickles (bounded)

The server never unpickles: :func:`clean` checks types and sizes, and drops ``pickle`` unless the
worker that ran the job is a keyed worker of the job's owner; only the job's owner's client ever
loads it. Retries match type names against ``mro`` (:func:`matches`).
"""
from __future__ import annotations

import builtins
from typing import Any

from dsage_core import textsafe

#: bounds on what a child sends and a server keeps
MAX_TYPE_NAME = 200
MAX_MRO = 16
MAX_ARGS_BYTES = 4 * 1024
MAX_PICKLE = 64 * 1024


def type_name(cls: type) -> str:
    """``module.qualname``; builtins bare (``ValueError``)."""
    mod = getattr(cls, "__module__", "") or ""
    qual = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "?")
    name = qual if mod == "builtins" else f"{mod}.{qual}"
    return name[:MAX_TYPE_NAME]


def describe(exc: BaseException) -> dict[str, Any]:
    """The wire map for *exc* (in the child; never raises)."""
    from dsage_core import codec
    t = type(exc)
    try:
        out: dict[str, Any] = {"type": type_name(t),
                               "mro": [type_name(c) for c in t.__mro__ if c is not object][:MAX_MRO]}
    except BaseException:  # noqa: BLE001 - a class with odd names (a metaclass): the bare minimum
        return {"type": "BaseException", "mro": []}
    try:
        args = codec.encode_value(tuple(exc.args))
        if codec.is_plain(args) and len(args) <= MAX_ARGS_BYTES:
            out["args"] = args
    except BaseException:  # noqa: BLE001 - an odd exception's args are simply not sent
        pass
    try:
        import cloudpickle
        data = cloudpickle.dumps(exc)
        if len(data) <= MAX_PICKLE:
            out["pickle"] = data
    except BaseException:  # noqa: BLE001 - unpicklable (a lock, a socket, a hostile __reduce__)
        pass
    return out


def clean(raw: Any, keep_pickle: bool) -> dict[str, Any] | None:
    """The server's check of a worker's exception map: bounded names (shown to users: cleaned of
    control characters), plain args only, the pickle only when *keep_pickle*. None if malformed."""
    if not isinstance(raw, dict):
        return None
    t = raw.get("type")
    if not isinstance(t, str) or not t or len(t) > MAX_TYPE_NAME:
        return None
    mro = raw.get("mro")
    if not isinstance(mro, list):
        mro = []
    out: dict[str, Any] = {"type": textsafe.line(t),
                           "mro": [textsafe.line(m) for m in mro[:MAX_MRO]
                                   if isinstance(m, str) and 0 < len(m) <= MAX_TYPE_NAME]}
    args = raw.get("args")
    if isinstance(args, bytes) and len(args) <= MAX_ARGS_BYTES and args[:1] == b"P":
        out["args"] = args
    pickled = raw.get("pickle")
    if keep_pickle and isinstance(pickled, bytes) and len(pickled) <= MAX_PICKLE:
        out["pickle"] = pickled
    return out


def for_viewer(info: dict[str, Any] | None, owner: str, viewer: str | None) -> dict[str, Any] | None:
    """*info* as *viewer* may see it: the pickle goes to the job's *owner* only (an admin looking
    at another user's job gets the names and args); *viewer* None: unfiltered (internal use)."""
    if info is None or viewer is None or viewer == owner or "pickle" not in info:
        return info
    return {k: v for k, v in info.items() if k != "pickle"}


def names_of(info: dict[str, Any]) -> set[str]:
    """Every name a retry_on entry may use for this exception: each qualified name in its MRO,
    and the bare (last dotted) part of each."""
    names = set()
    for n in [info.get("type", "")] + list(info.get("mro") or ()):
        if isinstance(n, str) and n:
            names.add(n)
            names.add(n.rsplit(".", 1)[-1])
    return names


def matches(info: dict[str, Any] | None, retry_on: list[str] | None) -> bool:
    """True if an exception (its wire map) is one *retry_on* names; no *retry_on*: any exception.
    No exception map (a crash, a limit): never."""
    if info is None:
        return False
    if not retry_on:
        return True
    return not names_of(info).isdisjoint(retry_on)


def is_builtin_exception(name: str) -> type[BaseException] | None:
    """The builtin exception class *name* names (``ValueError``), else None."""
    cls = getattr(builtins, name, None) if "." not in name else None
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None
