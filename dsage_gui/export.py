"""What "Copy result" and "Export…" write (Qt-free): the whole result and error of each job as
the server stores them, times in ISO 8601 (local time with its offset).

A result is decoded as ``D`` decodes it. A string is written as itself; any other value as its
``repr`` — so a ``bytes`` result reads ``b'...'`` (it is bytes, not text), and a list is a Python
literal. In JSON a value JSON can hold (numbers, strings, booleans, None, lists and dicts of them)
is written as that JSON value.
"""
from __future__ import annotations

import csv
import json
from datetime import datetime
from typing import Any

from dsage_core import codec
from dsage_core.model.records import UNTRUSTED_RESULT
from dsage_core.model.status import JobStatus

FIELDS = ("id", "name", "status", "worker", "created", "started", "finished", "elapsed_s", "progress",
          "result", "error")
TIMES = ("created", "started", "finished")


def iso_time(t: float | None) -> str | None:
    """``2026-12-03T09:46:38.123+00:00`` for an epoch time; None stays None."""
    if t is None:
        return None
    return datetime.fromtimestamp(float(t)).astimezone().isoformat(timespec="milliseconds")


def result_value(row: dict[str, Any]) -> Any:
    """The decoded result of a record fetched with its result (None unless completed)."""
    data = row.get("result")
    if row.get("status") != JobStatus.COMPLETED or not isinstance(data, bytes):
        return None
    if (row.get("extra") or {}).get(UNTRUSTED_RESULT):   # made by a worker that may not pickle for you
        try:
            return codec.decode_value(data, allow_pickle=False)
        except codec.UnsafeResult:
            return row.get("result_preview")   # its text, never its pickle
    return codec.decode_value(data)


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def result_text(row: dict[str, Any]) -> str:
    """What "Copy result" copies: the whole result of a completed job, else its whole error."""
    if row.get("status") == JobStatus.COMPLETED:
        try:
            return as_text(result_value(row))
        except Exception as e:  # e.g. a pickled class this process cannot import
            return f"<result not decodable here: {type(e).__name__}: {e}>"
    return row.get("error") or ""


def _json_value(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


def export_row(row: dict[str, Any], for_json: bool) -> dict[str, Any]:
    out = {f: row.get(f) for f in FIELDS if f not in ("result", "elapsed_s")}
    started, finished = row.get("started"), row.get("finished")
    out["elapsed_s"] = (finished - started) if started is not None and finished is not None else None
    for t in TIMES:
        out[t] = iso_time(row.get(t))
    try:
        value = result_value(row)
        out["result"] = _json_value(value) if for_json else (None if value is None else as_text(value))
    except Exception as e:
        out["result"] = f"<result not decodable here: {type(e).__name__}: {e}>"
    return {f: out[f] for f in FIELDS}


def write_rows(path: str, records: list[dict[str, Any]]) -> None:
    """Write job records (``get_record(..., with_result=True)``) to *path*: JSON if it ends in
    ``.json``, else CSV."""
    as_json = path.endswith(".json")
    rows = [export_row(r, as_json) for r in records]
    if as_json:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
    else:
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)
