"""The control server over real loopback connections: Tornado's client (through
ControlClient) and the independent `websockets` library."""

import asyncio
import json

import pytest
import websockets

from wsdemo import ControlClient, ControlServer, ServerError
from wsdemo.core.protocol import MAX_MESSAGE_BYTES, SUBPROTOCOL


async def joined(connect, name):
    client = await connect(name)
    await client.join("controls")
    return client


async def test_hello_welcome_join_snapshot(server, connect):
    client = await connect("alice")
    assert client.welcome["type"] == "welcome"
    assert client.welcome["rooms"] == ["chat", "controls"]
    assert client.welcome["protocol"] == SUBPROTOCOL
    snapshot = await client.join("controls")
    assert snapshot["seq"] == 0
    assert snapshot["state"]["speed"] == 5
    assert snapshot["controls"]["speed"] == {
        "kind": "int", "min": 0, "max": 10, "step": 1, "description": "speed"}
    assert set(snapshot["controls"]) == {"speed", "gain", "running", "mode", "label", "colour"}


async def test_set_is_logged_applied_acked_and_broadcast(server, connect, demo_widgets):
    a = await joined(connect, "a")
    b = await joined(connect, "b")
    ack = await a.set("controls", "speed", 8, id="m-1")
    assert ack == {"type": "ack", "id": "m-1", "room": "controls", "seq": 1, "duplicate": False}
    assert demo_widgets["speed"].value == 8
    for client in (a, b):
        event = await client.next_event("controls")
        assert event == {"type": "event", "room": "controls", "seq": 1, "id": "m-1",
                         "from": a.session, "kind": "set",
                         "data": {"target": "speed", "value": 8}}


async def test_repeated_id_is_not_applied_twice(server, connect, demo_widgets):
    a = await joined(connect, "a")
    b = await joined(connect, "b")
    await a.set("controls", "speed", 8, id="once")
    demo_widgets["speed"].value = 2  # a kernel change in between: seq 2
    retry = await a.set("controls", "speed", 8, id="once")
    assert retry["duplicate"] is True and retry["seq"] == 1
    assert demo_widgets["speed"].value == 2, "the retry must not apply the old value again"
    await a.set("controls", "gain", 0.25, id="next")
    seen = [await b.next_event() for _ in range(3)]
    assert [(e["seq"], e["id"]) for e in seen][0::2] == [(1, "once"), (3, "next")]
    assert seen[1]["from"] == "kernel"


async def test_kernel_change_is_one_event_and_remote_set_is_not_echoed(server, connect,
                                                                      demo_widgets):
    a = await joined(connect, "a")
    demo_widgets["mode"].value = "sweep"
    event = await a.next_event("controls")
    assert event["from"] == "kernel" and event["data"] == {"target": "mode", "value": "sweep"}
    await a.set("controls", "mode", "hold")
    assert (await a.next_event())["data"]["value"] == "hold"
    demo_widgets["label"].value = "marker"  # the next event must be this one, not an echo
    after = await a.next_event()
    assert after["data"] == {"target": "label", "value": "marker"}
    assert after["seq"] == event["seq"] + 2


async def test_late_joiner_gets_the_current_state(server, connect, demo_widgets):
    a = await joined(connect, "a")
    await a.set("controls", "colour", "#FF0000")
    await a.set("controls", "running", True)
    late = await connect("late")
    snapshot = await late.join("controls")
    assert snapshot["seq"] == 2
    assert snapshot["state"]["colour"] == "#ff0000"
    assert snapshot["state"]["running"] is True


# --- bad input: each gets its reply or close code, and a bystander loses nothing --------

CLOSING = [
    pytest.param("not json {", 1007, id="not-json"),
    pytest.param("[1, 2, 3]", 1007, id="not-an-object"),
    pytest.param(b"\x81\x82binary", 1003, id="binary-frame"),
    pytest.param("x" * (MAX_MESSAGE_BYTES + 10), 1009, id="over-64KiB"),
]

ERRORS = [
    pytest.param({"type": "teleport"}, "unknown-type", id="unknown-type"),
    pytest.param({"type": "join", "room": "nowhere"}, "unknown-room", id="unknown-room"),
    pytest.param({"type": "set", "room": "controls", "target": "warp", "value": 1},
                 "unknown-target", id="unknown-control"),
    pytest.param({"type": "set", "room": "controls", "target": "speed", "value": "fast"},
                 "bad-value", id="wrong-value-type"),
    pytest.param({"type": "set", "room": "controls", "target": "speed", "value": 11},
                 "out-of-range", id="out-of-range"),
    pytest.param({"type": "set", "room": "chat", "target": "speed", "value": 1},
                 "not-joined", id="set-before-join"),
]


