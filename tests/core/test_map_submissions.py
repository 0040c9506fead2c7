"""``D.map`` sending multi-payload Submissions (payload.func_jobs, Submission.payloads/wires,
AsyncClient._enqueue) and ``_is_plain``. Unit tests of the payload code, then end to end: a real
Client/AsyncClient, JobServer and WorkerService over the in-process null transport on a Clock
(tests/core/test_null_transport.py), the fake pool computing each job from the payload it got."""
from __future__ import annotations

import collections
import enum
import pickle

import msgpack
import pytest

from dsage_core.client import payload as pl
from dsage_core.client.api import Client
from dsage_core.client.payload import MAP_BATCH, Options, SubmitError, Submission, _is_plain, func_job, func_jobs
from dsage_core.model import records
from dsage_core.model.inputs import JobInput
from dsage_core.model.status import JobStatus
from dsage_core.worker.service import WorkerConfig, WorkerService
from tests.core.test_null_transport import FURL, Cluster, FakePool, run_until

pytestmark = pytest.mark.timeout(120)


def square(x, y=0):
    return x * x + y


def args_of(payload: bytes):
    d = msgpack.unpackb(payload, raw=False)
    assert d["k"] == "func"
    return pickle.loads(d["args"])


# ------------------------------------------------------------------------------ _is_plain
def _old_is_plain(obj, depth=0):
    """_is_plain as it was before bfd2bf5 (the reference: the fast path must agree)."""
    t = type(obj)
    if t in (int, float, str, bytes, bool, type(None), complex):
        return True
    if depth > 8:
        return False
    if t is tuple or t is list:
        return all(_old_is_plain(x, depth + 1) for x in obj)
    if t is dict:
        return all(_old_is_plain(k, depth + 1) and _old_is_plain(v, depth + 1) for k, v in obj.items())
    return False


class Color(enum.IntEnum):
    RED = 1


class MyInt(int):
    pass


def nested(k, leaf=1):
    x = leaf
    for _ in range(k):
        x = [x]
    return x


PLAIN = [0, -5, 2**100, 1.5, "s", b"b", True, None, 1j, [], (), {}, [1, "a", None],
         (1, (2, (3,))), {"a": [1, 2], 3: (4.0, b"x")}, [{"k": [(1, 2), {"z": None}]}],
         {(1, 2): "tuple key"}, nested(9), nested(8, [])]
NOT_PLAIN = [object(), square, lambda: 1, {1, 2}, frozenset(), bytearray(b"x"), Color.RED, MyInt(3),
             collections.OrderedDict(a=1), [1, object()], (1, [2, {"k": {3}}]), {"a": square},
             {object(): 1}, {frozenset(): 1}, nested(10), nested(10, []), [[nested(9)]],
             range(3), JobInput(1), Options()]


@pytest.mark.parametrize("obj", PLAIN, ids=repr)
def test_is_plain_for_built_in_data(obj):
    assert _is_plain(obj) is True
    assert _is_plain(obj) == _old_is_plain(obj)
    assert pickle.loads(pickle.dumps(obj, protocol=5)) == obj


@pytest.mark.parametrize("obj", NOT_PLAIN, ids=lambda o: type(o).__name__)
def test_is_plain_false_for_other_objects_subclasses_and_deep_nesting(obj):
    """Objects, sets, subclasses of built-ins (an IntEnum, an int subclass, OrderedDict) and
    containers nested more than 9 deep are not plain (cloudpickle pickles them)."""
    assert _is_plain(obj) is False
    assert _is_plain(obj) == _old_is_plain(obj)


def test_is_plain_depth_limit_is_on_containers_not_scalars():
    """A scalar anywhere is plain; the 10th level of containers is not (as before)."""
    assert _is_plain(nested(9, 5)) and not _is_plain(nested(10, 5))
    assert _is_plain({"a": nested(8)}) and not _is_plain({"a": nested(9, [])})
    assert _is_plain(nested(5), depth=3) and not _is_plain(nested(6, []), depth=4)


# ------------------------------------------------------------------------------ func_jobs, wires
def test_func_jobs_chunks_and_payloads_match_func_job():
    """One Submission per MAP_BATCH jobs, sharing the blob and options; each payload is what
    func_job builds for those arguments (scalars and plain or other arguments alike)."""
    blob = pl.function_blob(square)
    opts = Options(name=None, priority=4, timeout=9.0)
    argsets = [(i,) for i in range(2 * MAP_BATCH + 7)]
    argsets[3] = ([1, 2],)              # plain, not a scalar
    argsets[4] = ({1, 2},)              # not plain: cloudpickled
    argsets[5] = (1, 2)
    subs = func_jobs(square, argsets, opts, blob)
    assert [s.count for s in subs] == [MAP_BATCH, MAP_BATCH, 7]
    for s in subs:
        assert s.kind == "func" and s.name == "square" and s.options is opts
        assert s.blob_id == blob[0] and s.blob is blob[1]
    payloads = [p for s in subs for p in s.payloads]
    assert len(payloads) == len(argsets)
    for args, p in zip(argsets, payloads):
        assert p == func_job(square, args, {}, opts, blob=blob).payload
        assert args_of(p) == (args, {})


