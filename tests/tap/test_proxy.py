"""The wire tap: HTTP splitting, decoding across the 101, and a real proxy on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys

import matplotlib
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket
import websockets
from websockets.asyncio.server import serve as websockets_serve

from wsdemo.lab.keepalive import KeepAliveClient
from wsdemo.tap import Capture, Direction, Tap
from wsdemo.tap.decode import ConnectionDecoder
from wsdemo.tap.http import HttpSplitError, HttpStreamSplitter
from wsdemo.tap.proxy import main, parse_target
from wsdemo.wire import Frame, Opcode, build_request, build_response

matplotlib.use("Agg")

C2S, S2C = Direction.C2S, Direction.S2C
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x37\xfa\x21\x3d"


# ---------------------------------------------------------------- HTTP splitting


def split_all(data: bytes, *, requests: bool, methods: tuple[str, ...] = (), step: int = 0):
    splitter = HttpStreamSplitter(requests=requests)
    for method in methods:
        splitter.expect_response_to(method)
    pieces = [data] if not step else [data[i : i + step] for i in range(0, len(data), step)]
    out = []
    for piece in pieces:
        splitter.receive(piece)
        while (message := splitter.next_message()) is not None:
            out.append(message)
    return out, splitter


RESPONSES = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"  # answers HEAD: no body
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n"
    b"HTTP/1.1 204 No Content\r\n\r\n"
)


@pytest.mark.parametrize("step", [0, 1, 7])
def test_responses_split_the_same_in_any_chunking(step):
    messages, splitter = split_all(
        RESPONSES, requests=False, methods=("POST", "HEAD", "GET", "GET"), step=step
    )
    assert [m.status for m in messages] == [100, 200, 200, 200, 204]
    assert [m.body for m in messages] == [b"", b"hello", b"", b"Wikipedia", b""]
    assert b"".join(m.raw for m in messages) == RESPONSES
    assert splitter.buffered == 0


def test_requests_with_and_without_body_on_one_connection():
    data = (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /c HT"
    )
    messages, splitter = split_all(data, requests=True)
    assert [(m.method, m.target, m.body) for m in messages] == [("POST", "/a", b"abc"),
                                                                 ("GET", "/b", b"")]
    assert splitter.take_buffer() == b"GET /c HT"


def test_response_without_length_ends_at_eof():
    splitter = HttpStreamSplitter(requests=False)
    splitter.receive(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
    assert splitter.next_message() is None
    splitter.receive_eof()
    message = splitter.next_message()
    assert message is not None and message.body == b"until the end"


def test_garbage_is_reported_not_guessed():
    splitter = HttpStreamSplitter(requests=True)
    splitter.receive(b"\x81\x85\x37\xfa")
    with pytest.raises(HttpSplitError):
        splitter.next_message()


# ---------------------------------------------------------------- decoding across the 101


def handshake_bytes():
    request = build_request("example.com", "/chat", key=RFC_KEY)
    response = build_response(request)
    return request.serialize(), response.serialize()


def test_the_101_switches_both_directions_to_frames_mid_chunk():
    request, response = handshake_bytes()
    hello = Frame(Opcode.TEXT, b"Hello", mask=MASK).serialize()
    reply = Frame(Opcode.TEXT, b"Hi").serialize()
    decoder = ConnectionDecoder()
    # The client's frame arrives in the same chunk as its request, and the
    # server's first frame in the same chunk as the 101: nothing on the wire
    # separates the two protocols but the end of the head.
    first = decoder.receive(C2S, request + hello)
    assert [d.kind for d in first] == ["http"]
    second = decoder.receive(S2C, response + reply)
    assert [(d.direction, d.kind) for d in second] == [(S2C, "http"), (S2C, "frame"),
                                                      (C2S, "frame")]
    assert second[0].item.status == 101
    assert second[1].item.payload == b"Hi" and not second[1].item.masked
    assert second[2].item.payload == b"Hello" and second[2].item.masked
    assert decoder.upgraded
    assert sum(d.nbytes for d in first + second) == len(request + hello + response + reply)


def test_refused_upgrade_stays_http():
    request, _ = handshake_bytes()
    refusal = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nno\n"
    follow_up = b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n"
    decoder = ConnectionDecoder()
    assert [d.kind for d in decoder.receive(C2S, request + follow_up)] == ["http"]
    items = decoder.receive(S2C, refusal)
    assert [(d.direction, d.kind, d.summary.split("  ")[0]) for d in items] == [
        (S2C, "http", "HTTP/1.1 400 Bad Request"),
        (C2S, "http", "GET /plain HTTP/1.1"),
    ]
    assert not decoder.upgraded


def test_every_byte_is_accounted_for_at_eof():
    request, response = handshake_bytes()
    partial = Frame(Opcode.BINARY, b"x" * 300).serialize()[:50]
    decoder = ConnectionDecoder()
    items = decoder.receive(C2S, request)
    items += decoder.receive(S2C, response + partial)
    items += decoder.receive_eof(S2C) + decoder.receive_eof(C2S)
    assert [d.kind for d in items] == ["http", "http", "bytes", "eof", "eof"]
    assert "incomplete frame" in items[2].summary
    assert sum(d.nbytes for d in items) == len(request) + len(response) + 50


def test_broken_rules_are_reported_on_the_frame():
    request, response = handshake_bytes()
    decoder = ConnectionDecoder()
    decoder.receive(C2S, request)
    decoder.receive(S2C, response)
    # a client frame that is not masked: §5.1 says the server must close
    (item,) = decoder.receive(C2S, Frame(Opcode.TEXT, b"naked").serialize())
    assert item.item.problem == "a client's frame must be masked (§5.1)"
    assert "!!" in item.summary


# ---------------------------------------------------------------- a real proxy on loopback


class Echo(tornado.websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


class Plain(tornado.web.RequestHandler):
    def get(self):
        self.write(f"plain {self.request.path}")


@pytest.fixture
async def tornado_port():
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(
        tornado.web.Application([("/ws", Echo), (r"/plain/.*", Plain)])
    )
    server.add_sockets(sockets)
    yield sockets[0].getsockname()[1]
    server.stop()
    await asyncio.wait_for(server.close_all_connections(), 5)


@pytest.fixture
async def tap_to(tornado_port):
    tap = await Tap(("127.0.0.1", tornado_port)).start()
    yield tap
    await tap.close()


async def test_websockets_client_through_the_tap(tap_to):
    tap = tap_to
    async with websockets.connect(f"ws://127.0.0.1:{tap.port}/ws", compression=None) as ws:
        assert ws.local_address[1] != tap.port
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), 5) == "hello"
        await ws.send(b"\x00\x01\x02")
        assert await asyncio.wait_for(ws.recv(), 5) == b"\x00\x01\x02"
    await tap.wait_closed(timeout=5)
    cap = tap.capture
    assert len(cap.connections) == 1
    kinds = [(m.direction, m.kind) for m in cap.messages]
    assert kinds[:2] == [(C2S, "http"), (S2C, "http")]
    assert cap.messages[0].http.asks_for_websocket
    assert cap.messages[1].http.status == 101
    frames = [(m.direction, m.frame.opcode, m.frame.payload, m.frame.masked) for m in cap.frames]
    assert frames == [
        (C2S, Opcode.TEXT, b"hello", True),
        (S2C, Opcode.TEXT, b"hello", False),
        (C2S, Opcode.BINARY, b"\x00\x01\x02", True),
        (S2C, Opcode.BINARY, b"\x00\x01\x02", False),
        (C2S, Opcode.CLOSE, b"\x03\xe8", True),
        (S2C, Opcode.CLOSE, b"\x03\xe8", False),
    ]
    assert all(m.frame.problem is None for m in cap.frames)
    assert {m.direction for m in cap.select(kind="eof")} == {C2S, S2C}
    # Byte counts add up: chunks = decoded messages, per direction, and each
    # message sits at its offset in the stream.
    for direction in Direction:
        stream = cap.stream(direction)
        messages = cap.select(direction=direction)
        assert sum(m.nbytes for m in messages) == len(stream) == cap.nbytes(direction)
        for m in messages:
            if m.kind == "http":
                assert stream[m.offset : m.offset + m.nbytes] == m.http.raw
            elif m.kind == "frame":
                assert stream[m.offset : m.offset + m.nbytes] == m.frame.frame.serialize()


async def test_the_tap_shows_the_same_tcp_connection_before_and_after_the_101(tap_to):
    tap = tap_to
    reader, writer = await asyncio.open_connection("127.0.0.1", tap.port)
    before = writer.get_extra_info("sockname")
    request = build_request(f"127.0.0.1:{tap.port}", "/ws", key=RFC_KEY).serialize()
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 ")
    writer.write(Frame(Opcode.TEXT, b"same socket", mask=MASK).serialize())
    echoed = await asyncio.wait_for(reader.readexactly(2 + len(b"same socket")), 5)
    assert Frame.parse(echoed).payload == b"same socket"
    assert writer.get_extra_info("sockname") == before
    writer.close()
    await tap.wait_closed(timeout=5)
    (info,) = tap.capture.connections.values()
    assert info.client == before


async def test_keep_alive_connection_is_decoded_as_request_response_pairs(tap_to):
    tap = tap_to
    client = KeepAliveClient("127.0.0.1", tap.port)
    try:
        first = await client.get("/plain/one")
        second = await client.get("/plain/two")
    finally:
        await client.close()
    assert (first.body, second.body) == (b"plain /plain/one", b"plain /plain/two")
    await tap.wait_closed(timeout=5)
    cap = tap.capture
    assert len(cap.connections) == 1
    pairs = [(m.direction, m.http.start_line) for m in cap.http]
    assert pairs == [
        (C2S, "GET /plain/one HTTP/1.1"),
        (S2C, "HTTP/1.1 200 OK"),
        (C2S, "GET /plain/two HTTP/1.1"),
        (S2C, "HTTP/1.1 200 OK"),
    ]
    assert cap.frames == [] and not cap.upgraded
    assert sum(m.nbytes for m in cap.messages) == cap.nbytes()


async def test_compressed_frames_are_inflated_for_reading():
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    text = "compress me please, compress me please " * 4
    async with websockets_serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with Tap(("127.0.0.1", port)) as tap:
            async with websockets.connect(f"ws://127.0.0.1:{tap.port}/") as ws:
                for _ in range(2):
                    await ws.send(text)
                    assert await asyncio.wait_for(ws.recv(), 5) == text
            await tap.wait_closed(timeout=5)
    data = [m.frame for m in tap.capture.frames if m.frame.opcode == Opcode.TEXT]
    assert len(data) == 4
    assert all(f.frame.rsv1 and f.problem is None for f in data)
    assert all(f.text == text for f in data)
    # context takeover: the second copy costs fewer bytes than the first
    assert data[2].nbytes < data[0].nbytes


async def test_tap_closes_the_client_when_the_server_is_unreachable():
    with contextlib.closing(__import__("socket").socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    async with Tap(("127.0.0.1", dead_port)) as tap:
        reader, writer = await asyncio.open_connection("127.0.0.1", tap.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    assert tap.capture.connections == {}


async def test_views_are_stable_text_html_and_a_figure(tap_to):
    tap = tap_to
    async with websockets.connect(f"ws://127.0.0.1:{tap.port}/ws", compression=None) as ws:
        await ws.send("views")
        await asyncio.wait_for(ws.recv(), 5)
    await tap.wait_closed(timeout=5)
    table = tap.capture.table()
    lines = table.splitlines()
    assert lines[0].split() == ["#", "direction", "bytes", "kind", "what"]
    assert "HTTP/1.1 101 Switching Protocols" in lines[2]
    assert "TEXT (masked): 'views'" in lines[3]
    assert "ms" not in lines[0]  # no raw times unless asked
    assert " ms " in f" {tap.capture.table(times=True).splitlines()[0]} "
    html = tap.capture._repr_html_()
    assert "<table" in html and "Switching Protocols" in html and "masking key" in html
    ax = tap.capture.plot()
    assert len(ax.texts) >= len(tap.capture.messages)
    matplotlib.pyplot.close(ax.figure)


def test_capture_can_decode_bytes_recorded_elsewhere():
    request, response = handshake_bytes()
    capture = Capture()
    conn = capture.open_connection()
    capture.record(conn, C2S, request, t=1.0)
    capture.record(conn, S2C, response + Frame(Opcode.TEXT, b"hi").serialize(), t=1.5)
    assert [m.kind for m in capture.messages] == ["http", "http", "frame"]
    assert capture.messages[2].t == 1.5 and capture.t0 == 1.0
    assert capture.upgraded


# ---------------------------------------------------------------- CLI entry point


def test_parse_target():
    assert parse_target("8888") == ("127.0.0.1", 8888)
    assert parse_target("example.org:80") == ("example.org", 80)
    assert parse_target("[::1]:9000") == ("::1", 9000)
    with pytest.raises(ValueError):
        parse_target("nope")


class LineSink:
    """A stdout that tells us when a line containing some text has been printed."""

    def __init__(self):
        self.text = ""
        self.changed = asyncio.Event()

    def write(self, data):
        self.text += data
        self.changed.set()
        return len(data)

    def flush(self):
        pass

    async def wait_for(self, needle, timeout=5):
        async def until():
            while needle not in self.text:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)


async def test_main_prints_chunks_and_decoded_messages_until_cancelled(tornado_port, monkeypatch):
    with contextlib.closing(__import__("socket").socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        listen = probe.getsockname()[1]
    sink = LineSink()
    monkeypatch.setattr(sys, "stdout", sink)
    task = asyncio.ensure_future(main(listen, f"127.0.0.1:{tornado_port}"))
    await sink.wait_for("(Ctrl-C stops)")
    assert f"127.0.0.1:{listen} -> 127.0.0.1:{tornado_port}" in sink.text
    async with websockets.connect(f"ws://127.0.0.1:{listen}/ws", compression=None) as ws:
        await ws.send("cli")
        assert await asyncio.wait_for(ws.recv(), 5) == "cli"
    await sink.wait_for("server→client: chunk FIN")
    task.cancel()
    assert await asyncio.wait_for(task, 5) == 0
    out = sink.text
    assert "HTTP/1.1 101 Switching Protocols" in out
    assert "TEXT (masked): 'cli'" in out and "CLOSE" in out
    assert "1 connection(s)" in out


async def test_main_refuses_a_bad_target(capsys):
    assert await main(0, "not-a-target") == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_decoding_modules_are_sans_io():
    code = (
        "import sys, wsdemo.tap.http, wsdemo.tap.decode, wsdemo.tap.frames, wsdemo.tap.view; "
        "print(','.join(m for m in ('socket', 'asyncio', 'tornado', 'selectors') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


async def test_closing_the_tap_with_a_connection_open_logs_no_error(caplog):
    """Python 3.11's start_server logs a cancelled handler's CancelledError as an error;
    the tap's handler ends normally when close() cuts it."""
    async def echo(reader, writer):
        while data := await reader.read(100):
            writer.write(data)

    upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
    tap = await Tap(("127.0.0.1", upstream.sockets[0].getsockname()[1])).start()
    reader, writer = await asyncio.open_connection("127.0.0.1", tap.port)
    writer.write(b"hi")
    assert await asyncio.wait_for(reader.readexactly(2), 5) == b"hi"
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        await tap.close()
    writer.close()
    upstream.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
