"""The desktop app shows jobs waiting for their input jobs (jobs as arguments) as their own state."""
from PySide6.QtCore import Qt

from dsage_core.model.job import ALL_STATES, JobInfo
from dsage_gui.models.jobs_model import STATUS_COLORS, JobsTableModel
from dsage_gui.models.proxies import JobsFilter


def test_waiting_jobs_have_a_color_and_a_filter(qtbot):
    """A waiting job reads "waiting" in its own color, and the status filter picks it out."""
    assert set(STATUS_COLORS) == set(ALL_STATES)
    m = JobsTableModel()
    m.update_jobs([JobInfo(id=1, status="waiting"), JobInfo(id=2, status="queued")])
    m.apply_pending()
    row = m.index_of[1]
    assert m.data(m.index(row, 2)) == "waiting"
    assert m.data(m.index(row, 2), Qt.ItemDataRole.ForegroundRole).color().name() == STATUS_COLORS["waiting"]
    proxy = JobsFilter()
    proxy.setSourceModel(m)
    proxy.set_status("waiting")
    assert proxy.rowCount() == 1
    m.update_jobs([JobInfo(id=1, status="queued")])   # its inputs completed
    m.apply_pending()
    assert proxy.rowCount() == 0