async def bystander_still_works(bystander, expect_seq):
    ack = await bystander.set("controls", "speed", expect_seq % 10)
    assert ack["seq"] == expect_seq
    event = await bystander.next_event("controls")
    assert event["seq"] == expect_seq


@pytest.mark.parametrize(("payload", "code"), CLOSING)
async def test_abuse_closes_only_the_abuser(server, connect, payload, code):
    bystander = await joined(connect, "bystander")
    await bystander_still_works(bystander, 1)
    abuser = await joined(connect, "abuser")
    abuser.send_raw(payload)
    closed = await abuser.wait_closed()
    assert closed.code == code
    await bystander_still_works(bystander, 2)
    assert bystander.closed is None
    assert [e["seq"] for e in bystander.received if e["type"] == "event"] == [1, 2]


@pytest.mark.parametrize(("message", "code"), ERRORS)
async def test_mistakes_get_an_error_and_the_connection_stays(server, connect, message, code):
    bystander = await joined(connect, "bystander")
    client = await joined(connect, "clumsy")
    with pytest.raises(ServerError) as info:
        await client.request(dict(message))
    assert info.value.code == code
    assert info.value.reply["id"]  # the error answers the request it names
    await bystander_still_works(bystander, 1)
    ack = await client.set("controls", "speed", 4)  # the clumsy client still works too
    assert ack["seq"] == 2


async def test_request_before_hello_is_refused_then_hello_works(server):
    client = await ControlClient.connect(server.ws_url, hello=False)
    try:
        with pytest.raises(ServerError) as info:
            await client.join("controls")
        assert info.value.code == "hello-required"
        client.send({"type": "hello", "client": "late"})
        welcome = await client.next_message()
        while welcome["type"] != "welcome":
            welcome = await client.next_message()
        assert (await client.join("controls"))["type"] == "snapshot"
    finally:
        await client.close()


async def test_no_hello_in_time_closes_4408(server):
    client = await ControlClient.connect(server.ws_url, hello=False)
    closed = await client.wait_closed(timeout=server.hello_timeout + 3)
    assert closed.code == 4408


async def test_publish_room_and_read_only_room(server, connect):
    a = await connect("a")
    await a.join("chat")
    ack = await a.publish("chat", {"text": "hi"}, id="p1")
    assert ack["seq"] == 1
    event = await a.next_event("chat")
    assert event["kind"] == "publish" and event["data"] == {"text": "hi"}
    await a.join("controls")
    with pytest.raises(ServerError) as info:
        await a.publish("controls", "x")
    assert info.value.code == "read-only"


async def test_server_publish_reaches_members(server, connect):
    server.add_room("telemetry", publish=False)
    a = await connect("a")
    await a.join("telemetry")
    event = await server.publish("telemetry", {"v": 1.5})
    got = await a.next_event("telemetry")
    assert got["seq"] == event.seq == 1 and got["data"] == {"v": 1.5} and got["from"] == "kernel"


async def test_presence_and_leave(server, connect):
    a = await joined(connect, "alice")
    b = await connect("bob")
    await b.join("controls")
    async def members_of(client, expected):
        while client.presence.get("controls") != expected:
            await client.next_message()
    await asyncio.wait_for(members_of(a, [{"user": "alice", "connections": 1},
                                          {"user": "bob", "connections": 1}]), 5)
    left = await b.leave("controls")
    assert left["type"] == "left"
    await asyncio.wait_for(members_of(a, [{"user": "alice", "connections": 1}]), 5)
    with pytest.raises(ServerError) as info:
        await b.set("controls", "speed", 1)
    assert info.value.code == "not-joined"


async def test_resume_replays_what_was_missed(server, connect):
    a = await joined(connect, "a")
    for value in (1, 2, 3):
        await a.set("controls", "speed", value)
    client = await ControlClient.connect(server.ws_url, hello=False)
    try:
        client.send({"type": "hello", "client": "back", "resume": {"controls": 1}})
        kinds = []
        while not kinds or kinds[-1]["type"] != "recovered":
            kinds.append(await client.next_message())
        events = [m["seq"] for m in kinds if m["type"] == "event"]
        assert events == [2, 3]
        assert kinds[-1] == {"type": "recovered", "room": "controls", "from": 2, "to": 3,
                             "complete": True}
    finally:
        await client.close()


