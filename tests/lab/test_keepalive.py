"""Polling, long polling and push, each seen through the tap; a server that tries
to speak first over HTTP/1.1; the four methods measured side by side. (SSE has
its own file, test_sse.py.)"""

from __future__ import annotations

import asyncio

import pytest

from wsdemo.lab.keepalive import (
    METHODS,
    LongPoller,
    Poller,
    PushReceiver,
    StdlibClient,
    UnsolicitedResponder,
    UpdateFeed,
    UpdateServer,
    measure_rates,
    transport_bytes,
)
from wsdemo.tap import Direction, Tap
from wsdemo.wire import Opcode

C2S, S2C = Direction.C2S, Direction.S2C


@pytest.fixture
async def server():
    server = await UpdateServer.start()
    yield server
    await server.close()


def pairs(capture):
    return [(m.direction, m.http.start_line) for m in capture.http]


async def test_polling_is_request_response_pairs_on_one_connection(server, tap):
    poller = Poller("127.0.0.1", tap.port, server.feed)
    try:
        assert await poller.poll_once() == []
        server.feed.publish()
        assert await poller.poll_once() == [1]
        server.feed.publish()
        server.feed.publish()
        assert await poller.poll_once() == [2, 3]
    finally:
        await poller.close()
    await tap.wait_closed(timeout=5)
    cap = tap.capture
    assert len(cap.connections) == 1  # keep-alive: one TCP connection for every poll
    assert pairs(cap) == [
        (C2S, "GET /poll?after=0 HTTP/1.1"), (S2C, "HTTP/1.1 200 OK"),
        (C2S, "GET /poll?after=0 HTTP/1.1"), (S2C, "HTTP/1.1 200 OK"),
        (C2S, "GET /poll?after=1 HTTP/1.1"), (S2C, "HTTP/1.1 200 OK"),
    ]
    assert cap.frames == []
    assert [d.seq for d in poller.deliveries] == [1, 2, 3]


async def test_an_idle_keep_alive_connection_carries_nothing_while_the_server_has_news(
    server, tap
):
    poller = Poller("127.0.0.1", tap.port, server.feed)
    try:
        await poller.poll_once()
        seen = len(tap.capture.chunks)
        server.feed.publish()
        # The server holds an update and an open connection to the client, and
        # still nothing crosses the wire: HTTP gives it no way to start.
        with pytest.raises(TimeoutError):
            await tap.wait_for(lambda cap: len(cap.chunks) > seen, timeout=0.3)
        assert await poller.poll_once() == [1]
    finally:
        await poller.close()


async def test_long_poll_answer_waits_for_the_update(server, tap):
    poller = LongPoller("127.0.0.1", tap.port, server.feed)
    try:
        pending = asyncio.ensure_future(poller.poll_once())
        await tap.wait_for(lambda cap: len(cap.http) == 1, timeout=5)
        assert not pending.done()
        server.feed.publish()
        assert await asyncio.wait_for(pending, 5) == [1]
    finally:
        await poller.close()
    await tap.wait_closed(timeout=5)
    assert pairs(tap.capture) == [
        (C2S, "GET /long-poll?after=0&timeout=20 HTTP/1.1"), (S2C, "HTTP/1.1 200 OK"),
    ]


async def test_long_poll_gives_up_empty_after_its_timeout(server):
    poller = LongPoller("127.0.0.1", server.port, server.feed, hold=0.05)
    try:
        assert await asyncio.wait_for(poller.poll_once(), 5) == []
    finally:
        await poller.close()


async def test_push_is_one_frame_per_update_and_no_requests(server, tap):
    pusher = PushReceiver("127.0.0.1", tap.port, server.feed)
    await pusher.connect()
    try:
        for _ in range(3):
            server.feed.publish()
        await pusher.wait_for_seq(3, timeout=5)
    finally:
        await pusher.close()
    await tap.wait_closed(timeout=5)
    cap = tap.capture
    assert [m.http.status for m in cap.http if not m.http.is_request] == [101]
    data = [m for m in cap.frames if m.frame.opcode == Opcode.TEXT]
    assert [m.direction for m in data] == [S2C] * 3
    assert [m.frame.text for m in data] == [
        f'{{"seq":{i},"data":"update {i:06d}{"." * 19}"}}' for i in (1, 2, 3)
    ]
    closes = [(m.direction, m.frame.close) for m in cap.frames if m.frame.opcode == Opcode.CLOSE]
    assert closes == [(C2S, (1000, "")), (S2C, (1000, ""))]
    # 32 bytes of data in 51 bytes of JSON, plus a 2-byte frame header, per update
    assert transport_bytes(cap) == 3 * (2 + 51)


