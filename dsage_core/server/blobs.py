"""Function blobs (the pickled function of ``D.map`` / ``D.submit``) on the server: held per user,
counted against that user's quota, kept only while an unfinished job of theirs needs them.

A user *holds* a blob by uploading it; the hold is counted in bytes against ``blob_quota`` (the
bytes are kept once in memory and once in the database). Each unfinished job that names the blob
is a reference (a counter: O(1) per job on submit and on finish). A hold no job refers to is
*unreferenced*: a fresh upload no job used yet, or a blob whose last job finished. Unreferenced
holds go after ``blob_grace`` seconds; fresh uploads also go when the connection that uploaded
them ends, and together they may hold at most ``blob_unused`` bytes per user: a client with no
jobs cannot park data on the server. Holds of finished work are only a cache: a new upload evicts
them (oldest first) rather than fail on the quota. When nobody holds a blob any more its bytes
leave memory and the caller deletes its row.

Holds are per user: another user can neither see (``has``) nor use (``acquire``) my blob id, even
when the bytes are the same (they are stored once; each holder is charged for them).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from dsage_core.limits import MiB
from dsage_core.protocol.errors import QuotaExceeded

Key = tuple[str, str]   #: (owner, blob id)


@dataclass(slots=True)
class _Hold:
    size: int
    refs: int = 0
    used: bool = False   #: a job referred to it since it was uploaded (not a fresh upload)


class BlobTable:
    """The blobs in memory (``data``: id -> bytes, what dispatch reads) and who holds them."""

    def __init__(self, limits: Any) -> None:
        self.limits = limits   #: read at each upload: blob_quota, blob_unused, blob_grace
        self.data: dict[str, bytes] = {}
        self._holds: dict[Key, _Hold] = {}
        self._holders: dict[str, int] = {}          #: blob id -> number of holds
        self._bytes: dict[str, int] = {}            #: owner -> bytes of every hold
        self._fresh: dict[str, int] = {}            #: owner -> bytes of uploads no job used yet
        self._unreferenced: OrderedDict[Key, float] = OrderedDict()   #: since when, oldest first

    # ------------------------------------------------------------------ queries
    def has(self, owner: str, blob_id: str) -> bool:
        """Whether *owner* holds the blob (other users' blobs do not exist for them)."""
        return (owner, blob_id) in self._holds

    def held_bytes(self, owner: str) -> int:
        return self._bytes.get(owner, 0)

    def total_bytes(self) -> int:
        """Bytes of blob data in memory (each blob once)."""
        return sum(len(b) for b in self.data.values())

    # ------------------------------------------------------------------ uploads
    def put(self, owner: str, blob_id: str, data: bytes, now: float) -> tuple[bool, list[str]]:
        """*owner* uploads a blob: ``(the bytes are new here: store them, blob ids freed to make
        room: delete their rows)``. Raises :class:`QuotaExceeded` (nothing changed then)."""
        key = (owner, blob_id)
        hold = self._holds.get(key)
        if hold is not None:
            if hold.refs == 0:
                self._unreferenced[key] = now
                self._unreferenced.move_to_end(key)
            return False, []
        size = len(data)
        lim = self.limits
        fresh = self._fresh.get(owner, 0)
        unused_cap = max(lim.blob_unused, lim.max_blob)   # one upload of the largest size always fits
        if fresh + size > unused_cap:
            raise QuotaExceeded(
                f"function upload refused: uploads that no job uses yet would hold {_mib(fresh + size)} "
                f"for user {owner}, limit {_mib(unused_cap)}; submit the jobs that use a function "
                f"right after uploading it (unused uploads are dropped after {lim.blob_grace} s or when "
                f"their connection ends)")
        freed = self._make_room(owner, size)
        held = self._bytes.get(owner, 0)
        if held + size > lim.blob_quota:
            raise QuotaExceeded(
                f"function blobs quota reached: user {owner} holds {_mib(held)} of functions for "
                f"unfinished jobs and fresh uploads; {_mib(size)} more would pass the limit of "
                f"{_mib(lim.blob_quota)} per user (dsage server --blob-quota); wait for jobs to finish")
        self._holds[key] = _Hold(size)
        self._bytes[owner] = held + size
        self._fresh[owner] = fresh + size
        self._unreferenced[key] = now
        n = self._holders.get(blob_id, 0)
        self._holders[blob_id] = n + 1
        new = blob_id not in self.data
        if new:
            self.data[blob_id] = data
        return new, freed

    def _make_room(self, owner: str, size: int) -> list[str]:
        """Evict *owner*'s holds of finished work (oldest first) until *size* more bytes fit."""
        need = self._bytes.get(owner, 0) + size - self.limits.blob_quota
        if need <= 0:
            return []
        victims = []
        for key in self._unreferenced:
            if key[0] == owner and self._holds[key].used:
                victims.append(key)
                need -= self._holds[key].size
                if need <= 0:
                    break
        if need > 0:
            return []   # eviction would not make it fit: keep the cache, the caller refuses
        return [b for b in (self._drop(k) for k in victims) if b is not None]

    def adopt(self, owner: str, blob_id: str, data: bytes) -> None:
        """A blob an unfinished job needs after a restart (no quota check: it was admitted)."""
        key = (owner, blob_id)
        if key in self._holds:
            return
        self._holds[key] = _Hold(len(data), used=True)
        self._bytes[owner] = self._bytes.get(owner, 0) + len(data)
        self._holders[blob_id] = self._holders.get(blob_id, 0) + 1
        self.data.setdefault(blob_id, data)
        self._unreferenced[key] = 0.0   # until acquire(): a restored job refers to it at once

    # ------------------------------------------------------------------ references (per job)
    def acquire(self, owner: str, blob_id: str, n: int = 1) -> bool:
        """*n* unfinished jobs of *owner* now need the blob; False if *owner* holds no such blob."""
        key = (owner, blob_id)
        hold = self._holds.get(key)
        if hold is None:
            return False
        if hold.refs == 0:
            self._unreferenced.pop(key, None)
            if not hold.used:
                hold.used = True
                self._fresh[owner] -= hold.size
        hold.refs += n
        return True

    def release(self, owner: str, blob_id: str, now: float) -> None:
        """One job that needed the blob finished; the last one starts the hold's grace period."""
        key = (owner, blob_id)
        hold = self._holds.get(key)
        if hold is None or hold.refs <= 0:
            return
        hold.refs -= 1
        if hold.refs == 0:
            self._unreferenced[key] = now

    # ------------------------------------------------------------------ freeing
    def expire(self, now: float) -> list[str]:
        """Drop holds unreferenced for ``blob_grace`` seconds; returns the blob ids now freed."""
        freed = []
        limit = now - self.limits.blob_grace
        while self._unreferenced:
            key, since = next(iter(self._unreferenced.items()))
            if since > limit:
                break
            b = self._drop(key)
            if b is not None:
                freed.append(b)
        return freed

    def connection_ended(self, owner: str, blob_ids: set[str]) -> list[str]:
        """The connection that uploaded *blob_ids* ended: drop those no job used; returns the ids freed."""
        freed = []
        for blob_id in blob_ids:
            hold = self._holds.get((owner, blob_id))
            if hold is not None and not hold.used and hold.refs == 0:
                b = self._drop((owner, blob_id))
                if b is not None:
                    freed.append(b)
        return freed

    def _drop(self, key: Key) -> str | None:
        hold = self._holds.pop(key)
        self._unreferenced.pop(key, None)
        owner, blob_id = key
        self._bytes[owner] -= hold.size
        if not self._bytes[owner]:
            del self._bytes[owner]
        if not hold.used:
            self._fresh[owner] -= hold.size
        if not self._fresh.get(owner, 1):
            self._fresh.pop(owner, None)
        n = self._holders[blob_id] - 1
        if n:
            self._holders[blob_id] = n
            return None
        del self._holders[blob_id]
        self.data.pop(blob_id, None)
        return blob_id


def _mib(n: int) -> str:
    return f"{n / MiB:.1f} MiB"
