"""dsage_core.cluster.LocalCluster, the one way a local cluster starts: start_all's child processes
from a user's interpreter, and the light import it needs."""
import json
import subprocess
import sys

import psutil

SCRIPT = """
import json, sys
import dsage_core as dsage
D = dsage.start_all(workers=1, home=sys.argv[1])
pids = [p.pid for p in D.cluster.procs]
print(json.dumps({"cls": type(D.cluster).__module__ + "." + type(D.cluster).__name__,
                  "result": D("2+2").wait(60).result, "pids": pids}), flush=True)
D.shutdown()
print(json.dumps([p.poll() is not None for p in D.cluster.procs]), flush=True)
"""


def test_start_all_runs_a_local_cluster_and_shutdown_ends_its_processes(tmp_path):
    """A user's start_all gets its server and worker from LocalCluster.spawn; a job runs, and
    D.shutdown() leaves neither process behind."""
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "home")], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    first, ended = (json.loads(line) for line in p.stdout.splitlines()[-2:])
    assert first["cls"] == "dsage_core.cluster.LocalCluster" and first["result"] == 4
    assert ended == [True, True]
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in first["pids"])


def test_importing_the_cluster_does_not_import_twisted():
    """start_all spawns its server before anything imports Twisted (its cold start counts every
    millisecond): dsage_core.cluster imports it only on a reactor's path."""
    code = ("import sys, dsage_core.cluster; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('twisted', 'foolscap')]; "
            "assert not bad, bad")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
