"""Build job payloads on the client (see docs/ARCHITECTURE.md): the server never looks inside."""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import cloudpickle
import msgpack

from dsage_core.model import ext as ext_options
from dsage_core.model import records


class SubmitError(ValueError):
    """The job could not be built on the client (bad file, unpicklable function...): nothing was sent."""


class UnknownOption(SubmitError, TypeError):
    """A job option that does not exist (a typo such as ``timout``): refused, nothing was sent."""


#: the options every job takes (``Options`` fields)
OPTION_NAMES = ("name", "timeout", "priority", "trusted_only", "mem_limit", "cpu_limit", "files")


def all_option_names() -> tuple[str, ...]:
    """The fixed options and the extra ones of ``dsage_core.model.ext``."""
    return OPTION_NAMES + tuple(ext_options.REGISTRY)


def refuse_unknown(given: Iterable[str], valid: Iterable[str] | None = None) -> None:
    """Raise :class:`UnknownOption` naming each unknown key, a close match, and the valid ones."""
    import difflib
    valid = sorted(all_option_names() if valid is None else valid)
    bad = sorted(str(k) for k in given if k not in valid)
    if not bad:
        return
    parts = []
    for k in bad:
        close = difflib.get_close_matches(k, valid, n=1)
        parts.append(f"{k!r} (did you mean {close[0]!r}?)" if close else repr(k))
    raise UnknownOption(f"unknown job option{'s' if len(bad) > 1 else ''} {', '.join(parts)}; "
                        f"valid job options: {', '.join(valid)}")


