"""The ``dsage`` command. Imports are lazy so ``dsage --help`` is instant and no reactor starts early."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from dsage_core import __version__
from dsage_core import textsafe as safe
from dsage_core.model.records import UNTRUSTED_RESULT
from dsage_core.model.status import ALL_STATES, JobStatus


def _home(args: argparse.Namespace) -> Path:
    from dsage_core.home import resolve_home
    return resolve_home(getattr(args, "home", None))


def _client(args: argparse.Namespace) -> Any:
    from dsage_core.client.api import connect
    return connect(args.server, key=getattr(args, "key", None), home=_home(args), timeout=args.connect_timeout)


def _num(v: object) -> int | float:
    """A number from another peer's data for a table cell (0 for anything else)."""
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else 0


def _fail(msg: str, code: int = 1) -> int:
    print(f"dsage: error: {msg}", file=sys.stderr)
    return code


# ---------------------------------------------------------------------- long-running services
def stop_reactor(reactor: Any) -> None:
    """Stop the reactor unless it is already stopping (a signal and an error can both ask)."""
    if reactor.running and not getattr(reactor, "_stopped", False):
        reactor.stop()


def quiet_signals(reactor: Any) -> None:
    """Make SIGINT/SIGTERM stop *reactor* once, however many arrive (call before ``run``).

    Twisted's own handlers call ``reactor.stop()`` for each signal, and a second one (the parent's
    SIGTERM and its death signal, a supervisor and a process-group kill) logged a critical
    ``ReactorNotRunning`` traceback in the middle of a clean shutdown."""
    import signal as _signal
    from twisted.logger import Logger
    log = Logger(namespace="dsage.cli")

    def on_signal(number: int, frame: Any = None) -> None:
        name = _signal.Signals(number).name
        if getattr(reactor, "_stopped", False):
            log.info("dsage.cli.signal_while_stopping", signal=name)
        else:
            log.info("Received {signal}, shutting down.", signal=name)
        reactor._exitSignal = number
        reactor.callFromThread(stop_reactor, reactor)
    reactor.sigInt = reactor.sigTerm = on_signal


def _run_reactor(start: Any, stop: Any) -> int:
    """Run *start(reactor)* on a fresh reactor until SIGINT/SIGTERM, then *stop()*."""
    # the store thread (server) and child-pipe work must not wait 5 ms for the GIL while the
    # reactor thread is busy: a short switch interval keeps hand-offs off the latency path
    sys.setswitchinterval(0.0005)
    from twisted.internet import reactor
    from twisted.internet.defer import maybeDeferred
    from dsage_core.protocol.pacing import sleep_past_dead_timers
    sleep_past_dead_timers(reactor)
    quiet_signals(reactor)
    status = {"code": 0}

    def begin() -> None:
        d = maybeDeferred(start, reactor)

        def failed(f: Any) -> None:
            # never an empty "dsage: error: " (an exception without a message names its type)
            print(f"dsage: error: {str(f.value).strip() or f.type.__name__}", file=sys.stderr)
            status["code"] = 1
            stop_reactor(reactor)
        d.addErrback(failed)
    reactor.callWhenRunning(begin)
    reactor.addSystemEventTrigger("before", "shutdown", lambda: maybeDeferred(stop))
    reactor.run()
    return status["code"]


def cmd_server(args: argparse.Namespace) -> int:
    from dsage_core.limits import Limits
    from dsage_core.memory import freeze_startup_objects, tune_gc, tune_this_process
    tune_this_process()
    tune_gc()
    from dsage_core.server.service import ServerConfig, create_server
    limits = Limits()
    if args.max_queued:
        limits.max_queued_per_user = args.max_queued
    if args.blob_quota is not None:
        if args.blob_quota <= 0:
            return _fail("--blob-quota must be a positive number of MiB")
        limits.blob_quota = args.blob_quota * 1024 * 1024
    for item in args.limit or []:
        name, _, value = item.partition("=")
        if name not in limits.to_dict() or not value.isdigit():
            return _fail(f"bad --limit {item!r}; known limits: {', '.join(limits.to_dict())}")
        setattr(limits, name, int(value))
    from dsage_core.model.replicas import check_replicas
    try:
        check_replicas(args.anonymous_replicas)
    except ValueError as e:
        return _fail(f"--anonymous-replicas: {e}")
    why = _check_store(args.store)
    if why:
        return _fail(why)
    from dsage_core.home import secure_home
    fixed = secure_home(_home(args))
    if fixed:
        print(f"dsage: {fixed}", file=sys.stderr, flush=True)
    cfg = ServerConfig(home=_home(args), port=args.port, listen=args.listen, location=args.location,
                       allow_anonymous=args.allow_anonymous, lease_timeout=args.lease_timeout,
                       anonymous_packages=args.anonymous_packages,
                       max_failures=args.max_failures, limits=limits,
                       local_socket=not args.no_local_socket, anonymous_replicas=args.anonymous_replicas,
                       store=None if args.store in (None, "sqlite") else args.store)
    if not args.quiet:
        _log_to_stderr()
    holder: dict[str, Any] = {}
    status = {"code": 0}

    def start(reactor: Any) -> Any:
        svc = create_server(cfg, reactor)
        holder["svc"] = svc

        def lost(reason: str) -> None:
            print(f"dsage server: error: {reason}; stopped serving (a standby may serve now)",
                  file=sys.stderr, flush=True)
            status["code"] = 1
            stop_reactor(reactor)
        svc.on_fatal = lost
        svc.on_standby = lambda who: print(f"dsage server: standby: the database is served by {who}; "
                                           f"this server takes over when it stops", file=sys.stderr, flush=True)
        d = svc.start().addCallback(lambda furl: _print_furl(furl, svc, args.quiet))
        return d.addCallback(lambda _: freeze_startup_objects())
    code = _run_reactor(start, lambda: holder["svc"].stop() if "svc" in holder else None)
    return code or status["code"]


