"""The sans-I/O wire protocol: frame encoding, decoding, limits and bad input."""

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import decode_frames
from vzslave.errors import BadFrameError, FrameTooLargeError
from vzslave.protocol import (
    MAX_DATA,
    MAX_FRAME,
    MAX_STR,
    Cancel,
    Data,
    Decoder,
    End,
    Error,
    Reply,
    Request,
    encode,
    parse_frame,
)

FRAMES = [
    Request(1, "image.put", {"name": "a", "size": 3}),
    Data(1, b"abc"),
    End(1, {"sha256": "00" * 32}),
    Cancel(7),
    Reply(1, {"image": {"name": "a"}}),
    Error(1, 20, "NO_SUCH_IMAGE", "no image named 'a'", {"errno": 2}),
    Error(None, 10, "BAD_FRAME", "not msgpack", {}),
]


def decode_all(data: bytes):
    return decode_frames(data, eof=False)


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_every_frame_type_round_trips(frame):
    assert decode_all(encode(frame)) == [frame]


def test_frames_fed_one_byte_at_a_time_decode_the_same():
    stream = b"".join(encode(frame) for frame in FRAMES)
    decoder = Decoder()
    frames = []
    for i in range(len(stream)):
        decoder.feed(stream[i:i + 1])
        frame = decoder.next_frame()
        while frame is not None:
            frames.append(frame)
            frame = decoder.next_frame()
    assert frames == FRAMES


def test_a_largest_data_frame_fits_the_frame_limit():
    frame = Data(2 ** 62, bytes(MAX_DATA))
    assert len(encode(frame)) <= MAX_FRAME
    assert decode_all(encode(frame)) == [frame]


def test_an_oversized_frame_is_refused_once_max_frame_bytes_of_it_arrived():
    header = b"\x83\xa4type\xa4data\xa2id\x01\xa4data\xc6" + (100 << 20).to_bytes(4, "big")
    decoder = Decoder()
    decoder.feed(header + bytes(MAX_FRAME - len(header)))
    assert decoder.next_frame() is None  # a frame of MAX_FRAME bytes may still be fine
    decoder.feed(b"\0")
    with pytest.raises(FrameTooLargeError):
        decoder.next_frame()


def test_an_oversized_string_is_refused():
    decoder = Decoder()
    decoder.feed(msgpack.packb({"type": "request", "id": 1, "op": "x" * (MAX_STR + 1)}))
    with pytest.raises(FrameTooLargeError):
        decoder.next_frame()


def test_a_frame_of_many_small_items_over_the_limit_is_refused():
    many = msgpack.packb({"type": "request", "id": 1, "op": "x",
                          "args": {"k": ["y" * 1000] * 5000}})
    decoder = Decoder()
    decoder.feed(many)
    with pytest.raises(FrameTooLargeError):
        decoder.next_frame()


def test_garbage_is_a_bad_frame():
    decoder = Decoder()
    decoder.feed(b"\xc1garbage")
    with pytest.raises(BadFrameError):
        decoder.next_frame()


def test_frames_before_garbage_are_still_delivered():
    decoder = Decoder()
    decoder.feed(encode(Cancel(1)) + b"\xc1")
    assert decoder.next_frame() == Cancel(1)
    with pytest.raises(BadFrameError):
        decoder.next_frame()


def test_the_decoder_stays_broken_after_a_bad_frame():
    decoder = Decoder()
    decoder.feed(b"\xc1")
    for _ in range(2):
        with pytest.raises(BadFrameError):
            decoder.next_frame()
    decoder.feed(encode(Cancel(1)))
    with pytest.raises(BadFrameError):
        decoder.next_frame()


def test_eof_between_frames_is_a_clean_end():
    decoder = Decoder()
    decoder.feed(encode(Cancel(1)))
    decoder.feed(b"")
    assert decoder.next_frame() == Cancel(1)
    assert decoder.next_frame() is None
    assert decoder.eof


def test_eof_inside_a_frame_is_a_bad_frame():
    decoder = Decoder()
    decoder.feed(encode(Data(1, b"abcdef"))[:-2])
    decoder.feed(b"")
    with pytest.raises(BadFrameError, match="ended inside a frame"):
        decoder.next_frame()


@pytest.mark.parametrize("obj,message", [
    ([1, 2], "must be a map"),
    ({"type": "bogus", "id": 1}, "unknown frame type"),
    ({"type": "data", "id": 1, "data": "text"}, "must be binary"),
    ({"type": "data", "id": -1, "data": b""}, "'id'"),
    ({"type": "data", "id": True, "data": b""}, "'id'"),
    ({"type": "request", "id": 1, "op": ""}, "'op'"),
    ({"type": "request", "id": 1, "op": "x", "args": [1]}, "must be a map"),
    ({"type": "error", "id": 1, "code": "x"}, "'code'"),
], ids=["array", "type", "data-str", "negative-id", "bool-id", "empty-op", "args-list",
        "code-str"])
def test_malformed_frames_are_named(obj, message):
    with pytest.raises(BadFrameError, match=message):
        parse_frame(obj)


def test_unknown_keys_in_a_frame_are_ignored():
    assert parse_frame({"type": "cancel", "id": 3, "future": 1}) == Cancel(3)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_decode_to_frames_or_one_of_two_errors(data):
    decoder = Decoder()
    decoder.feed(data)
    decoder.feed(b"")
    try:
        while decoder.next_frame() is not None:
            pass
    except (BadFrameError, FrameTooLargeError):
        pass
