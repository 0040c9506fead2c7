"""A failed job's exception and its retries, server side: what the server keeps of a worker's
exception map (never a foreign pickle), where it goes, and when a job that raised runs again.

A transport-free JobServer on a real SQLite file (inline runner) and Twisted's Clock."""
import threading

import cloudpickle
import msgpack
import pytest
from twisted.internet.task import Clock

from tests.core.fakes import Link
from dsage_core.client.remote_error import (JobFailed, RemoteError, RemoteTraceback, rebuild,
                                            remote_error_class)
from dsage_core.model import exc_info
from dsage_core.protocol.errors import BadRequest
from dsage_core.server.core import COMMIT_DELAY, JobServer
from dsage_core.store import InlineRunner, SqliteStore


class Custom(KeyError):
    """A user's exception class deriving from a builtin."""


def _server(path):
    core = JobServer(SqliteStore(path, InlineRunner()), Clock(), server_id="srv")
    core.restore()
    return core


@pytest.fixture
def core(tmp_path):
    return _server(tmp_path / "d.sqlite")


def _submit(core, ext=None, owner="alice"):
    rec = ["x", "expr", 0, False, [], msgpack.packb({"k": "expr"}), None, None, None, None]
    if ext is not None:
        rec.append(ext)
    ids = []
    core.submit(owner, [rec]).addCallback(ids.extend)
    core.clock.advance(COMMIT_DELAY)
    return ids[0]


def _join(core, user="alice", anonymous=False):
    link = Link()
    return core.worker_joined(link, {"slots": 1}, user, anonymous), link


def _attempt_of(core, jid):
    return core.scheduler.job_location(jid)[1]


def _raise(core, w, jid, exc=None, error="Traceback ...\nValueError: bad\n"):
    info = exc_info.describe(exc if exc is not None else ValueError("bad", 3))
    core.report(w.id, [["done", jid, _attempt_of(core, jid), "failed", None, None, error, 1.0, 2.0, 0.1,
                        {"exc": info}]])
    core.clock.advance(0)


def _complete(core, w, jid):
    core.report(w.id, [["done", jid, _attempt_of(core, jid), "completed", b"P\x04", "4", None, 1.0, 2.0, 0.1]])
    core.clock.advance(0)


def _record(core, jid):
    out = []
    core.get_job("alice", False, jid, False).addCallback(out.append)
    return out[0]


# ---------------------------------------------------------------------------- the exception map
def test_describe_names_the_type_its_mro_and_plain_args_and_pickles_it():
    """The child's map: qualified names, the MRO, plain args encoded safely, a bounded pickle."""
    info = exc_info.describe(Custom("k", 1))
    assert info["type"] == f"{__name__}.Custom"
    assert info["mro"][:3] == [f"{__name__}.Custom", "KeyError", "LookupError"]
    assert info["args"][:1] == b"P" and isinstance(cloudpickle.loads(info["pickle"]), Custom)
    e = RuntimeError(object())   # args that are not plain data, and an unpicklable exception
    e.lock = threading.Lock()
    info = exc_info.describe(e)
    assert info["type"] == "RuntimeError" and "args" not in info and "pickle" not in info


def test_the_server_keeps_the_pickle_only_from_a_keyed_worker_of_the_owner(core):
    """Same user: kept and pushed; another user's or an anonymous worker's: names and args only."""
    cases = {("alice", False): True, ("bob", False): False, ("alice", True): False}
    for (user, anonymous), kept in cases.items():
        jid = _submit(core)
        w, _ = _join(core, user, anonymous)
        _raise(core, w, jid)
        rec = _record(core, jid)
        assert rec["status"] == "failed" and rec["exc"]["type"] == "ValueError", (user, anonymous)
        assert ("pickle" in rec["exc"]) is kept, (user, anonymous)
        assert "args" in rec["exc"]
        core.worker_left(w.id, "test")


def test_a_local_worker_counts_as_the_server_owners_own(core):
    """The worker that shares the server's home (start_all's) carries pickles for the owner only."""
    core.owner_user = "alice"
    w, _ = _join(core, "local-worker")
    w.local = True
    assert core.may_pickle_for(w, "alice") and not core.may_pickle_for(w, "bob")
    w.local = False
    assert not core.may_pickle_for(w, "alice")


