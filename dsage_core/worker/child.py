"""A worker's child process: runs jobs one after another, in the order the monitor sent them.

``python -m dsage_core.worker.child``; reads frames on fd 0, writes frames on fd 3 (see
docs/ARCHITECTURE.md). Imports no Twisted. Jobs run on the main thread (Sage needs it); a reader
thread feeds a queue so the child knows whether more work is waiting (done coalescing).
"""
from __future__ import annotations

import ast
import builtins
import linecache
import os
import queue
import resource
import select
import shutil
import signal
import sys
import threading
import time
import traceback
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import msgpack

from dsage_core import _progress as progress_mod, codec, latency, local_results
from dsage_core.model import inputs
from dsage_core.model import exc_info
from dsage_core.model.records import ChildDone, ChildRun
from dsage_core.model.status import JobStatus
from dsage_core.worker import contain
from dsage_core.worker.capture import Capture
from dsage_core.worker.framing import FrameDecoder, frame_parts

MAX_ERROR = 64 * 1024
COMPLETED, FAILED = JobStatus.COMPLETED.value, JobStatus.FAILED.value   #: bound once: the hot path
COALESCE_S = latency.current().child_coalesce
#: jobs shorter than this report their wall time as CPU time: reading the process CPU clock is a
#: system call (~10 µs on a VM, a quarter of a no-op job's cost here), so it is read only after
#: longer jobs, and short ones in between are subtracted from that reading
CPU_CLOCK_MIN_WALL = latency.current().cpu_clock_min_wall
#: the memory check (a read of /proc/self/statm) runs after every this-many jobs, or sooner once
#: the jobs since the last check ran this long (a system call on cold caches after each 20 ms job
#: was a measurable part of a child's overhead)
RSS_EVERY = latency.current().rss_every
#: the scratch dir's ctime is trusted to show that a job left nothing behind only once it is this
#: old (ns): file system clocks can be one coarse tick (~4 ms) behind (a scan of the dir each job
#: cost ~9 us of a no-op job's ~25 us in the child; one stat costs ~1.5 us)
SCRATCH_CTIME_AGE_NS = 100_000_000
RSS_SECONDS = latency.current().rss_seconds
#: bytes asked for per read of the monitor's pipe: what a default pipe holds (64 KiB), so no read
#: returns less for it; a larger request costs an mmap and munmap of its buffer per read (~25 us
#: here, for a frame of ~100 no-op jobs), and a frame larger than this arrives over several reads
READ_SIZE = 64 * 1024


class Channel:
    """Frames out on fd 3, lock-protected (the output flusher thread writes too)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()

    def send(self, obj: Any) -> None:
        head, body = frame_parts(obj)
        with self.lock:
            n = os.writev(self.fd, [head, body])
            if n < len(head) + len(body):  # the pipe was full: write the rest
                data = memoryview(head + body)[n:]
                while data:
                    data = data[os.write(self.fd, data):]


class Inbox:
    """Frames from the monitor, read on the main thread: without a reader thread there is no
    thread hand-off between a job's arrival and its start (W2 latency)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.decoder = FrameDecoder()
        self.items: deque[tuple[str, Any]] = deque()

    def _read(self, block: bool) -> None:
        if not block:
            ready, _, _ = select.select([self.fd], [], [], 0)
            if not ready:
                return
        try:
            data = os.read(self.fd, READ_SIZE)
        except InterruptedError:
            return
        if not data:
            self.items.append(("exit", None))
            return
        for msg in self.decoder.feed(data):
            if msg[0] == "run":
                self.items.extend(("job", entry) for entry in msg[1])
            elif msg[0] == "contain":
                self.items.append(("contain", msg[1]))
            else:
                self.items.append((msg[0], None))

    def get_nowait(self) -> tuple[str, Any]:
        """The next item if one is here or already in the pipe; raises queue.Empty otherwise."""
        if not self.items:
            self._read(block=False)
        if not self.items:
            raise queue.Empty
        return self.items.popleft()

    def get(self) -> tuple[str, Any]:
        while not self.items:
            self._read(block=True)
        return self.items.popleft()


#: frames a user has no use for: the child's own, and the parser's for code that does not parse
_HIDDEN_FRAMES = (os.path.dirname(os.path.abspath(__file__)) + os.sep, ast.__file__)


