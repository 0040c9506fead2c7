"""Result encoding: plain data travels as safe msgpack (tag ``P``), anything else as cloudpickle
(tag ``C``), which only a client decodes — never the server, and never for an anonymous worker.

A Sage object (tag ``S``) travels as msgpack ``[text, pickle]``: its string form, which the GUI, the
CLI and clients without Sage show, and its pickle, which a client with Sage decodes. The server can
take the text out without unpickling (:func:`text_form`).
"""
from __future__ import annotations

import reprlib
from typing import Any

import msgpack

PLAIN, PICKLED, SAGE = b"P", b"C", b"S"
#: the string form of a Sage result is cut here
MAX_TEXT = 1 << 20
_TUPLE, _SET, _FROZENSET, _COMPLEX, _BIGINT = 1, 2, 3, 4, 5
_MAX = 1 << 31


class UnsafeResult(ValueError):
    """A pickled result the client refuses to unpickle (it came from an untrusted worker)."""


class _NotPlain(TypeError):
    pass


class SageValue:
    """A Sage object a job returned (see the module docstring for how it travels)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def encode(self) -> bytes:
        try:
            text = str(self.obj)
        except Exception as e:  # a broken __str__ must not fail the job
            text = f"<{type(self.obj).__name__} (str failed: {e})>"
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT] + f"... ({len(text)} chars)"
        try:
            import cloudpickle
            data = cloudpickle.dumps(self.obj)
        except Exception:
            return PLAIN + _pack(text)
        return SAGE + _pack([text, data])


def _sage_importable() -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec("sage") is not None
    except (ImportError, ValueError):
        return False


def _default(obj: Any) -> Any:
    t = type(obj)
    if t is tuple:
        return msgpack.ExtType(_TUPLE, _pack(list(obj)))
    if t is set:
        return msgpack.ExtType(_SET, _pack(list(obj)))
    if t is frozenset:
        return msgpack.ExtType(_FROZENSET, _pack(list(obj)))
    if t is complex:
        return msgpack.ExtType(_COMPLEX, _pack([obj.real, obj.imag]))
    if t is int:  # beyond 64 bits
        return msgpack.ExtType(_BIGINT, obj.to_bytes((obj.bit_length() + 8) // 8, "big", signed=True))
    raise _NotPlain(t.__name__)


def _big_to_ext(obj: Any) -> Any:
    """Replace ints msgpack cannot hold by ext values (only walked when the fast path overflowed)."""
    t = type(obj)
    if t is int and not (-(1 << 63) <= obj < (1 << 64)):
        return _default(obj)
    if t is list:
        return [_big_to_ext(x) for x in obj]
    if t is dict:
        return {_big_to_ext(k): _big_to_ext(v) for k, v in obj.items()}
    if t in (tuple, set, frozenset):
        return msgpack.ExtType({tuple: _TUPLE, set: _SET, frozenset: _FROZENSET}[t],
                               _pack([_big_to_ext(x) for x in obj]))
    return obj


def _pack(obj: Any) -> bytes:
    try:
        return msgpack.packb(obj, use_bin_type=True, strict_types=True, default=_default)
    except OverflowError:
        return msgpack.packb(_big_to_ext(obj), use_bin_type=True, strict_types=True, default=_default)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _BIGINT:
        return int.from_bytes(data, "big", signed=True)
    v = _unpack(data)
    if code == _TUPLE:
        return tuple(v)
    if code == _SET:
        return set(v)
    if code == _FROZENSET:
        return frozenset(v)
    if code == _COMPLEX:
        return complex(v[0], v[1])
    raise ValueError(f"unknown ext type {code} in a plain-data result")


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_ext_hook,
                           use_list=True)


def encode_value(value: Any) -> bytes:
    """Encode a result; plain data safely, anything else with cloudpickle."""
    if type(value) is SageValue:
        return value.encode()
    try:
        return PLAIN + _pack(value)
    except (_NotPlain, ValueError, RecursionError, TypeError):
        import cloudpickle
        return PICKLED + cloudpickle.dumps(value)


def is_plain(data: bytes) -> bool:
    """True if *data* decodes without unpickling."""
    return data[:1] == PLAIN


def text_form(data: bytes) -> bytes | None:
    """A Sage result reduced to its string form (plain data), without unpickling; ``None`` if
    *data* is not a well-formed Sage result."""
    if data[:1] != SAGE:
        return None
    try:
        text, _ = _unpack(memoryview(data)[1:])
    except Exception:
        return None
    return PLAIN + _pack(text) if isinstance(text, str) else None


def decode_value(data: bytes, *, allow_pickle: bool = True) -> Any:
    tag = data[:1]
    if tag == PLAIN:
        with memoryview(data) as view:  # no copy of a large result before decoding it
            return _unpack(view[1:])
    if tag == SAGE:
        text, pickled = _unpack(memoryview(data)[1:])
        if allow_pickle and _sage_importable():
            import cloudpickle
            try:
                return cloudpickle.loads(pickled)
            except Exception:
                pass  # a Sage without the module this object needs: its string form
        return text
    if tag == PICKLED:
        if not allow_pickle:
            raise UnsafeResult("this result was pickled by a worker that may not pickle for you (an anonymous worker or another "
                               "user's) and is not unpickled")
        import cloudpickle
        with memoryview(data) as view:
            return cloudpickle.loads(view[1:])
    raise ValueError(f"not a dsage result encoding (tag {tag!r})")


_repr = reprlib.Repr()
_repr.maxstring = 160
_repr.maxother = 160
_repr.maxlong = 160
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 12


_SCALARS = (float, bool, type(None), complex)


def preview(value: Any, limit: int = 200) -> str:
    """A bounded repr for tables and listings; never raises (and never reprs a huge value whole)."""
    try:
        t = type(value)
        # the common results, without reprlib's machinery (it runs after every job, on cold caches)
        if t in _SCALARS or (t is int and -_MAX < value < _MAX):
            return repr(value)
        if t is str and len(value) <= 40:
            return repr(value)
        if t in (bytes, bytearray, str) and len(value) > limit:
            text = repr(value[:limit]) + f"... ({len(value)} {'chars' if t is str else 'bytes'})"
        else:
            text = _repr.repr(value)
    except Exception as e:  # a broken __repr__ must not fail the job
        text = f"<{type(value).__name__} (repr failed: {e})>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
