"""The one place below ``write_message`` (``wsdemo/server/transport.py``), and what it relies on.

The first tests pin each Tornado behaviour the module's docstring lists: if an
upgrade of Tornado changes one, they fail here, by name, before anything subtle
breaks in the delivery path. The others check the frames themselves (against the
course's own codec and the independent ``websockets`` client), and the path end
to end: large and fragmented messages, a broadcast's bytes, a slow consumer.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging

import pytest
import tornado.iostream
import tornado.websocket
import websockets

from wsdemo import ControlServer
from wsdemo.core.protocol import SUBPROTOCOL
from wsdemo.server.transport import Outlet, frame_payload, text_frame
from wsdemo.wire import FrameParser, Opcode

WAIT = 5.0


@pytest.fixture
async def chat():
    srv = ControlServer(port=0, presence_window=0)
    srv.add_room("chat")
    srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def hello_and_join(srv, name="t", room="chat"):
    ws = await websockets.connect(srv.ws_url, subprotocols=[SUBPROTOCOL], max_size=None)
    await ws.send(json.dumps({"type": "hello", "client": name}))
    await ws.send(json.dumps({"type": "join", "room": room}))
    while json.loads(await asyncio.wait_for(ws.recv(), WAIT))["type"] != "snapshot":
        pass
    return ws


def session_of(srv, name):
    return next(s for s in srv.sessions if s.client_name == name)


# --- what we rely on in Tornado --------------------------------------------------------------

async def test_tornado_gives_the_handler_its_iostream_after_the_upgrade(chat):
    ws = await hello_and_join(chat, "a")
    session = session_of(chat, "a")
    stream = session.ws_connection.stream
    assert isinstance(stream, tornado.iostream.IOStream)
    assert isinstance(stream._write_buffer, tornado.iostream._StreamBuffer)
    assert len(stream._write_buffer) == 0, "an idle connection has nothing waiting"
    assert session.ws_connection._compressor is None, "no permessage-deflate by default"
    await ws.close()


async def raw_upgrade(srv):
    """A raw client that has done the upgrade and then reads only when told to."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wsdemo.v1\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    return reader, writer


async def test_tornado_counts_what_waits_for_the_socket_and_writes_in_call_order(chat):
    # A reader that does not read yet: the socket's buffers fill, the rest waits in Tornado.
    reader, writer = await raw_upgrade(chat)
    session = await _first_session(chat)
    stream = session.ws_connection.stream
    frame = text_frame(b"x" * 60_000)
    for _ in range(200):  # 12 MB: more than loopback socket buffers hold
        stream.write(frame)
    assert len(stream._write_buffer) > 1_000_000
    # Tornado's own frames go into the same stream, after ours, whole.
    session.ws_connection.write_ping(b"p")
    parser, frames = FrameParser(expect_masked=False), []
    while not frames or frames[-1].opcode != Opcode.PING:
        frames += parser.parse(await asyncio.wait_for(reader.read(1 << 20), WAIT))
    assert [f.opcode for f in frames] == [Opcode.TEXT] * 200 + [Opcode.PING]
    assert all(f.payload == b"x" * 60_000 for f in frames[:-1])
    writer.close()


async def test_tornado_marks_a_lost_write_as_retrieved(chat, caplog):
    """Writes still waiting when the peer goes away must not log 'never retrieved'."""
    reader, writer = await raw_upgrade(chat)
    session = await _first_session(chat)
    stream = session.ws_connection.stream
    futures = [stream.write(text_frame(b"y" * 60_000)) for _ in range(100)]
    writer.transport.abort()
    closed = asyncio.get_running_loop().create_future()
    stream.set_close_callback(lambda: closed.done() or closed.set_result(None))
    await asyncio.wait_for(closed, WAIT)
    assert all(f.done() for f in futures)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        del futures
        gc.collect()
        await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
    with pytest.raises(tornado.iostream.StreamClosedError):
        stream.write(b"after the close")


async def _first_session(srv):
    while not srv.sessions:
        await asyncio.sleep(0)  # the upgrade's handler is being set up
    return next(iter(srv.sessions))


