"""The mini server and client over real loopback sockets: RFC failure rules, interop."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket
from websockets.asyncio.client import connect as websockets_connect
from websockets.asyncio.server import serve as websockets_serve

from tests.wire import autobahn
from wsdemo import mini
from wsdemo.wire import (
    Frame,
    FrameParser,
    HandshakeError,
    HandshakeResponse,
    Opcode,
    RequestParser,
    ResponseParser,
    build_refusal,
    build_request,
    build_response,
    parse_close,
    serialize_close,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = bytes.fromhex("37 fa 21 3d")
T = 5.0  # every network wait is bounded by this


@pytest.fixture
async def echo_server() -> AsyncIterator[mini.MiniServer]:
    server = await mini.serve(mini.echo, "127.0.0.1", 0, max_size=100,
                              subprotocols=["wsdemo.v1"])
    yield server
    await asyncio.wait_for(server.aclose(), T)


async def raw_upgrade(
    port: int, request_bytes: bytes | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, HandshakeResponse, bytes]:
    """Open TCP, send an Upgrade by hand, read the answer's head."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)
    writer.write(request_bytes or build_request(f"127.0.0.1:{port}", key=KEY).serialize())
    parser = ResponseParser()
    response = None
    while response is None:
        chunk = await asyncio.wait_for(reader.read(4096), T)
        assert chunk, "server closed before answering the handshake"
        response = parser.feed(chunk)
    return reader, writer, response, parser.take_trailing_data()


async def frames_until_eof(reader: asyncio.StreamReader, already: bytes = b"") -> list[Frame]:
    """Every frame the server sends until it closes TCP (which it must, boundedly)."""
    rest = await asyncio.wait_for(reader.read(), T)  # read() returns at EOF
    return FrameParser(expect_masked=False).parse(already + rest)


def masked(opcode: int, payload: bytes = b"", **options: object) -> bytes:
    return Frame(opcode, payload, mask=MASK, **options).serialize()  # type: ignore[arg-type]


# ---------------------------------------------------------------- RFC failure rules on the wire


WIRE_FAILURES = [
    ("unmasked client frame", Frame(Opcode.TEXT, b"x").serialize(), 1002),
    ("reserved bit RSV1", masked(Opcode.TEXT, b"x", rsv1=True), 1002),
    ("unknown opcode 0x3", masked(0x3), 1002),
    ("unknown control opcode 0xB", masked(0xB), 1002),
    ("fragmented ping", masked(Opcode.PING, b"x", fin=False), 1002),
    ("126-byte ping", masked(Opcode.PING, bytes(126)), 1002),
    ("close code 1006", masked(Opcode.CLOSE, struct.pack("!H", 1006)), 1002),
    ("close code 2000", masked(Opcode.CLOSE, struct.pack("!H", 2000)), 1002),
    ("1-byte close payload", masked(Opcode.CLOSE, b"\x03"), 1002),
    ("invalid UTF-8 text", masked(Opcode.TEXT, b"caf\xe9"), 1007),
    ("invalid UTF-8 across fragments",
     masked(Opcode.TEXT, b"\xe2\x82", fin=False) + masked(Opcode.CONT, b"A"), 1007),
    ("invalid UTF-8 close reason", masked(Opcode.CLOSE, serialize_close(1000) + b"\xff"), 1007),
    ("continuation without start", masked(Opcode.CONT, b"x"), 1002),
    ("data message inside a fragmented one",
     masked(Opcode.BINARY, b"a", fin=False) + masked(Opcode.TEXT, b"b"), 1002),
    ("non-minimal length", bytes.fromhex("81 fe 00 02") + MASK + b"\x00\x00", 1002),
    ("message above max_size", masked(Opcode.BINARY, bytes(101)), 1009),
    ("fragments above max_size",
     masked(Opcode.TEXT, b"a" * 60, fin=False) + masked(Opcode.CONT, b"a" * 60), 1009),
]


