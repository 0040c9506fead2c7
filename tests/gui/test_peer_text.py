"""Text other peers chose (worker host names and ids, job names, previews) reaches the desktop
app's tables without control or bidi characters, and odd worker fields do not break them."""
import pytest

from dsage_core.model.job import JobInfo
from dsage_gui.models.jobs_model import JobsTableModel
from dsage_gui.models.workers_model import WorkersTableModel

pytestmark = pytest.mark.timeout(60)

EVIL = "evil\x1b]0;pwned\x07\x1b[2J\u202egnp.exe\r\n"


def test_workers_table_shows_hostile_worker_text_safely(qtmodeltester):
    """A worker's id, host and user with escape sequences are shown with '?' in their place;
    a memory field that is not a number shows '?' instead of raising."""
    m = WorkersTableModel()
    m.set_workers([{"id": EVIL, "host": EVIL, "slots": 1, "busy": 0, "anonymous": False, "user": EVIL,
                    "memory": "lots", "cpus": "\x1b[5m"}])
    qtmodeltester.check(m)
    cells = [m.data(m.index(0, c)) for c in range(m.columnCount())]
    assert all(c.isprintable() for c in cells if isinstance(c, str)), cells
    assert cells[1].startswith("evil?]0;pwned?") and cells[4] == "?"


def test_jobs_table_shows_hostile_names_and_previews_safely(qtmodeltester):
    """Job names, worker ids, previews and error lines are shown without control characters."""
    m = JobsTableModel()
    m.update_jobs([JobInfo(id=1, name=EVIL, status="completed", created=1.0, worker=EVIL,
                           result_preview=EVIL, progress=1.0),
                   JobInfo(id=2, name="ok", status="failed", created=2.0, error="Traceback\n" + EVIL + "x")])
    m.apply_pending()
    qtmodeltester.check(m)
    for row in range(2):
        cells = [m.data(m.index(row, c)) for c in range(m.columnCount())]
        assert all(c.isprintable() for c in cells if isinstance(c, str)), cells