async def test_stop_closes_clients_with_1001(demo_widgets):
    srv = ControlServer(port=0).start()
    srv.expose("speed", demo_widgets["speed"])
    client = await ControlClient.connect(srv.ws_url)
    await srv.stop()
    closed = await client.wait_closed()
    assert closed.code == 1001
    assert not srv.running


async def test_launch_twice_gives_the_same_server():
    first = ControlServer.launch(name="twice")
    try:
        assert ControlServer.launch(name="twice") is first
        with pytest.raises(RuntimeError, match="already runs"):
            ControlServer.launch(port=first.port + 1, name="twice")
    finally:
        await first.stop()
    assert ControlServer.launched("twice") is None


async def test_exposing_again_does_not_double_the_events(server, connect, demo_widgets):
    import ipywidgets

    server.expose("speed", demo_widgets["speed"])  # the same widget: a re-run cell
    replacement = ipywidgets.IntSlider(value=1, min=0, max=10)
    server.expose("gain2", replacement)
    server.expose("gain2", ipywidgets.IntSlider(value=2, min=0, max=10))
    a = await joined(connect, "a")
    demo_widgets["speed"].value = 9
    replacement.value = 7  # no longer exposed: must not produce an event
    demo_widgets["label"].value = "end"
    seen = [await a.next_event() for _ in range(2)]
    assert [e["data"]["target"] for e in seen] == ["speed", "label"]


async def test_slow_consumer_is_closed_with_1013_and_memory_stays_bounded(demo_widgets):
    srv = ControlServer(port=0, queue_limit=20).start()
    srv.add_room("firehose", publish=False)
    try:
        # A reader that never reads: a raw socket that sends the upgrade and hello, then stops.
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: wsdemo.v1\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        for text in (json.dumps({"type": "hello"}),
                     json.dumps({"type": "join", "room": "firehose"})):
            payload = text.encode()
            mask = b"\x00\x00\x00\x00"
            writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + payload)
        await writer.drain()
        async def joined_session():
            while True:
                session = next(iter(srv.sessions), None)
                if session is not None and "firehose" in session.rooms:
                    return session
                await asyncio.sleep(0)  # let the server handle the join

        session = await asyncio.wait_for(joined_session(), 5)
        big = "y" * 60_000
        for i in range(5000):
            await srv.publish("firehose", {"i": i, "pad": big})
            if session not in srv.sessions or session._closing:
                break
        assert session._closing, "a reader that never reads must be cut off"
        # Bounded: at most the byte limit, plus the frame that crossed it and the close.
        assert session.buffered_bytes <= srv.max_buffered_bytes + 2 * 61_000
        assert session.close_code is None or session.close_code == 1013
    finally:
        writer.close()
        await srv.stop()


async def test_a_publisher_that_reads_everything_is_not_taken_for_a_slow_consumer():
    """Each publish gives its sender two messages (the ack and the event) and every
    other member one. A publisher paced by another member's deliveries, reading all
    it gets, must keep up: the server has to send it more than one message per turn
    of its loop. (Found by the benchmark: one per turn closed it with 1013 after
    about twice the queue limit of publishes.)"""
    limit, total, window = 100, 2_000, 16
    srv = ControlServer(port=0, queue_limit=limit).start()
    srv.add_room("chat")

    async def open_member(name):
        ws = await websockets.connect(srv.ws_url, subprotocols=[SUBPROTOCOL])
        await ws.send(json.dumps({"type": "hello", "client": name}))
        await ws.send(json.dumps({"type": "join", "room": "chat", "id": "j"}))
        while json.loads(await ws.recv())["type"] != "snapshot":
            pass
        return ws

    publisher = await open_member("publisher")
    member = await open_member("member")
    sent = 0

    async def publish(n):
        nonlocal sent
        for _ in range(min(n, total - sent)):
            sent += 1
            await publisher.send(json.dumps(
                {"type": "publish", "room": "chat", "id": f"p{sent}", "data": sent}))

    async def publisher_reads():
        acks, events = [], []
        while len(acks) < total or len(events) < total:
            msg = json.loads(await publisher.recv())
            if msg["type"] == "ack":
                acks.append(msg["seq"])
            elif msg["type"] == "event":
                events.append(msg["data"])
            else:
                assert msg["type"] == "presence", f"the publisher got {msg}"
        return acks, events

    async def member_reads():
        seen = []
        while len(seen) < total:
            msg = json.loads(await member.recv())
            if msg["type"] == "event":
                seen.append(msg["data"])
                await publish(1)  # the window moves with the other member's deliveries
        return seen

    try:
        reading = asyncio.gather(publisher_reads(), member_reads())
        await publish(window)
        (acks, events), seen = await asyncio.wait_for(reading, 60)
        assert acks == sorted(acks) and len(set(acks)) == total
        assert events == seen == list(range(1, total + 1))
    finally:
        await publisher.close()
        await member.close()
        await srv.stop()