@pytest.mark.parametrize(("name", "wire", "code"), WIRE_FAILURES,
                         ids=[f[0] for f in WIRE_FAILURES])
async def test_mini_server_fails_the_connection_with_the_rfc_code(
    echo_server: mini.MiniServer, name: str, wire: bytes, code: int
) -> None:
    reader, writer, response, trailing = await raw_upgrade(echo_server.port)
    assert response.status == 101
    writer.write(wire)
    frames = await frames_until_eof(reader, trailing)
    writer.close()
    assert frames[-1].opcode == Opcode.CLOSE
    assert parse_close(frames[-1].payload)[0] == code


async def test_ping_between_fragments_gets_an_identical_pong(
    echo_server: mini.MiniServer,
) -> None:
    reader, writer, _, trailing = await raw_upgrade(echo_server.port)
    writer.write(masked(Opcode.TEXT, b"Hel", fin=False) + masked(Opcode.PING, b"still there?")
                 + masked(Opcode.CONT, b"lo"))
    parser = FrameParser(expect_masked=False)
    parser.feed(trailing)
    frames: list[Frame] = []
    while len(frames) < 2:
        frames += parser.frames()
        if len(frames) < 2:
            parser.feed(await asyncio.wait_for(reader.read(4096), T))
    assert frames == [Frame(Opcode.PONG, b"still there?"), Frame(Opcode.TEXT, b"Hello")]
    writer.write(masked(Opcode.CLOSE, serialize_close(1000)))
    assert await frames_until_eof(reader) == [Frame(Opcode.CLOSE, serialize_close(1000))]
    writer.close()


async def test_the_same_socket_carries_http_then_frames(echo_server: mini.MiniServer) -> None:
    reader, writer, response, trailing = await raw_upgrade(echo_server.port)
    local = writer.get_extra_info("sockname")
    writer.write(masked(Opcode.TEXT, b"Hello"))
    parser = FrameParser(expect_masked=False)
    parser.feed(trailing)
    while not (frames := list(parser.frames())):
        parser.feed(await asyncio.wait_for(reader.read(4096), T))
    assert frames == [Frame(Opcode.TEXT, b"Hello")]
    assert writer.get_extra_info("sockname") == local
    writer.write(masked(Opcode.CLOSE, serialize_close(1000)))
    await frames_until_eof(reader)
    writer.close()


HANDSHAKE_REFUSALS = [
    ("version 8", b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8", 426,
     b"Sec-WebSocket-Version: 13\r\n"),
    ("no key", b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\n", b"", 400, b""),
    ("plain GET", b"Upgrade: websocket\r\n", b"", 426, b"Upgrade: websocket\r\n"),
    ("not HTTP", None, b"\x16\x03\x01\x00", 400, b""),
]


@pytest.mark.parametrize(("name", "old", "new", "status", "header"), HANDSHAKE_REFUSALS,
                         ids=[r[0] for r in HANDSHAKE_REFUSALS])
async def test_mini_server_refuses_a_bad_handshake_over_http(
    echo_server: mini.MiniServer, name: str, old: bytes | None, new: bytes, status: int,
    header: bytes,
) -> None:
    request = build_request(f"127.0.0.1:{echo_server.port}", key=KEY).serialize()
    request = request.replace(old, new) if old is not None else new + b"\r\n\r\n"
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", echo_server.port), T)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), T)  # the server closes after refusing
    writer.close()
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    assert header in answer


async def test_mini_server_refuses_a_foreign_origin_with_403() -> None:
    async with await mini.serve(allowed_origins={"http://good.example"}) as server:
        with pytest.raises(HandshakeError, match="403"):
            await mini.connect(server.url, origin="http://evil.example")
        client = await mini.connect(server.url, origin="http://good.example")
        await client.close()


async def test_handler_outcome_sets_the_close_code() -> None:
    async def ends(connection: mini.MiniConnection) -> None:
        if await connection.recv() == "crash":
            raise RuntimeError("handler bug")

    async with await mini.serve(ends) as server:
        for message, code in (("bye", 1000), ("crash", 1011)):
            client = await mini.connect(server.url)
            await client.send_text(message)
            with pytest.raises(mini.ConnectionClosed) as info:
                await asyncio.wait_for(client.recv(), T)
            assert info.value.code == code
            await asyncio.wait_for(client.wait_closed(), T)
            assert client.close_code == code


async def test_server_shutdown_closes_open_connections_with_1001() -> None:
    server = await mini.serve()
    client = await mini.connect(server.url)
    await asyncio.wait_for(server.aclose(), T)
    with pytest.raises(mini.ConnectionClosed) as info:
        await asyncio.wait_for(client.recv(), T)
    assert info.value.code == 1001


async def test_close_against_a_silent_peer_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mini, "CLOSE_TIMEOUT", 0.2)
    server, received = await crafted_server(b"")  # answers the 101, then never replies
    async with server:
        port = server.sockets[0].getsockname()[1]
        client = await mini.connect(f"ws://127.0.0.1:{port}/")
        await asyncio.wait_for(client.close(), T)
        assert client.close_code == 1006  # no Close came back: abnormal closure
        [close] = FrameParser(expect_masked=True).parse(await asyncio.wait_for(received, T))
        assert parse_close(close.payload) == (1000, "")


