"""``dsage launch slurm``: workers in a Slurm allocation, started with ``sbatch``.

One batch job of K nodes runs one ``dsage worker`` per node (``srun``, one task per node, C CPUs
per task and C slots per worker). The workers log in with a worker key made for this launch
(registered on the server as ``slurm-XXXXXXXX``, role worker): the admin key never goes to the
cluster. The key, the batch script and Slurm's output live in ``DSAGE_HOME/slurm/<label>/``, which
the compute nodes must see (a shared home directory, as on most clusters). Each worker reads
``SLURM_JOB_END_TIME`` and hands its jobs back before the allocation's time runs out
(:mod:`dsage_core.worker.walltime`). ``--cancel`` scancels every job launched from this home and
removes their keys, on the server and on disk.
"""
from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dsage_core import textsafe

#: where the launches of a home are remembered (job ids, key users, directories)
STATE = "launched.json"


#: Slurm before 23.02 does not set SLURM_JOB_END_TIME: the script asks squeue for the end (none
#: for a job without a time limit, or where GNU date is missing: the worker then stops at Slurm's
#: SIGTERM, which also hands its jobs back)
END_TIME = """\
if [ -z "${SLURM_JOB_END_TIME:-}" ]; then
  end=$(squeue -h -j "$SLURM_JOB_ID" -o %e 2>/dev/null)
  if SLURM_JOB_END_TIME=$(date -d "$end" +%s 2>/dev/null); then export SLURM_JOB_END_TIME
  else unset SLURM_JOB_END_TIME; fi
fi"""


@dataclass
class Plan:
    """Everything one batch script says."""

    furl: str
    key: Path          #: the worker key the tasks log in with
    outdir: Path       #: Slurm's output file goes here
    nodes: int
    cpus: int
    python: str = sys.executable
    partition: str | None = None
    time: str | None = None
    stop_before_end: float = 60.0
    extra: tuple[str, ...] = ()   #: more ``#SBATCH`` options, as given
    #: what jobs must not read: the admin key, and with it the server's home (its directory), which
    #: the compute nodes see when the home directory is shared
    hide: Path = Path("dsage_key")


def batch_script(plan: Plan) -> str:
    """The sbatch script: one task per node; each runs a worker in a node-local home. Values reach
    the task's shell as positional arguments, so no value is ever parsed as shell code."""
    opts = ["--job-name=dsage-worker", f"--nodes={plan.nodes}", "--ntasks-per-node=1",
            f"--cpus-per-task={plan.cpus}", f"--output={plan.outdir}/slurm-%j.out"]
    if plan.partition:
        opts.append(f"--partition={plan.partition}")
    if plan.time:
        opts.append(f"--time={plan.time}")
    opts += plan.extra
    task = ('exec "$0" -m dsage_core worker --server "$1" --key "$2" --workers "$3" '
            '--stop-before-end "$4" --hide "$5" '
            '--home "${TMPDIR:-/tmp}/dsage-worker.$SLURM_JOB_ID.$SLURM_PROCID"')
    args = [plan.python, plan.furl, str(plan.key), str(plan.cpus), f"{plan.stop_before_end:g}",
            str(plan.hide)]
    return "\n".join(["#!/bin/sh", *(f"#SBATCH {shlex.quote(o)}" for o in opts),
                      "# written by 'dsage launch slurm': one dsage worker per node; they hand their "
                      "jobs back before the time limit", END_TIME,
                      f"exec srun --kill-on-bad-exit=0 sh -c {shlex.quote(task)} "
                      + " ".join(shlex.quote(a) for a in args), ""])


# ---------------------------------------------------------------------- remembered launches
def state_path(home: Path) -> Path:
    """Where the launches of *home* are remembered."""
    return Path(home) / "slurm" / STATE


def load_state(home: Path) -> list[dict[str, Any]]:
    """The launches not cancelled yet (an unreadable file counts as none)."""
    try:
        data = json.loads(state_path(home).read_text())
    except (OSError, ValueError):
        return []
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def save_state(home: Path, launches: list[dict[str, Any]]) -> None:
    """Replace the remembered launches (atomically: a crash leaves the old list or the new one)."""
    p = state_path(home)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = p.with_suffix(".new")
    tmp.write_text(json.dumps(launches, indent=1))
    os.replace(tmp, p)


