"""Store exceptions."""
from dsage_core.protocol.errors import DsageError


class StoreError(DsageError):
    """A store operation failed."""


class StoreUnavailable(StoreError):
    """The database cannot be written (read-only, disk full...); reads still work."""


class InviteError(StoreError):
    """An invite code is unknown, revoked, expired or used up."""
