"""Result and frame encodings."""
import pytest

from dsage_core import codec
from dsage_core.worker.framing import FrameDecoder, FrameTooLarge, pack_frame


@pytest.mark.parametrize("value", [
    None, True, False, 0, -1, 2**63, -(2**70), 10**400, 1.5, float("inf"), 3 + 4j, "é", b"\x00\xff",
    [1, [2, [3]]], (1, (2, "x")), {"a": 1, (1, 2): [3], 5: None}, {1, 2}, frozenset({"a"}),
    {"nested": ({1, 2}, [frozenset()], (10**30,))}, [], (), {},
])
def test_plain_values_round_trip_without_pickle(value):
    """Every plain type (including big ints and tuple keys) round-trips with the safe encoding."""
    data = codec.encode_value(value)
    assert codec.is_plain(data)
    out = codec.decode_value(data, allow_pickle=False)
    assert out == value and type(out) is type(value)


class Point:
    def __init__(self, x):
        self.x = x


def test_other_values_fall_back_to_pickle_and_can_be_refused():
    """Non-plain values are pickled; a client refusing pickles gets a clear error."""
    data = codec.encode_value(Point(3))
    assert not codec.is_plain(data)
    assert codec.decode_value(data).x == 3
    with pytest.raises(codec.UnsafeResult, match="not unpickled"):
        codec.decode_value(data, allow_pickle=False)


def test_subclasses_are_not_plain():
    """A dict subclass is pickled (its type must survive)."""
    from collections import OrderedDict
    assert not codec.is_plain(codec.encode_value(OrderedDict(a=1)))


def test_unknown_tag():
    """Garbage is refused with a clear message."""
    with pytest.raises(ValueError, match="not a dsage result"):
        codec.decode_value(b"Zabc")


def test_preview_is_bounded():
    """Previews of huge values stay short and never repr the whole value."""
    assert len(codec.preview(bytes(10**7))) < 300
    assert len(codec.preview(list(range(10**5)))) <= 200

    class Bad:
        def __repr__(self):
            raise RuntimeError("boom")
    assert "Bad" in codec.preview(Bad())  # never raises


def test_frames_split_and_joined():
    """The decoder handles partial frames and many frames per chunk."""
    data = b"".join(pack_frame(["m", i, b"x" * i]) for i in range(50))
    dec = FrameDecoder()
    out = []
    for k in range(0, len(data), 7):
        out += dec.feed(data[k:k + 7])
    assert [m[1] for m in out] == list(range(50))


def test_frame_too_large():
    """A frame announcing a size over the limit is an error, not an allocation."""
    dec = FrameDecoder(max_frame=100)
    with pytest.raises(FrameTooLarge):
        dec.feed(b"\xff\xff\xff\xff")
