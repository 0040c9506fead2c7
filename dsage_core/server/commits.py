"""Group commit: what the server writes, gathered and written in one transaction per reactor turn.

Dispatches (``RunningJob``), ends (``FinishedJob``) and inserts (``NewJob``) wait in
:class:`GroupCommit`'s lists until :meth:`GroupCommit.flush`; one flush per reactor turn at most
(:meth:`schedule_flush`), or at once when a report came (results are on the latency path). A submit
whose jobs all went straight to workers may be *held* up to :data:`COMMIT_DELAY` so its INSERT
shares a transaction with the first result that follows (:meth:`flush_soon`); a store read must see
everything written before it, so readers :meth:`settle` a held commit first (the store runs calls
in order).

One commit is in flight at a time: a flush while one runs waits for it to land, and everything
gathered meanwhile goes in the next transaction (fewer, bigger commits; the store runs calls in
order, so waiting costs it nothing). :meth:`settle` and :meth:`pending_writes` issue a waiting
flush at once: a read issued next must still find those rows written.

The owner learns of a committed batch of ends through *on_committed(refused, jobs)* (the store's
answer, the jobs), and of a failed one through *on_failed(failure, jobs)*.
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure

from dsage_core import latency

log = Logger(namespace="dsage.server")

#: A submit whose jobs all went straight to workers is committed (and acknowledged) together with
#: the first report that follows, or after COMMIT_DELAY seconds: a short job's INSERT and result
#: then share one transaction, and its submitter gets its ids and its result in one reactor turn
#: (a group commit, as PostgreSQL's ``commit_delay``). Submits that leave jobs queued commit at once.
COMMIT_DELAY = latency.current().commit_delay


class GroupCommit:
    """Pending store writes and the one transaction that takes them; all on the reactor thread."""

    def __init__(self, store: Any, clock: Any,
                 on_committed: Callable[[Any, list[Any]], None],
                 on_failed: Callable[[Failure, list[Any]], Any]) -> None:
        self.store = store
        self.clock = clock
        self._on_committed = on_committed
        self._on_failed = on_failed
        self.running_rows: list[Any] = []     #: RunningJob rows of dispatches
        self.new_rows: list[Any] = []         #: NewJob rows of submits
        self.finished_rows: list[tuple[Any, Any]] = []   #: (FinishedJob, ActiveJob) of ends
        self._flush_scheduled = False
        self._flush_waiters: list[Deferred] = []   #: submits acknowledged at the next commit
        self._commit_timer: Any = None              #: the held commit's deadline
        self._store_writes: set[Deferred] = set()
        self._in_flight: Deferred | None = None   #: the last commit issued, until it landed
        self._flush_after = False   #: a flush waits for _in_flight to land

    def flush_soon(self, delay: float) -> Deferred:
        """A Deferred for the commit that takes what is pending now, made within *delay* seconds
        (sooner if a report or another flush comes first)."""
        d: Deferred = Deferred()
        self._flush_waiters.append(d)
        if self._commit_timer is None:
            self._commit_timer = self.clock.callLater(delay, self.flush)
        return d

    def settle(self) -> None:
        """Commit a held commit now: a store read issued next must see what it writes."""
        if self._commit_timer is not None or self._flush_after:
            self.flush(force=True)

    def schedule_flush(self) -> None:
        """Flush at the end of this reactor turn: everything a batch of events produced goes in
        one transaction."""
        if self._commit_timer is not None:
            return  # a held commit is due soon and takes this along
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.clock.callLater(0, self._turn_flush)

    def _turn_flush(self) -> None:
        if self._commit_timer is None:
            self.flush()
        else:
            self._flush_scheduled = False  # the held commit takes this turn's rows along

    def flush(self, want_result: bool = False, force: bool = False) -> Deferred | None:
        """Write what is pending in one transaction. With *want_result*, returns a Deferred that
        fires when it committed (errors go to that caller); otherwise errors are logged. Submits
        waiting on a held commit (:meth:`flush_soon`) are answered by this one. While a commit is
        in flight, the flush waits for it to land (unless *force*) and then takes what came
        meanwhile too."""
        self._flush_scheduled = False
        timer, self._commit_timer = self._commit_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if self._in_flight is not None and not force:
            self._flush_after = True
            if not want_result:
                return None
            mine_later: Deferred = Deferred()
            self._flush_waiters.append(mine_later)
            return mine_later
        self._flush_after = False
        waiters, self._flush_waiters = self._flush_waiters, []
        mine: Deferred | None = Deferred() if want_result else None
        if mine is not None:
            waiters.append(mine)
        if not (self.running_rows or self.finished_rows or self.new_rows):
            for w in waiters:
                w.callback(None)
            return mine
        running, self.running_rows = self.running_rows, []
        batch, self.finished_rows = self.finished_rows, []
        new, self.new_rows = self.new_rows, []
        d = self.store.record(running, [r for r, _ in batch], new)
        if waiters:
            d.addBoth(_answer, waiters)  # submitters hear of their ids before any result is pushed
        if batch:
            jobs = [j for _, j in batch]
            d.addCallback(self._committed, jobs)
            d.addErrback(self._on_failed, jobs)
        d.addBoth(self._landed, d)
        self.store_call(d, log_errors=not waiters)  # a submitter's error is theirs to report
        if not d.called:
            self._in_flight = d
        return mine

    def _landed(self, r: Any, d: Deferred) -> Any:
        """A commit answered: the flush that waited for it goes now."""
        if self._in_flight is d:
            self._in_flight = None
        if self._flush_after and self._in_flight is None:
            self.flush()
        return r

    def _committed(self, refused: Any, jobs: list[Any]) -> None:
        self._on_committed(refused, jobs)

    def store_call(self, d: Deferred, log_errors: bool = True) -> None:
        """Track a store write (see :meth:`pending_writes`); log its failure unless told not to."""
        self._store_writes.add(d)

        def done(r: Any) -> Any:
            self._store_writes.discard(d)
            return r
        d.addBoth(done)
        d.addErrback(log_failure if log_errors else _ignore)

    def pending_writes(self) -> Deferred:
        """Fires when every store write issued so far has finished (for shutdown and tests)."""
        self.flush(force=True)
        return DeferredList(list(self._store_writes), consumeErrors=True)


def _answer(r: Any, waiters: list[Deferred]) -> Any:
    for w in waiters:
        w.errback(r) if isinstance(r, Failure) else w.callback(None)
    return r


def _ignore(f: Failure) -> None:
    return None


def log_failure(f: Any) -> None:
    """The errback of a call nobody waits for."""
    log.failure("dsage.server.background_call_failed", f)