async def test_websockets_library_client_interoperates(server, demo_widgets):
    async with websockets.connect(server.ws_url, subprotocols=[SUBPROTOCOL]) as ws:
        assert ws.subprotocol == SUBPROTOCOL
        await ws.send(json.dumps({"type": "hello", "client": "websockets"}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "join", "room": "controls", "id": "j"}))
        assert json.loads(await ws.recv())["type"] == "snapshot"
        await ws.send(json.dumps({"type": "set", "room": "controls", "id": "w1",
                                  "target": "gain", "value": 0.75}))
        replies = [json.loads(await ws.recv()) for _ in range(3)]
        types = [r["type"] for r in replies]
        assert "ack" in types and "event" in types
        assert demo_widgets["gain"].value == 0.75
        await ws.send(b"\x00binary")
        with pytest.raises(websockets.ConnectionClosed) as info:
            while True:
                await ws.recv()
        assert info.value.rcvd.code == 1003


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost:9999",
                                    "http://127.0.0.1:1"])
async def test_a_page_of_another_origin_is_refused_at_the_upgrade(server, origin):
    # Another localhost port is another site too (a dev server, a compromised tool).
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(server.ws_url, origin=origin,
                                      subprotocols=[SUBPROTOCOL]):
            pass
    assert info.value.response.status_code == 403


async def test_the_pages_own_origin_is_allowed(server):
    own = server.url.rstrip("/")
    async with websockets.connect(server.ws_url, origin=own, subprotocols=[SUBPROTOCOL]) as ws:
        await ws.send(json.dumps({"type": "hello"}))
        assert json.loads(await ws.recv())["type"] == "welcome"


async def test_waiting_for_one_room_keeps_the_other_rooms_events(server, connect):
    a = await joined(connect, "a")
    await a.join("chat")
    await a.publish("chat", "first")
    await a.set("controls", "speed", 3)
    assert (await a.next_event("controls"))["data"]["value"] == 3
    assert (await a.next_event("chat"))["data"] == "first", "the chat event was kept"
    with pytest.raises(TimeoutError):
        await a.next_event("chat", timeout=0.2)


@pytest.mark.parametrize(("key", "offered", "reason"), [
    ("c2hvcnQ=", ["wsdemo.v1"], "Sec-WebSocket-Key is not 16 bytes in base64"),  # 5 bytes
    ("not base64 at all!!", ["wsdemo.v1"], "Sec-WebSocket-Key is not 16 bytes in base64"),
    ("dGhlIHNhbXBsZSBub25jZQ==", [], "offer the subprotocol wsdemo.v1"),
    ("dGhlIHNhbXBsZSBub25jZQ==", ["chat"], "offer the subprotocol wsdemo.v1"),
])
async def test_a_malformed_upgrade_is_refused_400_with_its_reason(server, key, offered, reason):
    """Checked by the course's own codec before Tornado upgrades (RFC 6455 §4.2.1)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    protocol = f"Sec-WebSocket-Protocol: {', '.join(offered)}\r\n" if offered else ""
    writer.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n{protocol}\r\n").encode())
    answer = (await asyncio.wait_for(reader.read(4096), 5)).decode()
    writer.close()
    assert answer.startswith("HTTP/1.1 400 "), answer
    assert reason in answer
    assert not server.sessions, "no session was opened"


async def test_the_websockets_client_without_the_subprotocol_is_refused(server):
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(server.ws_url):
            pass
    assert info.value.response.status_code == 400
    assert b"wsdemo.v1" in info.value.response.body
