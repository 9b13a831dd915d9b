"""Presence: who is in a room, join/leave diffs, no flicker on a quick reconnect, and a
member who vanishes without a close leaves after the ping timeout and the grace."""

import asyncio
import json

import pytest

from wsdemo import ControlClient, ControlServer


@pytest.fixture
async def room_server():
    # presence_window=0: every change goes out on the next turn of the loop, so these
    # tests see each step (test_presence_is_coalesced_within_its_window shows a window).
    srv = ControlServer(port=0, ping_interval=0.3, presence_grace=0.6, presence_window=0)
    srv.add_room("lobby")
    srv.start()
    yield srv
    await srv.stop()


async def presences(client, until, timeout=5.0):
    """Presence messages seen until (and including) the first one for which ``until`` holds."""
    seen = []
    while True:
        message = await client.next_message(timeout=timeout)
        if message["type"] == "presence":
            seen.append(message)
            if until(message):
                return seen


async def test_join_and_leave_diffs(room_server):
    alice = await ControlClient.connect(room_server.ws_url, client="alice")
    await alice.join("lobby")
    first = await presences(alice, lambda m: True)
    assert first[-1]["joined"] == ["alice"]
    bob = await ControlClient.connect(room_server.ws_url, client="bob")
    await bob.join("lobby")
    seen = await presences(alice, lambda m: "bob" in m["joined"])
    assert seen[-1]["members"] == [{"user": "alice", "connections": 1},
                                   {"user": "bob", "connections": 1}]
    await bob.leave("lobby")
    seen = await presences(alice, lambda m: m["left"])
    assert seen[-1]["left"] == ["bob"], "an explicit leave takes effect at once"
    await alice.close()
    await bob.close()


async def test_quick_reconnect_causes_no_leave(room_server):
    alice = await ControlClient.connect(room_server.ws_url, client="alice")
    await alice.join("lobby")
    bob = await ControlClient.connect(room_server.ws_url, client="bob")
    await bob.join("lobby")
    await presences(alice, lambda m: "bob" in m["joined"])
    bob.abort()  # the network drops; bob comes straight back
    await bob.wait_closed()
    bob = await ControlClient.connect(room_server.ws_url, client="bob")
    await bob.join("lobby")
    seen = await presences(alice, lambda m: {"user": "bob", "connections": 1} in m["members"])
    assert [m["members"] for m in seen][-2:] == [
        [{"user": "alice", "connections": 1}, {"user": "bob", "connections": 0}],  # reconnecting
        [{"user": "alice", "connections": 1}, {"user": "bob", "connections": 1}],
    ]
    assert not any("bob" in m["left"] or "bob" in m["joined"] for m in seen)
    # And no leave will come after the grace: bob's grace timer was cancelled on his return.
    assert "bob" not in room_server.rooms["lobby"].lingering
    await alice.close()
    await bob.close()


async def test_member_who_vanishes_leaves_after_ping_timeout_and_grace(room_server):
    alice = await ControlClient.connect(room_server.ws_url, client="alice")
    await alice.join("lobby")
    # A raw client that joins, then goes silent: it never answers a ping, never closes.
    reader, writer = await asyncio.open_connection("127.0.0.1", room_server.port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: wsdemo.v1\r\n\r\n")
    for text in (json.dumps({"type": "hello", "client": "ghost"}),
                 json.dumps({"type": "join", "room": "lobby"})):
        payload = text.encode()
        writer.write(bytes([0x81, 0x80 | len(payload)]) + b"\x00\x00\x00\x00" + payload)
    await writer.drain()
    await presences(alice, lambda m: "ghost" in m["joined"])
    # Tornado closes a peer that misses a pong, but waits 5 s for its close frame first.
    seen = await presences(alice, lambda m: "ghost" in m["left"], timeout=15)
    assert seen[-1]["members"] == [{"user": "alice", "connections": 1}]
    writer.close()
    await alice.close()


async def test_presence_is_coalesced_within_its_window():
    """Forty clients joining within one window cost each member a handful of presence
    messages, not one per join (N joins sent at once would be N*(N+1)/2 in all), and
    the last one a member gets names everybody."""
    srv = ControlServer(port=0, presence_window=0.2)
    srv.add_room("lobby")
    srv.start()
    watcher = await ControlClient.connect(srv.ws_url, client="watcher")
    await watcher.join("lobby")
    first = await presences(watcher, lambda m: True)
    assert first[-1]["members"] == [{"user": "watcher", "connections": 1}]
    clients = []
    try:
        clients = await asyncio.gather(*(ControlClient.connect(srv.ws_url, client=f"c{i:02}")
                                         for i in range(40)))
        await asyncio.gather(*(c.join("lobby") for c in clients))
        seen = await presences(watcher, lambda m: len(m["members"]) == 41)
        assert len(seen) <= 3, [len(m["joined"]) for m in seen]
        assert sorted(u for m in seen for u in m["joined"]) == [f"c{i:02}" for i in range(40)]
        # An event flushes what is pending first: presence is never behind the events.
        await clients[0].leave("lobby")
        event = await srv.publish("lobby", "after the leave")
        kinds = []
        while True:
            message = await watcher.next_message(timeout=5)
            kinds.append(message["type"])
            if message["type"] == "event" and message["seq"] == event.seq:
                break
        assert kinds[-2:] == ["presence", "event"], kinds
    finally:
        for c in [watcher, *clients]:
            await c.close()
        await srv.stop()
