"""Jobs as arguments, as an attacker: a pickled input value (codec tag 'C' or a Sage pickle) reaches
the dependent job's worker only if a keyed worker of the job's owner produced it; otherwise the
dependent fails with a clear message and no worker receives the bytes. A transport-free JobServer
on a real SQLite file, Twisted's Clock and fake worker links (as in test_job_inputs)."""
import pickle

import pytest

from dsage_core import codec
from tests.core.test_job_inputs import _server, status, submit
from tests.core.fakes import Link


class Evil:
    """Stands for any object whose unpickling runs code on the machine that loads it."""

    def __reduce__(self):
        return (print, ("pwned",))


#: what the dependent's error says (server/deps.py)
FOREIGN_PICKLE = "is not plain data and was not produced by your own worker"
PICKLE = codec.PICKLED + pickle.dumps(Evil())


@pytest.fixture
def core(tmp_path):
    return _server(tmp_path / "d.sqlite")


def join(core, user, anonymous=False, slots=4):
    """A worker of *user* joins; returns (its id, its link)."""
    link = Link()
    w = core.worker_joined(link, {"slots": slots}, user, anonymous)
    core.clock.advance(0)
    return w.id, link


def entries(link):
    """Every run entry the worker got, by job id."""
    return {e[0]: e for batch in link.runs for e in batch["jobs"]}


def answer(core, wid, link, job_id, result):
    """The worker *wid* reports *job_id* completed with these raw result bytes."""
    e = entries(link)[job_id]
    core.report(wid, [["done", job_id, e[1], "completed", result, "x", None, 1.0, 2.0, 0.1]])
    core.clock.advance(1)


def run_input_on(core, user, result, anonymous=False):
    """Alice's job *a*, run by a worker of *user* that answers *result*; that worker then leaves."""
    wid, link = join(core, user, anonymous)
    a = submit(core)
    answer(core, wid, link, a, result)
    core.worker_left(wid, "test")
    return a


def test_another_users_pickle_never_reaches_alices_dependent_worker(core):
    """Bob's keyed worker answers alice's job with a pickle; alice's dependent (submitted after the
    input was committed: the value comes from the store) fails saying why, and alice's own worker
    never gets the bytes."""
    a = run_input_on(core, "bob", PICKLE)
    assert a not in core.jobs
    _, mine = join(core, "alice")
    b = submit(core, a)
    st, why = status(core, b)
    assert st == "failed" and FOREIGN_PICKLE in why and f"input job {a}" in why
    assert b not in entries(mine)
    assert all(PICKLE not in repr(e) for e in entries(mine).values())


def test_another_users_pickle_is_refused_while_the_dependent_waits(core):
    """Same, with the dependent already waiting when the input's result arrives (in memory)."""
    wid, bobs = join(core, "bob")
    a = submit(core)
    b = submit(core, a)
    assert status(core, b)[0] == "waiting"
    answer(core, wid, bobs, a, PICKLE)
    st, why = status(core, b)
    assert st == "failed" and FOREIGN_PICKLE in why
    assert b not in entries(bobs)


def test_the_refusal_survives_a_restart(core, tmp_path):
    """Which worker made the result is stored with it: after a restart the rule still holds."""
    a = run_input_on(core, "bob", PICKLE)
    core.store.close()
    again = _server(tmp_path / "d.sqlite")
    join(again, "alice")
    b = submit(again, a)
    st, why = status(again, b)
    assert st == "failed" and FOREIGN_PICKLE in why


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_plain_values_go_and_the_owners_own_pickles_go(core, user):
    """A plain ('P') value goes whoever produced it; a pickle goes when alice's own keyed worker made it."""
    result = PICKLE if user == "alice" else codec.encode_value([1, 2])
    a = run_input_on(core, user, result)
    _, mine = join(core, "alice")
    b = submit(core, a)
    extra = entries(mine)[b][6]
    assert dict((i, v) for i, v in extra["input_values"]) == {a: result}


def test_a_sage_pickle_from_another_user_is_refused_too(core):
    """Any value that is not plain data (here a Sage result, which carries a pickle) is refused."""
    a = run_input_on(core, "bob", codec.SAGE + b"\x00not really")
    join(core, "alice")
    b = submit(core, a)
    assert status(core, b)[0] == "failed"


class Mkdir:
    """A result whose unpickling creates a directory: proof that the client loaded it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os
        return (os.mkdir, (self.path,))


def seen_by_alice(core, job_id):
    """Alice's client's copy of *job_id*, built from what the server tells her (``watch``)."""
    from dsage_core.client.job import JobTracker
    from dsage_core.model.records import JobUpdate
    out = []
    core.watch("alice", False, [job_id], object()).addCallback(out.extend)
    t = JobTracker(job_id)
    t.apply(JobUpdate.from_wire(out[0]))
    return t


def test_alices_client_never_unpickles_a_result_from_bobs_worker(core, tmp_path):
    """Bob's keyed worker answers alice's job with a pickle that would create a directory: alice's
    client refuses to unpickle it with a clear message, also after a server restart."""
    proof = tmp_path / "pwned"
    a = run_input_on(core, "bob", codec.PICKLED + pickle.dumps(Mkdir(proof)))
    t = seen_by_alice(core, a)
    assert t.status == "completed"
    with pytest.raises(codec.UnsafeResult, match="another user's"):
        t.value
    core.store.close()
    again = _server(tmp_path / "d.sqlite")
    with pytest.raises(codec.UnsafeResult):
        seen_by_alice(again, a).value
    assert not proof.exists()


def test_alices_own_workers_pickled_result_is_unpickled(core):
    """The rule costs alice nothing with her own keyed worker: its pickled result decodes."""
    a = run_input_on(core, "alice", codec.PICKLED + pickle.dumps({1, 2}))
    assert seen_by_alice(core, a).value == {1, 2}