def test_func_jobs_exactly_one_batch_and_none():
    blob = pl.function_blob(square)
    assert [s.count for s in func_jobs(square, [(i,) for i in range(MAP_BATCH)], Options(), blob)] == [MAP_BATCH]
    assert [s.count for s in func_jobs(square, [(i,) for i in range(MAP_BATCH + 1)], Options(), blob)] == [MAP_BATCH, 1]
    assert func_jobs(square, [], Options(), blob) == []


def test_func_jobs_names_files_and_refusals(tmp_path):
    f = tmp_path / "data.txt"
    f.write_bytes(b"hello")
    subs = func_jobs(square, [(1,), (2,)], Options(name="sq", files=[str(f)]), pl.function_blob(square))
    assert subs[0].name == "sq"
    for p in subs[0].payloads:
        assert msgpack.unpackb(p, raw=False)["files"] == [["data.txt", b"hello"]]
    with pytest.raises(SubmitError, match="not callable"):
        func_jobs(3, [(1,)], Options(), pl.function_blob(square))
    with pytest.raises(SubmitError, match="cannot be pickled"):
        import threading
        func_jobs(square, [(threading.Lock(),)], Options(), pl.function_blob(square))


def test_wires_put_each_payload_in_the_shared_record_and_round_trip():
    """Each wire record is the single-job record with its payload (every other field shared), and
    reads back as a records.Submission; a Submission without payloads has the one record."""
    blob = pl.function_blob(square)
    opts = Options(priority=2, timeout=5.0, trusted_only=True, mem_limit=1000)
    (sub,) = func_jobs(square, [(1,), (2,), ("x",)], opts, blob)
    wires = sub.wires()
    assert len(wires) == sub.count == 3
    for w, p, args in zip(wires, sub.payloads, [(1,), (2,), ("x",)]):
        single = func_job(square, args, {}, opts, blob=blob)
        assert w == single.wire()
        r = records.Submission.from_wire(list(w))
        assert r.payload == p and r.blob_id == blob[0] and r.kind == "func" and r.name == "square"
        assert (r.priority, r.trusted_only, r.timeout, r.limits) == (2, True, 5.0, {"mem": 1000})
        assert r.to_wire() == tuple(w)
        assert records.Submission.from_wire(msgpack.unpackb(msgpack.packb(list(w)), raw=False)) == r
    one = func_job(square, (1,), {}, opts, blob=blob)
    assert one.count == 1 and one.payloads is None and one.wires() == [one.wire()]
    empty = Submission("func", b"", "n", None, opts, payloads=[])
    assert empty.count == 0 and empty.wires() == []


def test_wires_with_ext_options_keep_them_on_every_record():
    opts = Options()
    opts.ext = {"replicas": 2}
    try:
        opts.ext = pl.ext_options.check_ext(opts.ext) or {}
    except Exception:
        pytest.skip("replicas is not an ext option here")
    (sub,) = func_jobs(square, [(1,), (2,)], opts, pl.function_blob(square))
    for w in sub.wires():
        assert records.Submission.from_wire(list(w)).ext == opts.ext


# ------------------------------------------------------------------------------ end to end
@pytest.fixture
def cluster(tmp_path):
    return Cluster(tmp_path)


def big_worker(cluster, slots=200):
    home, key = cluster.user("wbig", "worker")
    pool = FakePool(slots)
    cfg = WorkerConfig(home=home, furl=FURL, slots=slots, key_path=key, anonymous=False, contain=False)
    w = WorkerService(cfg, cluster.clock, pool=pool, dial=cluster.net.dial)
    pool.report = w.reports.add_many
    w.start()
    run_until(cluster.clock, lambda: w.state == "connected")
    return w, pool


def blocking_client(cluster, name="alice"):
    """A Client whose blocking calls run the AsyncClient's Deferreds on the cluster's clock."""
    c = Client(cluster.client(name))

    def sync(fn, *args, timeout=None, **kw):
        out = cluster.result(fn(*args, **kw))
        if hasattr(out, "raiseException"):
            out.raiseException()
        return out
    c._sync = sync
    return c


