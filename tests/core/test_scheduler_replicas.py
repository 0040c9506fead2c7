"""The pure scheduler with replicated jobs: k copies on distinct workers, answers decide by quorum."""
from dsage_core.model.replicas import quorum
from dsage_core.scheduler import SchedJob, Scheduler, actions as act, events as ev

A, B = b"a" * 32, b"b" * 32


def dispatched(actions):
    """{worker_id: [job ids]} from the Dispatch actions."""
    return {a.worker_id: [j for j, _ in a.jobs] for a in actions if isinstance(a, act.Dispatch)}


def join(s, wid, slots=1, anonymous=True, user=""):
    """A worker joins; returns the actions."""
    return s.handle(ev.WorkerJoined(wid, slots, anonymous, frozenset(), 0.0, user=user or wid))


def answer(s, wid, job_id, digest):
    """*wid* reports its copy of *job_id* with answer *digest*; returns the actions."""
    attempt = s.workers[wid].held[job_id]
    return s.handle(ev.ReplicasFinished(wid, [(job_id, attempt, 0.01, digest)]))


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def test_quorum_is_a_strict_majority():
    """2 of 2, 2 of 3, 3 of 4, 3 of 5."""
    assert [quorum(k) for k in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


def test_two_copies_never_go_to_the_same_worker():
    """One worker with many free slots gets one copy; the second copy waits for another worker."""
    s = Scheduler()
    join(s, "w1", slots=8)
    out = s.handle(ev.JobsSubmitted([SchedJob(1, replicas=2), SchedJob(2)]))
    assert dispatched(out) == {"w1": [1, 2]}
    assert s.is_queued(1) and "never two copies on one worker" in s.waiting_reason(1)
    s.validate()
    out = join(s, "w2", slots=8)
    assert dispatched(out) == {"w2": [1]} and not s.is_queued(1)
    assert s.held_by("w1") == [1, 2] and s.held_by("w2") == [1]
    s.validate()


def test_copies_prefer_distinct_users():
    """With two keyed workers of one user and one of another, the copies go to different users."""
    s = Scheduler()
    join(s, "alice-1", slots=4, anonymous=False, user="alice")
    join(s, "alice-2", slots=4, anonymous=False, user="alice")
    join(s, "bob-1", slots=1, anonymous=False, user="bob")
    out = s.handle(ev.JobsSubmitted([SchedJob(1, replicas=2)]))
    placed = sorted(w for w, ids in dispatched(out).items() if 1 in ids)
    assert len(placed) == 2 and "bob-1" in placed
    s.validate()


def test_agreeing_copies_decide_once():
    """Two equal answers of two copies: decided, 2/2 agree; a late report is discarded."""
    s = Scheduler()
    join(s, "w1")
    join(s, "w2")
    s.handle(ev.JobsSubmitted([SchedJob(1, replicas=2)]))
    out = answer(s, "w1", 1, A)
    assert of(out, act.ReplicaAnswered) and not of(out, act.ReplicasDecided)
    out = answer(s, "w2", 1, A)
    assert of(out, act.ReplicasDecided) == [act.ReplicasDecided(1, 1, 2, 2, None)]
    assert 1 not in s.jobs
    out = s.handle(ev.ReplicasFinished("w2", [(1, 2, 0.0, A)]))
    assert of(out, act.Discarded) and not of(out, act.ReplicasDecided)
    s.validate()


def test_three_copies_two_agree_and_the_third_is_killed():
    """k=3: once two agree the job is decided and the copy still running is killed."""
    s = Scheduler()
    for w in ("w1", "w2", "w3"):
        join(s, w)
    s.handle(ev.JobsSubmitted([SchedJob(1, replicas=3)]))
    answer(s, "w1", 1, A)
    out = answer(s, "w2", 1, A)
    assert of(out, act.ReplicasDecided)[0].agree == 2
    assert [(k.worker_id, k.job_id) for k in of(out, act.KillOnWorker)] == [("w3", 1)]
    assert s.held_by("w3") == []
    s.validate()


def test_three_copies_liar_first_still_decides_for_the_majority():
    """k=3 with a wrong first answer: the two honest answers make the quorum (2/3)."""
    s = Scheduler()
    for w in ("liar", "h1", "h2"):
        join(s, w)
    s.handle(ev.JobsSubmitted([SchedJob(1, replicas=3)]))
    honest = s.workers["h1"].held[1]
    assert not of(answer(s, "liar", 1, B), act.ReplicasDecided)
    assert not of(answer(s, "h1", 1, A), act.ReplicasDecided)
    d = of(answer(s, "h2", 1, A), act.ReplicasDecided)[0]
    assert (d.agree, d.of, d.attempt) == (2, 3, honest)


def test_disagreement_reruns_on_a_keyed_worker_that_decides():
    """Two anonymous copies disagree: a third copy goes to a keyed worker only, and its answer wins."""
    s = Scheduler()
    join(s, "liar")
    join(s, "honest")
    s.handle(ev.JobsSubmitted([SchedJob(1, replicas=2)]))
    join(s, "anon-late", slots=4)             # anonymous: it must not get the tie-break
    assert not dispatched(join(s, "keyed", anonymous=False, user="alice"))
    answer(s, "liar", 1, B)
    out = answer(s, "honest", 1, A)
    assert not of(out, act.ReplicasDecided) and dispatched(out) == {"keyed": [1]}
    assert "keyed" in s.waiting_reason(1) if s.is_queued(1) else True
    s.validate()
    out = answer(s, "keyed", 1, A)
    assert of(out, act.ReplicasDecided) == [act.ReplicasDecided(1, s.log[-1].results[0][1], 1, 2, "keyed")]
    s.validate()


def test_disagreement_without_a_keyed_worker_fails():
    """No keyed worker connected: the job fails as a disagreement, once."""
    s = Scheduler()
    join(s, "liar")
    join(s, "honest")
    s.handle(ev.JobsSubmitted([SchedJob(1, replicas=2)]))
    answer(s, "liar", 1, B)
    out = answer(s, "honest", 1, A)
    assert of(out, act.ReplicasDisagree) == [act.ReplicasDisagree(1, 1, 2, "no keyed worker to decide")]
    assert 1 not in s.jobs
    s.validate()


def test_a_keyed_answer_settles_a_disagreement_without_a_rerun():
    """An anonymous liar against a keyed worker: the keyed answer decides, no third copy."""
    s = Scheduler()
    join(s, "liar")
    join(s, "keyed", anonymous=False, user="alice")
    s.handle(ev.JobsSubmitted([SchedJob(1, replicas=2)]))
    answer(s, "keyed", 1, A)
    d = of(answer(s, "liar", 1, B), act.ReplicasDecided)[0]
    assert d.decided_by == "keyed" and d.agree == 1


def test_a_lost_copy_is_placed_again_elsewhere():
    """A worker holding a copy dies: the copy goes to another worker; the survivor keeps its own."""
    s = Scheduler()
    join(s, "w1")
    join(s, "w2")
    s.handle(ev.JobsSubmitted([SchedJob(1, replicas=2)]))
    out = s.handle(ev.WorkerLeft("w2"))
    assert not dispatched(out) and s.is_queued(1)
    out = join(s, "w3")
    assert dispatched(out) == {"w3": [1]}
    answer(s, "w1", 1, A)
    assert of(answer(s, "w3", 1, A), act.ReplicasDecided)
    s.validate()


def test_kill_reaches_every_copy():
    """A kill of a replicated job kills each copy and ends the job once."""
    s = Scheduler()
    join(s, "w1")
    join(s, "w2")
    s.handle(ev.JobsSubmitted([SchedJob(1, replicas=3)]))
    out = s.handle(ev.KillRequested([1]))
    assert sorted(k.worker_id for k in of(out, act.KillOnWorker)) == ["w1", "w2"]
    assert of(out, act.KilledQueued) == [act.KilledQueued(1)] and not s.is_queued(1)
    s.validate()


def test_restored_answers_are_kept_and_not_rerun():
    """After a restart a job with one of two answers stored needs one more copy, not two."""
    s = Scheduler()
    s.handle(ev.JobsSubmitted([SchedJob(1, replicas=2, attempt=2, answers=((1, A, False, "old"),))]))
    out = join(s, "w1", slots=4)
    assert dispatched(out) == {"w1": [1]} and not s.is_queued(1)
    assert of(answer(s, "w1", 1, A), act.ReplicasDecided)[0].agree == 2
    s.validate()


def test_one_copy_jobs_are_unchanged():
    """replicas=1 jobs take the old path: one worker, Accepted on JobsFinished."""
    s = Scheduler()
    join(s, "w1")
    s.handle(ev.JobsSubmitted([SchedJob(1)]))
    out = s.handle(ev.ReplicasFinished("w1", [(1, 1, 0.01, A)]))
    assert of(out, act.Accepted) == [act.Accepted([1])]
    s.validate()


def test_random_events_keep_copies_on_distinct_workers():
    """Seeded random joins, leaves, answers, hand-backs and kills: the invariants hold after every
    event, no worker gets a second copy of a job (unless it handed its copy back unanswered), and
    each job is decided at most once."""
    import random
    rnd = random.Random(15)
    s = Scheduler(max_failures=50)
    given: dict[int, set[str]] = {}
    decided: list[int] = []
    seq = 0

    def note(actions):
        for a in actions:
            if isinstance(a, act.Dispatch):
                for jid, _ in a.jobs:
                    if jid in s.jobs and s.jobs[jid].replicas > 1:
                        assert a.worker_id not in given.setdefault(jid, set()), (jid, a.worker_id)
                        given[jid].add(a.worker_id)
            elif isinstance(a, (act.ReplicasDecided, act.ReplicasDisagree, act.KilledQueued, act.Lost)):
                decided.append(a.job_id)
    for step in range(600):
        r = rnd.random()
        if r < 0.15 or not s.workers:
            seq += 1
            note(join(s, f"w{seq}", slots=rnd.randint(1, 3), anonymous=rnd.random() < 0.6))
        elif r < 0.3:
            note(s.handle(ev.JobsSubmitted([SchedJob(1000 + step, replicas=rnd.randint(1, 4))])))
        elif r < 0.7:
            wid = rnd.choice(list(s.workers))
            held = list(s.workers[wid].held.items())
            if held:
                jid, attempt = rnd.choice(held)
                note(s.handle(ev.ReplicasFinished(wid, [(jid, attempt, 0.01, rnd.choice([A, A, B]))])))
        elif r < 0.8:
            note(s.handle(ev.WorkerLeft(rnd.choice(list(s.workers)))))
        elif r < 0.9:
            wid = rnd.choice(list(s.workers))
            held = list(s.workers[wid].held.items())
            if held:
                jid, attempt = rnd.choice(held)
                given.get(jid, set()).discard(wid)
                note(s.handle(ev.JobsHandedBack(wid, [(jid, attempt, False)])))
        elif s.jobs:
            note(s.handle(ev.KillRequested([rnd.choice(list(s.jobs))])))
        s.validate()
    assert len(decided) == len(set(decided)) and len(decided) > 50