# ---------------------------------------------------------------- the mini client's own rules


async def crafted_server(after_101: bytes) -> tuple[asyncio.Server, asyncio.Future[bytes]]:
    """A hand-written server: answer the Upgrade, send ``after_101``, record what comes back."""
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = RequestParser()
        request = None
        while request is None:
            request = parser.feed(await asyncio.wait_for(reader.read(4096), T))
        writer.write(build_response(request).serialize() + after_101)
        upstream = parser.take_trailing_data() + await asyncio.wait_for(reader.read(), T)
        writer.close()
        received.set_result(upstream)

    return await asyncio.start_server(on_connection, "127.0.0.1", 0), received


@pytest.mark.parametrize(("name", "after_101", "code"), [
    ("masked server frame", Frame(Opcode.TEXT, b"x", mask=MASK).serialize(), 1002),
    ("reserved opcode", Frame(0x4).serialize(), 1002),
    ("invalid UTF-8", Frame(Opcode.TEXT, b"\xc0\xaf").serialize(), 1007),
])
async def test_mini_client_fails_the_connection_with_the_rfc_code(
    name: str, after_101: bytes, code: int
) -> None:
    server, received = await crafted_server(after_101)
    async with server:
        port = server.sockets[0].getsockname()[1]
        client = await mini.connect(f"ws://127.0.0.1:{port}/")
        with pytest.raises(mini.ConnectionClosed) as info:
            await asyncio.wait_for(client.recv(), T)
        assert info.value.code == code
        [close] = FrameParser(expect_masked=True).parse(await asyncio.wait_for(received, T))
        assert parse_close(close.payload)[0] == code