# ---------------------------------------------------------------------- the commands
def _tool(name: str) -> str:
    """The path of a Slurm command, or a clear error where Slurm is not installed."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not on PATH: run 'dsage launch slurm' on a machine of the "
                           f"cluster (a login node)")
    return path


def submit(home: Path, client: Any, plan_for: Callable[[Path, Path], Plan],
           out: Callable[[str], None] = print) -> int:
    """Make a worker key, register it, write the script, sbatch it and remember the job."""
    from dsage_core import keys
    sbatch = _tool("sbatch")
    label = secrets.token_hex(4)
    user = f"slurm-{label}"
    d = Path(home) / "slurm" / label
    d.mkdir(parents=True, mode=0o700)
    key = d / "worker_key"
    pub = keys.generate_keypair(key, d / "worker_key.pub", comment=user)
    client.admin("user_add", user, pub, "worker")
    plan = plan_for(key, d)
    try:
        script = d / "job.sh"
        script.write_text(batch_script(plan))
        p = subprocess.run([sbatch, "--parsable", str(script)], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"sbatch refused the job: {(p.stderr or p.stdout).strip()[-500:]}")
    except BaseException:   # nothing was submitted: the key must not stay usable
        client.admin("user_remove", user)
        shutil.rmtree(d, ignore_errors=True)
        raise
    job = p.stdout.strip().split(";")[0]
    save_state(home, [*load_state(home), {"job": job, "user": user, "dir": str(d)}])
    out(f"submitted Slurm job {job}: {plan.nodes} node(s) x {plan.cpus} slot(s), logged in as {user}; "
        f"output in {d}/slurm-{job}.out; 'dsage launch slurm --cancel' stops it")
    return 0


def cancel(home: Path, connect: Callable[[], Any], out: Callable[[str], None] = print) -> int:
    """scancel every remembered job, remove its key user and key; forget those done."""
    launches = load_state(home)
    if not launches:
        out("nothing to cancel: no Slurm job was launched from this home")
        return 0
    scancel = _tool("scancel")
    D = connect()
    left = list(launches)   # what is still to cancel, saved whatever happens
    try:
        for entry in launches:
            job, user = str(entry.get("job", "")), str(entry.get("user", ""))
            p = subprocess.run([scancel, job], capture_output=True, text=True, timeout=60)
            if p.returncode != 0 and "Invalid job id" not in p.stderr:   # a finished job is fine
                out(f"scancel {job} failed: {textsafe.line(p.stderr.strip())}")
                continue
            D.admin("user_remove", user)
            for name in ("worker_key", "worker_key.pub"):
                (Path(entry.get("dir", "")) / name).unlink(missing_ok=True)
            left.remove(entry)
            out(f"cancelled Slurm job {job}; its worker key ({user}) is removed")
    finally:
        D.shutdown()
        save_state(home, left)
    return 1 if left else 0


def add_arguments(p: Any) -> None:
    """The options of ``dsage launch slurm``."""
    p.add_argument("--nodes", "-N", type=int, default=1, help="nodes, one worker each (default: %(default)s)")
    p.add_argument("--cpus-per-node", "-c", type=int, default=1,
                   help="CPUs per node = slots of its worker (default: %(default)s)")
    p.add_argument("--partition", "-p", help="the Slurm partition (default: the cluster's)")
    p.add_argument("--time", "-t", help="wall time, in sbatch's format (e.g. 30, 2:00:00, 1-0)")
    p.add_argument("--python", default=sys.executable,
                   help="the Python with dsage on the compute nodes (default: this one, %(default)s)")
    p.add_argument("--stop-before-end", type=float, default=60.0, metavar="SECONDS",
                   help="workers hand their jobs back this long before the time limit (default: %(default)s)")
    p.add_argument("--sbatch-option", action="append", default=[], metavar="OPT",
                   help="one more #SBATCH option, written --sbatch-option=--account=lab (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the batch script; submit nothing")
    p.add_argument("--cancel", action="store_true",
                   help="scancel every job launched from this home and remove their worker keys")


def run(args: Any, connect: Callable[[], Any]) -> int:
    """``dsage launch slurm`` with parsed *args*; *connect* opens the admin client session."""
    from dsage_core.home import resolve_home
    home = resolve_home(getattr(args, "home", None))
    if args.cancel:
        return cancel(home, connect)
    if args.nodes < 1 or args.cpus_per_node < 1:
        raise ValueError("--nodes and --cpus-per-node must be at least 1")

    def plan_for(furl: str) -> Callable[[Path, Path], Plan]:
        return lambda key, d: Plan(furl, key, d, args.nodes, args.cpus_per_node, args.python,
                                   args.partition, args.time, args.stop_before_end,
                                   tuple(args.sbatch_option), home / "dsage_key")
    if args.dry_run:
        from dsage_core.protocol.connect import read_furl, read_own_furl
        furl = read_furl(args.server) if args.server else read_own_furl(home, 0)
        print(batch_script(plan_for(furl)(home / "slurm" / "LABEL" / "worker_key", home / "slurm" / "LABEL")),
              end="")
        return 0
    D = connect()
    try:
        _warn_loopback(D.furl)
        return submit(home, D, plan_for(D.furl))
    finally:
        D.shutdown()


def _warn_loopback(furl: str) -> None:
    from dsage_core.protocol.hints import furl_hosts, is_loopback, loopback_warning
    hosts = furl_hosts(furl)
    if all(is_loopback(h) for h in hosts):
        print(f"dsage launch slurm: {loopback_warning(hosts, None, 'this furl')} (fine only for a "
              f"single-node cluster on this machine)", file=sys.stderr, flush=True)
