"""Jobs as arguments: ``D.submit(f, a_job)`` runs ``f`` with ``a_job``'s value once it completed.

The client replaces each :class:`~dsage_core.client.job.Job` among a function job's arguments (at
the top level or inside lists, tuples, dicts and sets) by a :class:`JobInput` placeholder naming its
id, and sends the ids as the ``inputs`` ext option. The server holds the job (status ``waiting``)
until every input completed, then hands the inputs' result bytes to the worker with the run entry
(``extra["input_values"]``); the child puts the decoded values where the placeholders were. A
failed, killed, timed-out or lost input fails the dependent ("input job N failed").
"""
from __future__ import annotations

from typing import Any, Callable

from dsage_core.model.ext import ExtOption, register

#: at most this many distinct input jobs per job
MAX_INPUTS = 1000
#: containers deeper than this are not searched for jobs (nor for placeholders)
MAX_DEPTH = 8
#: the client looks at most at this many elements of one job's arguments for jobs
MAX_SEARCH = 10_000
#: the key of the worker's view of the run entry that carries the input values
VALUES_KEY = "input_values"


class JobInput:
    """Stands for the value of job *id* inside a job's arguments (pickled by reference: the child
    imports this module)."""

    __slots__ = ("id",)

    def __init__(self, job_id: int) -> None:
        self.id = job_id

    def __reduce__(self) -> Any:
        return (JobInput, (self.id,))

    def __repr__(self) -> str:
        return f"JobInput({self.id})"


def replace(obj: Any, swap: Callable[[Any], Any], depth: int = 0, budget: list[int] | None = None) -> Any:
    """*obj* with every element *swap* changes replaced (*swap* returns its argument unchanged for
    the rest), searching lists, tuples, dicts (values) and sets of exactly those types, at most
    ``budget[0]`` elements when given; a container in which nothing changed is returned as it is."""
    new = swap(obj)
    if new is not obj:
        return new
    t = type(obj)
    if depth >= MAX_DEPTH or t not in (list, tuple, dict, set, frozenset):
        return obj
    if budget is not None:
        budget[0] -= len(obj)
        if budget[0] < 0:
            return obj
    if t is dict:
        items = {k: replace(v, swap, depth + 1, budget) for k, v in obj.items()}
        return items if any(items[k] is not v for k, v in obj.items()) else obj
    elems = [replace(x, swap, depth + 1, budget) for x in obj]
    if all(a is b for a, b in zip(elems, obj)):
        return obj
    return t(elems)


def substitute(args: Any, kwargs: dict[str, Any], values: dict[int, Any]) -> tuple[Any, dict[str, Any]]:
    """The child's side: *args* and *kwargs* with each :class:`JobInput` replaced by its value."""
    def swap(x: Any) -> Any:
        if type(x) is JobInput:
            if x.id not in values:
                raise RuntimeError(f"dsage: the value of input job {x.id} did not reach this worker")
            return values[x.id]
        return x
    return replace(args, swap), replace(kwargs, swap)


def check_inputs(v: Any) -> list[int]:
    """The ``inputs`` option: distinct job ids (positive ints), sorted."""
    if not isinstance(v, (list, tuple)) or not v:
        raise ValueError("inputs must be a non-empty list of job ids")
    if len(v) > MAX_INPUTS:
        raise ValueError(f"too many input jobs: {len(v)} > {MAX_INPUTS}")
    for i in v:
        if type(i) is not int or not 0 < i < 2**62:
            raise ValueError(f"inputs must be job ids (positive integers), not {i!r}")
    return sorted(set(v))


INPUTS = register(ExtOption("inputs", check_inputs, doc="ids of jobs whose values are this job's arguments "
                                                        "(set by the client from Job arguments)"))
