"""The desktop app's jobs table shows how a replicated job's copies agreed, in its status text."""
import pytest

from dsage_core.model.job import JobInfo
from dsage_gui.models.jobs_model import JobsTableModel

pytestmark = pytest.mark.timeout(60)


def test_jobs_table_shows_replica_agreement_in_the_status(qtmodeltester):
    """"completed (2/2 agree)" for a replicated job; a job run once shows its plain status; a
    hostile agreement text (it never is, but it is peer-reachable data) is shown without controls."""
    m = JobsTableModel()
    m.update_jobs([JobInfo(id=1, status="completed", created=1.0, extra={"replicas": "2/2 agree"}),
                   JobInfo(id=2, status="completed", created=2.0),
                   JobInfo(id=3, status="failed", created=3.0, extra={"replicas": "1/2 agree\x1b[2J"})])
    m.apply_pending()
    qtmodeltester.check(m)
    status = {m.data(m.index(r, 0)): m.data(m.index(r, 2)) for r in range(3)}
    assert status == {"1": "completed (2/2 agree)", "2": "completed", "3": "failed (1/2 agree?[2J)"}