def _check_store(spec: str | None) -> str | None:
    """Why ``--store`` cannot be used (one line), or None."""
    from dsage_core.store import pg_schema
    if spec in (None, "sqlite"):
        return None
    if not pg_schema.is_url(spec):
        return f"unknown --store {spec!r}: give a postgresql://... URL (or 'sqlite', the default)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the PostgreSQL store needs psycopg: pip install 'dsage[postgresql]'"
    try:
        pg_schema.conninfo(spec, "dsage-server")
    except ValueError as e:
        return str(e)
    return None


def _print_furl(furl: str, svc: Any, quiet: bool) -> None:
    """The hints it advertises (and a warning if no other host can use them) on stderr, then the
    furl on stdout: whoever waits for the furl finds the warning already written. The warning
    shows even with --quiet."""
    from dsage_core.protocol import hints
    from dsage_core.protocol.hints import listens_beyond_loopback, loopback_warning
    if not quiet:
        shown = hints.location(svc.hosts, svc.port).replace(",", ", ")
        print(f"dsage server: advertising {shown} (listening on {svc.config.listen})",
              file=sys.stderr, flush=True)
    warning = loopback_warning(svc.hosts, svc.config.listen, "this furl")
    if warning and listens_beyond_loopback(svc.config.listen):   # the default 127.0.0.1 is no mistake
        print(f"dsage server: {warning}", file=sys.stderr, flush=True)
    print(furl, flush=True)


def cmd_worker(args: argparse.Namespace) -> int:
    from dsage_core.memory import freeze_startup_objects, tune_gc, tune_this_process
    tune_this_process()
    tune_gc()
    from dsage_core.worker.service import WorkerConfig, WorkerService
    from dsage_core import keyfd
    home = _home(args)
    if args.invite and (args.anonymous or args.server):
        return _fail("--invite names its server and registers a key: it cannot go with --anonymous or --server")
    if args.invite == "-":   # dsage launch ssh: the code comes on stdin, never on a command line
        from dsage_core.worker.lifeline import read_stdin_line
        args.invite = read_stdin_line()
        if not args.invite:
            return _fail("--invite -: no invite code on stdin")
    furl = None
    if not args.invite:
        try:
            from dsage_core.client.core import START_GRACE
            from dsage_core.protocol.connect import read_furl, read_own_furl
            # a server of this home that is starting writes its furl within START_GRACE
            furl = read_furl(args.server) if args.server else read_own_furl(home, START_GRACE)
        except Exception as e:
            return _fail(str(e))
    key_obj, hide = None, []
    if args.key_fd is not None:   # start_all, the desktop app, or our own re-exec below
        key_obj, hide = keyfd.receive(args.key_fd)
        key = None
    else:
        key = None if args.anonymous else Path(args.key).expanduser() if args.key else home / "dsage_key"
    if key is not None and not key.exists() and key == home / "dsage_key":
        from dsage_core.keys import ensure_keypair
        ensure_keypair(home)
    if args.key and args.key_fd is None:
        # a job could read our command line: run again with the key on a pipe, not its path
        keyfd.reexec_without_key_path(key, getattr(args, "argv", None))
    if not args.quiet:
        _log_to_stderr()
    holder: dict[str, Any] = {}

    from dsage_core.worker import lifeline
    parent = lifeline.take_parent_pid()  # set by a desktop app that started this worker for itself

    def launch(reactor: Any, furl: str) -> None:
        cfg = WorkerConfig(home=home, furl=furl, slots=args.workers, key_path=key, anonymous=args.anonymous,
                           mem_limit=args.mem_limit * 1024 * 1024 if args.mem_limit else None,
                           cpu_limit=args.cpu_limit, nice=args.nice, key=key_obj,
                           hide=hide + [Path(h).expanduser() for h in args.hide],
                           max_procs=args.max_procs, memory=args.memory, gpus=args.gpus)
        w = WorkerService(cfg, reactor)
        holder["w"] = w

        frozen = []

        def state(s: str) -> None:
            if s == "error":
                print(f"dsage: worker error: {w.error}", file=sys.stderr)
                stop_reactor(reactor)
                return
            if s == "connected" and not frozen:
                frozen.append(True)
                freeze_startup_objects()
            if not args.quiet:
                print(f"dsage worker: {s}", file=sys.stderr, flush=True)
        w.on_state(state)
        w.start()

    def start(reactor: Any) -> Any:
        lifeline.watch_parent(reactor, parent, lambda: stop_reactor(reactor))
        if args.exit_with_stdin:
            lifeline.watch_stdin(reactor, lambda: _stopping(reactor, args, "stdin closed"))
        _watch_walltime(reactor, args)
        if furl is not None:
            return launch(reactor, furl)
        # an invite is redeemed on this reactor, before the worker exists (never a blocking call
        # here: the reactor is running)
        from dsage_core.client.invite import redeem

        def redeemed(server_furl: str) -> None:
            if not args.quiet:
                print(f"dsage worker: invite accepted; the server is saved in {home / 'server.furl'}",
                      file=sys.stderr, flush=True)
            launch(reactor, server_furl)
        return redeem(args.invite, home, reactor, session="worker", key_path=key).addCallback(redeemed)
    return _run_reactor(start, lambda: holder["w"].stop() if "w" in holder else None)


