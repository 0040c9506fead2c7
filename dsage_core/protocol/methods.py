"""Remote method lookup under one interned name per method.

Foolscap's ``Referenceable.doRemoteCall`` looks the method up as ``getattr(self, "remote_%s" % name)``:
a fresh string on every call. CPython's type attribute cache keeps a reference to the last name
each of its slots was looked up with, so those small strings outlive the call, land anywhere in the
allocator's arenas (among the tens of thousands of a batch's short-lived objects) and keep whole
1 MiB arenas from being returned: the client's RSS grew ~7 MiB per 100,000 jobs with its object
count flat (bench/million.py). One interned name per method keeps the lookups on the same object.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

#: at most this many method names are interned (only names a schema declares get this far)
MAX_NAMES = 1000
_NAMES: dict[str, str] = {}


def remote_name(methodname: str) -> str:
    """``"remote_" + methodname``, the same (interned) string object on every call."""
    name = _NAMES.get(methodname)
    if name is None:
        name = sys.intern("remote_" + methodname)
        if len(_NAMES) < MAX_NAMES:
            _NAMES[sys.intern(methodname)] = name
    return name


def remote_method(obj: Any, methodname: str) -> Callable[..., Any]:
    """The bound ``remote_<methodname>`` of *obj* (``AttributeError`` if it has none)."""
    return getattr(obj, remote_name(methodname))


def do_remote_call(self: Any, methodname: str, args: Any, kwargs: Any) -> Any:
    """A drop-in ``doRemoteCall`` for Foolscap ``Referenceable`` classes."""
    return remote_method(self, methodname)(*args, **kwargs)
