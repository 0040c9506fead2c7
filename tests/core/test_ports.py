"""What ``start_all`` does before spawning the server: standard library only."""
import subprocess
import sys


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
    from dsage_core.ports import pick_port
    assert pick_port(tmp_path, 0) == int(port)   # the saved port again while it is free
    assert pick_port(tmp_path, 4321) == 4321