def test_a_malformed_or_oversize_exception_map_is_cleaned_not_trusted():
    """Wrong types are dropped, names are cleaned of control characters, sizes are bounded."""
    assert exc_info.clean("ValueError", True) is None
    assert exc_info.clean({"type": 3}, True) is None
    assert exc_info.clean({"type": "x" * 300}, True) is None
    c = exc_info.clean({"type": "Bad\x1b[2J", "mro": ["A", 5, "y" * 999], "args": b"C\x80pickled",
                        "pickle": b"p" * (exc_info.MAX_PICKLE + 1)}, True)
    assert c == {"type": "Bad?[2J", "mro": ["A"]}


def test_the_exception_survives_the_commit_and_a_restart(tmp_path):
    """Stored with the job: a later watch (from the store) and get_job carry it."""
    core = _server(tmp_path / "d.sqlite")
    jid = _submit(core)
    w, _ = _join(core)
    _raise(core, w, jid)
    again = _server(tmp_path / "d.sqlite")
    got = []
    again.watch("alice", False, [jid], object()).addCallback(got.extend)
    assert len(got[0]) == 17 and got[0][16]["type"] == "ValueError" and "pickle" in got[0][16]
    assert _record(again, jid)["exc"]["mro"][0] == "ValueError"


def test_a_bob_cannot_read_alices_exception(core):
    """Another user's job id answers as an unknown one, exception and all."""
    jid = _submit(core)
    w, _ = _join(core)
    _raise(core, w, jid)
    from dsage_core.protocol.errors import NotFound
    errors = []
    core.get_job("bob", False, jid, False).addErrback(errors.append)
    assert errors and errors[0].check(NotFound)


# ---------------------------------------------------------------------------- retries
def test_retries_rerun_a_job_that_raised_and_count_attempts(core):
    """retries=2: two runs raise, the third completes; attempts=3, no failure counted."""
    jid = _submit(core, {"retries": 2})
    w, link = _join(core)
    _raise(core, w, jid)
    assert core.jobs[jid].status in ("assigned", "running") and "retry 1 of 2" in core.jobs[jid].error
    _raise(core, w, jid)
    _complete(core, w, jid)
    rec = _record(core, jid)
    assert rec["status"] == "completed" and rec["attempts"] == 3 and rec["failures"] == 0
    assert rec["error"] is None and len(link.runs) == 3


def test_retries_run_out_and_the_job_fails_with_its_exception(core):
    """retries=1: the second raise is final."""
    jid = _submit(core, {"retries": 1})
    w, _ = _join(core)
    _raise(core, w, jid)
    _raise(core, w, jid)
    rec = _record(core, jid)
    assert rec["status"] == "failed" and rec["attempts"] == 2 and rec["exc"]["type"] == "ValueError"


@pytest.mark.parametrize("retry_on, retried", [(["KeyError"], False), (["ValueError"], True),
                                               (["builtins.ValueError"], False), (["Exception"], True)])
def test_retry_on_matches_type_names_through_the_mro(core, retry_on, retried):
    """retry_on names the type or any class of its MRO, bare or qualified as the child sent it."""
    jid = _submit(core, {"retries": 3, "retry_on": retry_on})
    w, _ = _join(core)
    _raise(core, w, jid)
    assert (jid in core.jobs and core.jobs[jid].status != "failed") is retried


def test_a_subclass_of_a_builtin_matches_the_builtins_name(core):
    """A user's KeyError subclass is retried on retry_on=["KeyError"] and on its qualified name."""
    for name in ("KeyError", "LookupError", f"{__name__}.Custom", "Custom"):
        jid = _submit(core, {"retries": 1, "retry_on": [name]})
        w, _ = _join(core)
        _raise(core, w, jid, Custom("k"))
        assert core.jobs[jid].retried == 1, name
        core.worker_left(w.id, "test")
        core.kill("alice", False, [jid])