# --- the frames ------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 300_000])
def test_text_frame_is_what_the_course_codec_reads(size):
    payload = ("é" * size).encode()[:size]
    frame = text_frame(payload)
    frames = FrameParser(expect_masked=False).parse(frame)  # strict: RFC 6455 §5 checks
    assert len(frames) == 1
    assert frames[0].fin and frames[0].opcode == Opcode.TEXT and frames[0].mask is None
    assert frames[0].payload == payload
    assert frame_payload(frame) == payload


def test_text_frame_is_the_bytes_tornado_would_write():
    class Recorder:
        def write(self, data):
            self.data = data

    protocol = tornado.websocket.WebSocketProtocol13.__new__(
        tornado.websocket.WebSocketProtocol13)
    protocol.mask_outgoing = False
    protocol.stream = Recorder()
    protocol._wire_bytes_out = 0
    for size in (5, 200, 70_000):
        payload = b"z" * size
        protocol._write_frame(True, 0x1, payload)
        assert protocol.stream.data == text_frame(payload)


# --- the path, end to end ---------------------------------------------------------------------

async def test_one_broadcast_is_framed_once_and_reaches_every_member_intact(chat, monkeypatch):
    members = [await hello_and_join(chat, f"m{i}") for i in range(5)]
    import wsdemo.server.app as app

    framed = []
    real = app.text_frame
    monkeypatch.setattr(app, "text_frame", lambda payload: framed.append(payload) or real(payload))
    big = "ü" * 40_000  # past 65,535 bytes of UTF-8: the 64-bit length form
    event = await chat.publish("chat", {"big": big})
    assert len(framed) == 1, "encoded and framed once for all five members"
    for ws in members:
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            if msg["type"] == "event":
                break
        assert msg["seq"] == event.seq and msg["data"]["big"] == big
        await ws.close()


async def test_a_fragmented_client_message_is_answered(chat):
    ws = await hello_and_join(chat, "frag")
    text = json.dumps({"type": "publish", "room": "chat", "id": "f1", "data": "é" * 5000})
    await ws.send([text[i:i + 1000] for i in range(0, len(text), 1000)])  # fragments
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if msg["type"] == "ack":
            break
    assert msg["id"] == "f1" and msg["seq"] == 1
    await ws.close()


async def test_the_outlet_reports_a_slow_consumer_and_closes_it_1013_others_unaffected(caplog):
    srv = ControlServer(port=0, max_buffered_bytes=256 * 1024, presence_window=0)
    srv.add_room("firehose", publish=False)
    srv.start()
    try:
        fast = await hello_and_join(srv, "fast", "firehose")
        slow = await websockets.connect(srv.ws_url, subprotocols=[SUBPROTOCOL],
                                        max_queue=1, max_size=None)
        await slow.send(json.dumps({"type": "hello", "client": "slow"}))
        await slow.send(json.dumps({"type": "join", "room": "firehose"}))
        session = None
        while session is None or "firehose" not in session.rooms:
            await asyncio.sleep(0)
            session = next((s for s in srv.sessions if s.client_name == "slow"), None)
        slow.transport.pause_reading()  # stops reading, as a stuck client would
        pad = "p" * 20_000
        seqs = []
        for n in range(400):  # 8 MB: far past the 256 KiB bound
            seqs.append((await srv.publish("firehose", {"n": n, "pad": pad})).seq)
            got = None
            while got is None or got.get("type") != "event":
                got = json.loads(await asyncio.wait_for(fast.recv(), WAIT))
            assert got["seq"] == seqs[-1], "the fast member misses nothing"
            if session._closing:
                break
        assert session._closing and isinstance(session._outlet, Outlet)
        assert session.close_code in (None, 1013)
        await fast.close()
        await slow.close()
        gc.collect()
        await asyncio.sleep(0)
        assert "never retrieved" not in caplog.text, "a closed slow consumer leaves no trace"
        assert caplog.text.count("closing slow consumer") == 1, "one line in the log"
    finally:
        await srv.stop()