def _bounded_traceback(exc: BaseException) -> str:
    """The traceback from the user's first frame on, at most MAX_ERROR characters. Code that does
    not parse gets the error alone (its location is in the message); an error in dsage itself
    keeps every frame."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_HIDDEN_FRAMES):
        tb = tb.tb_next
    if tb is None and isinstance(exc, SyntaxError):
        text = "".join(traceback.format_exception_only(type(exc), exc))
    else:
        text = "".join(traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__))
    if len(text) > MAX_ERROR:
        text = "[... traceback truncated ...]\n" + text[-MAX_ERROR:]
    return text


class CpuLimitExceeded(Exception):
    pass


class NeedsFreshChild(Exception):
    """This child's hard limits are lower than the next job allows (hard limits only go down):
    it hands its jobs back and exits; a fresh child runs them."""


class Child:
    """The job loop."""

    def __init__(self, channel: Channel, contained: dict[str, Any] | None = None) -> None:
        self.chan = channel
        self.contained = contained or {}
        self.blobs: OrderedDict[str, Any] = OrderedDict()
        self.pending_done: list[Any] = []   #: ChildDone records (as their wire tuples)
        self.oldest_done = 0.0
        self.scratch_base = Path(os.environ.get("DSAGE_SCRATCH") or os.path.join(
            os.environ.get("TMPDIR", "/tmp"), f"dsage-child-{os.getpid()}"))
        # one scratch dir per child, emptied after every job: each job starts in an empty cwd
        # (creating and removing a directory per job would cost more than a no-op job itself)
        self.scratch = self.scratch_base / "job"
        self.scratch.mkdir(parents=True, exist_ok=True)
        os.chdir(self.scratch)
        st = os.stat(".")
        self._scratch_id = (st.st_dev, st.st_ino)   #: which directory the scratch dir is
        self._clean_ctime: int | None = None   #: its ctime when last seen empty (see _clean_scratch)
        self.max_rss = int(os.environ.get("DSAGE_CHILD_MAX_RSS", str(2 * 1024**3)))
        self._statm_fd: int | None = None
        self._cpu_mark = _cpu()     # the process CPU clock at its last reading
        self._cpu_unread = 0.0      # wall time of short jobs since then (taken as their CPU)
        self._short_jobs = 0        # jobs since the last memory check
        self._since_rss = 0.0       # their wall time
        self.capture = Capture(self.chan)
        self.done_lock = threading.Lock()
        self.job_started = threading.Event()
        threading.Thread(target=self._done_flusher, name="dsage-done", daemon=True).start()
        self.sage_ns: dict[str, Any] | None = None
        self._mem_hard: int | None = None   #: the hard RLIMIT_AS a past job left (never raised)
        self.recycle_after = False   #: a job changed this process for good (its packages): exit after it

    # ------------------------------------------------------------------ the loop
    def serve(self, q: Inbox) -> None:
        while True:
            try:
                kind, entry = q.get_nowait()
            except queue.Empty:
                self.flush_done()
                kind, entry = q.get()
            if kind == "exit":
                self.flush_done()
                return
            if kind != "job":
                continue
            try:
                wall = self.run_one(entry)
            except NeedsFreshChild:
                self.flush_done()
                self.chan.send(["recycle"])
                return
            if self.recycle_after:
                self.flush_done()
                self.chan.send(["recycle"])
                return
            if self.pending_done and time.perf_counter() - self.oldest_done >= COALESCE_S:
                self.flush_done()
            self._short_jobs += 1
            self._since_rss += wall
            if self._short_jobs < RSS_EVERY and self._since_rss < RSS_SECONDS:
                continue
            self._short_jobs, self._since_rss = 0, 0.0
            if self._rss() > self.max_rss:
                self.flush_done()
                self.chan.send(["recycle"])
                return

    def _clean_scratch(self) -> None:
        """Empty the scratch dir and make it the cwd again. One ``stat(".")`` when the job changed
        neither: the cwd is the scratch dir, it was empty after the last scan, and no entry was
        created, removed or renamed in it since (its ctime, which every such change sets, is
        unchanged); a scan otherwise."""
        try:
            st = os.stat(".")
        except OSError:   # the job removed the cwd
            st = None
        if (st is not None and st.st_ctime_ns == self._clean_ctime and st.st_ino == self._scratch_id[1]
                and st.st_dev == self._scratch_id[0] and st.st_nlink > 0):   # untouched (inline: every job)
            return
        self._clean_ctime = None
        if st is None or st.st_nlink == 0 or (st.st_dev, st.st_ino) != self._scratch_id:
            try:
                os.chdir(self.scratch)
            except OSError:  # the job removed it
                self.scratch.mkdir(parents=True, exist_ok=True)
                os.chdir(self.scratch)
        with os.scandir(self.scratch) as it:
            leftovers = [e.path for e in it]
        for path in leftovers:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        st = os.stat(".")
        self._scratch_id = (st.st_dev, st.st_ino)
        # the dir is known empty only if nothing was left (a leftover that could not be removed
        # may change without touching the dir), and its ctime is then only trusted once it is
        # older than SCRATCH_CTIME_AGE: a change later is then stamped with a later ctime even
        # where the file system's clock is coarse (one tick, ~4 ms), and a job cannot set ctime
        if not leftovers and time.time_ns() - st.st_ctime_ns > SCRATCH_CTIME_AGE_NS:
            self._clean_ctime = st.st_ctime_ns

    def flush_done(self) -> None:
        with self.done_lock:
            if not self.pending_done:
                return
            batch, self.pending_done = self.pending_done, []
            self.chan.send(["done", batch])

    def _done_flusher(self) -> None:
        """Dones buffered while the next job runs go out within COALESCE_S, however long that job is
        (the monitor starts the next job's timeout clock when the previous done arrives)."""
        while True:
            self.job_started.wait()
            self.job_started.clear()
            time.sleep(COALESCE_S)  # the coalescing window itself, not a wait for a condition
            self.flush_done()

    def _rss(self) -> int:
        """Resident memory now, from a /proc/self/statm descriptor kept open (one syscall a job)."""
        try:
            if self._statm_fd is None:
                self._statm_fd = os.open("/proc/self/statm", os.O_RDONLY)
            return int(os.pread(self._statm_fd, 128, 0).split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            return 0

    # ------------------------------------------------------------------ one job
    def run_one(self, entry: Any) -> float:
        """Run one job (a ``ChildRun`` on the wire) and queue its done entry; returns its wall time."""
        # ChildRun's wire shapes (what ChildRun.from_wire accepts), unpacked without building the
        # record; result_path: where a large result goes (local server); extra: dsage_core.model.ext options
        n = len(entry) if type(entry) in _SEQUENCES else 0
        if n == 7:   # what worker/children.py sends: every field
            job_id, payload_bytes, blob_id, blob, limits, result_path, extra = entry
        elif n == 5 or n == 6:
            job_id, payload_bytes, blob_id, blob, limits = entry[:5] if n == 6 else entry
            result_path, extra = (entry[5] if n == 6 else None), None
        else:   # a record, or a malformed entry (WireError)
            run = ChildRun.from_wire(entry)
            job_id, payload_bytes, blob_id, blob, limits = run.job_id, run.payload, run.blob_id, run.blob, run.limits
            result_path = run.result_path   # where a large result goes (local server)
            extra = run.ext                 # dsage_core.model.ext options
        if extra and extra.get("env_path"):   # the job's packages (worker/envs.py), first on the path
            import importlib
            sys.path.insert(0, extra["env_path"])
            importlib.invalidate_caches()
            self.recycle_after = True   # its modules stay imported: the next job gets a fresh child
        limits = limits or {}
        restore = self._apply_limits(limits)   # may raise NeedsFreshChild: nothing started yet
        if self.pending_done and not self.job_started.is_set():   # set() again is a no-op
            self.job_started.set()
        t0 = time.perf_counter()
        scratch = self.scratch
        status, result, error, preview, exc = COMPLETED, None, None, None, None
        self.capture.begin(job_id, int(limits.get("out") or 1024 * 1024))
        progress_mod._set_sender(job_id, self.chan)
        try:
            payload = msgpack.unpackb(payload_bytes, raw=False)
            value = self._execute(payload, blob_id, blob, scratch, extra)
            restore()
            restore = _nothing
            try:
                result = codec.encode_value(value)
                preview = codec.preview(value.obj if isinstance(value, codec.SageValue) else value)
            except Exception as e:
                status, error = FAILED, f"the job's result could not be serialised: {type(e).__name__}: {e}"
        except MemoryError as e:
            restore()
            restore = _nothing
            status = FAILED
            mem = limits.get("mem")
            what = f"memory limit of {int(mem) // 2**20} MiB exceeded" if mem else "out of memory"
            error = f"MemoryError: {what}\n" + _bounded_traceback(e)
        except CpuLimitExceeded as e:
            status, error = FAILED, f"CPU time limit of {limits.get('cpu'):g} s exceeded\n" + _bounded_traceback(e)
        except SystemExit as e:
            status, error = FAILED, f"the job called sys.exit({e.code!r})"
        except BaseException as e:  # noqa: BLE001 - a job's failure is data
            status, error = FAILED, self._process_limit_note(e) + _bounded_traceback(e)
            exc = exc_info.describe(e)   # the exception itself, for its owner (model/exc_info.py)
        finally:
            restore()
            contain.end_of_job_sweep()   # one waitpid unless the job left processes running
            self._clean_scratch()
            progress_mod._flush_and_clear()
            self.capture.end()
        wall = time.perf_counter() - t0
        # the end time lets a monitor that reads this later start the next job's timeout clock
        # (and date the job) when it really started
        size = None
        if result_path and result is not None and len(result) > local_results.LARGE:
            try:  # the server reads it there: the bytes never cross the pipe
                local_results.write_result_at(Path(result_path), result)
                result, size = None, len(result)
            except OSError:
                pass  # the bytes go to the monitor as usual
        cpu = self._job_cpu(wall)
        if exc is None:   # ChildDone's wire form (ChildDone.to_wire), without building the record first
            entry = (job_id, status, result, error, preview, cpu, wall, size, time.time())
        else:
            entry = ChildDone(job_id, status, result, error, preview, cpu, wall, size, time.time(), exc).to_wire()
        with self.done_lock:
            if not self.pending_done:
                self.oldest_done = t0  # when the batch's first job started: a job that ran
                # longer than COALESCE_S has its done sent at once, not by the flusher thread
            self.pending_done.append(entry)
        return wall

    def _job_cpu(self, wall: float) -> float:
        """CPU seconds of the job that just ended (see CPU_CLOCK_MIN_WALL)."""
        if wall < CPU_CLOCK_MIN_WALL:
            self._cpu_unread += wall
            return wall
        now = _cpu()
        cpu = max(0.0, now - self._cpu_mark - self._cpu_unread)
        self._cpu_mark, self._cpu_unread = now, 0.0
        return cpu

    def _execute(self, p: dict[str, Any], blob_id: str | None, blob: bytes | None, scratch: Path,
                 extra: dict[str, Any] | None = None) -> Any:
        kind = p.get("k")
        if kind == "func":
            cloudpickle = _cloudpickle or _import_cloudpickle()
            for name, data in p.get("files") or []:   # files= of a function job: its working dir
                (scratch / Path(name).name).write_bytes(data)
            fn = self._function(blob_id, blob)
            args, kwargs = cloudpickle.loads(p["args"])
            if extra and inputs.VALUES_KEY in extra:  # jobs as arguments: their values
                values = {i: codec.decode_value(b) for i, b in extra[inputs.VALUES_KEY]}
                args, kwargs = inputs.substitute(args, kwargs, values)
            return fn(*args, **kwargs)
        ns = self._namespace(p)
        for name, data in p.get("files") or []:
            target = scratch / Path(name).name
            target.write_bytes(data)
            if target.suffix == ".py":
                self._run_code(data.decode("utf-8", "replace"), "exec", ns, str(name), sage=False)
        code, fname = p.get("code", ""), p.get("fname") or "<dsage>"
        sage = bool(p.get("sage"))
        if sage:
            code = self._preparse(code)
        value = self._run_code(code, kind or "exec", ns, fname, sage)
        if sage:
            from dsage_core.worker.sage_mode import result
            value, is_object = result(value)
            if is_object:
                return codec.SageValue(value)
        return value

    def _function(self, blob_id: str | None, blob: bytes | None) -> Any:
        fn = self.blobs.get(blob_id, _MISSING)   # type: ignore[arg-type]
        if fn is not _MISSING:
            self.blobs.move_to_end(blob_id)   # type: ignore[arg-type]
            return fn
        cloudpickle = _cloudpickle or _import_cloudpickle()
        if blob is None:
            raise RuntimeError(f"function blob {blob_id} was not sent to this process")
        fn = cloudpickle.loads(blob)
        self.blobs[blob_id] = fn
        if len(self.blobs) > 64:
            self.blobs.popitem(last=False)
        return fn

    def _namespace(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("sage"):
            from dsage_core.worker import sage_mode
            if self.sage_ns is None:
                self.sage_ns = sage_mode.base_namespace()
            ns = dict(self.sage_ns)
            sage_mode.new_seed(ns)
        else:
            ns = {"__builtins__": builtins}
        ns["__name__"] = "__main__"
        ns["DSAGE_RESULT"] = None
        if p.get("vars"):
            import cloudpickle
            ns.update(cloudpickle.loads(p["vars"]))
        return ns

    def _preparse(self, code: str) -> str:
        from dsage_core.worker import sage_mode
        return sage_mode.preparse(code)

    @staticmethod
    def _run_code(code: str, mode: str, ns: dict[str, Any], fname: str, sage: bool) -> Any:
        lines = code.splitlines(True)
        linecache.cache[fname] = (len(code), None, lines, fname)
        tree = ast.parse(code, fname, "exec")
        last = None
        if mode == "expr" and tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, fname, "exec"), ns)
        if last is not None:
            return eval(compile(last, fname, "eval"), ns)
        return ns.get("DSAGE_RESULT")  # an expression job without a final expression may set it too

    # ------------------------------------------------------------------ limits
    def _process_limit_note(self, e: BaseException) -> str:
        """A line naming the per-job process limit when *e* (or its cause) is a failed fork."""
        n = self.contained.get("max_procs")
        while e is not None and n:
            if isinstance(e, BlockingIOError) or (isinstance(e, OSError) and e.errno == 11):
                return (f"process limit of {n} processes per job reached (threads count too; "
                        f"see dsage worker --max-procs)\n")
            e = e.__cause__ or e.__context__  # type: ignore[assignment]
        return ""

    def _apply_limits(self, limits: dict[str, Any]) -> Any:
        """Set the job's limits. Memory: a hard RLIMIT_AS the job cannot raise; a child whose hard
        limit is lower than this job may have raises NeedsFreshChild."""
        mem, cpu = limits.get("mem"), limits.get("cpu")
        if not (mem or cpu) and self._mem_hard is None:
            return _nothing   # nothing to set, nothing to undo
        undo = []
        if mem or self._mem_hard is not None:
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY and (not mem or int(mem) > hard):
                raise NeedsFreshChild
            if mem:
                resource.setrlimit(resource.RLIMIT_AS, (int(mem), int(mem)))
                self._mem_hard = int(mem)
        if cpu:
            csoft, chard = resource.getrlimit(resource.RLIMIT_CPU)
            used = int(_cpu()) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (used + int(max(1, cpu)), chard))

            def on_xcpu(signum: int, frame: Any) -> None:
                raise CpuLimitExceeded(f"CPU time limit of {cpu} s exceeded")
            old = signal.signal(signal.SIGXCPU, on_xcpu)
            undo.append(lambda: (resource.setrlimit(resource.RLIMIT_CPU, (csoft, chard)),
                                 signal.signal(signal.SIGXCPU, old)))
        done = [False]

        def restore() -> None:
            if not done[0]:
                done[0] = True
                for u in reversed(undo):
                    u()
        return restore


