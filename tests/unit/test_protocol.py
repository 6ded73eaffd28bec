"""The sans-I/O wire protocol: frame encoding, decoding, limits and bad input."""

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import decode_frames
from vzslave.errors import BadFrameError, FrameTooLargeError
from vzslave.protocol import (
    MAX_DATA,
    MAX_DEPTH,
    MAX_FRAME,
    MAX_ITEMS,
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


def bytes_until_refused(stream: bytes):
    """Feed ``stream`` one byte at a time; the count fed when the decoder refused it
    (None if it never did), and the error."""
    decoder = Decoder()
    for count in range(1, len(stream) + 1):
        decoder.feed(stream[count - 1:count])
        try:
            while decoder.next_frame() is not None:
                pass
        except (BadFrameError, FrameTooLargeError) as exc:
            return count, exc
    return None, None


DATA_HEAD = b"\x83\xa4type\xa4data\xa2id\x01\xa4data"


@pytest.mark.parametrize("header,limit", [
    (b"\xc6" + (MAX_DATA + 1).to_bytes(4, "big"), "bin"),
    (b"\xdb" + (MAX_STR + 1).to_bytes(4, "big"), "str"),
    (b"\xdd" + (MAX_ITEMS + 1).to_bytes(4, "big"), "array"),
    (b"\xdf" + (MAX_ITEMS + 1).to_bytes(4, "big"), "map"),
    (b"\xc6" + (100 << 20).to_bytes(4, "big"), "100 MiB"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_field_past_its_limit_is_refused_when_its_header_arrives(header, limit):
    count, exc = bytes_until_refused(DATA_HEAD + header + bytes(100))
    assert isinstance(exc, FrameTooLargeError)
    assert count == len(DATA_HEAD + header)


def test_fields_at_their_limits_are_accepted():
    frame = {"type": "request", "id": 1, "op": "x" * MAX_STR,
             "args": {"a": list(range(MAX_ITEMS))}}
    assert decode_all(msgpack.packb(frame))[0].op == "x" * MAX_STR


def test_a_frame_whose_declared_sizes_add_up_past_max_frame_is_refused_at_that_header():
    head = DATA_HEAD + b"\xc6" + MAX_DATA.to_bytes(4, "big")
    pad = b"\xa3pad\xdb" + MAX_STR.to_bytes(4, "big")
    decoder = Decoder()
    decoder.feed(head.replace(b"\x83", b"\x85", 1) + bytes(MAX_DATA))
    assert decoder.next_frame() is None
    for byte in pad[:-1]:
        decoder.feed(bytes([byte]))
        assert decoder.next_frame() is None
    decoder.feed(pad[-1:])  # 1 MiB + 64 KiB of strings, and one more pair to come
    with pytest.raises(FrameTooLargeError, match="at least"):
        decoder.next_frame()


def test_many_declared_items_past_max_frame_are_refused_before_they_arrive():
    # Each of the declared items takes at least a byte: 12 arrays of 100,000 items.
    stream = b"\x81\xa4args\x9c" + (b"\xdd" + MAX_ITEMS.to_bytes(4, "big")) * 12
    count, exc = bytes_until_refused(stream)
    assert isinstance(exc, FrameTooLargeError)
    assert count == len(stream)


@pytest.mark.parametrize("first", [b"\x91", b"\x01", b"\xa1", b"\xc0", b"\xc4\x05"],
                         ids=["array", "int", "str", "nil", "bin8"])
def test_a_frame_that_is_not_a_map_is_refused_at_its_first_header(first):
    count, exc = bytes_until_refused(first + bytes(10))
    assert isinstance(exc, BadFrameError)
    assert count == len(first)


@pytest.mark.parametrize("ext", [b"\xd4\x01\x00", b"\xc7\x01\x01\x00",
                                 b"\xc9\x00\x00\x00\x01\x01\x00"],
                         ids=["fixext1", "ext8", "ext32"])
def test_an_extension_type_is_a_bad_frame_at_its_first_byte(ext):
    """When a frame held an extension type, it came out FRAME_TOO_LARGE, though the
    reference says bad frame."""
    head = b"\x82\xa4type\xa6cancel\xa2id"
    count, exc = bytes_until_refused(head + ext)
    assert isinstance(exc, BadFrameError)
    assert count == len(head) + 1


def test_nesting_past_max_depth_is_a_bad_frame():
    stream = b"\x81\xa4args" + b"\x91" * MAX_DEPTH
    count, exc = bytes_until_refused(stream)
    assert isinstance(exc, BadFrameError)
    assert count == len(stream)


def test_nesting_up_to_max_depth_is_accepted():
    value = 1
    for _ in range(MAX_DEPTH - 2):  # the frame and args are two levels
        value = [value]
    frame = Request(1, "x", {"a": value})
    assert decode_all(encode(frame)) == [frame]


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


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(b"".join(map(encode, FRAMES)))),
                max_size=20))
def test_frames_cut_anywhere_decode_the_same(cuts):
    stream = b"".join(encode(frame) for frame in FRAMES)
    decoder = Decoder()
    frames = []
    previous = 0
    for cut in sorted(set(cuts) | {len(stream)}):
        decoder.feed(stream[previous:cut])  # never b"": that would be the end
        previous = cut
        frame = decoder.next_frame()
        while frame is not None:
            frames.append(frame)
            frame = decoder.next_frame()
    assert frames == FRAMES


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=40)
    | st.dictionaries(st.text(max_size=5), inner, max_size=10),
    max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(VALUES, st.lists(st.integers(min_value=1, max_value=4000), max_size=8))
def test_any_arguments_cut_anywhere_decode_as_msgpack_does(value, cuts):
    frame = Request(5, "x", {"v": value, "run": [0] * 40 + [value]})
    stream = encode(frame) * 2
    decoder = Decoder()
    frames = []
    previous = 0
    for cut in sorted({min(cut, len(stream)) for cut in cuts} | {len(stream)}):
        decoder.feed(stream[previous:cut])
        previous = cut
        frame_out = decoder.next_frame()
        while frame_out is not None:
            frames.append(frame_out)
            frame_out = decoder.next_frame()
    assert frames == [frame, frame]


def test_a_million_one_byte_items_past_max_frame_are_refused():
    stream = msgpack.packb({"type": "request", "id": 1, "op": "x",
                            "args": {"a": [[0] * MAX_ITEMS] * 12}})
    decoder = Decoder()
    decoder.feed(stream)
    with pytest.raises(FrameTooLargeError):
        decoder.next_frame()
