"""The server's intake alone: a submitted batch checked field by field, given ids, made into jobs
and store rows (no store, no scheduler)."""
import msgpack
import pytest

from dsage_core.limits import Limits
from dsage_core.protocol.errors import BadRequest, QuotaExceeded, UnknownBlob
from dsage_core.server.blobs import BlobTable
from dsage_core.server.intake import Intake, new_rows, parse_submission

PAYLOAD = msgpack.packb({"k": "expr"})


def raw(**over):
    """One packed job, as a client sends it, with some fields changed."""
    fields = dict(name="x", kind="expr", priority=0, trusted_only=False, needs=[], payload=PAYLOAD,
                  blob_id=None, timeout=None, limits=None, code="1+1")
    fields.update(over)
    ext = fields.pop("ext", None)
    return list(fields.values()) + ([ext] if ext is not None else [])


@pytest.fixture
def intake():
    limits = Limits()
    return Intake(limits, BlobTable(limits))


def test_check_accepts_a_batch_and_counts_blob_uses(intake):
    """A good batch comes back as jobs (no ids yet), with how many jobs use each blob."""
    intake.blob_table.put("alice", "b1", b"fn", 0.0)
    specs, uses = intake.check("alice", [raw(), raw(kind="func", blob_id="b1"), raw(kind="func", blob_id="b1")])
    assert [s.kind for s in specs] == ["expr", "func", "func"] and uses == {"b1": 2}
    assert specs[0].needs == frozenset() and specs[0].code == "1+1" and specs[0].owner == "alice"


@pytest.mark.parametrize("bad, message", [
    ("not a list", "10 or 11 fields"), ([1, 2, 3], "10 or 11 fields"),
    (raw(kind="shell"), "unknown job kind"), (raw(priority=True), "priority must be an int"),
    (raw(trusted_only=1), "trusted_only must be a bool"), (raw(needs=["x" * 40]), "needs must be"),
    (raw(payload="text"), "payload must be bytes"), (raw(kind="func"), "needs a blob id"),
    (raw(timeout=-1), "timeout must be >= 0"), (raw(limits={"disk": 1}), "unknown job limit"),
    (raw(limits={"mem": 0}), "bad job limit"), (raw(name=5), "job name must be a string"),
])
def test_check_refuses_a_malformed_job_with_a_clear_message(intake, bad, message):
    """Each kind of malformed job is refused with a message naming what is wrong."""
    with pytest.raises(BadRequest, match=message):
        intake.check("alice", [raw(), bad])


def test_check_refuses_oversize_batches_and_payloads(intake):
    """A batch over max_batch_jobs, or a payload over max_payload, is refused."""
    intake.limits.max_batch_jobs = 2
    with pytest.raises(BadRequest, match="too many jobs"):
        intake.check("alice", [raw()] * 3)
    intake.limits.max_payload = 4
    with pytest.raises(BadRequest, match="payload too large"):
        intake.check("alice", [raw()])


def test_a_blob_of_another_user_is_unknown(intake):
    """A function job naming a blob only another user uploaded is refused as unknown."""
    intake.blob_table.put("bob", "b1", b"fn", 0.0)
    with pytest.raises(UnknownBlob, match="unknown function blob b1"):
        intake.check("alice", [raw(kind="func", blob_id="b1")])


def test_packages_make_a_job_trusted_only_unless_the_server_allows_them(intake):
    """A job that installs packages never goes to anonymous workers, unless the server says so."""
    job = raw(ext={"packages": ["numpy"]})
    assert intake.check("alice", [job])[0][0].trusted_only is True
    intake.anonymous_packages = True
    assert intake.check("alice", [job])[0][0].trusted_only is False


def test_quota_counts_what_is_already_queued(intake):
    """The queued-jobs quota refuses a batch that would go over it, and accepts one that fits."""
    intake.limits.max_queued_per_user = 10
    intake.check_quota(8, 2)
    with pytest.raises(QuotaExceeded, match="8 queued, limit 10"):
        intake.check_quota(8, 3)


def test_make_jobs_gives_consecutive_ids_and_holds_the_blob(intake):
    """Jobs get the next ids in order, each holds one reference to its blob, and their rows
    carry what the store inserts."""
    intake.blob_table.put("alice", "b1", b"fn", 0.0)
    intake.next_id = 7
    specs, uses = intake.check("alice", [raw(kind="func", blob_id="b1", limits={"mem": 1 << 20})] * 2)
    jobs = intake.make_jobs("alice", specs, uses, 5.0)
    assert [j.id for j in jobs] == [7, 8] and intake.next_id == 9
    assert all(j.blob_held and j.owner == "alice" and j.created == 5.0 for j in jobs)
    rows = new_rows(jobs, 5.0)
    assert [r.id for r in rows] == [7, 8] and msgpack.unpackb(rows[0].limits) == {"mem": 1 << 20}
    from dsage_core.store import NewJob
    assert len(rows[0]) == len(NewJob._fields) and rows[0].ext is None and rows[0].created == 5.0


def test_anonymous_replicas_add_copies_to_untrusted_jobs(intake):
    """With --anonymous-replicas 3, a job that may run on anonymous workers asks for 3 copies."""
    intake.anonymous_replicas = 3
    specs, uses = intake.check("alice", [raw(), raw(trusted_only=True)])
    jobs = intake.make_jobs("alice", specs, uses, 0.0)
    assert (jobs[0].ext or {}).get("replicas") == 3 and not (jobs[1].ext or {}).get("replicas")


def test_parse_submission_reads_the_optional_ext_field():
    """The 11th field is the job's ext options, checked (an unknown option is refused)."""
    assert parse_submission(raw(ext={"retries": 2}), Limits()).ext == {"retries": 2}
    with pytest.raises(BadRequest):
        parse_submission(raw(ext={"no such option": 1}), Limits())


def test_parse_submission_unpacks_in_the_records_field_order():
    """parse_submission unpacks a job in Submission's field order: the record and the unpacking
    must name the same fields in the same order (a reordered record fails here)."""
    from dsage_core.server.intake import FIELDS
    assert FIELDS == ("name", "kind", "priority", "trusted_only", "needs", "payload", "blob_id",
                      "timeout", "limits", "code", "ext")
    spec = parse_submission(raw(name="n", priority=3, timeout=2, code="c"), Limits())
    assert (spec.name, spec.priority, spec.timeout, spec.code) == ("n", 3, 2.0, "c")


def test_parse_submission_fills_every_field_of_the_job_by_name():
    """The job comes straight from the packed fields (positionally, in ActiveJob's order): each
    field lands where its name says, and the job has no id or creation time until make_jobs."""
    spec = parse_submission(raw(kind="func", trusted_only=True, needs=["gpu"], blob_id="b9",
                                limits={"cpu": 5}, code="c", ext={"retries": 1}), Limits(), "bob")
    assert (spec.id, spec.owner, spec.kind, spec.trusted_only, spec.needs, spec.payload) == (
        0, "bob", "func", True, frozenset({"gpu"}), PAYLOAD)
    assert (spec.blob_id, spec.limits, spec.code, spec.ext, spec.created) == ("b9", {"cpu": 5}, "c", {"retries": 1}, 0.0)
    assert spec.status == "queued" and not spec.blob_held and spec.output == []