def test_kills_timeouts_and_crashes_are_never_retried(core):
    """Only a raised exception is retried: a timeout, a kill, a crash without an exception end it."""
    for status, extra in [("timed_out", []), ("killed", []), ("failed", [])]:
        jid = _submit(core, {"retries": 5})
        w, _ = _join(core)
        core.report(w.id, [["done", jid, _attempt_of(core, jid), status, None, None, "why", 1.0, 2.0, 0.1]
                           + extra])
        core.clock.advance(0)
        assert _record(core, jid)["status"] == status
        core.worker_left(w.id, "test")


def test_a_kill_requested_while_it_ran_is_not_retried(core):
    """The owner killed it; it raised on its way down: it ends, it does not run again."""
    jid = _submit(core, {"retries": 5})
    w, _ = _join(core)
    core.kill("alice", False, [jid])
    _raise(core, w, jid)
    assert _record(core, jid)["status"] == "killed"


def test_a_foreign_workers_report_triggers_no_retry(core):
    """A report from a worker that does not hold the job is discarded; no retry is counted."""
    jid = _submit(core, {"retries": 5})
    _join(core)
    other, _ = _join(core, "mallory")
    info = exc_info.describe(ValueError("x"))
    core.report(other.id, [["done", jid, 1, "failed", None, None, "x", 1.0, 2.0, 0.1, {"exc": info}]])
    assert core.jobs[jid].retried == 0


def test_retries_used_are_not_given_again_after_a_restart(tmp_path):
    """After a restart a retried job has no more retries than it had left (never more than N)."""
    core = _server(tmp_path / "d.sqlite")
    jid = _submit(core, {"retries": 1})
    w, _ = _join(core)
    _raise(core, w, jid)
    core.clock.advance(0)
    again = _server(tmp_path / "d.sqlite")
    assert again.jobs[jid].retried == 1
    w2, _ = _join(again)
    _raise(again, w2, jid)
    assert _record(again, jid)["status"] == "failed"


def test_the_options_are_checked_on_both_ends():
    """Bad values are refused with a clear message; classes become names on the client."""
    from dsage_core.client.payload import Options, SubmitError
    assert Options.from_dict({"retries": 2, "retry_on": (ValueError, Custom)}).ext == {
        "retries": 2, "retry_on": ["ValueError", f"{__name__}.Custom"]}
    assert Options.from_dict({"retry_on": "KeyError"}).ext == {"retry_on": ["KeyError"]}
    for bad in ({"retries": -1}, {"retries": True}, {"retries": 1000}, {"retry_on": []},
                {"retry_on": [3]}, {"retry_on": ["not a name"]}, {"retry_on": [int]}):
        with pytest.raises(SubmitError):
            Options.from_dict(bad)


def test_the_server_refuses_bad_retry_options(core):
    """A peer that skips the client's check gets BadRequest."""
    rec = ["x", "expr", 0, False, [], msgpack.packb({"k": "expr"}), None, None, None, None, {"retries": "3"}]
    errors = []
    core.submit("alice", [rec]).addErrback(errors.append)
    assert errors and errors[0].check(BadRequest) and "retries must be" in str(errors[0].value)


# ---------------------------------------------------------------------------- rebuilding on the client
def test_rebuild_prefers_the_pickle_and_attaches_the_remote_traceback():
    """The original exception, with the traceback text as __cause__."""
    e = rebuild(exc_info.describe(Custom("k")), "Traceback...\nCustom: 'k'", "job 1 failed")
    assert type(e) is Custom and e.args == ("k",)
    assert isinstance(e.__cause__, RemoteTraceback) and "Traceback..." in str(e.__cause__)


def test_without_a_pickle_a_remote_error_subclass_that_is_also_the_builtin():
    """No pickle: RemoteError[Type], a subclass of the builtin the remote type derives from."""
    info = exc_info.clean(exc_info.describe(Custom("k", 2)), keep_pickle=False)
    e = rebuild(info, "tb", "job 1 failed")
    assert isinstance(e, RemoteError) and isinstance(e, KeyError) and isinstance(e, JobFailed)
    assert e.args == ("k", 2) and e.remote_type == f"{__name__}.Custom"
    assert type(e).__qualname__ == f"RemoteError[{__name__}.Custom]" and type(e).__name__ == "Custom"
    assert type(rebuild(info, "tb", "s")) is type(e)   # one class per remote type


