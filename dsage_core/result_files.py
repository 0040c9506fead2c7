"""Large-result files under a home's ``results/`` directory, touched only the safe way.

Peers that share the server's home (a local worker, a client) can write into ``results/``, so
nothing there is taken on trust: a result file is named only by the strict pattern the server
itself generates (``results/NNNNNN/<id>.bin`` or ``results/NNNNNN/<id>-<attempt>.bin``: no ``/``
beyond those, no ``..``), opened ``openat``-style from a directory descriptor of ``results/``
with ``O_NOFOLLOW | O_NONBLOCK`` (a symbolic link is refused, a FIFO does not block), and checked
with ``fstat``: a regular file, with one link, owned by the expected uid (the server's). Removing
one goes through the same descriptors (``unlinkat``), so a planted link is never followed.

Every call here does file I/O: callers run them on the store's or the file reader's thread,
never on the reactor.
"""
from __future__ import annotations

import os
import re
import stat as _stat
from pathlib import Path
from typing import Callable

#: the only names a result file may have, relative to the home
NAME = re.compile(r"results/(\d{6})/(\d{1,19}(?:-\d{1,9})?\.bin)")
_SUB = re.compile(r"\d{6}")
_FILE = re.compile(r"\d{1,19}(?:-\d{1,9})?\.bin")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def result_name(job_id: int, attempt: int | None = None) -> str:
    """The one naming scheme of result files, relative to the home: ``results/NNNNNN/<id>.bin``
    for the store's own files, ``results/NNNNNN/<id>-<attempt>.bin`` for one a worker wrote (the
    attempt: a late writer of an old attempt never replaces a newer one's file)."""
    stem = f"{job_id}" if attempt is None else f"{job_id}-{attempt}"
    return f"results/{job_id // 1000:06d}/{stem}.bin"


def scratch_result_path(scratch: str | os.PathLike[str], job_id: int, attempt: int) -> str:
    """Where a job child writes a large result in its own scratch directory (its monitor moves it
    to :func:`result_name` in the home): the same file name."""
    return f"{scratch}/results/{job_id}-{attempt}.bin"


class ResultFileError(Exception):
    """A result file that cannot be used; the message says why, for the job's error."""


def split(rel: object) -> tuple[str, str]:
    """``(subdirectory, file name)`` of a result file name, or :class:`ResultFileError`."""
    m = NAME.fullmatch(rel) if isinstance(rel, str) else None
    if m is None:
        raise ResultFileError(f"{str(rel)[:100]!r} is not a result file name the server makes")
    return m.group(1), m.group(2)


