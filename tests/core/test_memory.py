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

