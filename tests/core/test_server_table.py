"""The server's job table alone: jobs by id, counts, visibility, and the update record a job gives."""
from dsage_core.model.records import JobUpdate
from dsage_core.model.status import JobStatus
from dsage_core.server.jobs import ActiveJob
from dsage_core.server.table import JobTable, held_status


def job(jid, owner="alice", **kw):
    """A minimal unfinished job."""
    return ActiveJob(id=jid, owner=owner, name="x", kind="expr", priority=0, trusted_only=False,
                     needs=frozenset(), payload=b"", blob_id=None, timeout=None, limits=None,
                     created=1.0, **kw)


def test_add_get_remove():
    """Jobs are found by id until removed; unknown ids give None."""
    t = JobTable()
    a, b = job(1), job(2)
    t.add([a, b])
    assert t.get(1) is a and t.get(3) is None
    t.remove([a])
    assert t.get(1) is None and t.get(2) is b


def test_queued_counts_never_go_negative():
    """Per-owner unfinished counts go up and down, and stop at zero."""
    t = JobTable()
    t.count_queued("alice", 3)
    t.count_queued("alice", -1)
    assert t.queued("alice") == 2 and t.queued("bob") == 0
    t.count_queued("alice", -5)
    assert t.queued("alice") == 0


def test_visible_job_hides_other_users_jobs_but_not_from_admins():
    """Another user's job looks unknown; an admin sees everyone's."""
    t = JobTable()
    t.add([job(1, owner="bob")])
    assert t.visible_job("alice", False, 1) is None
    assert t.visible_job("bob", False, 1) is not None and t.visible_job("root", True, 1) is not None
    assert not t.visible("alice", False, "bob") and t.visible("alice", False, "alice")


def test_finished_counts_and_recount():
    """Finished counts start from the store's and move when a counted status changes."""
    t = JobTable()
    t.restore_counts({"completed": 5, "failed": 1})
    t.count_finished(JobStatus.COMPLETED)
    t.recount("completed", "failed")
    t.recount("failed", "failed")
    assert t.counts["completed"] == 5 and t.counts["failed"] == 2 and t.counts["lost"] == 0


def test_held_counts_by_state():
    """Jobs workers hold are counted as assigned, running or paused; others are skipped."""
    t = JobTable()
    t.add([job(1, status="assigned"), job(2, status="running"), job(3, status="paused"), job(4)])
    assert t.held_counts([{1, 2}, {3, 4, 99}]) == {"assigned": 1, "running": 1, "paused": 1}


def test_held_status_follows_start_and_pause():
    """A held job is assigned until it starts, running after, paused on a paused worker."""
    j = job(1)
    assert held_status(j, False) == "assigned" and held_status(j, True) == "paused"
    j.started = 2.0
    assert held_status(j, False) == JobStatus.RUNNING


def test_live_row_takes_memory_state_of_running_jobs():
    """A stored row of a running job shows its in-memory status and progress."""
    t = JobTable()
    t.add([job(1, status="running", progress=0.5, attempt=2, worker="w")])
    row = {"id": 1, "status": "running", "progress": None}
    t.live_row(row)
    assert row["progress"] == 0.5 and row["attempts"] == 2 and row["worker"] == "w"


def test_an_update_is_a_job_update_record_on_the_wire():
    """ActiveJob.update() is a JobUpdate's wire form: fields in the record's order, the optional
    extra and exc only when present."""
    j = job(4, status="completed", result=b"r", result_preview="4", attempt=1, worker="w",
            started=2.0, finished=3.0, progress=1.0)
    u = JobUpdate.from_wire(j.update())
    assert u == JobUpdate(4, "completed", "w", 2.0, 3.0, b"r", "4", None, 1.0, "", 1, "x", 1.0, 0, "expr")
    assert len(j.update()) == 15
    j.exc = {"type": "ValueError"}
    u = JobUpdate.from_wire(j.update())
    assert u.exc == {"type": "ValueError"} and u.extra is None and len(j.update()) == 17
    j.result, j.result_file, j.result_size = None, "results/4-1", 10
    assert JobUpdate.from_wire(j.update()).result == {"file": "results/4-1", "size": 10}
