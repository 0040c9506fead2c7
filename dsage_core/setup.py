"""``dsage setup``: keys, server certificate and database in DSAGE_HOME (idempotent)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dsage_core import home as homes
from dsage_core import keys


def ensure_setup(home: Path) -> dict[str, Any]:
    """Create what is missing; never replaces existing keys. Returns what exists now."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    fixed = homes.secure_home(home)
    key_path, pub = keys.ensure_keypair(home)
    ensure_worker_key(home)
    cert = home / homes.SERVER_CERT
    created_cert = False
    if not cert.exists():
        from dsage_core.protocol.tubs import new_cert_data   # Foolscap only when needed
        tmp = cert.with_suffix(".tmp")
        tmp.write_bytes(new_cert_data())
        tmp.chmod(0o600)
        tmp.replace(cert)
        created_cert = True
    (home / homes.SCRATCH).mkdir(exist_ok=True, mode=0o700)
    (home / homes.LOGS).mkdir(exist_ok=True, mode=0o700)
    return {"home": str(home), "key": str(key_path), "public_key": pub,
            "fingerprint": keys.fingerprint(pub), "server_cert": str(cert), "created_cert": created_cert,
            "fixed": fixed}


def ensure_worker_key(home: Path) -> Path:
    """The local worker's own key pair (``worker_key``), created if missing. start_all and the
    desktop app give it to their local worker, which thus never holds the owner's admin key; the
    server registers it with the worker role."""
    priv, pub = home / homes.WORKER_KEY, home / homes.WORKER_PUBKEY
    if not priv.exists():
        for p in (priv, pub):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        keys.generate_keypair(priv, pub, "dsage local worker")
    elif not pub.exists():
        pub.write_text(keys.public_key_of(keys.load_private_key(priv)) + "\n")
    return priv


def server_id(home: Path) -> str:
    """The Tub id of this home's server certificate (what its furl pins). Cached beside the
    certificate, keyed by its hash, so ``start_all`` need not import Foolscap to compute it."""
    import hashlib
    cert = (home / homes.SERVER_CERT).read_bytes()
    digest = hashlib.sha256(cert).hexdigest()
    cache = home / "server.id"
    try:
        cached_digest, tub_id = cache.read_text().split()
        if cached_digest == digest:
            return tub_id
    except (OSError, ValueError):
        pass
    from dsage_core.protocol.tubs import tub_id_of_cert
    tub_id = tub_id_of_cert(cert)
    try:
        cache.write_text(f"{digest} {tub_id}\n")
    except OSError:
        pass
    return tub_id
