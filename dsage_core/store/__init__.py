"""The durable job store (SQLite, one dedicated thread; PostgreSQL in :mod:`.postgres`)."""
from dsage_core.store.errors import InviteError, StoreError, StoreUnavailable
from dsage_core.store.runner import InlineRunner, ThreadRunner
from dsage_core.store.sqlite import FinishedJob, NewJob, RunningJob, Snapshot, SqliteStore

__all__ = ["SqliteStore", "NewJob", "RunningJob", "FinishedJob", "Snapshot", "StoreError",
           "StoreUnavailable", "InviteError", "ThreadRunner", "InlineRunner"]