async def test_a_server_cannot_answer_a_question_nobody_asked():
    responder = await UnsolicitedResponder().start()
    tap = await Tap(("127.0.0.1", responder.port)).start()
    client = StdlibClient("127.0.0.1", tap.port)
    try:
        assert await client.get("/first") == "answer to /first"
        assert responder.push("news!") == 1
        await tap.wait_for(lambda cap: len(cap.select(kind="http", direction=S2C)) == 2, 5)
        # http.client pairs the pushed bytes with the next request it sends,
        # and from then on every answer is one request late. (The hold keeps
        # the real answer out of the same read, where http.client would drop it.)
        responder.hold()
        assert await client.get("/second") == "news!"
        responder.release()
        await tap.wait_for(lambda cap: len(cap.select(kind="http", direction=S2C)) == 3, 5)
        assert await client.get("/third") == "answer to /second"
    finally:
        client.close()
        await tap.wait_closed(timeout=5)
        await tap.close()
        await responder.close()
    assert [m.direction for m in tap.capture.http] == [C2S, S2C, S2C, C2S, S2C, C2S, S2C]


async def test_feed_wait_after_is_bounded():
    feed = UpdateFeed()
    assert await feed.wait_after(0, timeout=0.01) == []
    waiting = asyncio.ensure_future(feed.wait_after(0, timeout=5))
    await asyncio.sleep(0)  # let the waiter start waiting
    feed.publish()
    assert [u.seq for u in await asyncio.wait_for(waiting, 5)] == [1]


async def test_measure_rates_compares_the_four_methods():
    results = await asyncio.wait_for(
        measure_rates([40.0], seconds=0.2, min_updates=8, poll_interval=0.05), 30
    )
    assert [r.method for r in results] == list(METHODS) == [
        "polling", "long polling", "SSE", "WebSocket"]
    by_method = {r.method: r for r in results}
    assert all(len(r.delays) == r.updates == 8 for r in results)
    push = by_method["WebSocket"]
    assert push.exchanges == 8  # one frame per update
    assert push.bytes_per_update == 2 + 51
    sse = by_method["SSE"]
    assert sse.exchanges == 8
    # per event: "id: N\n" (6), "data: " (6), the 51-byte update, "\n\n" (2), inside one
    # HTTP chunk: "41\r\n" before (0x41 = 65 bytes of event), "\r\n" after
    assert sse.bytes_per_update == 6 + 6 + 51 + 2 + 4 + 2
    for other in ("polling", "long polling", "SSE"):
        assert push.bytes_per_update < by_method[other].bytes_per_update


async def test_a_delaying_tap_makes_every_round_trip_cost_twice_its_delay(server):
    delay = 0.05
    tap = await Tap(("127.0.0.1", server.port), delay=delay).start()
    poller = Poller("127.0.0.1", tap.port, server.feed)
    loop = asyncio.get_running_loop()
    try:
        await poller.poll_once()  # connected: the next poll is one round trip
        server.feed.publish()
        started = loop.time()
        assert await poller.poll_once() == [1]
        took = loop.time() - started
    finally:
        await poller.close()
    await tap.wait_closed(timeout=5)
    await tap.close()
    assert took >= 2 * delay
    # the bytes are the same, in the same order, as without the delay
    assert pairs(tap.capture) == [
        (C2S, "GET /poll?after=0 HTTP/1.1"), (S2C, "HTTP/1.1 200 OK"),
        (C2S, "GET /poll?after=0 HTTP/1.1"), (S2C, "HTTP/1.1 200 OK"),
    ]


async def test_a_delaying_tap_stops_when_the_client_is_gone_and_the_server_talks_on():
    # A server that never reads and never stops writing (like an endless stream that
    # ignores the client's FIN): only a failed write to the client can end the pump.
    writes = 0

    async def firehose(reader, writer):
        nonlocal writes
        try:
            while writes < 2000:  # bounded: 20 s at most
                writer.write(b"x" * 100)
                writes += 1
                await writer.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            pass
        finally:
            writer.close()

    upstream = await asyncio.start_server(firehose, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    tap = await Tap(("127.0.0.1", port), delay=0.02).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", tap.port)
        assert await asyncio.wait_for(reader.readexactly(100), 5) == b"x" * 100
        writer.close()
        await tap.wait_closed(timeout=5)
    finally:
        await tap.close()
        upstream.close()
    assert writes < 2000


def test_a_tap_refuses_a_negative_delay():
    with pytest.raises(ValueError, match="delay"):
        Tap(("127.0.0.1", 1), delay=-0.1)


async def test_measured_delays_include_the_delay_the_tap_adds():
    results = await asyncio.wait_for(
        measure_rates([50.0], seconds=0.2, min_updates=8, poll_interval=0.05, delay=0.03), 30
    )
    for r in results:
        assert r.added_delay == 0.03
        assert min(r.delays) >= 0.03, r.method  # one trip through the tap at least
