"""A real single-node Slurm for the launch tests (Debian's ``slurm-wlm`` + ``munge``): a private
``munged`` (its own socket and key), ``slurmctld`` and ``slurmd`` on free ports, all configured in
a temp directory through ``SLURM_CONF``, so nothing clashes with another test or a system Slurm."""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from dsage_core.ports import free_port
from tests.launch.debian import Unavailable, ensure


def _run(*argv: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env)


class Slurm:
    """munged + slurmctld + slurmd; ``env`` has ``SLURM_CONF`` for sbatch/squeue/scancel."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise Unavailable("a private Slurm needs root (slurmd runs jobs as their users)")
        self.munged = ensure("/usr/sbin/munged", "munge")
        ensure("/usr/sbin/slurmctld", "slurm-wlm")
        ensure("sbatch", "slurm-wlm")
        try:
            munge = pwd.getpwnam("munge")
        except KeyError:
            raise Unavailable("the munge package made no 'munge' user") from None
        # a directory the munge user can reach (pytest's tmp_path is root's alone)
        self.root = Path(tempfile.mkdtemp(prefix="dsage-slurm-"))
        os.chmod(self.root, 0o755)
        self.procs: list[subprocess.Popen[str]] = []
        try:
            self._start(munge)
        except BaseException:
            self.stop()
            raise

    def _start(self, munge: pwd.struct_passwd) -> None:
        m = self.root / "munge"
        m.mkdir(mode=0o700)
        key = m / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        for p in (m, key):
            os.chown(p, munge.pw_uid, munge.pw_gid)
        self.socket = m / "munge.socket"
        self.procs.append(subprocess.Popen(
            ["setpriv", f"--reuid={munge.pw_uid}", f"--regid={munge.pw_gid}", "--clear-groups",
             self.munged, "-F", "--force", f"--socket={self.socket}", f"--key-file={key}",
             f"--log-file={m}/munged.log", f"--pid-file={m}/munged.pid", f"--seed-file={m}/seed"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        self._wait_for(lambda: self.socket.exists(), "munged's socket", self.procs[-1])
        host = socket.gethostname().split(".")[0]
        self.node = host
        for d in ("state", "spool"):
            (self.root / d).mkdir()
        conf = self.root / "slurm.conf"
        conf.write_text(f"""\
ClusterName=dsagetest
SlurmctldHost={host}
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
SchedulerType=sched/builtin
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation={self.root}/state
SlurmdSpoolDir={self.root}/spool
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd.pid
SlurmctldLogFile={self.root}/slurmctld.log
SlurmdLogFile={self.root}/slurmd.log
KillWait=5
NodeName={host} CPUs={os.cpu_count() or 1} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
        self.env = {**os.environ, "SLURM_CONF": str(conf)}
        for argv in (["slurmctld", "-D", "-c", "-f", str(conf)], ["slurmd", "-D", "-f", str(conf), "-N", host]):
            self.procs.append(subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.PIPE, text=True))
        self._wait_for(lambda: _run("scontrol", "ping", env=self.env).stdout.count("UP") > 0,
                       "slurmctld to answer", self.procs[1])

    def _wait_for(self, ready, what: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
        """Start-up of a daemon we do not control has no event to wait on: check, at 0.1 s steps."""
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                raise Unavailable(f"{what}: the daemon exited ({proc.returncode}): "
                                  f"{proc.stderr.read()[-500:]} {self.log_tail()}")
            if time.monotonic() > deadline:
                raise Unavailable(f"Slurm did not start: no {what} within {timeout:g} s {self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log", "munge/munged.log"):
            try:
                out.append(f"{name}: " + (self.root / name).read_text()[-400:])
            except OSError:
                pass
        return "\n".join(out)

    def squeue(self) -> str:
        return _run("squeue", "-h", "-o", "%i %T", env=self.env).stdout

    def stop(self) -> None:
        """Cancel every job of this cluster, stop the daemons (last started first), remove it all."""
        if len(self.procs) > 1:
            _run("scancel", "--full", "--user", "root", env=self.env)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.root, ignore_errors=True)
