"""Fixtures for the multi-host tests: a private LAN of network namespaces, removed after each test."""
from __future__ import annotations

import functools

import pytest

from tests.multihost import netns


@functools.lru_cache(maxsize=1)
def _unavailable() -> str | None:
    try:
        netns.check_available()
    except netns.NetnsUnavailable as e:
        return str(e)
    return None


@pytest.fixture
def lan(tmp_path):
    """An empty switch; add hosts with ``lan.add(name)``. Everything is torn down afterwards."""
    why = _unavailable()
    if why:
        pytest.skip(why)
    net = netns.Lan(tmp_path)
    try:
        yield net
    finally:
        net.close()


@pytest.fixture
def nft():
    """nftables, installed on first use (skip with the reason when that is not possible)."""
    try:
        return netns.ensure_nft()
    except netns.NetnsUnavailable as e:
        pytest.skip(str(e))