def _nothing() -> None:
    pass


_SEQUENCES = (list, tuple)
_MISSING = object()
_cloudpickle: Any = None   #: the cloudpickle module once a function job imported it


def _import_cloudpickle() -> Any:
    """cloudpickle, imported on first use (a child that runs only code jobs never loads it); an
    ``import`` statement on every job cost a module lookup each."""
    global _cloudpickle
    import cloudpickle
    _cloudpickle = cloudpickle
    return cloudpickle


def _cpu() -> float:
    """CPU seconds of this process, all threads (user + system)."""
    return time.process_time()


try:
    _PAGE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):
    _PAGE = 4096


def main() -> None:
    nice = int(os.environ.get("DSAGE_NICE", "10"))
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    os.environ.setdefault("CYSIGNALS_CRASH_NDEBUG", "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in a terminal is for the monitor
    inbox = Inbox(0)
    contained: dict[str, Any] = {}
    if os.environ.pop("DSAGE_CONTAIN_FRAME", "") == "1":   # a monitor sends its policy first
        kind, first = inbox.get()
        if kind == "contain":
            contained = contain.apply(first or {})   # before any thread starts (user namespace)
        else:
            inbox.items.appendleft((kind, first))
    chan = Channel(3)
    from dsage_core.client.sage_check import sage_available
    chan.send(["hello", os.getpid(), {"sage": sage_available(), "contained": contained}])
    child = Child(chan, contained)
    child.serve(inbox)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
