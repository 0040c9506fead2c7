"""The job-update record pushed to clients and returned by ``watch``: one flat list per job.

Kept as a positional list (not a dict) because thousands cross per second.
"""
from __future__ import annotations

from typing import Any

FIELDS = ("id", "status", "worker", "started", "finished", "result", "result_preview", "error",
          "progress", "progress_message", "attempts", "name", "created", "priority", "kind", "extra", "exc")
#: ``extra`` (optional): a small map of what only some jobs have, e.g. ``{"replicas": "2/2 agree"}``
#: (None when only ``exc`` follows); ``exc`` (only on a failed job that raised; absent otherwise):
#: see dsage_core.model.exc_info
INDEX = {name: i for i, name in enumerate(FIELDS)}


def as_dict(update: list[Any]) -> dict[str, Any]:
    """A positional update as a dict (missing trailing fields are None)."""
    d = dict(zip(FIELDS, update))
    for name in FIELDS[len(update):]:
        d[name] = None
    return d
