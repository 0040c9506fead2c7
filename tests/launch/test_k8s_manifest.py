"""``packaging/k8s/worker-deployment.yaml``: its Secret, volume and command fit together, and the
container's own command line, run here with a real invite in the file the Secret would be, joins a
real server, runs a job and stops cleanly on SIGTERM (what Kubernetes sends)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.server_proc import dsage_cmd

pytestmark = pytest.mark.timeout(120)

MANIFEST = Path(__file__).resolve().parents[2] / "packaging" / "k8s" / "worker-deployment.yaml"


def container():
    d = yaml.safe_load(MANIFEST.read_text())
    assert d["kind"] == "Deployment" and d["apiVersion"] == "apps/v1"
    spec = d["spec"]["template"]["spec"]
    assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    (c,) = spec["containers"]
    return spec, c


def invite_file(spec, c):
    """Where the container reads the invite: the Secret's mount path and its key 'code'."""
    (vol,) = [v for v in spec["volumes"] if "secret" in v]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == vol["name"]]
    assert vol["secret"]["secretName"] == "dsage-invite"
    return f"{mount['mountPath']}/code"


def test_manifest_reads_the_invite_from_the_secret_file():
    """The command runs ``dsage worker --invite -`` with stdin from the Secret's file; the code is
    neither an argument nor an environment variable; SIGTERM leaves time to hand jobs back."""
    spec, c = container()
    cmd = c["command"] + c["args"]
    assert cmd[:2] == ["sh", "-c"] and "dsage worker --invite -" in cmd[2]
    assert cmd[2].rstrip().endswith(f"< {invite_file(spec, c)}")
    assert all("valueFrom" not in e for e in c["env"])
    assert spec["terminationGracePeriodSeconds"] >= 30


def test_the_container_command_joins_a_server_and_stops_on_sigterm(server, client, tmp_path):
    """The manifest's command, with its environment, run by sh here (the invite written where the
    Secret would be mounted): the worker registers its own key, runs a job, and exits 0 on SIGTERM."""
    home, _ = server
    spec, c = container()
    code = [w for w in dsage_cmd(home, "invite", "--role", "worker").stdout.split() if w.startswith("dsage1-")][-1]
    secret = tmp_path / "secret-code"
    secret.write_text(code + "\n")
    env = {e["name"]: e["value"] for e in c["env"]}
    env["DSAGE_HOME"] = str(tmp_path / "pod" / env["DSAGE_HOME"].lstrip("/"))
    script = c["args"][0].replace(invite_file(spec, c), str(secret))
    p = subprocess.Popen(["sh", "-c", script], stderr=subprocess.PIPE, text=True,
                         env={**os.environ, **env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    try:
        for line in p.stderr:
            if "dsage worker: connected" in line:
                break
        else:
            raise AssertionError(f"the worker exited ({p.wait()}) without connecting")
        assert client("6*7").wait(60).result == 42
        (w,) = client.workers()
        assert w["slots"] == int(env["DSAGE_SLOTS"]) and w["user"].startswith("worker-")
        assert (Path(env["DSAGE_HOME"]) / "dsage_key").exists()
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
