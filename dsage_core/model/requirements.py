"""The ``packages=`` job option: requirement strings a worker installs before the job runs
(see ``dsage_core.worker.envs``). Checked on the client and again on the server."""
from __future__ import annotations

import re
from typing import Any

#: one requirement: a name, extras, version clauses; no URL, path, option or environment marker
_REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}(\[[A-Za-z0-9._,-]{1,100}\])?"
                          r"((===?|~=|!=|<=|>=|<|>)[A-Za-z0-9.*+!_-]{1,50}"
                          r"(,(===?|~=|!=|<=|>=|<|>)[A-Za-z0-9.*+!_-]{1,50}){0,5})?")
MAX_REQUIREMENTS = 32


def check_packages(value: Any) -> list[str]:
    """The ``packages`` option: a list of requirement strings (``"sympy>=1.12"``), sorted."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError('packages must be a list of requirements, e.g. packages=["sympy>=1.12"]')
    if len(value) > MAX_REQUIREMENTS:
        raise ValueError(f"too many packages: {len(value)} > {MAX_REQUIREMENTS}")
    out = set()
    for r in value:
        if not isinstance(r, str):
            raise ValueError(f"a package requirement must be a string, not {type(r).__name__}")
        req = r.replace(" ", "")
        if not _REQUIREMENT.fullmatch(req):
            raise ValueError(f"not a package requirement: {r[:120]!r} (a name with optional extras "
                             "and versions, e.g. 'sympy>=1.12'; no URLs, paths or pip options)")
        out.add(req)
    return sorted(out)
