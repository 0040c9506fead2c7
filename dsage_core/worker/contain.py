"""What keeps a job's code inside its job (Linux; elsewhere most of this is skipped, see README).

In the child, once, before its first job (:func:`apply`, with the policy the monitor sends):

* its own process group, and ``PR_SET_CHILD_SUBREAPER``: whatever the job starts, even in a new
  session (``setsid``) or through a double fork, stays a descendant of the child;
* a user namespace of its own (same uid inside and out): the per-job process limit
  (``RLIMIT_NPROC``, processes *and threads*) then counts only the child's own processes, and no
  capability of the outer namespace is left to lift a hard limit (not even root's);
* Landlock: the worker's home (its keys, the server's database when it is the server's home), the
  worker's key file and its directory are unreadable and unwritable; the child's scratch
  directory is fully usable and the results directory write-only; with ABI 6+ the child cannot
  signal any process outside its own tree (not its monitor, not the server).

At the end of each job the child kills what the job left running (:func:`end_of_job_sweep`; one
``waitpid`` when it left nothing). On a kill or timeout the monitor stops and kills the child's
whole tree (:func:`kill_tree`) before the child itself.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path
from typing import Any

from dsage_core.worker import landlock

_CLONE_NEWUSER = 0x10000000
_PR_SET_CHILD_SUBREAPER = 36


def default_max_procs() -> int:
    """Processes and threads one job may have at once: room for a thread per core (BLAS pools)."""
    return max(128, 2 * (os.cpu_count() or 1) + 32)


def landlock_abi() -> int:
    """The Landlock ABI this kernel offers (0: none)."""
    return landlock.abi()


# ---------------------------------------------------------------------- in the child
def apply(policy: dict[str, Any]) -> dict[str, Any]:
    """Contain this process (a job child, still single-threaded) as *policy* says; returns what
    took effect: ``{"subreaper", "userns", "max_procs", "landlock"}``."""
    done: dict[str, Any] = {}
    try:
        os.setpgrp()
    except OSError:
        pass
    if sys.platform != "linux":
        return done
    libc = ctypes.CDLL(None, use_errno=True)
    done["subreaper"] = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    done["userns"] = _own_user_namespace(libc)
    max_procs = int(policy.get("max_procs") or 0)
    if max_procs > 0 and os.getuid() != 0:   # the kernel never applies RLIMIT_NPROC to root
        import resource
        mine = 1 if done["userns"] else _processes_of_uid(os.getuid())
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (mine + max_procs, mine + max_procs))
            done["max_procs"] = max_procs
        except (ValueError, OSError):
            pass
    hide = [Path(p) for p in policy.get("hide") or []]
    keep = [Path(policy["scratch"])] if policy.get("scratch") else []
    if hide and done["userns"]:
        done["mounts"] = _hide_with_mounts(libc, hide, keep)
    if done["userns"]:
        _drop_capabilities(libc)   # root of our namespace no more: the mounts cannot be undone
    try:
        if hide and not done.get("mounts"):
            # no mount namespace: Landlock hides the paths (new entries directly in their parent
            # directories are then out of reach too, see landlock.grants_around)
            full = landlock.grants_around(hide)
            done["landlock"] = landlock.restrict(full, {p: ~0 for p in keep})
        elif landlock.abi() >= 6:
            done["landlock"] = landlock.restrict_scope()   # signals, ptrace, abstract sockets
    except OSError as e:
        done["landlock_error"] = str(e)
    return done


_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18


def _hide_with_mounts(libc: Any, hide: list[Path], keep: list[Path]) -> bool:
    """In a mount namespace of our own: an empty tmpfs over each hidden directory, /dev/null over
    each hidden file, and the *keep* directories (the child's scratch) mounted back where they
    were. True when every hidden path is covered."""
    def mount(src: str | None, target: Path, fstype: str | None, flags: int, data: str | None) -> bool:
        enc = (lambda v: v.encode() if v is not None else None)
        return libc.mount(enc(src), str(target).encode(), enc(fstype), ctypes.c_ulong(flags), enc(data)) == 0
    if libc.unshare(_CLONE_NEWNS) != 0 or not mount("none", Path("/"), None, _MS_REC | _MS_PRIVATE, None):
        return False
    held = []
    for k in keep:
        try:
            held.append((k, os.open(k, os.O_PATH | os.O_CLOEXEC)))
        except OSError:
            pass
    ok = True
    hide = sorted(set(hide), key=lambda p: len(p.parts))
    covered: list[Path] = []
    for h in hide:
        if any(c == h or c in h.parents for c in covered):
            continue
        if h.is_dir():
            ok &= mount("tmpfs", h, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0700,size=64k,nr_inodes=256")
        elif h.exists():
            ok &= mount("/dev/null", h, None, _MS_BIND, None)
        covered.append(h)
    for k, fd in held:
        if any(c in k.parents or c == k for c in covered):
            try:
                k.mkdir(parents=True, exist_ok=True)
            except OSError:
                ok = False
            ok &= mount(f"/proc/self/fd/{fd}", k, None, _MS_BIND | _MS_REC, None)
        os.close(fd)
    return bool(ok)


def _drop_capabilities(libc: Any) -> None:
    """Give up every capability (the bounding set too, so no program run later regains any)."""
    for cap in range(64):
        libc.prctl(24, cap, 0, 0, 0)   # PR_CAPBSET_DROP; EINVAL past the last capability
    libc.prctl(47, 4, 0, 0, 0)         # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    header = Header(0x20080522, 0)     # _LINUX_CAPABILITY_VERSION_3
    data = (ctypes.c_uint32 * 6)()
    libc.capset(ctypes.byref(header), data)
    libc.prctl(38, 1, 0, 0, 0)         # PR_SET_NO_NEW_PRIVS


def _own_user_namespace(libc: Any) -> bool:
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(_CLONE_NEWUSER) != 0:
        return False
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    except OSError:
        pass   # unmapped ids would only show as "nobody"; access is still decided by the real ids
    return True


def _processes_of_uid(uid: int) -> int:
    """Threads of *uid* now (what RLIMIT_NPROC counts outside a user namespace of our own)."""
    import psutil
    n = 0
    for p in psutil.process_iter(["uids", "num_threads"]):
        try:
            if p.info["uids"] and p.info["uids"].real == uid:
                n += p.info["num_threads"] or 1
        except (psutil.Error, TypeError):
            pass
    return n


def end_of_job_sweep() -> int:
    """Kill and reap every process the job left behind; returns how many were killed. Costs one
    ``waitpid`` when the job left none (the common case)."""
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return 0
    me = os.getpid()
    killed = 0
    for _ in range(100):
        killed += kill_tree(me, include_root=False)
        try:
            while True:
                os.waitpid(-1, 0)   # each was sent SIGKILL (or had exited): this ends
        except ChildProcessError:
            pass
        if not descendants(me):
            break
    return killed


# ---------------------------------------------------------------------- in the monitor (and child)
def _children(pid: int) -> list[int]:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids: list[int] = []
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            pass
    return kids


def descendants(pid: int) -> list[int]:
    """Every live descendant of *pid* (Linux /proc; empty elsewhere)."""
    out: list[int] = []
    stack = [pid]
    while stack:
        for kid in _children(stack.pop()):
            out.append(kid)
            stack.append(kid)
    return out


def signal_tree(pid: int, sig: int) -> None:
    """Send *sig* to *pid*'s descendants, then to *pid* (pause and resume a whole job)."""
    for p in descendants(pid) + [pid]:
        try:
            os.kill(p, sig)
        except OSError:
            pass


def kill_tree(pid: int, include_root: bool = True) -> int:
    """SIGKILL *pid* and every descendant. Descendants are stopped first, until no new one
    appears (a stopped process cannot fork), so none escapes while the tree is being walked.
    Returns how many descendants were killed."""
    stopped: set[int] = set()
    for _ in range(1000):
        new = [p for p in descendants(pid) if p not in stopped]
        if not new:
            break
        for p in new:
            try:
                os.kill(p, signal.SIGSTOP)
            except OSError:
                pass
            stopped.add(p)
    for p in stopped:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    if include_root:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(stopped)


def hidden_paths(home: Path, key_paths: list[Path]) -> tuple[list[str], list[str]]:
    """What the monitor asks its children to hide: its home, and each key file with its directory
    when that directory is not too broad. Never a path that holds this Python or dsage itself
    (jobs need those); such a path is left out and named in the second list."""
    import dsage_core
    needed = {Path(os.path.realpath(p)) for p in (sys.prefix, sys.base_prefix, sys.executable,
                                                 os.path.dirname(dsage_core.__file__))}
    cands = [Path(os.path.realpath(home))]
    for k in key_paths:
        k = Path(os.path.realpath(k))
        broad = {Path("/"), Path(os.path.realpath(os.path.expanduser("~")))}
        cands.append(k if k.parent in broad else k.parent)
        cands.append(k)
    hide, skipped = [], []
    for c in dict.fromkeys(cands):
        if any(n == c or c in n.parents for n in needed):
            skipped.append(str(c))
        else:
            hide.append(str(c))
    return hide, skipped
