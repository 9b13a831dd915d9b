"""Server-Sent Events: the text/event-stream format (WHATWG HTML §9.2.5–9.2.6), the lab's
SSE server behind the tap (framing, ids, resume with Last-Event-ID), and sending the
other way (a new request per message)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsdemo.lab.conversation import conversation
from wsdemo.lab.keepalive import (
    EventStreamReceiver,
    KeepAliveClient,
    LongPoller,
    NotAnEventStream,
    PushReceiver,
    RateResult,
    UpdateServer,
    conclusions,
    sse_transport_bytes,
)
from wsdemo.lab.sse import (
    ChunkedDecoder,
    EventStreamParser,
    SseEvent,
    format_event,
    read_event_stream,
)
from wsdemo.tap import Direction, Tap

C2S, S2C = Direction.C2S, Direction.S2C


def parse_all(data: bytes) -> list[SseEvent]:
    return EventStreamParser().feed(data)


# --- the format, no sockets ---------------------------------------------------------


def test_an_event_is_id_and_data_lines_closed_by_a_blank_line():
    assert format_event('{"seq":7}', id=7) == b'id: 7\ndata: {"seq":7}\n\n'
    assert format_event("two\nlines", event="note") == b"event: note\ndata: two\ndata: lines\n\n"
    assert format_event(None, retry=250) == b"retry: 250\n\n"


@pytest.mark.parametrize("bad", [
    {"data": "x", "id": "1\n2"},
    {"data": "x", "id": "a\0b"},
    {"data": "x", "event": "two\nlines"},
    {"data": "x", "retry": -1},
    {"data": None},
])
def test_an_event_that_cannot_be_written_is_refused(bad):
    with pytest.raises(ValueError):
        format_event(bad.pop("data"), **bad)


def test_the_parser_follows_the_interpretation_rules():
    stream = (
        b": a comment, ignored\n"
        b"id: 1\n"
        b"data: first\n"
        b"\n"
        b"data:no space\n"      # the space after the colon is optional
        b"data\n"               # a field name alone: an empty value
        b"\n"
        b"id: 3\n"              # an event with no data: not dispatched, but its id counts
        b"\n"
        b"event: tick\n"
        b"data: typed\n"
        b"\n"
        b"id: bad\0id\n"        # an id holding NUL is ignored
        b"retry: soon\n"        # retry must be digits: ignored
        b"retry: 500\n"
        b"colour: red\n"        # unknown fields are ignored
        b"data: last\n"
        b"\n"
        b"data: never finished\n"
    )
    parser = EventStreamParser()
    events = parser.feed(stream)
    assert events == [
        SseEvent("first", "message", "1", None),
        SseEvent("no space\n", "message", "1", None),
        SseEvent("typed", "tick", "3", None),
        SseEvent("last", "message", "3", 500),
    ]
    assert parser.last_event_id == "3" and parser.retry == 500


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_works(newline):
    stream = b"id: 9" + newline + b"data: x" + newline + newline
    assert parse_all(stream) == [SseEvent("x", last_event_id="9")]


def test_bytes_split_anywhere_parse_the_same():
    stream = "\ufeffid: 1\r\ndata: caf\u00e9 \u2603\r\n\r\nid: 2\rdata: b\r\r".encode()
    whole = parse_all(stream)
    assert [e.data for e in whole] == ["caf\u00e9 \u2603", "b"]  # the BOM is dropped
    for cut in range(1, len(stream)):
        parser = EventStreamParser()
        assert parser.feed(stream[:cut]) + parser.feed(stream[cut:]) == whole, cut
    parser = EventStreamParser()
    one_by_one = [e for i in range(len(stream)) for e in parser.feed(stream[i:i + 1])]
    assert one_by_one == whole


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
       st.integers(min_value=0, max_value=10**12))
def test_what_is_written_is_read_back(data, seq):
    (event,) = parse_all(format_event(data, id=seq))
    assert event.data == data.replace("\r\n", "\n").replace("\r", "\n")
    assert event.last_event_id == str(seq)


def test_chunked_coding_comes_off_in_any_pieces():
    coded = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
    decoder = ChunkedDecoder()
    assert decoder.feed(coded) == b"hello, world" and decoder.done
    decoder = ChunkedDecoder()
    assert b"".join(decoder.feed(coded[i:i + 1]) for i in range(len(coded))) == b"hello, world"
    assert decoder.consumed == len(coded)
    with pytest.raises(ValueError, match="chunk-size"):
        ChunkedDecoder().feed(b"zz\r\n")


# --- the server, through the tap --------------------------------------------------------


@pytest.fixture
async def server():
    server = await UpdateServer.start(sse_retry=50)
    yield server
    await server.close()


async def test_an_event_stream_is_one_response_that_carries_an_event_per_update(server, tap):
    receiver = EventStreamReceiver("127.0.0.1", tap.port, server.feed, reconnect=False)
    await receiver.connect()
    try:
        for _ in range(3):
            server.feed.publish()
        await receiver.wait_for_seq(3)
    finally:
        await receiver.close()
    await tap.wait_closed(timeout=5)
    cap = tap.capture
    assert len(cap.connections) == 1
    # one request, and no complete response: the tap never saw its end
    assert [m.http.start_line for m in cap.http] == ["GET /events?after=0 HTTP/1.1"]
    view = read_event_stream(cap)
    assert view.status_line == "HTTP/1.1 200 OK"
    assert view.header("content-type") == "text/event-stream"
    assert view.header("transfer-encoding") == "chunked"
    assert [e.text for e in view.events if e.event is None] == ["retry: 50"]
    events = [e for e in view.events if e.event is not None]
    assert [e.event.last_event_id for e in events] == ["1", "2", "3"]
    assert [e.event.data for e in events] == [
        f'{{"seq":{i},"data":"update {i:06d}{"." * 19}"}}' for i in (1, 2, 3)]
    # each event in an HTTP chunk of its own: size line, event, CRLF
    assert {e.nbytes for e in events} == {4 + 65 + 2}
    raw = cap.stream(S2C)
    assert b'\r\n41\r\nid: 2\ndata: {"seq":2,' in raw
    assert sse_transport_bytes(cap) == 16 + 3 * 71  # the retry block, then three events
    assert [d.seq for d in receiver.deliveries] == [1, 2, 3]


async def test_a_dropped_stream_resumes_from_last_event_id_without_a_gap(server, tap):
    receiver = EventStreamReceiver("127.0.0.1", tap.port, server.feed)
    await receiver.connect()
    try:
        for _ in range(3):
            server.feed.publish()
        await receiver.wait_for_seq(3)
        receiver.connected.clear()
        assert server.drop_streams() == 1
        # published while the client is away (it waits the 50 ms retry first)
        server.feed.publish()
        server.feed.publish()
        await asyncio.wait_for(receiver.connected.wait(), 5)
        server.feed.publish()
        await receiver.wait_for_seq(6)
    finally:
        await receiver.close()
    assert server.resumes == [None, "3"]
    assert receiver.requests == [None, "3"]
    assert [d.seq for d in receiver.deliveries] == [1, 2, 3, 4, 5, 6]
    await tap.wait_closed(timeout=5)
    second = read_event_stream(tap.capture, 2)
    assert second.request.header("last-event-id") == "3"
    # the same URL as the first time, as EventSource asks: the header alone says where
    assert second.request.start_line == "GET /events?after=0 HTTP/1.1"
    assert [e.event.last_event_id for e in second.events if e.event] == ["4", "5", "6"]
    # the missed events travel like live ones: a chunk each, after the retry block
    assert [e.nbytes for e in second.events] == [16, 71, 71, 71]


async def test_last_event_id_wins_over_the_query_and_must_be_a_number(server):
    for _ in range(4):
        server.feed.publish()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /events?after=0 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: three\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 400 ")
    finally:
        writer.close()
    receiver = EventStreamReceiver("127.0.0.1", server.port, server.feed, after=0,
                                   reconnect=False)
    receiver.last_event_id = "2"  # as if resuming: the header says 2, the query 0
    await receiver.connect()
    try:
        await receiver.wait_for_seq(4)
    finally:
        await receiver.close()
    assert [d.seq for d in receiver.deliveries] == [3, 4]


async def test_a_client_refuses_what_is_not_an_event_stream(server):
    receiver = EventStreamReceiver("127.0.0.1", server.port, server.feed, reconnect=False)
    receiver.last_event_id = "not-a-number"  # the server answers 400, not a stream
    with pytest.raises(NotAnEventStream, match="400"):
        await receiver.connect()
    await receiver.close()


async def test_a_refused_reconnect_ends_the_stream_for_good(server):
    receiver = EventStreamReceiver("127.0.0.1", server.port, server.feed)
    await receiver.connect()
    try:
        server.feed.publish()
        await receiver.wait_for_seq(1)
        receiver.last_event_id = "garbage"  # what the next request will carry: a 400
        assert server.drop_streams() == 1
        await asyncio.wait_for(receiver._running, 5)  # it stops instead of retrying
        assert isinstance(receiver.failed, NotAnEventStream)
        assert server.resumes == [None, "garbage"]
    finally:
        await receiver.close()


async def test_a_delaying_tap_lets_go_of_a_stream_whose_client_left(server):
    tap = await Tap(("127.0.0.1", server.port), delay=0.02).start()
    receiver = EventStreamReceiver("127.0.0.1", tap.port, server.feed, reconnect=False)
    try:
        await receiver.connect()
        server.feed.publish()
        await receiver.wait_for_seq(1)
        await receiver.close()
        server.feed.publish()  # the server still writes: the held bytes meet a closed client
        await tap.wait_closed(timeout=5)
    finally:
        await tap.close()
    assert len(tap.capture.connections) == 1


async def test_sse_can_only_speak_back_with_a_new_request_websocket_on_its_own_line(server, tap):
    receiver = EventStreamReceiver("127.0.0.1", tap.port, server.feed, reconnect=False)
    await receiver.connect()
    sender = KeepAliveClient("127.0.0.1", tap.port)
    pusher = PushReceiver("127.0.0.1", tap.port, server.feed)
    await pusher.connect()
    try:
        response = await sender.post("/send", "hello from SSE")
        assert response.status == 204
        await pusher.send("hello from WebSocket")
        await tap.wait_for(lambda cap: any(
            m.kind == "frame" and m.frame.text == "hello from WebSocket" for m in cap.messages), 5)
    finally:
        await sender.close()
        await pusher.close()
        await receiver.close()
    assert [(r.via, r.text) for r in server.received] == [
        ("POST /send", "hello from SSE"), ("WebSocket", "hello from WebSocket")]
    await tap.wait_closed(timeout=5)
    cap = tap.capture
    # three TCP connections: the stream, the POST beside it, the WebSocket
    assert len(cap.connections) == 3
    post = next(m for m in cap.http if m.http.method == "POST")
    assert post.conn != 1 and post.nbytes > 100  # a request head around 14 bytes of text
    frame = next(m for m in cap.frames if m.frame.text == "hello from WebSocket")
    assert frame.direction is C2S and frame.nbytes == 6 + len("hello from WebSocket")


# --- what the lesson draws and says --------------------------------------------------------


async def test_the_conversation_shows_how_long_the_server_held_each_request(server, tap):
    poller = LongPoller("127.0.0.1", tap.port, server.feed)
    pending = asyncio.ensure_future(poller.poll_once())
    await tap.wait_for(lambda cap: len(cap.http) == 1, 5)
    await asyncio.sleep(0.2)  # the hold under test: publish 0.2 s after the question
    server.feed.publish()
    assert await asyncio.wait_for(pending, 5) == [1]
    await poller.close()
    await tap.wait_closed(timeout=5)
    arrows, held = conversation(tap.capture)
    fins = [a for a in arrows if a.label == "FIN"]
    arrows = [a for a in arrows if a.label != "FIN"]
    assert sorted(a.direction.value for a in fins) == [C2S.value, S2C.value]
    assert [a.direction for a in arrows] == [C2S, S2C]
    assert [a.ms for a in arrows] == sorted(a.ms for a in arrows)
    ((start, end),) = held
    assert start == arrows[0].ms and end == arrows[1].ms
    assert end - start >= 200 - 1  # ms: at least the time the update took to exist


def rows(method, values):
    return [RateResult(method, rate, 10, b, tuple([d] * 10), 10, added_delay=0.05)
            for rate, (b, d) in values.items()]


def test_conclusions_say_what_held_and_what_did_not():
    good = (rows("polling", {2: (500, 0.2), 30: (90, 0.2)})
            + rows("long polling", {2: (270, 0.055), 30: (120, 0.11)})
            + rows("SSE", {2: (71, 0.054), 30: (73, 0.055)})
            + rows("WebSocket", {2: (53, 0.054), 30: (54, 0.055)}))
    text = conclusions(good)
    assert "WebSocket: 53–54 B at every rate" in text
    assert "SSE: 71–73 B at every rate" in text
    assert "WebSocket was the cheapest at every rate." in text
    assert "more than 3 times WebSocket's cost at 2 updates/s" in text
    assert "cheaper per update at the highest rate." in text
    assert "SSE and WebSocket: within 20 ms of the 50 ms one-way delay" in text
    assert "as fast as push (within 20 ms) at 2 updates/s" in text
    assert "more than 25 ms behind push at 30/s" in text
    bad = (rows("polling", {2: (50, 0.2), 30: (60, 0.2)})
           + rows("long polling", {2: (270, 0.2), 30: (120, 0.055)})
           + rows("SSE", {2: (71, 0.054), 30: (73, 0.3)})
           + rows("WebSocket", {2: (53, 0.054), 30: (54, 0.055)}))
    text = conclusions(bad)
    assert "WebSocket was NOT the cheapest" in text
    assert "only 0.9 times WebSocket's cost" in text
    assert "NOT cheaper per update at the highest rate." in text
    assert "SSE: more than 20 ms above the one-way delay" in text
    assert "slower than push at 2" in text and "not clearly behind push" in text


def test_a_stream_after_other_exchanges_on_a_kept_alive_connection_is_found():
    # what Chromium does: the page's own connection, kept alive, carries the EventSource
    from wsdemo.tap.capture import Capture

    cap = Capture()
    conn = cap.open_connection()
    cap.record(conn, C2S, b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n", t=1.0)
    cap.record(conn, S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", t=1.1)
    cap.record(conn, C2S, b"GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 4\r\n\r\n", t=2.0)
    cap.record(conn, S2C, b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n", t=2.1)
    cap.record(conn, S2C, b"12\r\nid: 5\ndata: five\n\n\r\n", t=2.5)  # 0x12 = 18 bytes
    view = read_event_stream(cap, conn)
    assert view.request.header("last-event-id") == "4"
    assert view.head_t == 2.1
    (event,) = view.events
    assert (event.event.data, event.event.last_event_id, event.t, event.nbytes) == (
        "five", "5", 2.5, 4 + 18 + 2)
    arrows, _ = conversation(cap)
    assert [a.label.split(" ")[0] for a in arrows] == ["GET", "HTTP/1.1", "GET", "HTTP/1.1",
                                                        "id:"]