def _stopping(reactor: Any, args: argparse.Namespace, why: str) -> None:
    if not args.quiet:
        print(f"dsage worker: {why}: handing jobs back and stopping", file=sys.stderr, flush=True)
    stop_reactor(reactor)


def _watch_walltime(reactor: Any, args: argparse.Namespace) -> None:
    """In a batch allocation (SLURM_JOB_END_TIME), stop --stop-before-end seconds before its end."""
    from dsage_core.worker import walltime
    end = walltime.end_time()
    if end is None:
        return
    if not args.quiet:
        print(f"dsage worker: the allocation ends at {_fmt_time(end)}; jobs go back to the server "
              f"{args.stop_before_end:g} s before", file=sys.stderr, flush=True)
    walltime.watch_end(reactor, end, args.stop_before_end,
                       lambda: _stopping(reactor, args, "the allocation ends soon"))


def cmd_start_all(args: argparse.Namespace) -> int:
    from dsage_core.client.api import start_all
    D = start_all(workers=args.workers, home=_home(args))
    print(f"dsage: server {D.furl}\ndsage: worker with {args.workers} slots; Ctrl+C stops both", flush=True)
    try:
        if args.demo:
            _demo(D)
        else:
            import threading
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        D.shutdown()
    return 0


def _demo(D: Any) -> None:
    from dsage_core import as_completed
    jobs = [D(f"sum(i*i for i in range({n}))", name=f"squares<{n}") for n in (10, 1000, 10**5, 10**6)]
    jobs.append(D.eval("import math\nDSAGE_RESULT = math.factorial(30)", name="factorial(30)"))
    jobs.append(D("1/0", name="fails on purpose"))
    from dsage_core.client.display import last_error_line, result_preview
    for j in as_completed(jobs):
        shown = result_preview(j) if j.status == JobStatus.COMPLETED else last_error_line(j.error)
        print(f"  job {j.id:>4} {j.name:<18} {j.status:<10} {shown}")
    print(f"dsage: stats {D.stats()}")


def _wait_jobs(D: Any, jobs: list[Any], quiet: bool) -> int:
    from dsage_core.client.joblist import JobList
    n = len(jobs)
    # the bar (stderr, a terminal only) is the one JobList.wait draws at the Python prompt
    JobList(jobs).wait(progress=False if quiet or n < 2 or not sys.stderr.isatty() else True)
    bad = sum(1 for j in jobs if j.status != JobStatus.COMPLETED)
    for j in jobs:
        if j.status == JobStatus.COMPLETED:
            print(repr(j.result) if n == 1 else f"{j.id}: {j.result!r}")
        else:
            print(f"{j.id}: {j.status}\n{j.error or ''}".rstrip(), file=sys.stderr)
    return 0 if bad == 0 else 2


def cmd_eval(args: argparse.Namespace) -> int:
    D = _client(args)
    try:
        j = D.eval(args.code, _mode="expr", kind="sage" if args.sage else "python", name=args.name,
                   timeout=args.timeout, priority=args.priority, trusted_only=args.trusted_only)
        if not args.wait:
            # not a bare id, which reads like a result; scripts take the third word
            print(f"submitted job {j.id}")
            return 0
        return _wait_jobs(D, [j], True)
    finally:
        D.shutdown()


def _file_jobs(args: argparse.Namespace) -> list[Any]:
    """Build every file's job, so a bad file (missing, unreadable, not .py/.sage, a .py that does
    not compile) fails the whole command before anything is sent; raises SubmitError."""
    from dsage_core.client.payload import Options, check_syntax, file_job
    subs = []
    for f in args.files:
        opts = Options.pop_from({"timeout": args.timeout, "priority": args.priority,
                                 "trusted_only": args.trusted_only})
        subs.append(file_job(f, opts))
        check_syntax(subs[-1], f)
    if any("sage" in s.needs for s in subs):
        from dsage_core.client.sage_check import require_sage_extra
        require_sage_extra()
    return subs


