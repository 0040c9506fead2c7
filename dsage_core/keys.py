"""Ed25519 keys (OpenSSH format), the login message, challenges and invite codes."""
from __future__ import annotations

import base64
import hashlib
import os
import secrets
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE, PUBKEY_FILE = "dsage_key", "dsage_key.pub"


class KeyFileError(ValueError):
    """A key file or string that cannot be used, with the reason."""


class InviteCodeError(ValueError):
    """An invite code that is malformed or truncated."""


# ---------------------------------------------------------------------- key files
def generate_keypair(private_path: str | Path, public_path: str | Path, comment: str = "") -> str:
    """Write a new Ed25519 key pair (private 0600); never overwrites. Returns the public key line."""
    priv_p, pub_p = Path(private_path), Path(public_path)
    if priv_p.exists() or pub_p.exists():
        raise FileExistsError(f"{priv_p} or {pub_p} already exists; not overwriting a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    fd = os.open(priv_p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    line = public_key_of(key) + (f" {comment}" if comment else "")
    pub_p.write_text(line + "\n")
    return line


def ensure_keypair(home: str | Path) -> tuple[Path, str]:
    """The key pair in *home*, created if missing (so ``dsage setup`` twice keeps keys)."""
    home = Path(home)
    priv, pub = home / KEY_FILE, home / PUBKEY_FILE
    if priv.exists():
        if not pub.exists():
            pub.write_text(public_key_of(load_private_key(priv)) + "\n")
        return priv, load_public_key(str(pub))
    import getpass
    import socket
    try:
        comment = f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:
        comment = "dsage"
    line = generate_keypair(priv, pub, comment)
    return priv, load_public_key(line)


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"no key file at {p} (run 'dsage setup')") from None
    return parse_private_key(data, p)


def parse_private_key(data: bytes, p: str | Path = "the key") -> Ed25519PrivateKey:
    """The Ed25519 private key in *data* (OpenSSH or PEM text); *p* names it in errors."""
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key: Any = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(f"{p} is passphrase-protected; passphrase-protected keys are not supported "
                           f"(make one with 'ssh-keygen -t ed25519 -N \"\"' or 'dsage setup')") from None
    except ValueError as e:
        if "encrypt" in str(e).lower() or "password" in str(e).lower():
            raise KeyFileError(f"{p} is passphrase-protected; passphrase-protected keys are not supported") \
                from None
        raise KeyFileError(f"{p} is not a private key dsage can read ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{p} is a {type(key).__name__.replace('_', '')} key; dsage needs an ed25519 key")
    return key


