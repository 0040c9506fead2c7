"""Linux Landlock through ctypes: make some paths unreachable for a process and its descendants,
and (ABI 6+, Linux 6.12) stop it from signalling processes outside its domain.

Landlock only grants: a ruleset names the rights it handles, rules grant them beneath paths, and
whatever no rule grants is denied. To hide a few paths while leaving the rest of the file system
as it was, :func:`grants_around` lists every entry next to each ancestor of the hidden paths; each
is granted everything (a directory: its whole subtree). The hidden paths, and the ancestors
themselves, get no rule. Entries created later directly in those ancestors (say a new file in
``/tmp`` when the home is under ``/tmp``) are out of reach too.
"""
from __future__ import annotations

import ctypes
import os
import platform
import stat
from pathlib import Path
from typing import Iterable

_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446), "arm64": (444, 445, 446)}

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
#: what the results directory grants: create and write new files, never read one
WRITE_ONLY = MAKE_DIR | MAKE_REG | WRITE_FILE | TRUNCATE | REMOVE_FILE


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.machine() not in _SYSCALLS:
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def abi() -> int:
    """The kernel's Landlock ABI version; 0 when there is none (or it is disabled)."""
    libc = _libc()
    if libc is None:
        return 0
    create = _SYSCALLS[platform.machine()][0]
    v = libc.syscall(create, None, ctypes.c_size_t(0), ctypes.c_uint32(1))  # ..._VERSION
    return v if v > 0 else 0


def handled_rights(version: int) -> int:
    """Every file-system right this ABI version knows."""
    rights = (1 << 13) - 1
    if version >= 2:
        rights |= REFER
    if version >= 3:
        rights |= TRUNCATE
    if version >= 5:
        rights |= IOCTL_DEV
    return rights


def grants_around(hidden: Iterable[Path], root: Path = Path("/")) -> list[Path]:
    """Paths whose subtrees together cover everything under *root* except the *hidden* paths and
    their ancestors' own entries. Symbolic links are skipped (their targets have their own rules)."""
    hide = {Path(os.path.realpath(h)) for h in hidden}
    out: list[Path] = []

    def under(h: Path, d: Path) -> bool:
        return h != d and d in h.parents

    def walk(d: Path) -> None:
        try:
            entries = list(os.scandir(d))
        except OSError:
            return
        for e in entries:
            p = Path(e.path)
            if p in hide or e.is_symlink():
                continue
            if any(under(h, p) for h in hide):
                walk(p)
            else:
                out.append(p)
    if root in hide:
        return out
    walk(root)
    return out


def restrict(full: Iterable[Path], extra: dict[Path, int] | None = None, *, scope_signals: bool = True) -> int:
    """Restrict this process (and every process it starts) to *full* access beneath the paths in
    *full*, plus the rights in *extra* beneath its paths. Returns the ABI version used; raises
    OSError when Landlock is missing or refuses."""
    version = abi()
    if version < 1:
        raise OSError("Landlock is not available")
    libc = _libc()
    assert libc is not None
    create, add_rule, restrict_self = _SYSCALLS[platform.machine()]
    rights = handled_rights(version)
    attr = _RulesetAttr(rights, 0, 0)
    size = 8
    if version >= 6 and scope_signals:
        attr.scoped = SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET
        size = ctypes.sizeof(_RulesetAttr)
    fd = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        rules = [(p, rights) for p in full] + list((extra or {}).items())
        for path, allowed in rules:
            _add(libc, add_rule, fd, path, allowed & rights)
        if libc.prctl(38, 1, 0, 0, 0) != 0:   # PR_SET_NO_NEW_PRIVS, required to restrict oneself
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(restrict_self, fd, ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(fd)
    return version


def restrict_scope() -> int:
    """A Landlock domain that handles no file access, only scopes (ABI 6+): this process and its
    descendants can no longer signal, ptrace (so read ``/proc/<pid>/environ``, ``fd``, ``mem``)
    or reach abstract UNIX sockets of processes outside it. Returns the ABI version."""
    version = abi()
    if version < 6:
        raise OSError("Landlock scopes need ABI 6 (Linux 6.12)")
    libc = _libc()
    assert libc is not None
    create, _, restrict_self = _SYSCALLS[platform.machine()]
    attr = _RulesetAttr(0, 0, SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET)
    fd = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(_RulesetAttr)), ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.syscall(restrict_self, fd, ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(fd)
    return version


def _add(libc: ctypes.CDLL, add_rule: int, ruleset: int, path: Path, allowed: int) -> None:
    try:
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # gone since it was listed, or not ours to open: it stays out of reach
    try:
        if not stat.S_ISDIR(os.fstat(pfd).st_mode):
            allowed &= FILE_RIGHTS
        attr = _PathBeneath(allowed, pfd)
        if libc.syscall(add_rule, ruleset, 1, ctypes.byref(attr), ctypes.c_uint32(0)) != 0:
            err = ctypes.get_errno()
            if err != 22:   # EINVAL: rights this inode cannot have; anything else is a real error
                raise OSError(err, f"landlock_add_rule failed for {path}")
    finally:
        os.close(pfd)