@dataclass
class Options:
    """Options every job kind takes."""

    name: str | None = None
    timeout: float | None = None
    priority: int = 0
    trusted_only: bool = False
    mem_limit: int | None = None      #: bytes (RLIMIT_AS) for this job
    cpu_limit: float | None = None    #: CPU seconds for this job
    #: local files whose contents travel with the job, into its working directory (by base name)
    files: list[str | os.PathLike[str]] | None = None
    #: the extra options (``dsage_core.model.ext``), checked, by name
    ext: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def pop_from(cls, kwargs: dict[str, Any]) -> "Options":
        """Take option keywords out of *kwargs* (for APIs that forward the rest)."""
        o = cls()
        for k in OPTION_NAMES:
            if k in kwargs:
                setattr(o, k, kwargs.pop(k))
        for k in ext_options.REGISTRY:
            if k in kwargs:
                o.ext[k] = kwargs.pop(k)
        o.validate()
        return o

    @classmethod
    def from_dict(cls, options: Any) -> "Options":
        """Options from a mapping (``dsage_options=``, an executor's keywords); an unknown key
        raises :class:`UnknownOption` listing the valid ones."""
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise SubmitError(f"job options must be a dict, not {type(options).__name__}")
        refuse_unknown(options)
        return cls.pop_from(dict(options))

    def validate(self) -> None:
        if self.timeout is not None and (not isinstance(self.timeout, (int, float)) or self.timeout <= 0):
            raise SubmitError(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        if not isinstance(self.priority, int) or isinstance(self.priority, bool):
            raise SubmitError(f"priority must be an int, not {self.priority!r}")
        if self.name is not None and not isinstance(self.name, str):
            raise SubmitError("name must be a string")
        if self.files is not None:
            if isinstance(self.files, (str, bytes, os.PathLike)) or not isinstance(self.files, (list, tuple)):
                raise SubmitError("files must be a list of paths, e.g. files=['data.csv']")
            self.files = list(self.files)
        try:
            self.ext = ext_options.check_ext(self.ext) or {}
        except ValueError as e:
            raise SubmitError(str(e)) from None

    def limits(self) -> dict[str, Any] | None:
        d: dict[str, Any] = {}
        if self.mem_limit:
            d["mem"] = int(self.mem_limit)
        if self.cpu_limit:
            d["cpu"] = float(self.cpu_limit)
        return d or None


@dataclass
class Submission:
    """One job ready to send: the packed wire record plus what the client keeps locally."""

    kind: str
    payload: bytes
    name: str
    code: str | None
    options: Options
    blob_id: str | None = None
    blob: bytes | None = None
    needs: list[str] = field(default_factory=list)
    #: several jobs that differ only in their payload (``D.map``): sent as one wire record per
    #: payload, each as if ``payload`` were that one (``payload`` itself is then unused)
    payloads: list[bytes] | None = None

    @property
    def count(self) -> int:
        """How many jobs this stands for."""
        return 1 if self.payloads is None else len(self.payloads)

    def wires(self) -> list[tuple]:
        """The wire record of each of its jobs, in order."""
        w = self.wire()
        if self.payloads is None:
            return [w]
        head, tail = w[:5], w[6:]   # every field but the payload is shared
        return [head + (p,) + tail for p in self.payloads]

    def wire(self) -> tuple:
        """The :class:`~dsage_core.model.records.Submission` record the server reads."""
        o = self.options
        return records.Submission(self.name, self.kind, o.priority, bool(o.trusted_only), self.needs,
                                  self.payload, self.blob_id, o.timeout, o.limits(), self.code,
                                  o.ext or None).to_wire()


def _pack(d: dict[str, Any]) -> bytes:
    return msgpack.packb(d, use_bin_type=True)


_PLAIN = frozenset((int, float, str, bytes, bool, type(None), complex))


def _is_plain(obj: Any, depth: int = 0) -> bool:
    """Whether *obj* is only built-in data (the C pickler then pickles it as cloudpickle would)."""
    t = type(obj)
    if t in _PLAIN:
        return True
    if depth > 8:
        return False
    if t is tuple or t is list:
        for x in obj:   # scalars, the usual content, without a call each
            if type(x) not in _PLAIN and not _is_plain(x, depth + 1):
                return False
        return True
    if t is dict:
        for k, v in obj.items():
            if (type(k) not in _PLAIN and not _is_plain(k, depth + 1)) or \
                    (type(v) not in _PLAIN and not _is_plain(v, depth + 1)):
                return False
        return True
    return False


def _pickle(obj: Any, what: str) -> bytes:
    if _is_plain(obj):  # plain arguments: the C pickler is ~20x faster than cloudpickle's
        return pickle.dumps(obj, protocol=5)
    try:
        return cloudpickle.dumps(obj)
    except Exception as e:
        raise SubmitError(f"cannot send {what}: it cannot be pickled ({type(e).__name__}: {e})") from None


def code_job(code: str, mode: str, options: Options, *, user_vars: dict[str, Any] | None = None,
             load_files: Iterable[str | os.PathLike[str]] = (), sage: bool = False,
             fname: str = "<dsage>") -> Submission:
    """A code-string job: *mode* "expr" (value of the last expression) or "exec" (DSAGE_RESULT)."""
    if not isinstance(code, str):
        raise SubmitError(f"code must be a string, not {type(code).__name__}")
    d: dict[str, Any] = {"k": mode, "code": code, "fname": fname}
    if user_vars:
        if not isinstance(user_vars, dict):
            raise SubmitError("user_vars must be a dict")
        d["vars"] = _pickle(user_vars, "user_vars")
    files = _files([*load_files, *(options.files or ())])
    if files:
        d["files"] = files
    if sage:
        d["sage"] = True
    name = options.name or (fname if fname != "<dsage>" else _short(code))
    return Submission(mode, _pack(d), name, code, options, needs=["sage"] if sage else [])


def file_job(path: str | os.PathLike[str], options: Options) -> Submission:
    """A file job: the file's content travels (not its path); ``.sage`` files run in Sage mode."""
    p = Path(path)
    if p.suffix not in (".py", ".sage"):
        raise SubmitError(f"{p.name}: only .py and .sage files can be submitted")
    text = _read(p).decode("utf-8", "replace")
    if options.name is None:
        options.name = p.name
    return code_job(text, "exec", options, sage=p.suffix == ".sage", fname=p.name)


def check_syntax(sub: Submission, label: str | os.PathLike[str] | None = None) -> None:
    """Compile a ``.py`` file job's code here, so a typo fails before anything is sent: SubmitError
    naming the file, the line and the offending text. Sage files are preparsed on the worker and
    are not checked; nothing runs (``compile`` only parses). *label*: the file as the user named it."""
    if sub.needs or sub.code is None:
        return
    label = str(label) if label is not None else sub.name
    try:
        compile(sub.code, label, "exec", dont_inherit=True)
    except SyntaxError as e:
        where = f"{label}, line {e.lineno}" if e.lineno else label
        text = (e.text or "").rstrip("\n")
        caret = ""
        if text and e.offset:
            stripped = text.lstrip()
            caret = f"\n    {stripped}\n    {' ' * max(0, e.offset - 1 - (len(text) - len(stripped)))}^"
        raise SubmitError(f"{where}: {type(e).__name__}: {e.msg}{caret}") from None
    except ValueError as e:  # e.g. a NUL byte in the source
        raise SubmitError(f"{label}: not Python source: {e}") from None


def func_job(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], options: Options,
             blob: tuple[str, bytes] | None = None) -> Submission:
    """A function job; pass *blob* (from :func:`function_blob`) to share one pickled function."""
    if not callable(fn):
        raise SubmitError(f"{fn!r} is not callable")
    blob_id, data = blob or function_blob(fn)
    d: dict[str, Any] = {"k": "func", "args": _pickle((args, kwargs), "the arguments")}
    files = _files(options.files or ())
    if files:
        d["files"] = files
    payload = _pack(d)
    name = options.name or getattr(fn, "__name__", "function")
    return Submission("func", payload, name, None, options, blob_id=blob_id, blob=data)


