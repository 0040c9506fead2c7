"""Memory allocator settings for dsage's own processes (server, worker monitor, job children).

Results of a MiB or more cross several processes; each copy lands in freshly allocated memory, and
glibc by default hands large blocks back to the kernel at once (mmap above 128 KiB, trimming the
heap top), so every copy page-faults again. On virtual machines a page fault is expensive: a fresh
MiB cost 0.6-4 ms here against 0.03 ms reused. The settings below keep freed blocks for reuse and
ask for transparent huge pages (where the kernel offers them on request), which took W4 (1 MiB
results) from ~65 to ~100 MiB/s on the reference VM. They change nothing but speed and apply only to
processes dsage starts itself (never to the user's own interpreter), and a ``GLIBC_TUNABLES``
already set by the user wins.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import MutableMapping

MMAP_THRESHOLD = 32 * 1024 * 1024   #: blocks below this come from the heap (and are reused)
TRIM_THRESHOLD = 128 * 1024 * 1024  #: free heap kept before giving memory back to the kernel
TUNABLES = (f"glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold={MMAP_THRESHOLD}"
            f":glibc.malloc.trim_threshold={TRIM_THRESHOLD}")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tuned_env(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the allocator settings to the environment of a process dsage is about to start."""
    if sys.platform.startswith("linux"):
        env.setdefault("GLIBC_TUNABLES", TUNABLES)
    return env


def tune_this_process() -> bool:
    """Apply the thresholds to the running process (for ``dsage server`` / ``dsage worker`` started
    by hand, where the environment was not ours to set). Huge pages need the environment variable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        return bool(ok)
    except (OSError, AttributeError):
        return False


#: gen0 threshold for dsage's own long-running processes: jobs in flight keep tens of thousands
#: of small objects alive, and with Python's default (700) the server ran a 1.5-3 ms gen1 pass
#: every ~40 ms under load. Most of those objects are acyclic and freed by reference counting,
#: so fewer passes cost no memory to speak of.
GC_THRESHOLD = (20_000, 20, 10)


def tune_gc() -> None:
    """Fewer collector passes in the server and the worker monitor (never in the user's own
    interpreter, and not in job children, whose code is the user's)."""
    import gc
    gc.set_threshold(*GC_THRESHOLD)


def freeze_startup_objects() -> None:
    """Once a server or worker has started: its modules, classes and start-up state live for the
    whole process, so full collections need not walk them again (a gen2 pass took ~35 ms of the
    server's reactor here, just as a batch arrived). Objects stay freed by reference counting."""
    import gc
    gc.collect()
    gc.freeze()