async def test_mini_client_refuses_a_bad_101() -> None:
    async def wrong_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
        writer.write(HandshakeResponse(101, "Switching Protocols", (
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))).serialize())
        await writer.drain()
        writer.close()

    async def refuses(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
        writer.write(build_refusal(403, "go away").serialize())
        await writer.drain()
        writer.close()

    for handler, why in ((wrong_accept, "Accept"), (refuses, "403")):
        async with await asyncio.start_server(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(HandshakeError, match=why):
                await mini.connect(f"ws://127.0.0.1:{port}/")


# ---------------------------------------------------------------- other implementations


async def test_websockets_client_talks_to_the_mini_server(echo_server: mini.MiniServer) -> None:
    async with websockets_connect(echo_server.url, subprotocols=["wsdemo.v1"],
                                  open_timeout=T, close_timeout=T) as ws:
        assert ws.subprotocol == "wsdemo.v1"
        await ws.send("héllo")
        assert await asyncio.wait_for(ws.recv(), T) == "héllo"
        await ws.send(bytes(range(90)))
        assert await asyncio.wait_for(ws.recv(), T) == bytes(range(90))
        await ws.send(["frag", "mented"])  # one message in three frames
        assert await asyncio.wait_for(ws.recv(), T) == "fragmented"
        pong = await ws.ping(b"hb")
        await asyncio.wait_for(pong, T)
    assert ws.close_code == 1000


async def test_websockets_client_sees_the_mini_servers_1009(echo_server: mini.MiniServer) -> None:
    async with websockets_connect(echo_server.url, open_timeout=T, close_timeout=T) as ws:
        await ws.send(bytes(101))
        await asyncio.wait_for(ws.wait_closed(), T)
    assert ws.close_code == 1009


async def test_mini_client_talks_to_a_websockets_server() -> None:
    async def echo(ws) -> None:  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)

    async with websockets_serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = await mini.connect(f"ws://127.0.0.1:{port}/")
        await client.send_text("hello")
        assert await asyncio.wait_for(client.recv(), T) == "hello"
        await client.send_binary(bytes(70000))
        assert await asyncio.wait_for(client.recv(), T) == bytes(70000)
        await asyncio.wait_for(client.close(), T)
        assert client.close_code == 1000


async def test_mini_client_talks_to_a_tornado_server() -> None:
    closed: asyncio.Future[tuple[int | None, str | None]] = (
        asyncio.get_running_loop().create_future())

    class Echo(tornado.websocket.WebSocketHandler):
        def select_subprotocol(self, subprotocols: list[str]) -> str | None:
            return "wsdemo.v1" if "wsdemo.v1" in subprotocols else None

        def on_message(self, message: str | bytes) -> None:
            if message == "close me":
                self.close(4001, "as you wish")
            else:
                self.write_message(message, binary=isinstance(message, bytes))

        def on_close(self) -> None:
            if not closed.done():
                closed.set_result((self.close_code, self.close_reason))

    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    http = tornado.httpserver.HTTPServer(tornado.web.Application([("/ws", Echo)]))
    http.add_sockets(sockets)
    url = f"ws://127.0.0.1:{sockets[0].getsockname()[1]}/ws"
    try:
        client = await mini.connect(url, subprotocols=["wsdemo.v1"])
        assert client.subprotocol == "wsdemo.v1"
        await client.send_text("héllo")
        assert await asyncio.wait_for(client.recv(), T) == "héllo"
        await client.send_binary(b"\x00\xff" * 40000)
        assert await asyncio.wait_for(client.recv(), T) == b"\x00\xff" * 40000
        await asyncio.wait_for(client.close(4000, "done"), T)
        assert await asyncio.wait_for(closed, T) == (4000, "done")

        client = await mini.connect(url)
        await client.send_text("close me")
        with pytest.raises(mini.ConnectionClosed) as info:
            await asyncio.wait_for(client.recv(), T)
        assert (info.value.code, info.value.reason) == (4001, "as you wish")
    finally:
        http.stop()
        await asyncio.wait_for(http.close_all_connections(), T)


BROWSER_SCRIPT = """
async (url) => {
  const ws = new WebSocket(url, ["wsdemo.v1"]);
  ws.binaryType = "arraybuffer";
  const closed = new Promise(resolve => {
    ws.onclose = e => resolve({code: e.code, reason: e.reason, clean: e.wasClean});
  });
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  const next = () => new Promise(resolve => { ws.onmessage = e => resolve(e.data); });
  const got = [];
  ws.send("héllo"); got.push(await next());
  ws.send(new Uint8Array([0, 1, 2, 255])); got.push(Array.from(new Uint8Array(await next())));
  ws.send("x".repeat(70000)); got.push((await next()).length);
  ws.send("close please");
  return {protocol: ws.protocol, got, close: await closed};
}
"""


@pytest.mark.browser
async def test_chromium_websocket_talks_to_the_mini_server(browser) -> None:  # type: ignore[no-untyped-def]
    requests = []

    async def echo_then_close(connection: mini.MiniConnection) -> None:
        requests.append(connection.protocol.request)
        async for message in connection:
            if message == "close please":
                await connection.close(4000, "bye from mini")
                return
            await connection.send(message)

    async with await mini.serve(echo_then_close, subprotocols=["wsdemo.v1"]) as server:
        page = await asyncio.wait_for(browser.new_page(), 3 * T)
        result = await asyncio.wait_for(page.evaluate(BROWSER_SCRIPT, server.url), 3 * T)
        await asyncio.wait_for(page.close(), T)
    assert result == {
        "protocol": "wsdemo.v1",
        "got": ["héllo", [0, 1, 2, 255], 70000],
        "close": {"code": 4000, "reason": "bye from mini", "clean": True},
    }
    [request] = requests
    assert request.header("Sec-WebSocket-Version") == "13"
    assert "Mozilla" in (request.header("User-Agent") or "")


# ---------------------------------------------------------------- Autobahn's strict cases


def _chops_sent(case: autobahn.Case) -> tuple[bytes, ...]:
    # Whatever follows the failing chop never needs to be sent: the frame it
    # would complete must already have been refused (fail fast).
    return case.chops[: case.fails_at + 1]


@pytest.mark.parametrize("case", autobahn.cases(MASK), ids=lambda case: case.name.split()[0])
async def test_mini_server_is_strict_on_autobahn_cases(
    echo_server: mini.MiniServer, case: autobahn.Case
) -> None:
    reader, writer, _, trailing = await raw_upgrade(echo_server.port)
    for chop in _chops_sent(case):
        writer.write(chop)
        await asyncio.wait_for(writer.drain(), T)
    frames = await frames_until_eof(reader, trailing)
    writer.close()
    # the echo of every message complete before the error, then the Close; no Pong
    assert [(f.opcode, f.payload) for f in frames[:-1]] == [
        (Opcode.TEXT, m.encode()) for m in case.echoed]
    assert frames[-1].opcode == Opcode.CLOSE
    assert parse_close(frames[-1].payload)[0] == case.code


@pytest.mark.parametrize("case", autobahn.cases(None), ids=lambda case: case.name.split()[0])
async def test_mini_client_is_strict_on_autobahn_cases(case: autobahn.Case) -> None:
    server, received = await crafted_server(b"".join(_chops_sent(case)))
    async with server:
        port = server.sockets[0].getsockname()[1]
        client = await mini.connect(f"ws://127.0.0.1:{port}/")
        echoed = [message async for message in client]
        for message in echoed:  # a strict client delivered them; an echo app answers
            assert isinstance(message, str)
        assert echoed == list(case.echoed)
        assert client.close_code == case.code
        upstream = FrameParser(expect_masked=True).parse(await asyncio.wait_for(received, T))
        assert upstream[-1].opcode == Opcode.CLOSE
        assert parse_close(upstream[-1].payload)[0] == case.code


async def test_mini_client_echo_app_answers_before_the_failure() -> None:
    [case] = [c for c in autobahn.cases(None) if c.name.startswith("3.2")]
    server, received = await crafted_server(case.chops[0])
    async with server:
        port = server.sockets[0].getsockname()[1]
        client = await mini.connect(f"ws://127.0.0.1:{port}/")
        await asyncio.wait_for(mini.echo(client), T)
        upstream = FrameParser(expect_masked=True).parse(await asyncio.wait_for(received, T))
        assert [(f.opcode, f.payload) for f in upstream] == [
            (Opcode.TEXT, autobahn.HELLO), (Opcode.CLOSE, upstream[-1].payload)]
        assert parse_close(upstream[-1].payload)[0] == 1002
