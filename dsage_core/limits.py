"""Every size and count limit the server enforces, with sane defaults (configurable per server)."""
from __future__ import annotations

from dataclasses import dataclass, asdict, fields
from typing import Any

MiB = 1024 * 1024


@dataclass
class Limits:
    """Server-side maxima; the Foolscap constraints in ``protocol.interfaces`` are hard ceilings above these."""

    max_code: int = 1 * MiB            #: source text of one job (code string or file)
    max_payload: int = 32 * MiB        #: one job's packed payload (code, files, user_vars, args)
    max_blob: int = 64 * MiB           #: one function blob
    max_result: int = 64 * MiB         #: one job's encoded result
    max_output: int = 1 * MiB          #: captured output kept per job (the rest is truncated)
    max_output_chunk: int = 256 * 1024  #: one streamed output chunk
    max_batch_jobs: int = 1000         #: jobs per submit call
    max_batch_bytes: int = 128 * MiB   #: bytes per submit or report call
    max_name: int = 200                #: job and user names
    max_queued_per_user: int = 1_000_000  #: queued jobs one user may have
    max_list: int = 100_000            #: rows one list call returns
    max_error: int = 64 * 1024         #: traceback text kept per job
    blob_quota: int = 256 * MiB        #: function blobs one user holds (see server/blobs.py)
    blob_unused: int = 64 * MiB        #: of which uploads no job uses yet (no parking on the server)
    blob_grace: int = 60               #: seconds a blob no unfinished job uses is kept

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Limits":
        names = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in d.items() if k in names})
