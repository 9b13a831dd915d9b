"""Frames (RFC 6455 §5): the RFC's own examples, the per-frame rules, wsproto agreement."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol
from wsproto.frame_protocol import Opcode as WsprotoOpcode

from wsdemo.wire import (
    CloseCode,
    Frame,
    FrameParser,
    LocalProtocolError,
    Opcode,
    RemoteProtocolError,
    WireError,
    apply_mask,
    check_frame,
    is_valid_close_code,
    parse_close,
    serialize_close,
)

MASK = bytes.fromhex("37 fa 21 3d")  # the masking key of RFC 6455 §5.7
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_bytewise(data: bytes, **options: object) -> list[Frame]:
    parser = FrameParser(**options)  # type: ignore[arg-type]
    frames = []
    for i in range(len(data)):
        parser.feed(data[i:i + 1])
        frames += parser.frames()
    return frames


# ---------------------------------------------------------------- RFC 6455 §5.7


RFC_EXAMPLES = [
    ("single-frame unmasked text", "81 05 48 65 6c 6c 6f",
     [Frame(Opcode.TEXT, b"Hello")]),
    ("single-frame masked text", "81 85 37 fa 21 3d 7f 9f 4d 51 58",
     [Frame(Opcode.TEXT, b"Hello", mask=MASK)]),
    ("fragmented unmasked text", "01 03 48 65 6c 80 02 6c 6f",
     [Frame(Opcode.TEXT, b"Hel", fin=False), Frame(Opcode.CONT, b"lo")]),
    ("unmasked ping", "89 05 48 65 6c 6c 6f",
     [Frame(Opcode.PING, b"Hello")]),
    ("masked pong", "8a 85 37 fa 21 3d 7f 9f 4d 51 58",
     [Frame(Opcode.PONG, b"Hello", mask=MASK)]),
]


@pytest.mark.parametrize(("name", "wire", "frames"), RFC_EXAMPLES,
                         ids=[e[0] for e in RFC_EXAMPLES])
def test_rfc_5_7_examples_parse(name: str, wire: str, frames: list[Frame]) -> None:
    data = bytes.fromhex(wire)
    assert FrameParser().parse(data) == frames
    assert parse_bytewise(data) == frames


@pytest.mark.parametrize(("name", "wire", "frames"), RFC_EXAMPLES,
                         ids=[e[0] for e in RFC_EXAMPLES])
def test_rfc_5_7_examples_serialize(name: str, wire: str, frames: list[Frame]) -> None:
    assert b"".join(frame.serialize() for frame in frames) == bytes.fromhex(wire)


def test_rfc_5_7_256_bytes_binary_uses_16_bit_length() -> None:
    frame = Frame(Opcode.BINARY, bytes(range(256)))
    wire = frame.serialize()
    assert wire[:4] == bytes.fromhex("82 7E 01 00")
    assert len(wire) == 4 + 256
    assert Frame.parse(wire) == frame


def test_rfc_5_7_64_kib_binary_uses_64_bit_length() -> None:
    frame = Frame(Opcode.BINARY, bytes(65536))
    wire = frame.serialize()
    assert wire[:10] == bytes.fromhex("82 7F 00 00 00 00 00 01 00 00")
    assert len(wire) == 10 + 65536
    assert Frame.parse(wire) == frame


@pytest.mark.parametrize(("size", "header_len"), [(0, 2), (125, 2), (126, 4), (65535, 4),
                                                  (65536, 10)])
def test_length_boundaries_are_minimal(size: int, header_len: int) -> None:
    frame = Frame(Opcode.BINARY, bytes(size), mask=MASK)
    assert len(frame.build_header()) == header_len + 4
    assert Frame.parse(frame.serialize()) == frame


def test_masking_is_its_own_inverse() -> None:
    assert apply_mask(b"Hello", MASK) == bytes.fromhex("7f 9f 4d 51 58")
    assert apply_mask(bytes.fromhex("7f 9f 4d 51 58"), MASK) == b"Hello"
    assert apply_mask(b"", MASK) == b""
    with pytest.raises(LocalProtocolError):
        apply_mask(b"x", b"abc")


# ---------------------------------------------------------------- per-frame rules


def rejected(frame_bytes: bytes, expect_masked: bool | None = None) -> RemoteProtocolError:
    parser = FrameParser(expect_masked=expect_masked)
    with pytest.raises(RemoteProtocolError) as info:
        parser.parse(frame_bytes)
    return info.value


@pytest.mark.parametrize("bit", ["rsv1", "rsv2", "rsv3"])
def test_reserved_bits_without_extension_are_1002(bit: str) -> None:
    error = rejected(Frame(Opcode.TEXT, b"x", **{bit: True}).serialize())
    assert error.close_code == 1002
    assert "reserved bit" in error.reason


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_are_1002(opcode: int) -> None:
    assert rejected(Frame(opcode, b"").serialize()).close_code == 1002


def test_masking_direction() -> None:
    unmasked = Frame(Opcode.TEXT, b"x").serialize()
    masked = Frame(Opcode.TEXT, b"x", mask=MASK).serialize()
    assert rejected(unmasked, expect_masked=True).close_code == 1002
    assert rejected(masked, expect_masked=False).close_code == 1002
    assert FrameParser(expect_masked=True).parse(masked)
    assert FrameParser(expect_masked=False).parse(unmasked)
    assert FrameParser(expect_masked=None).parse(masked + unmasked)


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_control_frames_over_125_bytes_are_1002(opcode: Opcode) -> None:
    payload = struct.pack("!H", 1000) + b"x" * 124
    assert rejected(Frame(opcode, payload).serialize()).close_code == 1002
    assert FrameParser().parse(Frame(opcode, payload[:125]).serialize())


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_fragmented_control_frames_are_1002(opcode: Opcode) -> None:
    assert rejected(Frame(opcode, b"", fin=False).serialize()).close_code == 1002


def test_non_minimal_lengths_are_1002() -> None:
    sixteen = bytes.fromhex("82 7e 00 05") + b"Hello"
    sixty_four = bytes.fromhex("82 7f 00 00 00 00 00 00 00 05") + b"Hello"
    sixty_four_for_16 = bytes.fromhex("82 7f 00 00 00 00 00 00 01 00") + bytes(256)
    for data in (sixteen, sixty_four, sixty_four_for_16):
        assert rejected(data).close_code == 1002
        # Structurally still a frame: a lenient reader (a tap) can show it.
        assert FrameParser(strict=False).parse(data)[0].payload in (b"Hello", bytes(256))


def test_64_bit_length_with_top_bit_set_is_1002() -> None:
    assert rejected(bytes.fromhex("82 ff 80 00 00 00 00 00 00 00")).close_code == 1002


def test_max_size_is_checked_before_the_payload_arrives() -> None:
    parser = FrameParser(max_size=10)
    with pytest.raises(RemoteProtocolError) as info:
        parser.parse(bytes.fromhex("82 7f 00 00 00 01 00 00 00 00"))  # 4 GiB announced
    assert info.value.close_code == 1009


def test_huge_control_frame_fails_before_its_payload_arrives() -> None:
    huge_ping = bytes.fromhex("89 7f 40 00 00 00 00 00 00 00")  # announces 2**62 bytes
    assert rejected(huge_ping).close_code == 1002
    lenient = FrameParser(strict=False)
    assert lenient.parse(huge_ping) == []  # a tap just waits for the bytes
    assert FrameParser(max_size=10).parse(Frame(Opcode.PING, bytes(100)).serialize())


def test_parser_stays_failed_after_an_error() -> None:
    parser = FrameParser()
    with pytest.raises(RemoteProtocolError):
        parser.parse(bytes.fromhex("83 00"))
    with pytest.raises(RemoteProtocolError):
        parser.parse(bytes.fromhex("81 00"))


def test_frames_before_a_bad_one_are_delivered() -> None:
    parser = FrameParser()
    parser.feed(bytes.fromhex("81 01 41 83 00"))
    frames = parser.frames()
    assert next(frames).payload == b"A"
    with pytest.raises(RemoteProtocolError):
        next(frames)


# ---------------------------------------------------------------- close payloads


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                  1013, 1014, 3000, 3999, 4000, 4999])
def test_valid_close_codes(code: int) -> None:
    assert is_valid_close_code(code)
    assert parse_close(serialize_close(code, "why")) == (code, "why")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_invalid_close_codes_are_1002(code: int) -> None:
    assert not is_valid_close_code(code)
    with pytest.raises(RemoteProtocolError) as info:
        parse_close(struct.pack("!H", code))
    assert info.value.close_code == 1002
    with pytest.raises(LocalProtocolError):
        serialize_close(code)


def test_close_payload_edge_cases() -> None:
    assert parse_close(b"") == (CloseCode.NO_STATUS_RCVD, "")
    with pytest.raises(RemoteProtocolError) as info:
        parse_close(b"\x03")
    assert info.value.close_code == 1002
    with pytest.raises(RemoteProtocolError) as info:
        parse_close(struct.pack("!H", 1000) + b"\xff")
    assert info.value.close_code == 1007
    # A close frame carries its rules through check_frame too.
    assert rejected(Frame(Opcode.CLOSE, b"\x03").serialize()).close_code == 1002
    bad_reason = Frame(Opcode.CLOSE, struct.pack("!H", 1000) + b"\xc3\x28").serialize()
    assert rejected(bad_reason).close_code == 1007
    assert serialize_close(None) == b""
    with pytest.raises(LocalProtocolError):
        serialize_close(None, "a reason needs a code")
    with pytest.raises(LocalProtocolError):
        serialize_close(1000, "x" * 124)


# ---------------------------------------------------------------- annotation


def test_explain_shows_every_field_of_the_rfc_masked_example() -> None:
    frame = Frame.parse(bytes.fromhex("81 85 37 fa 21 3d 7f 9f 4d 51 58"))
    text = frame.explain()
    for expected in ("FIN", "RSV1-3", "opcode", "0x1", "MASK", "payload length", "7-bit",
                     "masking key", "37 fa 21 3d", "masked payload", "7f 9f 4d 51 58",
                     "unmasked payload", "48 65 6c 6c 6f", "'Hello'"):
        assert expected in text
    assert text.splitlines()[0] == "TEXT frame, 5-byte payload, masked"
    html = frame._repr_html_()
    assert html.startswith("<table>") and "masking key" in html and "<th>bits</th>" in html


def test_explain_extended_lengths_and_problems() -> None:
    assert "extended length (16-bit)" in Frame(Opcode.BINARY, bytes(256)).explain()
    assert "extended length (64-bit)" in Frame(Opcode.BINARY, bytes(65536)).explain()
    lenient = FrameParser(strict=False).parse(bytes.fromhex("82 7e 00 05") + b"Hello")[0]
    assert "not minimal" in lenient.explain()
    assert "reserved" in Frame(0x3).explain()
    assert "close code 1000 (normal closure), reason 'bye'" in Frame(
        Opcode.CLOSE, serialize_close(1000, "bye")).explain()
    assert "&lt;script&gt;" in Frame(Opcode.TEXT, b"<script>")._repr_html_()


# ---------------------------------------------------------------- properties

data_opcodes = st.sampled_from([Opcode.CONT, Opcode.TEXT, Opcode.BINARY])
masks = st.none() | st.binary(min_size=4, max_size=4)


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    if draw(st.booleans()):
        opcode = draw(st.sampled_from([Opcode.PING, Opcode.PONG]))
        return Frame(opcode, draw(st.binary(max_size=125)), mask=draw(masks))
    boundaries = st.sampled_from([0, 1, 125, 126, 127, 300, 65535, 65536, 70000])
    size = draw(boundaries | st.integers(0, 200))
    payload = draw(st.binary(min_size=min(size, 20), max_size=min(size, 20)))
    payload = (payload * (size // max(len(payload), 1) + 1))[:size] if payload else bytes(size)
    return Frame(draw(data_opcodes), payload, fin=draw(st.booleans()), mask=draw(masks))


@FAST
@given(st.lists(frames(), max_size=4), st.data())
def test_any_chunking_gives_the_same_frames(sent: list[Frame], data: st.DataObject) -> None:
    wire = b"".join(frame.serialize() for frame in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    parser = FrameParser()
    received = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        parser.feed(wire[start:end])
        received += parser.frames()
    assert received == sent


@FAST
@given(st.binary(max_size=300), st.booleans(), st.sampled_from([None, True, False]))
def test_arbitrary_bytes_raise_only_codec_errors(
    data: bytes, bytewise: bool, expect_masked: bool | None
) -> None:
    parser = FrameParser(expect_masked=expect_masked, max_size=1000)
    try:
        if bytewise:
            for i in range(len(data)):
                parser.feed(data[i:i + 1])
                list(parser.frames())
        else:
            parser.parse(data)
    except WireError:
        pass


@FAST
@given(st.binary(min_size=2, max_size=40))
def test_frame_parse_of_arbitrary_bytes_raises_only_codec_errors(data: bytes) -> None:
    try:
        frame = Frame.parse(data)
    except WireError:
        return
    check = frame.serialize()
    # A frame that parses re-serializes to the same bytes, unless its length was not minimal.
    assert check == data or (data[1] & 0x7F) in (126, 127)


# ---------------------------------------------------------------- agreement with wsproto


@st.composite
def fragmented_messages(draw: st.DrawFn) -> list[tuple[Opcode, bytes | str, int]]:
    """Messages as (opcode, data, fragment size)."""
    messages = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            messages.append((Opcode.TEXT, draw(st.text(max_size=200)), draw(st.integers(1, 64))))
        else:
            messages.append((Opcode.BINARY, draw(st.binary(max_size=70000 if draw(
                st.integers(0, 9)) == 0 else 300)), draw(st.integers(1, 70000))))
    return messages


def our_frames(opcode: Opcode, payload: bytes, fragment: int, mask: bytes | None) -> list[Frame]:
    chunks = [payload[i:i + fragment] for i in range(0, len(payload), fragment)] or [b""]
    return [Frame(opcode if i == 0 else Opcode.CONT, chunk, fin=i == len(chunks) - 1, mask=mask)
            for i, chunk in enumerate(chunks)]


@FAST
@given(fragmented_messages(), st.binary(min_size=4, max_size=4), st.binary(max_size=125))
def test_wsproto_decodes_what_we_encode(messages: list, mask: bytes, ping: bytes) -> None:
    wire = b""
    for opcode, data, fragment in messages:
        payload = data.encode() if isinstance(data, str) else data
        for i, frame in enumerate(our_frames(opcode, payload, fragment, mask)):
            wire += frame.serialize()
            if i == 0:
                # A ping between fragments is legal (§5.4) and must not disturb them.
                wire += Frame(Opcode.PING, ping, mask=mask).serialize()
    wire += Frame(Opcode.CLOSE, serialize_close(4000, "done"), mask=mask).serialize()

    theirs = FrameProtocol(client=False, extensions=[])
    theirs.receive_bytes(wire)
    decoded: list[tuple[Opcode, bytes | str]] = []
    parts: list = []
    pings = 0
    for frame in theirs.received_frames():
        if frame.opcode is WsprotoOpcode.PING:
            assert frame.payload == ping
            pings += 1
        elif frame.opcode is WsprotoOpcode.CLOSE:
            assert tuple(frame.payload) == (4000, "done")
        else:
            parts.append(frame.payload)
            if frame.message_finished:
                kind = Opcode.TEXT if isinstance(parts[0], str) else Opcode.BINARY
                decoded.append((kind, ("" if kind is Opcode.TEXT else b"").join(parts)))
                parts = []
    assert decoded == [(opcode, data) for opcode, data, _ in messages]
    assert pings == len(messages)


@FAST
@given(fragmented_messages(), st.binary(max_size=125))
def test_we_decode_what_wsproto_encodes(messages: list, ping: bytes) -> None:
    theirs = FrameProtocol(client=True, extensions=[])
    wire = b""
    for _, data, fragment in messages:
        chunks = [data[i:i + fragment] for i in range(0, len(data), fragment)] or [data[:0]]
        for i, chunk in enumerate(chunks):
            wire += theirs.send_data(chunk, fin=i == len(chunks) - 1)
        wire += theirs.ping(ping)
    wire += theirs.close(1001, "bye")

    frames_received = FrameParser(expect_masked=True).parse(bytes(wire))
    decoded = []
    parts: list[bytes] = []
    kind = None
    for frame in frames_received:
        assert frame.mask is not None
        if frame.opcode == Opcode.PING:
            assert frame.payload == ping
        elif frame.opcode == Opcode.CLOSE:
            assert parse_close(frame.payload) == (1001, "bye")
        else:
            kind = frame.opcode if frame.opcode != Opcode.CONT else kind
            parts.append(frame.payload)
            if frame.fin:
                payload = b"".join(parts)
                decoded.append((kind, payload.decode() if kind == Opcode.TEXT else payload))
                parts = []
    assert decoded == [(opcode, data) for opcode, data, _ in messages]


def test_check_frame_accepts_what_wsproto_sends_as_server() -> None:
    theirs = FrameProtocol(client=False, extensions=[])
    wire = bytes(theirs.send_data("héllo") + theirs.pong(b"p") + theirs.close(1000))
    for frame in FrameParser(expect_masked=False).parse(wire):
        check_frame(frame, expect_masked=False)
