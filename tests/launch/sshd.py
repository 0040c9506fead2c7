"""A real OpenSSH server on 127.0.0.1 for the launch tests: its own port, host key, client key,
``authorized_keys`` and an ssh client config whose host aliases all lead to it. The "remote" hosts
share this filesystem, so the venv's Python is their Python too."""
from __future__ import annotations

import os
import queue
import subprocess
import threading
from pathlib import Path

from dsage_core.ports import free_port
from tests.launch.debian import Unavailable, ensure

SSHD = "/usr/sbin/sshd"


class Sshd:
    """``sshd -D`` with a config in *root*; ``ssh`` is the client command for ``--ssh``."""

    def __init__(self, root: Path, aliases: tuple[str, ...] = ("box1", "box2")) -> None:
        ensure(SSHD, "openssh-server")
        keygen = ensure("ssh-keygen", "openssh-client")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "client_key"):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        self.port = free_port()
        (root / "sshd_config").write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {root}/host_key
AuthorizedKeysFile {root}/authorized_keys
PidFile {root}/sshd.pid
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
""")
        host_pub = (root / "host_key.pub").read_text().split()[:2]
        (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {' '.join(host_pub)}\n")
        closed = free_port()   # nothing listens there: a host ssh cannot reach
        (root / "ssh_config").write_text(f"""\
Host {' '.join(aliases)}
  HostName 127.0.0.1
  Port {self.port}
Host unreachable
  HostName 127.0.0.1
  Port {closed}
Host *
  User {os.environ.get('USER') or 'root'}
  IdentityFile {root}/client_key
  IdentitiesOnly yes
  UserKnownHostsFile {root}/known_hosts
  StrictHostKeyChecking yes
  LogLevel ERROR
  ConnectTimeout 10
""")
        self.ssh = f"ssh -F {root}/ssh_config"
        try:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)   # sshd's privilege separation dir
        except OSError as e:
            raise Unavailable(f"sshd needs /run/sshd, which cannot be made here ({e.strerror})") from None
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
                                     stderr=subprocess.PIPE, text=True)
        self._wait_listening()

    def _wait_listening(self, timeout: float = 30) -> None:
        lines: "queue.SimpleQueue[str | None]" = queue.SimpleQueue()
        self.log: list[str] = []

        def read() -> None:
            for line in self.proc.stderr:
                self.log.append(line)
                lines.put(line)
            lines.put(None)
        threading.Thread(target=read, daemon=True).start()
        while True:
            line = lines.get(timeout=timeout)
            if line is None:
                raise Unavailable(f"sshd did not start: {''.join(self.log)[-500:]}")
            if "Server listening" in line:
                return

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
