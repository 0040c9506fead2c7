"""``dsage launch ssh HOST...``: a worker on each host over the system's OpenSSH client.

For each host the launcher makes a one-use worker invite (the server registers the key the remote
worker makes for itself: no private key leaves this machine) and runs, over ``ssh -T``::

    PYTHON -m dsage_core worker --invite - --exit-with-stdin [--workers N] [--home DIR]

The invite code goes as the first line of the remote command's stdin (never on a command line that
``ps`` on the host would show), and stdin then stays open: when it closes (Ctrl+C here, a killed
``ssh``, a dropped link) the remote worker hands its jobs back and exits, so nothing is orphaned.
``--check`` reports what each host lacks instead.
"""
from __future__ import annotations

import json
import queue
import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from dsage_core import __version__, textsafe

#: the oldest Python dsage runs on
MIN_PYTHON = (3, 11)
#: one-use invites made for a launch expire after this many seconds if no host redeems them
INVITE_SECONDS = 15 * 60.0
#: seconds remote workers get to hand their jobs back after their stdin closed
STOP_GRACE = 30.0
#: options every ssh call gets: never ask for a password (stdin is ours), no terminal
SSH_OPTIONS = ["-T", "-o", "BatchMode=yes"]

#: what --check runs with the remote Python; old Pythons must parse it too (no f-strings)
PROBE = """\
import sys, json
r = {"python": list(sys.version_info[:3])}
try:
    import dsage_core
    r["dsage"] = dsage_core.__version__
    from dsage_core.home import SERVER_CERT, resolve_home
    h = resolve_home(sys.argv[1] or None, create=False)
    r["home"], r["server_home"] = str(h), (h / SERVER_CERT).exists()
except Exception as e:
    r["error"] = "%s: %s" % (type(e).__name__, e)
print("DSAGE-PROBE " + json.dumps(r))
"""


def ssh_command(ssh: str, host: str, remote: list[str]) -> list[str]:
    """The local argv that runs *remote* (an argv, quoted for the remote shell) on *host*."""
    return [*shlex.split(ssh), *SSH_OPTIONS, "--", host, " ".join(shlex.quote(a) for a in remote)]


