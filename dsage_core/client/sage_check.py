"""Is Sage mode available here? (Without the extra, Sage jobs fail at submit, naming the extra.)"""
from __future__ import annotations

import importlib.util

from dsage_core.client.payload import SubmitError

EXTRA_HINT = "Sage mode needs the optional extra: pip install 'dsage[sage]' (passagemath-standard)"


def sage_available() -> bool:
    try:
        return any(importlib.util.find_spec(m) is not None for m in ("sage.all", "sage.all__sagemath_pari"))
    except (ImportError, ValueError):
        return False


def require_sage_extra() -> None:
    if not sage_available():
        raise SubmitError(EXTRA_HINT)