def cmd_submit(args: argparse.Namespace) -> int:
    from dsage_core.client.payload import SubmitError
    try:
        subs = _file_jobs(args)
    except SubmitError as e:
        return _fail(str(e))
    D = _client(args)
    try:
        jobs = D._submit(subs)  # one batch: all files or, if the server refuses it, none
        if not args.wait:
            for f, j in zip(args.files, jobs):
                print(f"submitted job {j.id} ({f})")
            return 0
        return _wait_jobs(D, jobs, False)
    finally:
        D.shutdown()


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def cmd_jobs(args: argparse.Namespace) -> int:
    D = _client(args)
    try:
        infos = D._sync(D.aclient.list_jobs, status=args.status, limit=args.limit, newest_first=True,
                        all_users=args.all)
        print(f"{'ID':>7}  {'STATUS':<10} {'NAME':<28} {'CREATED':<19}  RESULT")
        for i in reversed(infos):
            prev = (i.result_preview or (i.error or "").strip().splitlines()[-1:] and
                    (i.error or "").strip().splitlines()[-1] or "")[:60]
            print(f"{i.id:>7}  {safe.line(i.status):<10} {safe.line(i.name[:28]):<28} "
                  f"{_fmt_time(i.created):<19}  {safe.line(prev)}")
        return 0
    finally:
        D.shutdown()


def cmd_job(args: argparse.Namespace) -> int:
    from dsage_core.protocol.errors import NotFound
    from dsage_core import codec
    D = _client(args)
    try:
        try:
            rec = D._sync(D.aclient.get_record, args.id, True)
        except NotFound as e:
            return _fail(str(e))
        for k in ("id", "name", "status", "owner", "worker", "priority", "attempts"):
            print(f"{k:>10}: {safe.line(rec.get(k), 500)}")
        for k in ("created", "started", "finished"):
            print(f"{k:>10}: {_fmt_time(rec.get(k))}")
        if rec.get("waiting_reason"):
            print(f"   waiting: {safe.line(rec['waiting_reason'])}")
        if (rec.get("extra") or {}).get("replicas"):
            print(f"{'replicas':>10}: {safe.line(rec['extra']['replicas'], 500)}")
        if rec.get("progress") is not None:
            print(f"{'progress':>10}: {rec['progress'] * 100:.0f}% {safe.line(rec.get('progress_message'))}")
        if rec.get("output"):
            print("---- output ----\n" + safe.block(rec["output"]).rstrip())
        if rec.get("status") == JobStatus.COMPLETED and rec.get("result") is not None:
            try:
                data = rec["result"]
                text = codec.text_form(data)   # a Sage object: its string form, as at the sage: prompt
                mine = not (rec.get("extra") or {}).get(UNTRUSTED_RESULT)   # else never unpickled here
                shown = (codec.decode_value(text) if text is not None
                         else repr(codec.decode_value(data, allow_pickle=mine)))
                print("---- result ----\n" + safe.block(shown))
            except Exception as e:
                print(f"---- result ----\n(not decodable here: {safe.line(e)}) "
                      f"{safe.line(rec.get('result_preview'))}")
        if rec.get("error"):
            print("---- error ----\n" + safe.block(rec["error"]).rstrip())
        return 0
    finally:
        D.shutdown()


def cmd_kill(args: argparse.Namespace) -> int:
    D = _client(args)
    try:
        ok = D.kill(args.id)
        if not ok:
            return _fail(f"job {args.id} is unknown or already finished")
        print(f"killed {args.id}")
        return 0
    finally:
        D.shutdown()


