"""What a server advertises in its furl: usable from another host whenever it listens beyond loopback."""
import socket
from types import SimpleNamespace

from dsage_core.protocol import hints


def _addrs(*pairs):
    return lambda: {"if": [SimpleNamespace(family=f, address=a) for f, a in pairs]}


FAKE_IFACES = _addrs((socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "10.1.2.3"),
                     (socket.AF_INET, "169.254.0.9"), (socket.AF_INET6, "::1"),
                     (socket.AF_INET6, "fe80::1%eth0"), (socket.AF_INET6, "fd00::5"),
                     (socket.AF_PACKET, "00:11:22:33:44:55"), (socket.AF_INET, "10.1.2.3"))


def test_interface_addresses_skip_loopback_and_link_local():
    """Interface addresses drop loopback, link-local, MAC entries and duplicates; IPv6 only on request."""
    assert hints.interface_addresses(False, FAKE_IFACES) == ["10.1.2.3"]
    assert hints.interface_addresses(True, FAKE_IFACES) == ["10.1.2.3", "fd00::5"]


def test_specific_listen_address_is_advertised():
    """--listen ADDR advertises ADDR, never the host name (which may resolve to localhost)."""
    assert hints.advertised_hosts("10.9.8.7", names=lambda: ["lab1"]) == ["10.9.8.7"]
    assert hints.advertised_hosts("127.0.0.1") == ["127.0.0.1"]
    assert hints.advertised_hosts("localhost") == ["127.0.0.1"]


def test_wildcard_advertises_names_and_every_interface_address():
    """--listen 0.0.0.0 gives the resolvable host names first, then each non-loopback address."""
    got = hints.advertised_hosts("0.0.0.0", interfaces=lambda v6: hints.interface_addresses(v6, FAKE_IFACES),
                                 names=lambda: ["lab1.example.org"])
    assert got == ["lab1.example.org", "10.1.2.3"]
    got6 = hints.advertised_hosts("::", interfaces=lambda v6: hints.interface_addresses(v6, FAKE_IFACES),
                                  names=lambda: [])
    assert got6 == ["10.1.2.3", "fd00::5"]


def test_wildcard_without_network_falls_back_to_loopback():
    """A machine with no non-loopback address advertises 127.0.0.1 (and the server warns)."""
    assert hints.advertised_hosts("0.0.0.0", interfaces=lambda v6: [], names=lambda: []) == ["127.0.0.1"]


def test_location_overrides_and_splits_on_commas():
    """--location wins over the listen address and may name several hosts."""
    assert hints.advertised_hosts("0.0.0.0", "a.example, 10.0.0.1,a.example") == ["a.example", "10.0.0.1"]


def test_host_names_never_include_a_name_resolving_to_loopback(monkeypatch):
    """A host name that resolves to 127.0.0.1 (as on many VMs) is not advertised."""
    monkeypatch.setattr(socket, "gethostname", lambda: "vm")
    monkeypatch.setattr(socket, "getfqdn", lambda: "localhost")
    monkeypatch.setattr(hints, "_resolve", lambda n: ["127.0.0.1"])
    assert hints.host_names() == []
    monkeypatch.setattr(hints, "_resolve", lambda n: ["10.0.0.4"] if n == "vm" else ["127.0.0.1"])
    assert hints.host_names() == ["vm"]


def test_location_string_and_furl_round_trip():
    """The hints written to the Tub read back from the furl, IPv6 in brackets."""
    loc = hints.location(["10.0.0.1", "lab1", "fd00::5"], 8710)
    assert loc == "tcp:10.0.0.1:8710,tcp:lab1:8710,tcp:[fd00::5]:8710"
    furl = f"pb://{'a' * 32}@{loc}/login"
    assert hints.furl_hosts(furl) == ["10.0.0.1", "lab1", "fd00::5"]
    assert hints.furl_hosts(f"pb://{'a' * 32}@127.0.0.1:1234/login") == ["127.0.0.1"]   # old style
    assert hints.furl_hosts("garbage") == []


def test_listen_endpoint_escapes_ipv6_colons():
    """Twisted's endpoint syntax needs the colons of an IPv6 interface escaped."""
    assert hints.listen_endpoint("10.0.0.1", 5) == "tcp:5:interface=10.0.0.1"
    assert hints.listen_endpoint("::", 5) == "tcp:5:interface=\\:\\:"


def test_loopback_warning_says_how_to_fix():
    """All-loopback hints warn; the text depends on what the server listens on and names the fix."""
    assert hints.loopback_warning(["10.0.0.1", "127.0.0.1"], "0.0.0.0", "x") is None
    local = hints.loopback_warning(["127.0.0.1"], "127.0.0.1", "this invite code")
    assert "only works on this machine" in local and "--listen ADDR" in local and "--location" in local
    wide = hints.loopback_warning(["localhost"], "0.0.0.0", "this furl")
    assert "listens on 0.0.0.0" in wide and "--location HOST" in wide
    assert "--location" in hints.loopback_warning(["127.0.0.1"], None, "this invite code")


def test_is_loopback():
    """Loopback addresses and names count; other addresses do not."""
    assert hints.is_loopback("127.0.0.2") and hints.is_loopback("::1") and hints.is_loopback("[::1]")
    assert hints.is_loopback("localhost")
    assert not hints.is_loopback("10.0.0.1") and not hints.is_loopback("fd00::5")
    assert hints.listens_beyond_loopback("0.0.0.0") and hints.listens_beyond_loopback("10.0.0.1")
    assert not hints.listens_beyond_loopback("127.0.0.1") and not hints.listens_beyond_loopback(None)
