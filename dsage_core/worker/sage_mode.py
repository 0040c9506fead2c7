"""Sage mode inside a child: import Sage once, preparse job code, turn results into data.

Needs the optional extra ``dsage[sage]`` (passagemath-standard: the namespace of ``from sage.all
import *``); with only the PARI subset installed (passagemath-pari + passagemath-repl) jobs get that
subset. Sage must run in the main thread of its own process; the monitor sets TMPDIR, DOT_SAGE and
CYSIGNALS_CRASH_NDEBUG.
"""
from __future__ import annotations

from typing import Any

EXTRA_HINT = "Sage mode needs the optional extra: pip install 'dsage[sage]'"

#: the namespaces tried in order: the whole of sage.all, then the PARI subset
NAMESPACES = ("sage.all", "sage.all__sagemath_pari")


def base_namespace() -> dict[str, Any]:
    """The names a Sage job sees (as after ``from sage.all import *``)."""
    import importlib
    sall, errors = None, []
    for name in NAMESPACES:
        try:
            sall = importlib.import_module(name)
            break
        except ImportError as e:
            errors.append(f"{name}: {e}")
    if sall is None:
        raise RuntimeError(f"{EXTRA_HINT} ({'; '.join(errors)})")
    ns = {k: getattr(sall, k) for k in dir(sall) if not k.startswith("__")}
    import builtins
    ns["__builtins__"] = builtins
    return ns


def new_seed(ns: dict[str, Any]) -> None:
    """Children forked or reused share random state: reseed for every job."""
    seed = ns.get("set_random_seed")
    if seed is not None:
        seed()


def preparse(code: str) -> str:
    try:
        from sage.repl.preparse import preparse_file
    except ImportError as e:
        raise RuntimeError(f"{EXTRA_HINT} ({e})") from None
    return preparse_file(code)


class NotPlain(Exception):
    """The value holds a Sage object that has no exact plain-data form."""


def to_plain(x: Any, depth: int = 0) -> Any:
    """*x* as plain data when that loses nothing: Sage integers as int, containers recursively;
    raises :class:`NotPlain` for anything else (a rational, a real number, a matrix...)."""
    if x is None or isinstance(x, (bool, str, bytes, float, complex)) or type(x) is int:
        return x
    if depth > 50:
        raise NotPlain
    t = type(x)
    if t in (list, tuple, set, frozenset):
        return t(to_plain(i, depth + 1) for i in x)
    if t is dict:
        return {to_plain(k, depth + 1): to_plain(v, depth + 1) for k, v in x.items()}
    if t.__name__ == "Integer" and t.__module__.startswith("sage."):
        return int(x)
    raise NotPlain


def result(value: Any) -> tuple[Any, bool]:
    """``(value, is_sage_object)``: plain data when the value is plain, else the Sage object itself
    (sent pickled to its owner, with its string form for the GUI, the CLI and clients without Sage)."""
    try:
        return to_plain(value), False
    except NotPlain:
        return value, True