#: jobs one multi-payload Submission of ``func_jobs`` carries at most (a submit batch's size)
MAP_BATCH = 500


def func_jobs(fn: Any, argsets: list[tuple[Any, ...]], options: Options, blob: tuple[str, bytes]
              ) -> list[Submission]:
    """Function jobs ``fn(*args)`` for each of *argsets* sharing one *options* and one *blob*: one
    :class:`Submission` per :data:`MAP_BATCH` of them, carrying their payloads."""
    if not callable(fn):
        raise SubmitError(f"{fn!r} is not callable")
    blob_id, data = blob
    files = _files(options.files or ())
    name = options.name or getattr(fn, "__name__", "function")
    plain, dumps, pack, empty = _PLAIN, pickle.dumps, _pack, {}
    payloads = []
    for args in argsets:
        for a in args:
            if type(a) not in plain:
                d: dict[str, Any] = {"k": "func", "args": _pickle((args, empty), "the arguments")}
                break
        else:   # scalars only: plain for sure
            d = {"k": "func", "args": dumps((args, empty), protocol=5)}
        if files:
            d["files"] = files
        payloads.append(pack(d))
    return [Submission("func", b"", name, None, options, blob_id=blob_id, blob=data,
                       payloads=payloads[k:k + MAP_BATCH])
            for k in range(0, len(payloads), MAP_BATCH)]


def function_blob(fn: Any) -> tuple[str, bytes]:
    """Pickle a function once; its id is the sha256 of the bytes."""
    data = _pickle(fn, f"function {getattr(fn, '__name__', fn)!r}")
    return hashlib.sha256(data).hexdigest(), data


def _files(paths: Iterable[str | os.PathLike[str]]) -> list[list[Any]]:
    """``[[base name, bytes], ...]``; two files of the same base name would overwrite each other."""
    out, seen = [], set()
    for p in paths:
        name = Path(p).name
        if name in seen:
            raise SubmitError(f"two files named {name!r}: a job's files land in one directory")
        seen.add(name)
        out.append([name, _read(p)])
    return out


def _read(p: str | os.PathLike[str]) -> bytes:
    try:
        return Path(p).read_bytes()
    except FileNotFoundError:
        raise SubmitError(f"no such file: {p}") from None
    except IsADirectoryError:
        raise SubmitError(f"{p} is a directory, not a file") from None
    except OSError as e:
        raise SubmitError(f"cannot read {p}: {e.strerror}") from None


def _short(code: str) -> str:
    line = code.strip().splitlines()[0] if code.strip() else ""
    return line[:60]