def public_key_of(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode()


#: longest public key line accepted from anyone: an ssh-ed25519 line is ~80 characters plus a comment
MAX_PUBKEY_TEXT = 1000


def parse_public_key(text: Any) -> str:
    """Normalise key *text* ("ssh-ed25519 AAAA... comment") to "ssh-ed25519 AAAA...".

    Text only: it never opens a file, whatever the text looks like. Remote methods use this (a
    peer must not make the server open a path it names); local tools use :func:`load_public_key`.
    """
    if not isinstance(text, str):
        raise KeyFileError("malformed public key: expected text 'ssh-ed25519 AAAA...'")
    if len(text) > MAX_PUBKEY_TEXT:
        raise KeyFileError(f"public key too long: {len(text)} characters > {MAX_PUBKEY_TEXT}")
    parts = text.strip().split()
    if len(parts) < 2 or not parts[0].startswith("ssh-"):
        raise KeyFileError("malformed public key: expected 'ssh-ed25519 AAAA...'")
    if parts[0] != "ssh-ed25519":
        raise KeyFileError(f"{parts[0][:40]} keys are not supported; dsage needs an ssh-ed25519 key")
    try:
        key = serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except (ValueError, TypeError, UnicodeError) as e:
        raise KeyFileError(f"malformed public key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError("dsage needs an ssh-ed25519 key")
    return f"{parts[0]} {parts[1]}"


def load_public_key(text_or_path: str | Path) -> str:
    """Key text, a .pub file or a private key file, as "ssh-ed25519 AAAA..." (local tools only:
    ``dsage user add --key FILE``, setup). Only regular files are read, and only their first 64 KiB."""
    s = str(text_or_path).strip()
    if s.startswith("ssh-"):
        return parse_public_key(s)
    p = Path(s).expanduser()
    if len(s) >= 4096 or not p.is_file():
        raise KeyFileError(f"not a public key or key file: {s[:60]!r}")
    with open(p, "rb") as f:
        data = f.read(64 * 1024).decode(errors="replace").strip()
    if "PRIVATE KEY" in data:
        return public_key_of(load_private_key(p))
    return parse_public_key(data.splitlines()[0] if data else "")


def fingerprint(pubkey: str) -> str:
    """SHA256 fingerprint as ``ssh-keygen -l`` prints it."""
    blob = base64.b64decode(parse_public_key(pubkey).split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# ---------------------------------------------------------------------- login
def login_message(server_id: str, role: str, nonce: bytes) -> bytes:
    """What a client signs: domain-separated and length-prefixed, so fields cannot be shifted."""
    out = [b"dsage-login-v1\0"]
    for field in (server_id.encode(), role.encode(), bytes(nonce)):
        out.append(struct.pack(">I", len(field)) + field)
    return b"".join(out)


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    return key.sign(message)


def verify(pubkey: str, message: bytes, signature: bytes) -> bool:
    """True only for a valid signature by *pubkey*; never raises."""
    try:
        key = serialization.load_ssh_public_key(parse_public_key(pubkey).encode())
        key.verify(bytes(signature), bytes(message))  # type: ignore[union-attr]
        return True
    except (InvalidSignature, ValueError, TypeError, KeyFileError, AttributeError):
        return False


class ChallengeBook:
    """Single-use nonces that expire after *ttl* seconds; bounded memory."""

    def __init__(self, clock: Any, ttl: float = 30.0, max_outstanding: int = 10000) -> None:
        self.clock = clock
        self.ttl = ttl
        self.max = max_outstanding
        self._issued: OrderedDict[bytes, float] = OrderedDict()

    def issue(self) -> bytes:
        now = self.clock.seconds()
        self._evict(now)
        nonce = secrets.token_bytes(32)
        self._issued[nonce] = now
        while len(self._issued) > self.max:
            self._issued.popitem(last=False)
        return nonce

    def consume(self, nonce: bytes) -> bool:
        t = self._issued.pop(bytes(nonce), None) if isinstance(nonce, (bytes, bytearray)) else None
        return t is not None and self.clock.seconds() - t <= self.ttl

    def __len__(self) -> int:
        """Nonces issued and not yet used (expired ones until the next :meth:`expire`)."""
        return len(self._issued)

    def expire(self) -> None:
        """Forget the nonces older than the time to live."""
        self._evict(self.clock.seconds())

    def clear(self) -> None:
        """Forget every nonce."""
        self._issued.clear()

    def _evict(self, now: float) -> None:
        while self._issued:
            nonce, t = next(iter(self._issued.items()))
            if now - t <= self.ttl:
                break
            self._issued.popitem(last=False)


# ---------------------------------------------------------------------- invites
def new_invite_secret() -> tuple[str, str]:
    """(invite id, secret) for a new invite."""
    return secrets.token_hex(6), secrets.token_urlsafe(18)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def make_invite_code(furl: str, invite_id: str, secret: str) -> str:
    """One copy-pasteable string carrying the server furl and a single-use secret."""
    import msgpack
    body = msgpack.packb([furl, invite_id, secret])
    check = hashlib.sha256(body).digest()[:4]
    return "dsage1-" + base64.urlsafe_b64encode(body + check).decode().rstrip("=")


def parse_invite_code(code: str) -> tuple[str, str, str]:
    import msgpack
    code = "".join(str(code).split())
    if not code.startswith("dsage1-"):
        raise InviteCodeError("not a dsage invite code (it starts with 'dsage1-')")
    try:
        raw = base64.urlsafe_b64decode(code[7:] + "=" * (-len(code[7:]) % 4))
        body, check = raw[:-4], raw[-4:]
        if hashlib.sha256(body).digest()[:4] != check:
            raise ValueError("checksum")
        furl, invite_id, secret = msgpack.unpackb(body)
        return str(furl), str(invite_id), str(secret)
    except Exception:
        raise InviteCodeError("this invite code is damaged or truncated; copy it again") from None