def _memory_size(text: str) -> int:
    """``--memory 8G``: bytes (argparse type)."""
    from dsage_core.model.resources import parse_bytes
    try:
        return parse_bytes(int(text) if text.isdigit() else text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_workers(args: argparse.Namespace) -> int:
    D = _client(args)
    try:
        ws = D.workers()
        print(f"{'WORKER':<32} {'SLOTS':>7} {'CPUS':>4} {'MEM GiB':>7} {'DONE':>7}  {'ADDRESS':<21}  IDENTITY")
        for w in ws:   # worker-supplied text: anything a terminal would act on is replaced
            ident = "anonymous" if w.get("anonymous") else f"keyed ({safe.line(w.get('user'))})"
            mem = _num(w.get("memory")) / 2**30
            print(f"{safe.line(w.get('id'), 32):<32} {_num(w.get('busy')):>3}/{_num(w.get('slots')):<3} "
                  f"{_num(w.get('cpus')) or '?':>4} {mem:>7.1f} {_num(w.get('jobs_done')):>7}  "
                  f"{safe.line(w.get('address')) or '?':<21}  {ident}{' paused' if w.get('paused') else ''}")
        if not ws:
            print("(no workers connected)")
        return 0
    finally:
        D.shutdown()


def cmd_stats(args: argparse.Namespace) -> int:
    D = _client(args)
    try:
        s = D.stats()
        if args.json:
            print(json.dumps(s, indent=1))
        else:
            for k in ALL_STATES:
                print(f"{k:>12}: {s.get(k, 0)}")
            print(f"{'jobs/s (1m)':>12}: {s['rate_1m']:.2f}")
            print(f"{'slots':>12}: {s['busy_slots']} busy / {s['total_slots']} total, {s['workers']} workers")
        return 0
    finally:
        D.shutdown()


def cmd_setup(args: argparse.Namespace) -> int:
    from dsage_core.setup import ensure_setup
    home = _home(args)
    if not args.yes and sys.stdin.isatty():
        ans = input(f"Set up dsage in {home}? [Y/n] ").strip().lower()
        if ans not in ("", "y", "yes"):
            return 1
    info = ensure_setup(home)
    if info["fixed"]:
        print(f"dsage: {info['fixed']}")
    _init_db(home)
    print(f"dsage home:  {info['home']}\nyour key:    {info['key']} ({info['fingerprint']})\n"
          f"server cert: {info['server_cert']}")
    return 0


def _init_db(home: Path) -> None:
    """Create the database and register the owner's key as the first admin (idempotent)."""
    from dsage_core.home import DATABASE
    from dsage_core.server.service import ensure_local_worker, ensure_owner
    from dsage_core.store import InlineRunner, SqliteStore
    store = SqliteStore(home / DATABASE, InlineRunner())
    store.open()
    ensure_owner(store, home)
    ensure_local_worker(store, home)
    store.close()


def cmd_user(args: argparse.Namespace) -> int:
    D = _client(args)
    try:
        if args.user_cmd == "add":
            from dsage_core import keys
            pub = keys.load_public_key(args.key_value)
            r = D.admin("user_add", args.name, pub, args.role)
            print(f"added {r['name']} ({r['role']}, {r['fingerprint']})")
        elif args.user_cmd == "list":
            for u in D.admin("user_list"):
                print(f"{u['name']:<24} {u['role']:<7} {u['fingerprint']}")
        elif args.user_cmd == "remove":
            if not D.admin("user_remove", args.name):
                return _fail(f"no such user: {args.name}")
            print(f"removed {args.name}")
        return 0
    finally:
        D.shutdown()


def cmd_invite(args: argparse.Namespace) -> int:
    from dsage_core import keys
    from dsage_core.protocol.errors import BadRequest
    from dsage_core.server.admin import invite_seconds
    expires = None
    if args.invite_cmd not in ("list", "revoke"):
        try:
            expires = invite_seconds(_duration(args.expires))  # checked before connecting
        except BadRequest as e:
            return _fail(f"bad --expires {args.expires!r}: {e}")
    D = _client(args)
    try:
        if args.invite_cmd == "list":
            for i in D.admin("invite_list"):
                state = "revoked" if i.get("revoked") else f"{i.get('uses_left')} uses left"
                print(f"{i['id']:<14} {i['role']:<7} expires {_fmt_time(i.get('expires'))}  {state}")
        elif args.invite_cmd == "revoke":
            if not D.admin("invite_revoke", args.id):
                return _fail(f"no such invite: {args.id}")
            print(f"revoked {args.id}")
        else:
            r = D.admin("invite_add", args.role, expires, args.uses)
            print(keys.make_invite_code(D.furl, r["id"], r["secret"]))
            from dsage_core.protocol.hints import furl_hosts, loopback_warning
            warning = loopback_warning(furl_hosts(D.furl), r.get("listen"), "this invite code")
            if warning:
                print(f"dsage: {warning}", file=sys.stderr)
        return 0
    finally:
        D.shutdown()


def cmd_launch(args: argparse.Namespace) -> int:
    from dsage_core.launch import slurm, ssh
    module = ssh if args.launch_cmd == "ssh" else slurm
    return module.run(args, lambda: _client(args))


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = text.strip().lower()
    try:
        if t[-1] in units:
            return float(t[:-1]) * units[t[-1]]
        return float(t)
    except (ValueError, IndexError):
        raise SystemExit(f"dsage: error: bad duration {text!r} (e.g. 30m, 12h, 1d)")


def _desktop(which: str, argv: list[str]) -> int:
    """Run the desktop app or the tray. The CLI is the composition root: dsage_core never imports
    the GUI package statically (import-linter checks it), and a headless install without Qt gets a
    clear message instead of a traceback."""
    import importlib
    module = {"gui": "dsage_gui.__main__", "tray": "dsage_gui.tray.__main__"}[which]
    try:
        entry = importlib.import_module(module)
    except ImportError as e:
        return _fail(f"the desktop {which} needs Qt (PySide6-Essentials): {e}")
    return entry.main(argv) or 0


def cmd_gui(args: argparse.Namespace) -> int:
    return _desktop("gui", args.gui_args)


def cmd_tray(args: argparse.Namespace) -> int:
    return _desktop("tray", args.tray_args)


def cmd_desktop(args: argparse.Namespace) -> int:
    from dsage_core import desktop
    paths = desktop.desktop_install() if args.cmd == "desktop-install" else desktop.desktop_uninstall()
    for p in paths:
        print(p)
    return 0


def _log_to_stderr() -> None:
    from twisted.logger import globalLogBeginner, textFileLogObserver, FilteringLogObserver, \
        LogLevelFilterPredicate, LogLevel
    pred = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(textFileLogObserver(sys.stderr), [pred])],
                                     redirectStandardIO=False)