class ResultsDir:
    """A home's ``results/`` directory, held open as a descriptor.

    *uid*: the owner every result file must have (None: the owner of the directory itself, which
    is the server's; what a client sharing the home checks against).
    """

    def __init__(self, home: str | os.PathLike[str], uid: int | None = None, create: bool = False) -> None:
        path = Path(home) / "results"
        if create:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self.fd = os.open(path, _DIR_FLAGS)
        except OSError as e:
            raise ResultFileError(f"the results directory {path} cannot be opened "
                                  f"(it must be a directory, not a link): {e.strerror or e}") from None
        self.path = path
        self.uid = os.fstat(self.fd).st_uid if uid is None else uid

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ reading
    def _subdir(self, sub: str, create: bool = False) -> int:
        if not create:
            return os.open(sub, _DIR_FLAGS, dir_fd=self.fd)
        try:
            os.mkdir(sub, 0o700, dir_fd=self.fd)
        except FileExistsError:
            pass
        try:
            return os.open(sub, _DIR_FLAGS, dir_fd=self.fd)
        except NotADirectoryError:   # a link or a file planted in its place: removed, never followed
            os.unlink(sub, dir_fd=self.fd)
            os.mkdir(sub, 0o700, dir_fd=self.fd)
            return os.open(sub, _DIR_FLAGS, dir_fd=self.fd)

    def open(self, rel: object) -> tuple[int, os.stat_result]:
        """An open descriptor and the ``fstat`` of the result file *rel*, after every check;
        :class:`ResultFileError` with the reason otherwise. The caller closes the descriptor."""
        sub, name = split(rel)
        try:
            dfd = self._subdir(sub)
        except OSError as e:
            raise ResultFileError(_why_not(rel, e)) from None
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
        except OSError as e:
            raise ResultFileError(_why_not(rel, e)) from None
        finally:
            os.close(dfd)
        try:
            st = os.fstat(fd)
            why = self._refusal(st)
            if why:
                raise ResultFileError(f"the result file {rel} is refused: {why}")
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def _refusal(self, st: os.stat_result) -> str | None:
        if not _stat.S_ISREG(st.st_mode):
            return "it is not a regular file"
        if st.st_uid != self.uid:
            return f"it belongs to uid {st.st_uid}, not to the server's uid {self.uid}"
        if st.st_nlink != 1:
            return f"it has {st.st_nlink} hard links (a link to a file elsewhere)"
        return None

    def check(self, rel: object, size: int) -> str | None:
        """Why *rel* is not an acceptable result file of *size* bytes (None: it is)."""
        try:
            fd, st = self.open(rel)
        except ResultFileError as e:
            return str(e)
        os.close(fd)
        if st.st_size != size:
            return f"the worker's result file {rel} has {st.st_size} bytes, not the {size} it reported"
        return None

    def read(self, rel: object, size: int | None = None) -> bytes:
        """The bytes of result file *rel* (exactly *size* of them, if given)."""
        fd, st = self.open(rel)
        try:
            if size is not None and st.st_size != size:
                raise ResultFileError(f"the result file {rel} has {st.st_size} bytes, not {size}")
            chunks, left = [], st.st_size
            while left > 0:
                chunk = os.read(fd, min(left, 16 * 1024 * 1024))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            data = b"".join(chunks)
        finally:
            os.close(fd)
        if len(data) != st.st_size:
            raise ResultFileError(f"the result file {rel} changed while it was read")
        return data

    # ------------------------------------------------------------------ writing and removing
    def write(self, rel: str, data: bytes) -> None:
        """Create or replace result file *rel* (0600; never through a link), write all of *data*."""
        sub, name = split(rel)
        dfd = self._subdir(sub, create=True)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dfd)
        finally:
            os.close(dfd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def unlink(self, rel: object) -> bool:
        """Remove result file *rel* (a link there is removed, never followed); True if it was."""
        try:
            sub, name = split(rel)
            dfd = self._subdir(sub)
        except (ResultFileError, OSError):
            return False
        try:
            os.unlink(name, dir_fd=dfd)
            return True
        except OSError:
            return False
        finally:
            os.close(dfd)

    def sweep(self, named: Callable[[str, list[str]], set[str]]) -> int:
        """Remove every file of a result name in ``results/NNNNNN/`` that *named(sub, names)*
        does not return (it gets the subdirectory and the candidate names, full relative names);
        returns how many went. Links are removed as links; linked directories are skipped."""
        removed = 0
        with os.scandir(self.fd) as it:
            subs = [e.name for e in it if _SUB.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
        for sub in subs:
            try:
                dfd = self._subdir(sub)
            except OSError:
                continue
            try:
                with os.scandir(dfd) as it:
                    names = [f"results/{sub}/{e.name}" for e in it if _FILE.fullmatch(e.name)]
                if not names:
                    continue
                keep = named(sub, names)
                for rel in names:
                    if rel not in keep:
                        try:
                            os.unlink(rel.rsplit("/", 1)[1], dir_fd=dfd)
                            removed += 1
                        except OSError:
                            pass
            finally:
                os.close(dfd)
        return removed


def _why_not(rel: object, e: OSError) -> str:
    import errno
    if e.errno == errno.ELOOP:
        return f"the result file {rel} is refused: it is a symbolic link"
    if e.errno == errno.ENOTDIR:
        return f"the result file {rel} is refused: its directory is not a plain directory"
    if e.errno == errno.ENOENT:
        return f"the result file {rel} is missing"
    return f"the result file {rel} cannot be opened: {e.strerror or e}"
