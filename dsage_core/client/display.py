"""How jobs look: the one-line repr, the HTML a notebook shows, and the progress bars of a wait.

The rule (README, "Quick start"): a job's repr is always ``<Job ID STATUS...>``, with a bounded
preview of the result or the last line of the error, so a job is never mistaken for its value in a
list or at the prompt; the value is ``job.result``. Nothing here blocks or calls the server.
"""
from __future__ import annotations

import html
import sys
import time
from typing import Any, Iterable

from dsage_core import codec
from dsage_core.model.job import TERMINAL
from dsage_core.model.status import JobStatus

#: characters of a result preview in a repr
REPR_PREVIEW = 80
#: jobs listed in a batch's HTML table (the rest are counted)
HTML_ROWS = 10
#: seconds between two redraws of a progress bar
BAR_INTERVAL = 0.2


def last_error_line(error: str | None) -> str:
    lines = (error or "").strip().splitlines()
    return lines[-1][:REPR_PREVIEW] if lines else ""


def result_preview(job: Any, limit: int = REPR_PREVIEW) -> str:
    """A bounded preview of a completed job's result (never raises)."""
    try:
        return codec.preview(job.result, limit)
    except Exception as e:  # an undecodable result (e.g. pickled by an anonymous worker)
        return f"<result not decodable here: {str(e)[:limit]}>"


def job_repr(job: Any) -> str:
    """``<Job 7 completed: 4>``, ``<Job 8 failed: ZeroDivisionError: ...>``, ``<Job 9 running 40%>``."""
    st = job.status
    if st == JobStatus.COMPLETED:
        return f"<Job {job.id} completed: {result_preview(job)}>"
    if st in TERMINAL:
        err = last_error_line(job.error)
        return f"<Job {job.id} {st}{': ' + err if err else ''}>"
    p = job.progress
    return f"<Job {job.id} {st}{f' {p * 100:.0f}%' if st == JobStatus.RUNNING and p is not None else ''}>"


def counts(jobs: Iterable[Any]) -> dict[str, int]:
    """Jobs by status, in the order of the job life cycle."""
    order = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.KILLED, JobStatus.TIMED_OUT, JobStatus.LOST)
    c: dict[str, int] = {}
    for j in jobs:
        c[j.status] = c.get(j.status, 0) + 1
    return {k: c[k] for k in sorted(c, key=lambda s: order.index(s) if s in order else len(order))}


def summary(jobs: list[Any]) -> str:
    """``100 jobs: 98 completed, 2 running``."""
    c = counts(jobs)
    return f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}" + (
        ": " + ", ".join(f"{n} {s}" for s, n in c.items()) if c else "")


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    if s < 3600:
        return f"{s // 60:.0f} min {s % 60:02.0f} s"
    return f"{s // 3600:.0f} h {s % 3600 // 60:02.0f} min"


def progress_line(p: dict[str, Any]) -> str:
    """``37/100 done · ETA 4.2 s`` from :func:`dsage_core.waiting.batch_progress`."""
    line = f"{p['done']}/{p['total']} done"
    if p["done"] < p["total"] and p["eta"] is not None:
        line += f" · ETA {fmt_seconds(p['eta'])}"
    return line


def _bar_html(fraction: float, text: str) -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    return (f'<progress value="{pct:.1f}" max="100" style="width:20em;vertical-align:middle"></progress>'
            f' <span>{html.escape(text)}</span>')


def job_html(job: Any) -> str:
    """A job as a notebook shows it: id, name, status, worker, elapsed time, result or error."""
    e = html.escape
    st = job.status
    head = f"<b>Job {job.id}</b> <code>{e(job.name or '')}</code> {e(st)}"
    if job.worker:
        head += f" on {e(str(job.worker))}"
    if job.started:
        head += f" · {fmt_seconds((job.finished or time.time()) - job.started)}"
    body = ""
    if st == JobStatus.COMPLETED:
        body = f"<pre style='margin:0'>{e(result_preview(job, 500))}</pre>"
    elif st in TERMINAL:
        body = f"<pre style='margin:0;color:#b00'>{e(last_error_line(job.error) or st)}</pre>"
    elif st == JobStatus.RUNNING and job.progress is not None:
        body = _bar_html(job.progress, f"{job.progress * 100:.0f}% {job.progress_message or ''}".strip())
    return f"<div class='dsage-job'>{head}{body}</div>"


def batch_html(jobs: list[Any]) -> str:
    """A batch as a notebook shows it: a progress bar, counts by status, the first jobs."""
    from dsage_core.waiting import batch_progress
    e = html.escape
    p = batch_progress(jobs)
    rows = []
    for j in jobs[:HTML_ROWS]:
        if j.status == JobStatus.COMPLETED:
            what = result_preview(j)
        elif j.status in TERMINAL:
            what = last_error_line(j.error)
        else:
            what = f"{j.progress * 100:.0f}%" if j.progress is not None else ""
        rows.append(f"<tr><td>{j.id}</td><td>{e(j.status)}</td><td><code>{e(what)}</code></td></tr>")
    more = f"<tr><td colspan='3'>… {len(jobs) - HTML_ROWS} more</td></tr>" if len(jobs) > HTML_ROWS else ""
    return (f"<div class='dsage-batch'><b>{e(summary(jobs))}</b><br>{_bar_html(p['fraction'], progress_line(p))}"
            f"<table><tr><th>job</th><th>status</th><th>result</th></tr>{''.join(rows)}{more}</table></div>")


# ---------------------------------------------------------------------- progress bars of a wait
def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell); never imports IPython itself."""
    ipy = sys.modules.get("IPython")
    if ipy is None:
        return False
    try:
        shell = ipy.get_ipython()
    except Exception:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class TextBar:
    """``[######                        ] 12/60 · ETA 3.1 s`` redrawn in place on a terminal."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.drawn = False

    def update(self, p: dict[str, Any]) -> None:
        bar = "#" * int(30 * (p["done"] / p["total"] if p["total"] else 1))
        line = f"\r[{bar:<30}] {p['done']}/{p['total']}"
        if p["done"] < p["total"] and p["eta"] is not None:
            line += f" · ETA {fmt_seconds(p['eta'])}"
        print(f"{line:<60}", end="", file=self.stream, flush=True)
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            print(file=self.stream, flush=True)


class NotebookBar:
    """An HTML progress bar in the cell's output, updated in place (IPython display handles): no
    widget library needed, and the saved notebook keeps the last state."""

    def __init__(self) -> None:
        from IPython.display import HTML, display
        self._HTML = HTML
        self.handle = display(HTML(_bar_html(0.0, "waiting…")), display_id=True)

    def update(self, p: dict[str, Any]) -> None:
        self.handle.update(self._HTML(_bar_html(p["fraction"], progress_line(p))))

    def close(self) -> None:
        pass


def make_bar(progress: Any, n: int) -> Any:
    """The bar for a wait on *n* jobs: *progress* True/False, or None for "when someone watches"
    (a notebook, or a terminal on stderr) and more than one job."""
    if progress is False or (progress is None and n < 2):
        return None
    if in_notebook():
        return NotebookBar()
    if progress or sys.stderr.isatty():
        return TextBar()
    return None
