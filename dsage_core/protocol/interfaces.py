"""Every remote method, with explicit bounds (Tahoe style).

Bulk arguments are single ``bytes`` values packed by :mod:`dsage_core.protocol.envelope`; their
wire ceiling is set here, the configurable (smaller) limits are checked by the server
(:class:`dsage_core.limits.Limits`). Wire names carry a version suffix.
"""
from __future__ import annotations

from foolscap.api import Any, IntegerConstraint, RemoteInterface
from foolscap.schema import Optional
from foolscap.schema import ByteStringConstraint, BooleanConstraint
from foolscap.slicers.unicode import UnicodeConstraint as StringConstraint

MiB = 1024 * 1024
#: absolute ceiling of one batch on the wire; servers enforce smaller configurable limits
WIRE_BATCH = ByteStringConstraint(maxLength=256 * MiB)
SMALL_BYTES = ByteStringConstraint(maxLength=64 * 1024)
BLOB = ByteStringConstraint(maxLength=128 * MiB)
NAME = StringConstraint(maxLength=200)
ROLE = StringConstraint(maxLength=20)
PUBKEY = StringConstraint(maxLength=400)
NONCE = ByteStringConstraint(maxLength=64)
SIGNATURE = ByteStringConstraint(maxLength=128)
JOB_ID = IntegerConstraint(maxBytes=8)
BLOB_ID = StringConstraint(maxLength=80)
TEXT = StringConstraint(maxLength=16 * MiB)
VERSION = Any()


class RIClientListener(RemoteInterface):
    """Implemented by clients: the server pushes job changes and counters here."""

    __remote_name__ = "RIClientListener_v1.dsage"

    def jobs_changed(updates=WIRE_BATCH):
        """A batch of job updates (``dsage_core.model.records.JobUpdate``) for jobs this client watches."""
        return None

    def stats(counters=SMALL_BYTES):
        """Server counters, pushed at a fixed rate; their cost does not grow with the job count."""
        return None

    def workers_changed(workers=WIRE_BATCH):
        """The list of connected workers, pushed when it changes (rate-limited)."""
        return None


class RIClientSession(RemoteInterface):
    """A logged-in client's capability: every call acts as that user, on that user's jobs only."""

    __remote_name__ = "RIClientSession_v1.dsage"

    def get_version():
        """Server version and limits."""
        return VERSION

    def subscribe(listener=RIClientListener):
        """Register the object that receives pushed updates for this session."""
        return None

    def watch_all(enable=BooleanConstraint()):
        """Push updates for every job of this user, wherever it was submitted (the desktop app)."""
        return None

    def prove_local(token=StringConstraint(64)):
        """Send back the token of the server's results dir: large results then come as file names."""
        return BooleanConstraint()

    def submit(batch=WIRE_BATCH):
        """Store a batch of new jobs durably, then queue them; returns the packed list of new job ids."""
        return WIRE_BATCH

    def put_blob(blob_id=BLOB_ID, data=BLOB):
        """Upload a function blob (cloudpickle bytes, opaque to the server) under its sha256 id."""
        return None

    def has_blobs(blob_ids=WIRE_BATCH):
        """Which of the packed list of blob ids the server already has; packed list of bools."""
        return WIRE_BATCH

    def watch(job_ids=WIRE_BATCH):
        """Start pushing updates for these jobs; returns their current state as a packed update batch."""
        return WIRE_BATCH

    def list_jobs(query=SMALL_BYTES):
        """Job summaries matching a packed query (status, text, after_id, limit, newest_first)."""
        return WIRE_BATCH

    def get_job(job_id=JOB_ID, with_result=BooleanConstraint()):
        """The full packed record of one job (code, output, error, and the result bytes if asked)."""
        return WIRE_BATCH

    def get_output(job_id=JOB_ID):
        """Output captured so far (live while the job runs)."""
        return TEXT

    def kill(job_ids=WIRE_BATCH):
        """Kill jobs; returns a packed list of bools (False: unknown or already finished)."""
        return WIRE_BATCH

    def workers():
        """Packed list of connected workers."""
        return WIRE_BATCH

    def stats():
        """Packed counters: counts by status, jobs/s over the last minute, slots."""
        return SMALL_BYTES

    def admin(command=SMALL_BYTES):
        """Admin-only user, invite and audit commands (packed ``[name, args...]``); packed answer."""
        return WIRE_BATCH


class RIWorkerRunner(RemoteInterface):
    """Implemented by workers: the server pushes work here."""

    __remote_name__ = "RIWorkerRunner_v1.dsage"

    def run(batch=WIRE_BATCH):
        """Run a packed batch of jobs (``{"jobs": [...], "blobs": {...}}``)."""
        return None

    def kill(job_ids=WIRE_BATCH):
        """Kill these running jobs (packed list of ``[job_id, attempt]``)."""
        return None


class RIWorkerSession(RemoteInterface):
    """A logged-in worker's capability: fetch work, report on the jobs it holds, heartbeat."""

    __remote_name__ = "RIWorkerSession_v1.dsage"

    def get_version():
        """Server version and limits."""
        return VERSION

    def register(runner=RIWorkerRunner, info=SMALL_BYTES):
        """Join the pool with a host inventory; returns packed worker settings (id, heartbeat, lease)."""
        return SMALL_BYTES

    def report(batch=WIRE_BATCH):
        """A packed batch of events for jobs this worker holds: done, out, progress, back."""
        return None

    def heartbeat(state=SMALL_BYTES):
        """Renew this worker's leases; state holds slots, busy and paused."""
        return None


class RILogin(RemoteInterface):
    """The one public object: challenge-response login, or anonymous worker login if allowed."""

    __remote_name__ = "RILogin_v1.dsage"

    def get_version():
        """Server version, its identity and whether anonymous workers are accepted."""
        return VERSION

    def challenge():
        """A fresh single-use nonce that expires quickly."""
        return NONCE

    def login(role=ROLE, pubkey=PUBKEY, nonce=NONCE, signature=SIGNATURE):
        """Trade a signature over (server id, role, nonce) for a session capability."""
        return Any()

    def login_anonymous(role=ROLE):
        """An anonymous worker session; refused unless the server allows anonymous workers."""
        return Any()

    def redeem_invite(invite=StringConstraint(200), pubkey=PUBKEY, session=Optional(ROLE, None)):
        """Register *pubkey* under the role an invite grants (single use unless the invite says so).

        The invite is spent in the transaction that registers the key, so a refused or failed
        registration leaves it usable; a key already registered spends nothing. *session*
        ("worker" or "client", optional): what the caller will log in as; an invite whose role
        cannot log in that way is refused unspent. Returns the user name."""
        return StringConstraint(200)
