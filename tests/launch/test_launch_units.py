"""The pure parts of ``dsage launch``: what ``--check`` concludes from a host's answer, and the
batch script ``dsage launch slurm --dry-run`` prints (no ssh, no Slurm needed)."""
import json
import subprocess
import sys

from dsage_core.launch import slurm, ssh
from tests.server_proc import dsage_cmd


def probe(python=(3, 11, 7), dsage="1.0", error=None):
    r = {"python": list(python)}
    if dsage:
        r["dsage"] = dsage
    if error:
        r["error"] = error
    return "Welcome to the lab!\nDSAGE-PROBE " + json.dumps(r) + "\n"


def test_judge_probe_names_each_missing_piece():
    """An old Python, a missing dsage and a version mismatch are each reported; a login banner
    before the answer is ignored; a good host lacks nothing."""
    assert ssh.judge_probe("python3", 0, probe(), "", local_version="1.0") == []
    assert ssh.judge_probe("python3", 0, probe(python=(3, 9, 2)), "", "1.0") == \
        ["Python 3.9.2 (dsage needs >= 3.11)"]
    assert ssh.judge_probe("python3", 0, probe(dsage=None, error="ModuleNotFoundError: no dsage_core"),
                           "", "1.0") == ["dsage is not importable with python3 (ModuleNotFoundError: no dsage_core)"]
    assert ssh.judge_probe("python3", 0, probe(dsage="0.9"), "", "1.0") == ["dsage 0.9 there, 1.0 here"]
    assert ssh.judge_probe("py", 255, "", "ssh: connect to host x port 22: Connection refused\n", "1.0") == \
        ["ssh cannot reach it: ssh: connect to host x port 22: Connection refused"]
    assert ssh.judge_probe("py", 127, "", "bash: py: command not found\n", "1.0")[0].startswith("no py there")
    assert ssh.judge_probe("python3", 0, probe().replace('"1.0"', '"1.0", "home": "/h", "server_home": true'),
                           "", "1.0") == ["a dsage home of its own: /h holds a server's files (a home shared "
                                          "with this machine?); give --remote-home DIR, e.g. '~/.dsage-{host}'"]
    assert ssh.judge_probe("py", 0, "DSAGE-PROBE {bad json", "", "1.0") == \
        ["py answered the check with something unreadable"]


def test_the_remote_command_keeps_the_invite_off_its_command_line():
    """The remote worker reads its invite from stdin and stops when stdin closes; every argument
    is quoted for the remote shell."""
    argv = ssh.ssh_command("ssh -F my.conf", "lab1", ssh.worker_command("/opt/py 3/bin/python", 4, "/h/{x}"))
    assert argv[:3] == ["ssh", "-F", "my.conf"] and argv[-2] == "lab1"
    assert argv[-1] == ("'/opt/py 3/bin/python' -m dsage_core worker --invite - --exit-with-stdin "
                        "--workers 4 --home '/h/{x}'")


def test_dry_run_prints_a_valid_script_that_submits_nothing(tmp_path):
    """``--dry-run`` prints an sbatch script with the nodes, CPUs, partition and time asked for,
    one task per node running a worker with that many slots; sh parses it; no key is made."""
    home = tmp_path / "home"
    furl = "pb://abc@tcp:10.0.0.1:8710/login"
    out = dsage_cmd(home, "launch", "slurm", "--dry-run", "--nodes", "3", "--cpus-per-node", "8",
                    "--partition", "short", "--time", "2:00:00", "--server", furl,
                    "--sbatch-option=--account=lab").stdout
    for line in ("#SBATCH --nodes=3", "#SBATCH --ntasks-per-node=1", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --partition=short", "#SBATCH --time=2:00:00", "#SBATCH --account=lab"):
        assert line in out.splitlines(), out
    assert "worker --server \"$1\" --key \"$2\" --workers \"$3\"" in out and f" {furl} " in out
    assert subprocess.run(["sh", "-n"], input=out, text=True).returncode == 0
    assert not (home / "slurm").exists()


def test_the_script_passes_values_as_arguments_not_as_shell_code():
    """A Python path with spaces and shell characters reaches the task unchanged."""
    plan = slurm.Plan("pb://x@tcp:h:1/login", __import__("pathlib").Path("/k/worker key"),
                      __import__("pathlib").Path("/o"), 1, 2, python="/opt/my $(python)")
    last = slurm.batch_script(plan).strip().splitlines()[-1]
    assert last.endswith("'/opt/my $(python)' pb://x@tcp:h:1/login '/k/worker key' 2 60 dsage_key")


def test_worker_invite_from_empty_stdin_says_so(tmp_path):
    """``dsage worker --invite -`` with nothing on stdin fails at once with the reason (no hang,
    no traceback)."""
    p = subprocess.run([sys.executable, "-m", "dsage_core", "worker", "--home", str(tmp_path / "h"),
                        "--invite", "-"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stderr.strip() == "dsage: error: --invite -: no invite code on stdin", p.stderr