def worker_command(python: str, workers: int | None, home: str | None) -> list[str]:
    """The remote ``dsage worker`` argv: the invite on stdin, tied to stdin."""
    argv = [python, "-m", "dsage_core", "worker", "--invite", "-", "--exit-with-stdin"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if home:
        argv += ["--home", home]
    return argv


# ---------------------------------------------------------------------- --check
def judge_probe(python: str, rc: int, out: str, err: str, local_version: str = __version__) -> list[str]:
    """What a host lacks, from one probe run over ssh (an empty list: nothing)."""
    line = next((ln for ln in out.splitlines() if ln.startswith("DSAGE-PROBE ")), None)
    last = (err.strip().splitlines() or [""])[-1]
    if line is None:
        if rc == 255:
            return [f"ssh cannot reach it: {last or 'ssh exited with 255'}"]
        if rc == 127 or "not found" in err or "No such file" in err:
            return [f"no {python} there (--python names the interpreter to use)"]
        return [f"{python} did not run the check (exit {rc}): {last}"]
    try:
        r = json.loads(line[len("DSAGE-PROBE "):])
        version = tuple(int(x) for x in r["python"])
    except (ValueError, KeyError, TypeError):
        return [f"{python} answered the check with something unreadable"]
    lacks = []
    if version < MIN_PYTHON:
        lacks.append(f"Python {'.'.join(map(str, version))} (dsage needs >= "
                     f"{'.'.join(map(str, MIN_PYTHON))})")
    if "dsage" not in r:
        lacks.append(f"dsage is not importable with {python} ({r.get('error', 'unknown error')})")
    elif r["dsage"] != local_version:
        lacks.append(f"dsage {r['dsage']} there, {local_version} here")
    if r.get("server_home"):   # e.g. a home directory shared with this machine over NFS
        lacks.append(f"a dsage home of its own: {r.get('home')} holds a server's files (a home "
                     f"shared with this machine?); give --remote-home DIR, e.g. '~/.dsage-{{host}}'")
    return lacks


def probe_summary(out: str) -> str:
    """'Python X.Y.Z, dsage V' from a probe's output (for a host that lacks nothing)."""
    line = next(ln for ln in out.splitlines() if ln.startswith("DSAGE-PROBE "))
    r = json.loads(line[len("DSAGE-PROBE "):])
    return f"Python {'.'.join(map(str, r['python']))}, dsage {r['dsage']}"


def check(hosts: list[str], python: str, ssh: str, home: str | None = None, timeout: float = 60.0,
          out: Callable[[str], None] = print) -> int:
    """Probe every host at once (*home*: its --remote-home); print one line per host; 1 if any
    lacks something."""
    probes = {h: subprocess.Popen(ssh_command(ssh, h, [python, "-c", PROBE, _host_home(home, h) or ""]),
                                  stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for h in hosts}
    bad = 0
    for h, p in probes.items():
        try:
            o, e = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            o, e = p.communicate()
            e += f"\nno answer within {timeout:g} s"
        lacks = judge_probe(python, p.returncode, o, e)
        bad += bool(lacks)
        shown = textsafe.line(h)
        out(f"{shown}: lacks: {'; '.join(textsafe.line(x) for x in lacks)}" if lacks
            else f"{shown}: ok ({probe_summary(o)})")
    return 1 if bad else 0


# ---------------------------------------------------------------------- launching
@dataclass
class Remote:
    """One host's ssh session running a worker; its output lines go to *out* prefixed by host."""

    host: str
    argv: list[str]
    code: str
    proc: Any = None
    ended: "queue.SimpleQueue[Remote]" = field(default_factory=queue.SimpleQueue)

    def start(self, out: Callable[[str], None]) -> None:
        # a session of its own: the terminal's Ctrl+C reaches us, and we stop the hosts in order
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.proc.stdin.write(self.code.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            pass   # ssh already died: its output says why
        threading.Thread(target=self._pump, args=(out,), daemon=True).start()

    def _pump(self, out: Callable[[str], None]) -> None:
        for raw in self.proc.stdout:
            out(f"{textsafe.line(self.host)}: {textsafe.line(raw.decode('utf-8', 'replace').rstrip())}")
        self.proc.wait()
        self.ended.put(self)

    def close_stdin(self) -> None:
        """Tell the remote worker to stop: it hands its jobs back and exits, then ssh ends."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def signal(self, sig: int) -> None:
        """Send *sig* to the local ssh client, if it still runs."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass


def _host_home(home: str | None, host: str) -> str | None:
    """--remote-home for one host ({host} replaced)."""
    return home.replace("{host}", host) if home else None


class _Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _raise_stop(number: int, frame: Any) -> None:
    """The launcher's SIGINT/SIGTERM handler: unwind the main thread's wait into the stop."""
    raise _Stop(signal.Signals(number).name)


def make_invites(client: Any, hosts: list[str], codes: dict[str, tuple[str, str]]) -> None:
    """One one-use worker invite per host (the admin key of this machine makes them), into
    *codes*: host -> (invite id, code)."""
    from dsage_core import keys
    for h in hosts:
        r = client.admin("invite_add", "worker", INVITE_SECONDS, 1)
        codes[h] = (r["id"], keys.make_invite_code(client.furl, r["id"], r["secret"]))
    from dsage_core.protocol.hints import furl_hosts, loopback_warning
    warning = loopback_warning(furl_hosts(client.furl), r.get("listen"), "each host's invite code")
    if warning:
        print(f"dsage launch ssh: {warning}", file=sys.stderr, flush=True)


def launch(hosts: list[str], codes: dict[str, str], python: str, workers: int | None,
           home: str | None, ssh: str, grace: float = STOP_GRACE) -> int:
    """Run a worker on every host until SIGINT/SIGTERM (then stop them all) or until every session
    ended by itself; 0 after a requested stop, else 1 if any session failed."""
    lock = threading.Lock()

    def out(line: str) -> None:
        with lock:
            print(line, flush=True)
    ended: "queue.SimpleQueue[Remote]" = queue.SimpleQueue()
    remotes = []
    for h in hosts:
        r = Remote(h, ssh_command(ssh, h, worker_command(python, workers, _host_home(home, h))), codes[h],
                   ended=ended)
        remotes.append(r)
    old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    failed = False
    try:
        for r in remotes:
            r.start(out)
        out(f"dsage launch ssh: {len(remotes)} host(s); Ctrl+C stops them all")
        running = len(remotes)
        while running:
            r = ended.get()
            running -= 1
            failed |= r.proc.returncode != 0
            out(f"{textsafe.line(r.host)}: ssh session ended (exit {r.proc.returncode})")
        return 1 if failed else 0
    except _Stop as e:
        out(f"dsage launch ssh: {e}: stopping the workers on {len(remotes)} host(s)")
        stop_all(remotes, grace, out)
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def stop_all(remotes: list[Remote], grace: float, out: Callable[[str], None]) -> None:
    """Close every session's stdin (each worker hands back and exits); after *grace* s end the
    ssh clients that remain (the remote side sees its stdin close then too), SIGKILL as the last
    resort. A second Ctrl+C skips the wait."""
    import time
    signal.signal(signal.SIGINT, _raise_stop)
    for r in remotes:
        r.close_stdin()
    try:
        deadline = time.monotonic() + grace
        for r in remotes:
            r.proc.wait(max(0.1, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, _Stop):
        for r in remotes:
            r.signal(signal.SIGTERM)
    for r in remotes:
        try:
            r.proc.wait(5)
        except subprocess.TimeoutExpired:
            r.signal(signal.SIGKILL)
            r.proc.wait()
        out(f"{textsafe.line(r.host)}: stopped (ssh exit {r.proc.returncode})")


def run(args: Any, connect: Callable[[], Any]) -> int:
    """``dsage launch ssh`` with parsed *args*; *connect* opens the admin client session."""
    if args.check:
        return check(args.hosts, args.python, args.ssh, args.remote_home)
    if len(set(args.hosts)) != len(args.hosts):
        raise ValueError("a host is named twice (each host runs one worker; use --workers for slots)")
    D = connect()
    invites: dict[str, tuple[str, str]] = {}
    try:
        make_invites(D, args.hosts, invites)
        return launch(args.hosts, {h: code for h, (_, code) in invites.items()}, args.python,
                      args.workers, args.remote_home, args.ssh)
    finally:
        # an invite a host never redeemed (unreachable, stopped first) must not stay usable
        for invite_id, _ in invites.values():
            try:
                D.admin("invite_revoke", invite_id)
            except Exception:   # the server is gone: the invite expires by itself
                pass
        D.shutdown()