def run_all(cluster, pool, fn, values=None, limit=200.0):
    """Finish every job the pool is given with *fn(*args)* (job inputs replaced by *values*
    of their jobs) until no job is left; returns {job id: args} as the worker received them."""
    values = {} if values is None else values
    seen = {}
    t = 0.0
    while True:
        while pool.queue:
            e = pool.queue[0]
            args, kwargs = pickle.loads(msgpack.unpackb(e.payload, raw=False)["args"])
            assert kwargs == {} and e.job_id not in seen
            seen[e.job_id] = args
            real = tuple(values[a.id] if isinstance(a, JobInput) else a for a in args)
            values[e.job_id] = fn(*real)
            pool.finish(e, values[e.job_id])
        if t > 5.0 and not pool.queue:
            return seen
        cluster.clock.advance(0.05)
        t += 0.05
        assert t < limit


def test_map_over_more_than_a_batch_sends_multi_payload_submissions_and_gets_ordered_results(cluster, monkeypatch):
    """1,234 jobs (more than two MAP_BATCH chunks): the function pickled and uploaded once, three
    Submissions of 500/500/234 payloads, one job per input in order with the right name, kind
    and arguments, and the results in input order."""
    w, pool = big_worker(cluster)
    c = blocking_client(cluster)
    pickled = []
    real_pickle = pl._pickle
    monkeypatch.setattr(pl, "_pickle", lambda obj, what: (pickled.append(obj), real_pickle(obj, what))[1])
    sent = []
    real_submit = c.aclient.submit_many
    c.aclient.submit_many = lambda subs: (sent.append(list(subs)), real_submit(subs))[1]
    n = 2 * MAP_BATCH + 234
    xs = list(range(n))
    ys = [i % 7 for i in xs]
    jobs = c.map(square, xs, ys, priority=3)
    assert sum(1 for o in pickled if o is square) == 1        # the function pickled once
    (subs,) = sent
    assert [s.count for s in subs] == [MAP_BATCH, MAP_BATCH, 234]
    assert len({s.blob_id for s in subs}) == 1 and all(s.payload == b"" for s in subs)
    assert len(jobs) == n and len({j.id for j in jobs}) == n
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)   # ids in submission order
    got_args = run_all(cluster, pool, square)
    assert got_args == {j.id: (x, y) for j, x, y in zip(jobs, xs, ys)}   # each job got its input
    run_until(cluster.clock, lambda: all(j.done() for j in jobs))
    assert jobs.results == [square(x, y) for x, y in zip(xs, ys)]
    assert all(j.status == JobStatus.COMPLETED and j.name == "square" for j in jobs)
    assert all(j._s.kind == "func" and j._s.priority == 3 for j in jobs)
    assert {e.blob_id for e in pool.given} == {subs[0].blob_id}
    puts = sum(conn.calls.count("put_blob") for conn in cluster.net.live())
    assert puts == 1


def test_map_with_a_job_among_the_inputs_keeps_input_order(cluster):
    """Plain runs go as multi-payload Submissions, a job whose arguments hold a Job alone (it
    waits for that job); the list is still in input order and each gets its own arguments."""
    w, pool = big_worker(cluster)
    c = blocking_client(cluster)
    first = c.submit(square, 5)
    values = {}
    run_all(cluster, pool, square, values)
    run_until(cluster.clock, lambda: first.done())
    sent = []
    real_submit = c.aclient.submit_many
    c.aclient.submit_many = lambda subs: (sent.append(list(subs)), real_submit(subs))[1]
    inputs = [1, 2, first, 3, [first], 4]
    jobs = c.map(lambda v: v if isinstance(v, int) else repr(v), inputs)
    assert [s.count for s in sent[0]] == [2, 1, 1, 1, 1]
    assert [s.payloads is not None for s in sent[0]] == [True, False, True, False, True]
    assert [bool(s.options.ext.get("inputs")) for s in sent[0]] == [False, True, False, True, False]
    got = run_all(cluster, pool, lambda v: v if isinstance(v, int) else "list", values)
    run_until(cluster.clock, lambda: all(j.done() for j in jobs))
    assert jobs.results == [1, 2, 25, 3, "list", 4]
    assert isinstance(got[jobs[2].id][0], JobInput) and got[jobs[2].id][0].id == first.id
    assert got[jobs[0].id] == (1,) and got[jobs[5].id] == (4,)


def test_map_and_submit_many_of_nothing_return_at_once(cluster):
    """An empty map is an empty JobList without a round trip (it used to wait forever on a
    submit group of no jobs); submit_many([]) and of empty multi-payload Submissions fire at once."""
    c = blocking_client(cluster)
    out = []
    c.aclient.submit_many([]).addBoth(out.append)
    assert out == [[]]
    out.clear()
    c.aclient.submit_many([Submission("func", b"", "n", None, Options(), payloads=[])]).addBoth(out.append)
    assert out == [[]]
    assert c.map(square, []) == [] and type(c.map(square, [])).__name__ == "JobList"
    assert c.map(square, [], [1, 2]) == []
