"""The tap's HTTP/2 view: frame headers, SETTINGS, HPACK, WebSocket frames in DATA.

Byte streams are built with hyperframe and hpack (the libraries under h2), an
implementation independent of the decoder under test, and fed in every chunking.
"""

from __future__ import annotations

import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from wsdemo.tap.decode import Direction
from wsdemo.tap.http2 import PREFACE, H2Frame, Http2Decoder, Preface, view_table
from wsdemo.wire.frames import Frame, Opcode

C2S, S2C = Direction.C2S, Direction.S2C
MASK = bytes.fromhex("37fa213d")


def settings(**values: int) -> bytes:
    frame = SettingsFrame(0)
    frame.settings = {getattr(SettingsFrame, k): v for k, v in values.items()}
    return frame.serialize()


def headers(encoder: hpack.Encoder, stream: int, fields, flags=("END_HEADERS",)) -> bytes:
    frame = HeadersFrame(stream)
    frame.data = encoder.encode(fields)
    frame.flags = set(flags)
    return frame.serialize()


def data(stream: int, payload: bytes, flags=(), pad: int = 0) -> bytes:
    frame = DataFrame(stream)
    frame.data = payload
    frame.flags = set(flags) | ({"PADDED"} if pad else set())
    frame.pad_length = pad
    return frame.serialize()


def feed(decoder: Http2Decoder, direction: Direction, wire: bytes, size: int | None):
    items = []
    step = size or len(wire) or 1
    for i in range(0, len(wire), step):
        items += decoder.receive(direction, wire[i:i + step])
    return items


CONNECT = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
           (":path", "/ws"), (":authority", "wsdemo.test"), ("sec-websocket-version", "13")]


@pytest.mark.parametrize("size", [None, 1, 7])
def test_preface_settings_and_an_extended_connect_decode_in_any_chunking(size):
    enc = hpack.Encoder()
    wire = PREFACE + settings(INITIAL_WINDOW_SIZE=65535) + headers(enc, 1, CONNECT)
    decoder = Http2Decoder()
    items = feed(decoder, C2S, wire, size)
    assert isinstance(items[0], Preface) and items[0].valid and items[0].nbytes == 24
    setting, connect = items[1:]
    assert (setting.type_name, setting.stream_id, setting.length) == ("SETTINGS", 0, 6)
    assert setting.settings == ((0x4, 65535),)
    assert connect.type_name == "HEADERS" and connect.flag_names == ["END_HEADERS"]
    assert connect.headers == tuple(CONNECT)
    assert connect.offset == 24 + setting.nbytes
    assert decoder.websocket_streams == {1}


def test_the_frame_header_fields_are_read_bit_by_bit():
    decoder = Http2Decoder()
    decoder.receive(S2C, settings(ENABLE_CONNECT_PROTOCOL=1))
    (frame,) = decoder.items
    assert frame.settings == ((0x8, 1),)
    rows = {f.name: f for f in frame.fields()}
    assert rows["length"].value == "6" and rows["length"].bits == "00 00 06"
    assert rows["type"].value == "0x4" and rows["type"].meaning == "SETTINGS"
    assert rows["R + stream id"].value == "0"
    assert "ENABLE_CONNECT_PROTOCOL (0x8) = 1" in frame.explain()


