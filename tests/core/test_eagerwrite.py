"""write_now: bytes leave at once when nothing is queued, and never overtake queued bytes."""
import pytest
from twisted.internet import main

from dsage_core.protocol.eagerwrite import write_now


class FakeFD:
    def __init__(self, accept=None, queued=b""):
        self.connected, self.disconnecting, self._writeDisconnected = True, False, False
        self.dataBuffer, self.offset, self._tempDataBuffer = queued, 0, []
        self.accept = accept            # bytes the kernel takes per call (None: all), or an exception
        self.sent, self.buffered = [], []

    def writeSomeData(self, data):
        if isinstance(self.accept, Exception):
            return self.accept
        n = len(data) if self.accept is None else min(self.accept, len(data))
        self.sent.append(bytes(data[:n]))
        return n

    def write(self, data):
        self.buffered.append(bytes(data))


@pytest.mark.normal_latency
def test_empty_buffer_sends_at_once():
    fd = FakeFD()
    write_now(fd, b"hello")
    assert fd.sent == [b"hello"] and fd.buffered == []


@pytest.mark.normal_latency
def test_what_the_kernel_does_not_take_is_queued_in_order():
    fd = FakeFD(accept=2)
    write_now(fd, b"hello")
    assert fd.sent == [b"he"] and fd.buffered == [b"llo"]


def test_queued_bytes_are_never_overtaken():
    fd = FakeFD(queued=b"earlier")
    write_now(fd, b"later")
    assert fd.sent == [] and fd.buffered == [b"later"]
    fd = FakeFD()
    fd._tempDataBuffer.append(b"earlier")
    write_now(fd, b"later")
    assert fd.sent == [] and fd.buffered == [b"later"]


def test_errors_and_closing_connections_go_through_twisted():
    fd = FakeFD(accept=main.CONNECTION_LOST)
    write_now(fd, b"x")
    assert fd.buffered == [b"x"]      # Twisted's doWrite reports the loss
    fd = FakeFD()
    fd.disconnecting = True
    write_now(fd, b"x")
    assert fd.sent == [] and fd.buffered == [b"x"]
