"""The lab's infrastructure proxies (wsdemo.lab.proxies), each against a real server."""

from __future__ import annotations

import asyncio

import pytest
import tornado.httpclient
import tornado.websocket

from wsdemo import ControlClient, ControlServer
from wsdemo.lab.bare import BareBroadcastServer
from wsdemo.lab.lesson import until
from wsdemo.lab.proxies import (
    IdleTimeoutProxy,
    NaiveProxy,
    StallProxy,
    header_names,
    strip_hop_by_hop,
    waiting_bytes,
)

HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade, X-Trace\r\nX-Trace: 1\r\nKeep-Alive: 5\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def test_strip_hop_by_hop_drops_the_listed_headers_and_those_connection_names():
    stripped = strip_hop_by_hop(HANDSHAKE)
    assert header_names(stripped) == ["Host", "Sec-WebSocket-Key", "Sec-WebSocket-Version"]
    assert stripped.startswith(b"GET /ws HTTP/1.1\r\n") and stripped.endswith(b"\r\n\r\n")


@pytest.fixture
async def control():
    srv = ControlServer(port=0, ping_interval=0, max_buffered_bytes=128 * 1024)
    srv.add_room("lab")
    srv.start()
    yield srv
    await srv.stop()


async def test_through_a_naive_proxy_the_upgrade_never_happens_but_http_still_works(control):
    async with NaiveProxy("127.0.0.1", control.port) as naive:
        with pytest.raises(Exception, match="refused the upgrade with HTTP 426"):
            await ControlClient.connect(f"127.0.0.1:{naive.port}", client="x")
        assert {"Upgrade", "Connection"} <= set(header_names(naive.received[0]))
        forwarded = {n.lower() for n in header_names(naive.forwarded[0])}
        assert "upgrade" not in forwarded and "sec-websocket-key" in forwarded
        assert naive.answered == ["HTTP/1.1 426 Upgrade Required"]
        page = await tornado.httpclient.AsyncHTTPClient().fetch(
            f"http://127.0.0.1:{naive.port}/", request_timeout=10)
        assert page.code == 200 and naive.answered[-1].startswith("HTTP/1.1 200")


async def test_an_idle_timeout_cuts_a_quiet_connection(control):
    async with IdleTimeoutProxy("127.0.0.1", control.port, idle=0.3) as idle:
        client = await ControlClient.connect(f"127.0.0.1:{idle.port}", client="quiet")
        await client.join("lab")
        closed = await client.wait_closed(10)
        assert closed.code is None  # no close frame: the proxy dropped the line
        assert idle.cuts == 1


async def test_server_pings_keep_a_quiet_connection_through_the_idle_timeout():
    srv = ControlServer(port=0, ping_interval=0.05)
    srv.add_room("lab")
    srv.start()
    try:
        async with IdleTimeoutProxy("127.0.0.1", srv.port, idle=0.5) as idle:
            client = await ControlClient.connect(f"127.0.0.1:{idle.port}", client="quiet")
            await client.join("lab")
            before = idle.bytes_passed
            await asyncio.sleep(1.5)  # the time passing is what is tested: 3 × idle, quiet
            assert client.closed is None and idle.cuts == 0
            assert idle.bytes_passed > before  # pings and pongs, no application message
            ack = await client.publish("lab", {"n": 1}, id="m1")
            assert ack["seq"] == 1
            await client.close()
    finally:
        await srv.stop()


async def test_a_stalled_reader_is_closed_1013_with_bounded_memory_and_hears_why(control):
    async with StallProxy("127.0.0.1", control.port) as stall:
        client = await ControlClient.connect(f"127.0.0.1:{stall.port}", client="slow")
        await client.join("lab")
        session = next(s for s in control.sessions if s.client_name == "slow")
        stall.stall()
        held, pad = [], "p" * 20_000
        while not session._closing and len(held) < 3000:
            await control.publish("lab", {"n": len(held), "pad": pad})
            held.append(session.buffered_bytes)
        assert session._closing, "the server must close a reader that does not read"
        assert max(held) <= control.max_buffered_bytes + 21_000
        stall.resume()
        closed = await client.wait_closed(10)
        assert closed.code == 1013 and "slow consumer" in closed.reason


async def test_a_bare_server_holds_ever_more_for_a_stalled_reader():
    bare = BareBroadcastServer().start()
    try:
        async with StallProxy("127.0.0.1", bare.port) as stall:
            reader = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{stall.port}/ws")
            await until(lambda: len(bare.clients) == 1, "the bare server's client")
            handler = next(iter(bare.clients))
            stall.stall()
            held = []
            for n in range(400):
                bare.broadcast(f'{{"n": {n}, "pad": "{"p" * 20_000}"}}')
                await asyncio.sleep(0)  # let the stream write what the socket takes
                held.append(waiting_bytes(handler))
            assert held[-1] > 2_000_000, "400 × 20 kB: most of it waits in the server"
            assert held[-1] > held[len(held) // 2] > 0
            reader.close()
    finally:
        await bare.stop()
