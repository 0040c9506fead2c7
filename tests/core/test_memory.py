"""Allocator settings for the processes dsage starts."""
import subprocess
import sys

import pytest

from dsage_core import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_spawned_processes_get_the_tunables_unless_the_user_set_some():
    assert memory.tuned_env({})["GLIBC_TUNABLES"] == memory.TUNABLES
    assert memory.tuned_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})["GLIBC_TUNABLES"] == \
        "glibc.malloc.arena_max=2"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_a_child_started_with_them_runs_and_can_tune_itself():
    code = "from dsage_core import memory; print(memory.tune_this_process())"
    out = subprocess.run([sys.executable, "-c", code], env=memory.tuned_env({}), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr


def test_start_all_picks_port_and_server_id_without_importing_twisted(tmp_path):
    """start_all spawns the server before the client's heavy imports (W5): the port and the
    server id are found with the standard library only (the id cached beside the certificate)."""
    from dsage_core.setup import ensure_setup, server_id
    ensure_setup(tmp_path)
    first = server_id(tmp_path)
    code = ("import sys; from pathlib import Path; from dsage_core.ports import pick_port; "
            "from dsage_core.setup import server_id; h = Path(sys.argv[1]); "
            "p = pick_port(h, 0); i = server_id(h); "
            "print(p, i, 'twisted' in sys.modules, 'foolscap' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    port, sid, twisted_loaded, foolscap_loaded = out.stdout.split()
    assert int(port) > 0 and sid == first
    assert (twisted_loaded, foolscap_loaded) == ("False", "False")
    assert pick_port(tmp_path, 0) == int(port)   # the saved port again while it is free


def pick_port(home, wanted):
    from dsage_core.ports import pick_port as p
    return p(home, wanted)
