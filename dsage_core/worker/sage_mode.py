"""Sage mode inside a child: import Sage once, preparse job code, convert results to plain data.

Needs the optional extra ``dsage[sage]`` (passagemath-pari + passagemath-repl). Sage must run in the
main thread of its own process; the monitor sets TMPDIR, DOT_SAGE and CYSIGNALS_CRASH_NDEBUG.
"""
from __future__ import annotations

from typing import Any

EXTRA_HINT = "Sage mode needs the optional extra: pip install 'dsage[sage]'"


def base_namespace() -> dict[str, Any]:
    try:
        import sage.all__sagemath_pari as sall
    except ImportError as e:
        raise RuntimeError(f"{EXTRA_HINT} ({e})") from None
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


def to_plain(x: Any, depth: int = 0) -> Any:
    """Sage values as plain data: integers as int, reals as float, containers recursively, else str."""
    if x is None or isinstance(x, (bool, str, bytes, float, complex)) or type(x) is int:
        return x
    if depth > 50:
        return str(x)
    if isinstance(x, (list, tuple, set, frozenset)):
        items = [to_plain(i, depth + 1) for i in x]
        return items if isinstance(x, list) else tuple(items) if isinstance(x, tuple) else \
            set(items) if isinstance(x, set) else frozenset(items)
    if isinstance(x, dict):
        return {to_plain(k, depth + 1): to_plain(v, depth + 1) for k, v in x.items()}
    tname = type(x).__name__
    try:
        if tname == "Integer" or (hasattr(x, "is_integer") and tname.startswith("Integer")):
            return int(x)
        if tname.startswith("RealNumber") or tname.startswith("RealDoubleElement"):
            return float(x)
    except Exception:
        pass
    return str(x)
