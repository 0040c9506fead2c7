"""Extra job options: the open end of the job record.

The wire record of a job has ten fixed fields (``server.intake.parse_submission``) and an optional
eleventh, ``ext``: a small map of the options added since (retries, replicas, resources, inputs,
packages...). Each such option is declared once here, in :data:`REGISTRY`, with the check both ends
run on it: the client checks it before anything is sent (a clear :class:`ValueError`), the server
checks it again (a peer may send anything) and stores the map as JSON in ``jobs.ext``.

An option with ``to_worker=True`` is also handed to the worker that runs the job, as the run entry's
seventh field (see :func:`worker_view`); the rest stays with the server.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

#: at most this many ext keys per job, and this many bytes of their JSON
MAX_EXT_KEYS = 16
MAX_EXT_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class ExtOption:
    """One extra job option: its name, the check that normalises a value (raise ``ValueError`` with
    a message for the user), and whether the worker that runs the job sees it."""

    name: str
    check: Callable[[Any], Any]
    to_worker: bool = False
    doc: str = ""


#: every extra option, by name (add yours here, with its check)
REGISTRY: dict[str, ExtOption] = {}


def register(option: ExtOption) -> ExtOption:
    """Declare *option* (a name may be declared once)."""
    if option.name in REGISTRY:
        raise ValueError(f"ext option {option.name!r} declared twice")
    REGISTRY[option.name] = option
    return option


# ---- replicas (issue 15, untrusted results): kept in one block for easy merges
from dsage_core.model.replicas import check_replicas as _check_replicas  # noqa: E402

register(ExtOption("replicas", _check_replicas, to_worker=True,
                   doc="run on k distinct workers; a majority must agree (dsage_core.model.replicas)"))
# ---- end replicas


def check_ext(raw: Any) -> dict[str, Any] | None:
    """Validate a job's ext map; returns it normalised (``None`` when empty). Raises
    ``ValueError`` with a clear message for an unknown key, a bad value or an oversize map."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"job ext options must be a map, not {type(raw).__name__}")
    if len(raw) > MAX_EXT_KEYS:
        raise ValueError(f"too many ext job options: {len(raw)} > {MAX_EXT_KEYS}")
    out: dict[str, Any] = {}
    for k, v in raw.items():
        opt = REGISTRY.get(k) if isinstance(k, str) else None
        if opt is None:
            valid = ", ".join(sorted(REGISTRY)) or "none"
            raise ValueError(f"unknown ext job option {k!r}; valid: {valid}")
        out[k] = opt.check(v)
    if not out:
        return None
    if (out.get("replicas") or 1) > 1 and any(k in out for k in ("cpus", "memory", "gpus")):
        raise ValueError("replicas= cannot be combined with cpus=, memory= or gpus= (yet): a sized "
                         "job runs once")
    if len(encode(out) or b"") > MAX_EXT_BYTES:
        raise ValueError(f"ext job options too large: over {MAX_EXT_BYTES} bytes")
    return out


def worker_view(ext: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of *ext* the worker that runs the job is given (``None`` when nothing)."""
    if not ext:
        return None
    view = {k: v for k, v in ext.items() if k in REGISTRY and REGISTRY[k].to_worker}
    return view or None


def encode(ext: dict[str, Any] | None) -> str | None:
    """JSON text for the store's ``jobs.ext`` column."""
    return json.dumps(ext, separators=(",", ":"), sort_keys=True) if ext else None


def decode(text: str | None) -> dict[str, Any] | None:
    """The map :func:`encode` wrote (``None`` for an empty column)."""
    return json.loads(text) if text else None


# ---------------------------------------------------------------------- the options
from dsage_core.model.requirements import check_packages  # noqa: E402

register(ExtOption("packages", check_packages, to_worker=True,
                   doc="requirements installed on the worker before the job runs"))

# options declared in their own modules (imported last: they register into REGISTRY)
from dsage_core.model import inputs as _inputs, resources as _resources  # noqa: E402,F401

# --- retries (issue 17): a job that raises runs again (dsage_core.model.retry)
from dsage_core.model import retry as _retry  # noqa: E402

register(ExtOption("retries", _retry.check_retries,
                   doc="run a job that raises up to N more times (see retry_on)"))
register(ExtOption("retry_on", _retry.check_retry_on,
                   doc="retry only these exception types (names or classes)"))
