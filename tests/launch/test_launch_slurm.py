"""``dsage launch slurm`` against a real single-node Slurm started by the fixture: the batch job's
worker logs in with a key made for the launch and runs jobs; ``--cancel`` stops it and removes the
key; a worker whose allocation ends soon hands its jobs back and stops by itself."""
from __future__ import annotations

import json
import re
import sys

import psutil
import pytest

from tests.server_proc import dsage_cmd

pytestmark = [pytest.mark.timeout(240), pytest.mark.e2e]


def launch(home, slurm, *args):
    """``dsage launch slurm ARGS`` on the server's home; returns the Slurm job id it submitted."""
    p = dsage_cmd(home, "launch", "slurm", "--python", sys.executable, *args, env={"SLURM_CONF": slurm.env["SLURM_CONF"]})
    m = re.search(r"submitted Slurm job (\d+)", p.stdout)
    assert m, p.stdout + p.stderr
    return m.group(1)


def slurm_worker(client):
    """The one connected worker (that of the batch job): its info dict."""
    (w,) = client.workers()
    return w


def test_slurm_worker_joins_runs_a_job_and_cancel_stops_it(server, client, slurm):
    """A one-node launch runs a job on a worker logged in as the launch's own worker key (never
    the admin's); --cancel scancels the Slurm job, the worker process exits, its key is removed
    from the server and from disk, and nothing is left to cancel."""
    home, _ = server
    job = launch(home, slurm, "--nodes", "1", "--cpus-per-node", "1", "--time", "10")
    j = client("6*7")
    assert j.wait(120).result == 42, slurm.log_tail()
    w = slurm_worker(client)
    assert w["user"].startswith("slurm-") and w["id"] == j.worker
    # a job on the cluster cannot read the server's home (its admin key), though the node sees it
    look = client(f"__import__('os').listdir({str(home)!r})")
    assert look.wait(60).result == [], look
    (entry,) = json.loads((home / "slurm" / "launched.json").read_text())
    assert entry["job"] == job and entry["user"] == w["user"]
    monitor = psutil.Process(w["pid"])
    out = dsage_cmd(home, "launch", "slurm", "--cancel", env={"SLURM_CONF": slurm.env["SLURM_CONF"]}).stdout
    assert f"cancelled Slurm job {job}" in out
    monitor.wait(60)   # raises TimeoutExpired if the worker outlives its allocation
    assert w["user"] not in dsage_cmd(home, "user", "list").stdout
    assert not (home / "slurm" / entry["user"].split("-")[1] / "worker_key").exists()
    assert job not in slurm.squeue()
    again = dsage_cmd(home, "launch", "slurm", "--cancel", env={"SLURM_CONF": slurm.env["SLURM_CONF"]})
    assert "nothing to cancel" in again.stdout


def test_worker_hands_back_before_the_allocation_ends(server, client, slurm):
    """With a 2-minute allocation and --stop-before-end 100, the batch job's worker stops by itself
    about 20 s in (it read the allocation's end), long before Slurm would kill it, and the job it
    was running is back in the queue (handed back, not failed or lost)."""
    home, _ = server
    launch(home, slurm, "--nodes", "1", "--cpus-per-node", "1", "--time", "2", "--stop-before-end", "100")
    assert client("1+1").wait(120).result == 2, slurm.log_tail()
    w = slurm_worker(client)
    long = client.eval("import time\ntime.sleep(600)\nDSAGE_RESULT = 'done'")
    psutil.Process(w["pid"]).wait(100)   # before the 120 s limit (TimeoutExpired otherwise)
    log = next((home / "slurm").glob("*/slurm-*.out")).read_text()
    assert "the allocation ends soon: handing jobs back and stopping" in log, log
    shown = dsage_cmd(home, "job", str(long.id)).stdout
    assert re.search(r"status: queued$", shown, re.M), shown