# ---------------------------------------------------------------------- argument parsing
def _job_options(s: argparse.ArgumentParser) -> None:
    """The options every submitting command takes."""
    s.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="wall-clock limit in seconds; past it the job ends 'timed_out' (default: none)")
    s.add_argument("--priority", type=int, default=0,
                   help="higher runs first; equal priorities run in submit order (default: %(default)s)")
    s.add_argument("--trusted-only", action="store_true",
                   help="run only on workers with a key, never on anonymous ones")


def _client_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--home", help="dsage home (default: $DSAGE_HOME or the user data dir)")
    sp.add_argument("--server", help="server furl or furl file (default: HOME/server.furl)")
    sp.add_argument("--key", help="private key (default: HOME/dsage_key)")
    sp.add_argument("--connect-timeout", type=float, default=10.0, help=argparse.SUPPRESS)


def _launch_parsers(sub: Any) -> None:
    """``dsage launch ssh|slurm``: workers on other machines through OpenSSH or Slurm (the client
    options go after ssh/slurm: ``dsage launch ssh --home H HOST``)."""
    help = "start workers on other machines (ssh, slurm)"
    s = sub.add_parser("launch", help=help, description=help)
    s.set_defaults(func=cmd_launch)
    ls = s.add_subparsers(dest="launch_cmd", required=True, metavar="ssh|slurm",
                          help="ssh: a worker on each host over OpenSSH; slurm: workers in a Slurm job")
    h = ls.add_parser("ssh", help="a worker on each host over OpenSSH, until Ctrl+C",
                      description="Run 'dsage worker' on each HOST over the system's ssh: each host "
                      "gets a one-use invite (its own key is registered; no private key is copied); "
                      "its lines are shown prefixed by host; Ctrl+C or SIGTERM stops them all (each "
                      "hands its jobs back). Hosts need Python >= 3.11 and this dsage version.")
    h.add_argument("hosts", nargs="+", metavar="HOST", help="an ssh destination ([user@]host, an "
                   "alias of ~/.ssh/config, ssh://user@host:port)")
    h.add_argument("--workers", "-n", type=int, help="slots per host (default: the host's CPUs minus one)")
    h.add_argument("--python", default="python3",
                   help="the Python with dsage on the hosts (default: %(default)s)")
    h.add_argument("--check", action="store_true", help="only report what each host lacks (ssh, "
                   "Python >= 3.11, dsage and its version); exit 1 if any lacks something")
    h.add_argument("--remote-home", metavar="DIR", help="DSAGE_HOME of the remote workers ({host} is "
                   "replaced by the host; default: their user's usual home)")
    h.add_argument("--ssh", default="ssh", help="the ssh command, split like a shell would, e.g. "
                   "'ssh -F cluster.conf' (default: %(default)s)")
    _client_options(h)
    from dsage_core.launch.slurm import add_arguments
    add_arguments(sl := ls.add_parser("slurm", help="workers in a Slurm allocation (sbatch)",
                                description="Submit (sbatch) one job whose K tasks, one per node, each "
                                "run 'dsage worker' with C slots against this server, logged in with a "
                                "worker key made for this launch (the admin key stays here). Workers hand "
                                "their jobs back before the allocation's time ends. --cancel cancels "
                                "(scancel) every job launched from this home and removes their keys."))
    _client_options(sl)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dsage", description="Distributed SAGE: run many computations on "
                                "every spare core you have.")
    p.add_argument("--version", action="version", version=f"dsage {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    def cmd(name: str, fn: Any, help: str, client: bool = False) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("--home", help="dsage home (default: $DSAGE_HOME or the user data dir)")
        if client:
            sp.add_argument("--server", help="server furl or furl file (default: HOME/server.furl)")
            sp.add_argument("--key", help="private key (default: HOME/dsage_key)")
            sp.add_argument("--connect-timeout", type=float, default=10.0, help=argparse.SUPPRESS)
        sp.set_defaults(func=fn)
        return sp

    s = cmd("setup", cmd_setup, "create keys, the server certificate and the database")
    s.add_argument("--yes", action="store_true", help="do not ask")

    s = cmd("server", cmd_server, "run a server (prints its furl)")
    s.add_argument("--port", type=int, default=0, help="TCP port (0: reuse this home's last port)")
    s.add_argument("--listen", default="127.0.0.1", help="interface (0.0.0.0 for workers on other hosts)")
    s.add_argument("--location", help="host name other machines use to reach this server")
    s.add_argument("--allow-anonymous", action="store_true", help="accept anonymous workers")
    s.add_argument("--anonymous-packages", action="store_true",
                   help="let jobs with packages= run on anonymous workers (by default they run on keyed "
                        "workers only)")
    s.add_argument("--no-local-socket", action="store_true",
                   help="serve peers on this machine over TCP too (no UNIX socket in the home)")
    s.add_argument("--lease-timeout", type=float, default=15.0, help="seconds before a silent worker's "
                   "jobs are requeued")
    s.add_argument("--max-failures", type=int, default=3, help="worker deaths before a job is 'lost'")
    s.add_argument("--max-queued", type=int, default=0, help="queued jobs per user (quota; 0: keep "
                   "the default in dsage_core/limits.py)")
    s.add_argument("--blob-quota", type=int, metavar="MIB", default=None,
                   help="MiB of function blobs (the pickled functions of D.map/D.submit) one user's "
                   "unfinished jobs may hold (default: 256); a blob is freed when no unfinished job "
                   "needs it")
    s.add_argument("--limit", action="append", metavar="NAME=VALUE",
                   help="a server-side maximum, e.g. max_result=16777216 (repeatable; see dsage_core/limits.py)")
    s.add_argument("--anonymous-replicas", type=int, default=1, metavar="K",
                   help="run each job that may go to anonymous workers (not --trusted-only) on K distinct "
                   "workers and accept its result when a majority agree (a job's replicas= option wins; "
                   "default: %(default)s)")
    s.add_argument("--store", default=os.environ.get("DSAGE_STORE") or None, metavar="URL",
                   help="postgresql://USER:PASSWORD@HOST/DB (or postgresql:///DB?host=/socket/dir): keep jobs "
                   "in PostgreSQL; a second server on the same database waits as a standby and takes "
                   "over (default: $DSAGE_STORE, else SQLite in the home)")
    s.add_argument("--quiet", action="store_true", help="no log on stderr (the furl is still printed)")

    s = cmd("worker", cmd_worker, "run a worker with N slots (child processes)")
    s.add_argument("--server", help="server furl or furl file (default: HOME/server.furl)")
    s.add_argument("--workers", "-n", "--cpus", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                   help="slots (cpus offered): jobs run at once; a job asking for cpus=K takes K "
                        "(default: %(default)s, one less than the CPUs; more than the CPUs is allowed)")
    s.add_argument("--memory", type=_memory_size, metavar="SIZE",
                   help="memory offered to jobs that ask for memory=, e.g. 8G (default: the machine's)")
    s.add_argument("--gpus", type=int, metavar="K", help="gpus offered (default: the NVIDIA devices)")
    s.add_argument("--key", help="private key (default: HOME/dsage_key)")
    s.add_argument("--anonymous", action="store_true", help="join without a key (if the server allows)")
    s.add_argument("--invite", help="join with an invite code (registers this machine's key); "
                   "'-': read the code from the first line of stdin")
    s.add_argument("--hide", action="append", default=[], metavar="FILE",
                   help="a file jobs must not read, hidden with its directory like the worker's own key "
                        "(repeatable; dsage launch slurm hides the server's home this way)")
    s.add_argument("--exit-with-stdin", action="store_true",
                   help="stop (handing jobs back) when stdin closes: ties the worker to the ssh "
                        "session of 'dsage launch ssh'")
    s.add_argument("--stop-before-end", type=float, default=60.0, metavar="SECONDS",
                   help="inside a Slurm allocation (SLURM_JOB_END_TIME), hand jobs back and stop "
                        "this many seconds before it ends (default: %(default)s)")
    s.add_argument("--mem-limit", type=int, help="memory limit per job, MiB")
    s.add_argument("--cpu-limit", type=float, help="CPU-time limit per job, seconds")
    s.add_argument("--nice", type=int, default=10, help="niceness of job processes (default: %(default)s)")
    s.add_argument("--max-procs", type=int, default=None,
                   help="processes and threads one job may have at once (default: "
                        "max(128, 2 x CPUs + 32); 0: no limit)")
    s.add_argument("--key-fd", type=int, default=None,
                   help="read the private key from this file descriptor (how start_all and the "
                        "desktop app hand their local worker its key)")
    s.add_argument("--quiet", action="store_true", help="no log or state changes on stderr")

    s = cmd("start-all", cmd_start_all, "start a server and a local worker, until Ctrl+C")
    s.add_argument("--workers", "-n", type=int, default=2,
                   help="slots of the local worker (default: %(default)s)")
    s.add_argument("--demo", action="store_true", help="run a small demo batch and exit")

    s = cmd("eval", cmd_eval, "evaluate an expression remotely", client=True)
    s.add_argument("code", help="a Python (or Sage) expression, e.g. '2+2'")
    s.add_argument("--wait", action="store_true", help="wait and print the result "
                   "(without it: print 'submitted job ID')")
    s.add_argument("--sage", action="store_true", help="run as Sage code")
    s.add_argument("--name", help="job name shown by 'dsage jobs' (default: the code's first line)")
    _job_options(s)

    s = cmd("submit", cmd_submit, "submit .py/.sage files as jobs", client=True)
    s.add_argument("files", nargs="+", metavar="FILE", help="a .py or .sage file; the job's result is "
                   "its DSAGE_RESULT (all files are checked before any is sent)")
    s.add_argument("--wait", action="store_true", help="wait (progress bar) and print results "
                   "(without it: print 'submitted job ID (FILE)' per file)")
    _job_options(s)

    from dsage_core.model.job import ALL_STATES
    s = cmd("jobs", cmd_jobs, "list your jobs", client=True)
    s.add_argument("--status", choices=ALL_STATES, metavar="STATUS",
                   help="only jobs in this state: %(choices)s")
    s.add_argument("--limit", type=int, default=50, help="show the newest N jobs (default: %(default)s)")
    s.add_argument("--all", action="store_true", help="all users' jobs (admin)")

    s = cmd("job", cmd_job, "show one job: status, output, result or error", client=True)
    s.add_argument("id", type=int, help="job id, as 'dsage jobs' shows it")

    s = cmd("kill", cmd_kill, "kill a job", client=True)
    s.add_argument("id", type=int, help="job id, as 'dsage jobs' shows it")

    cmd("workers", cmd_workers, "list connected workers", client=True)
    s = cmd("stats", cmd_stats, "counts, throughput, slots", client=True)
    s.add_argument("--json", action="store_true", help="print all the numbers as JSON")

    s = cmd("user", cmd_user, "manage users (admin)", client=True)
    us = s.add_subparsers(dest="user_cmd", required=True, help="add, list or remove")
    a = us.add_parser("add", help="add a user with a public key")
    a.add_argument("name", help="the new user's name")
    a.add_argument("--key", dest="key_value", required=True, help="public key file or 'ssh-ed25519 ...'")
    a.add_argument("--role", choices=["client", "worker", "admin"], default="client",
                   help="%(choices)s (default: %(default)s)")
    us.add_parser("list", help="list users")
    r = us.add_parser("remove", help="remove a user")
    r.add_argument("name", help="the user to remove")

    s = cmd("invite", cmd_invite, "make, list or revoke invite codes (admin)", client=True)
    s.add_argument("invite_cmd", nargs="?", choices=["new", "list", "revoke"], default="new",
                   help="%(choices)s (default: %(default)s, which prints a code)")
    s.add_argument("id", nargs="?", help="the invite to revoke, as 'dsage invite list' shows it")
    s.add_argument("--role", choices=["worker", "client"], default="worker",
                   help="role of whoever redeems it: %(choices)s (default: %(default)s)")
    s.add_argument("--expires", default="1d", help="e.g. 30m, 12h, 1d (default: %(default)s)")
    s.add_argument("--uses", type=int, default=1,
                   help="how many times it can be redeemed (default: %(default)s)")

    _launch_parsers(sub)

    s = cmd("gui", cmd_gui, "start the desktop app")
    s.add_argument("gui_args", nargs=argparse.REMAINDER, help="options of the desktop app (dsage gui --help)")
    s = cmd("tray", cmd_tray, "start the system-tray worker")
    s.add_argument("tray_args", nargs=argparse.REMAINDER, help="options of the tray (dsage tray --help)")
    cmd("desktop-install", cmd_desktop, "install the .desktop files, icons and MIME type for this user")
    cmd("desktop-uninstall", cmd_desktop, "remove what desktop-install installed")
    return p


def main(argv: list[str] | None = None) -> int:
    """The ``dsage`` command; returns the exit code."""
    try:
        try:
            return _main(argv)
        finally:
            # output that fit in the buffer meets a closed pipe here, not at interpreter exit
            sys.stdout.flush()
    except BrokenPipeError:
        # `dsage jobs | head`: the reader has gone, so stop quietly. Python would print a second
        # error when it flushes stdout at exit, so stdout now points at /dev/null. The exit code is
        # 141 (128 + SIGPIPE), what a shell reports for a C tool killed by the same broken pipe.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # stdout is not a real file (e.g. replaced in-process)
            pass
        return 141


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("gui", "tray"):
        # the desktop commands parse their own options and print their own --help (argparse
        # cannot forward "--x" reliably)
        return _desktop(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from dsage_core.protocol.errors import DsageError
    if args.func in (cmd_server, cmd_worker, cmd_setup, cmd_start_all):
        os.umask(0o077)   # every file and directory they create is the user's alone
    try:
        return args.func(args) or 0
    except (DsageError, FileNotFoundError, ValueError, TimeoutError, RuntimeError) as e:  # SubmitError is a ValueError
        return _fail(str(e))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
