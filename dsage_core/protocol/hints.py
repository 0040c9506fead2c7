"""Which addresses a server advertises in its furl (Foolscap "connection hints"), and whether a furl
can be used from another host.

A furl carries several hints (``pb://TUBID@tcp:10.0.0.5:8710,tcp:lab1:8710/login``); a connecting Tub
tries them all at once and keeps the first that answers. A hint no other host can use
(``localhost``, ``127.0.0.1``) makes the furl useless off this machine, so a server listening beyond
loopback never advertises loopback alone.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable, Iterable

WILDCARDS = ("0.0.0.0", "::", "")
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def is_loopback(host: str) -> bool:
    """True for a loopback address or name (a name counts when every address it resolves to does)."""
    h = host.strip("[]").lower()
    if h in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h.split("%")[0]).is_loopback
    except ValueError:
        pass
    addrs = _resolve(h)
    return bool(addrs) and all(_loopback_ip(a) for a in addrs)


def _loopback_ip(a: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("%")[0]).is_loopback
    except ValueError:
        return False


def _resolve(name: str) -> list[str]:
    try:
        return [str(ai[4][0]) for ai in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)]
    except (OSError, UnicodeError):
        return []


def interface_addresses(ipv6: bool, net_if_addrs: Callable[[], Any] | None = None) -> list[str]:
    """This host's non-loopback, non-link-local interface addresses (IPv4 first, then IPv6)."""
    if net_if_addrs is None:
        import psutil
        net_if_addrs = psutil.net_if_addrs
    v4: list[str] = []
    v6: list[str] = []
    for addrs in net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET:
                out = v4
            elif a.family == socket.AF_INET6 and ipv6:
                out = v6
            else:
                continue
            try:
                ip = ipaddress.ip_address(str(a.address).split("%")[0])
            except ValueError:
                continue
            if ip.is_loopback or ip.is_link_local or ip.is_unspecified or str(ip) in out:
                continue
            out.append(str(ip))
    return v4 + v6


def host_names() -> list[str]:
    """This host's names that resolve to a non-loopback address (often none: ``vm -> 127.0.0.1``)."""
    names: list[str] = []
    for n in (socket.gethostname(), socket.getfqdn()):
        if n and n not in names and not is_loopback(n) and _resolve(n):
            names.append(n)
    return names


def advertised_hosts(listen: str, location: str | None = None, *,
                     interfaces: Callable[[bool], list[str]] = interface_addresses,
                     names: Callable[[], list[str]] = host_names) -> list[str]:
    """The hosts a server listening on *listen* puts in its furl, best first.

    ``--location`` (comma-separated) wins; a specific address is advertised as is; a wildcard
    (``0.0.0.0``, ``::``) gives the host names that resolve beyond loopback plus every non-loopback
    interface address. Only when there is none is it ``127.0.0.1`` (the caller warns).
    """
    if location:
        return _dedupe(h.strip() for h in location.split(",") if h.strip())
    if listen == "localhost":
        return ["127.0.0.1"]
    if listen not in WILDCARDS:
        return [listen]
    hosts = _dedupe([*names(), *interfaces(listen != "0.0.0.0")])
    return hosts or ["127.0.0.1"]


def _dedupe(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for i in items:
        if i not in out:
            out.append(i)
    return out


def tcp_hint(host: str, port: int) -> str:
    """One Foolscap TCP hint; IPv6 addresses go in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"tcp:{host}:{port}"


def location(hosts: list[str], port: int) -> str:
    """The value for ``Tub.setLocation``: the hints, comma-separated."""
    return ",".join(tcp_hint(h, port) for h in hosts)


def listen_endpoint(listen: str, port: int) -> str:
    """A Twisted server endpoint string for *listen* (colons of IPv6 addresses escaped)."""
    return f"tcp:{port}:interface={listen.replace(':', chr(92) + ':')}"


def furl_hosts(furl: str) -> list[str]:
    """The hosts of a furl's TCP hints (``[]`` when it has none we understand)."""
    from foolscap.connections.tcp import convert_legacy_hint
    from foolscap.furl import decode_furl
    try:
        _, hints, _ = decode_furl(furl)
    except Exception:
        return []
    hosts = []
    for h in hints:
        h = convert_legacy_hint(h)
        if h.startswith("tcp:"):
            hosts.append(h[4:].rpartition(":")[0].strip("[]"))
    return hosts


def listens_beyond_loopback(listen: str | None) -> bool:
    return bool(listen is not None and (listen in WILDCARDS or not is_loopback(listen)))


def loopback_warning(hosts: list[str], listen: str | None, what: str) -> str | None:
    """A warning when the advertised *hosts* are all loopback, else None.

    *what* is what cannot be used elsewhere ("this furl", "this invite code"); *listen* is what the
    server listens on (None: unknown, e.g. an older server).
    """
    if hosts and not all(is_loopback(h) for h in hosts):
        return None
    shown = ", ".join(hosts) or "no address"
    if listen is not None and not listens_beyond_loopback(listen):
        return (f"warning: {what} only works on this machine: the server listens on {listen} only. "
                f"For workers on other hosts, restart it with 'dsage server --listen ADDR' (an address "
                f"of this machine they can reach, or 0.0.0.0 for all) or add '--location HOST'.")
    where = f"listens on {listen} but " if listen is not None else ""
    return (f"warning: the server {where}advertises only loopback ({shown}): {what} does not work from "
            f"another host. Restart it with '--location HOST' (a name or address other hosts can "
            f"reach, comma-separated for several) or '--listen ADDR'.")