def test_websocket_frames_are_found_inside_data_even_across_data_frames():
    enc = hpack.Encoder()
    ws = Frame(Opcode.TEXT, b"hello", mask=MASK).serialize() + \
        Frame(Opcode.PING, b"p", mask=MASK).serialize()
    wire = (PREFACE + headers(enc, 1, CONNECT) + data(1, ws[:4]) + data(1, ws[4:], pad=3)
            + headers(enc, 3, [(":method", "GET"), (":scheme", "http"), (":path", "/"),
                              (":authority", "wsdemo.test")], flags=("END_HEADERS",
                                                                     "END_STREAM"))
            + data(3, b"not a websocket frame"))
    decoder = Http2Decoder()
    items = decoder.receive(C2S, wire)
    first, second = (i for i in items if isinstance(i, H2Frame) and i.type == 0x0
                     and i.stream_id == 1)
    assert first.websocket == ()  # the frame is not complete yet
    assert first.details() == ["part of a WebSocket frame, continued in a later DATA frame"]
    assert [(v.kind, v.payload, v.masked) for v in second.websocket] == [
        ("TEXT", b"hello", True), ("PING", b"p", True)]
    other = items[-1]
    assert other.stream_id == 3 and other.websocket == () and "not a websocket" in \
        " ".join(other.details())
    assert "WebSocket TEXT (masked): 'hello'" in view_table(items)


def test_a_server_frame_on_the_websocket_stream_is_read_as_from_the_server():
    enc = hpack.Encoder()
    decoder = Http2Decoder()
    decoder.receive(C2S, PREFACE + headers(enc, 1, CONNECT))
    (frame,) = decoder.receive(S2C, data(1, Frame(Opcode.TEXT, b"hi").serialize()))
    (view,) = frame.websocket
    assert view.problem is None and not view.masked
    (frame,) = decoder.receive(S2C, data(1, Frame(Opcode.TEXT, b"m", mask=MASK).serialize()))
    assert "must not be masked" in frame.websocket[0].problem


def test_continuation_completes_a_header_block():
    enc = hpack.Encoder()
    block = enc.encode([(":status", "200"), ("sec-websocket-protocol", "wsdemo.v1")])
    head = HeadersFrame(1)
    head.data = block[:3]
    cont = ContinuationFrame(1)
    cont.data = block[3:]
    cont.flags = {"END_HEADERS"}
    decoder = Http2Decoder()
    first, second = decoder.receive(S2C, head.serialize() + cont.serialize())
    assert first.headers == ((":status", "200"), ("sec-websocket-protocol", "wsdemo.v1"))
    assert second.type_name == "CONTINUATION" and second.headers is None


def test_control_frames_say_what_they_carry():
    rst = RstStreamFrame(1)
    rst.error_code = 0x1
    window = WindowUpdateFrame(0)
    window.window_increment = 32768
    goaway = GoAwayFrame(0)
    goaway.last_stream_id, goaway.error_code = 3, 0
    ack = SettingsFrame(0)
    ack.flags = {"ACK"}
    decoder = Http2Decoder()
    items = decoder.receive(S2C, rst.serialize() + window.serialize() + goaway.serialize()
                            + ack.serialize())
    assert items[0].details() == ["error code PROTOCOL_ERROR"]
    assert items[1].details() == ["window increment 32768"]
    assert items[2].details() == ["last stream 3, error code NO_ERROR"]
    assert items[3].flag_names == ["ACK"] and items[3].settings is None


def test_a_client_that_does_not_speak_http2_is_reported_not_decoded():
    decoder = Http2Decoder()
    (item,) = decoder.receive(C2S, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(item, Preface) and not item.valid
    assert "preface" in decoder.problem
    assert decoder.receive(C2S, settings()) == []


def test_a_broken_header_block_is_a_problem_not_an_exception():
    frame = HeadersFrame(1)
    frame.data = b"\xff\xff\xff\xff"  # an index far past any table
    frame.flags = {"END_HEADERS"}
    decoder = Http2Decoder()
    (item,) = decoder.receive(S2C, frame.serialize())
    assert item.headers is None and "HEADERS on stream 1" in decoder.problem


def test_by_direction_puts_the_clients_frames_first_in_wire_order():
    decoder = Http2Decoder()
    decoder.receive(S2C, settings(ENABLE_CONNECT_PROTOCOL=1))
    decoder.receive(C2S, PREFACE + settings())
    lines = [line for line in decoder.table(by_direction=True).splitlines()
             if not line.startswith(" ")]
    assert [line[0] for line in lines] == ["→", "→", "←"]
    assert lines[0].startswith("→ preface")