def test_remote_error_classes_for_awkward_builtins():
    """OSError subclasses mix (with their errno); fixed signatures still build; SystemExit and
    StopIteration are never made real (raising them would end the program or a generator)."""
    info = exc_info.clean(exc_info.describe(FileNotFoundError(2, "gone")), keep_pickle=False)
    e = rebuild(info, "tb", "s")
    assert isinstance(e, FileNotFoundError) and e.errno == 2 and e.strerror == "gone"
    e = rebuild({"type": "UnicodeDecodeError", "mro": ["UnicodeDecodeError", "UnicodeError", "ValueError"]},
                "tb\nUnicodeDecodeError: boom", "s")
    assert isinstance(e, UnicodeDecodeError) and e.args == ("UnicodeDecodeError: boom",)
    for name in ("SystemExit", "StopIteration", "KeyboardInterrupt"):
        assert not issubclass(remote_error_class(name, (name,)), (SystemExit, StopIteration, KeyboardInterrupt))


def test_a_pickle_that_does_not_unpickle_falls_back():
    """A class the client cannot import: RemoteError with the remote args."""
    info = {"type": "nowhere.Gone", "mro": ["nowhere.Gone", "ValueError"], "args": exc_info.describe(
        ValueError("v"))["args"], "pickle": b"\x80\x04cnowhere\nGone\n."}
    e = rebuild(info, "tb", "s")
    assert isinstance(e, RemoteError) and isinstance(e, ValueError) and e.args == ("v",)


def test_an_admin_sees_another_users_exception_without_its_pickle(core):
    """The pickle goes to the job's owner only: an admin's watch, get_job and pushes lack it."""
    from dsage_core.server.remote import KeyedPusher
    jid = _submit(core)
    w, _ = _join(core)
    job = core.jobs[jid]

    class Rref:
        sent = []

        def callRemote(self, name, data):
            from twisted.internet.defer import succeed
            from dsage_core.protocol import envelope
            self.sent.extend(envelope.unpack(data))
            return succeed(None)

        def isConnected(self):
            return True
    pushers = {who: KeyedPusher(Rref(), None, viewer=who) for who in ("alice", "root")}
    _raise(core, w, jid)
    for p in pushers.values():
        p.push_jobs([job])
    got = [u for u in Rref.sent if u[0] == jid and len(u) > 15]
    assert sorted("pickle" in u[16] for u in got) == [False, True]
    watched = []
    core.watch("root", True, [jid], object()).addCallback(watched.extend)
    assert watched[0][16]["type"] == "ValueError" and "pickle" not in watched[0][16]
    rec = []
    core.get_job("root", True, jid, False).addCallback(rec.append)
    assert "pickle" not in rec[0]["exc"] and "pickle" in _record(core, jid)["exc"]


def test_a_workers_report_batches_count_exception_pickles():
    """Many failures with large pickles never make a report the server must refuse: each counts
    its pickle and traceback in the report batch's size."""
    from dsage_core.worker.service import _event_size
    info = {"type": "E", "mro": [], "pickle": b"p" * exc_info.MAX_PICKLE, "args": b"P" + b"a" * 100}
    e = ["done", 1, 1, "failed", None, None, "t" * 1000, 1.0, 2.0, 0.1, {"exc": info}]
    assert _event_size(e) >= exc_info.MAX_PICKLE + 1100


def test_a_cancel_asks_the_worker_to_spare_a_running_job(core):
    """An Executor's cancel reaches the worker flagged (it spares a job it already runs); a plain
    kill does not, and wins over an earlier cancel; a spared job that raises stays failed."""
    jid = _submit(core)
    w, link = _join(core)
    kills = []
    link.kill = lambda items: kills.extend(items) or __import__("twisted.internet.defer").internet.defer.succeed(None)
    attempt = _attempt_of(core, jid)
    assert core.kill("alice", False, [jid], unstarted_only=True) == [True]
    assert kills == [[jid, attempt, 1]]
    _raise(core, w, jid)
    assert _record(core, jid)["status"] == "failed"
    jid = _submit(core)
    attempt = _attempt_of(core, jid)
    core.kill("alice", False, [jid], unstarted_only=True)
    core.kill("alice", False, [jid])
    assert kills[-1] == [jid, attempt]
