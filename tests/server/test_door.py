"""Checked at the door: what cannot be stored and sent back is refused before it gets a seq.

Each hostile message is sent by a real client to a real server on the memory,
SQLite and Redis logs, while a bystander in the same room keeps receiving. After
each one: the sender got ``error bad-data`` (or the close its abuse deserves) and
its connection still works; the bystander saw every accepted event, seqs gap-free;
and a resume from 0 replays the whole room, complete. Then a hypothesis fuzz
throws generated payloads at a live room and checks the same.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.logs import log_where
from wsdemo import ControlServer
from wsdemo.core.protocol import MAX_DEPTH, MAX_SAFE_INTEGER, SUBPROTOCOL
from wsdemo.stores import open_log

ROOM = "chat"
WAIT = 5.0

# (name, raw text of the message after '"data":', or a whole message)
HOSTILE_DATA = {
    "lone high surrogate": '"\\ud800"',
    "lone low surrogate in a key": '{"\\udc00": 1}',
    "surrogate deep inside": '[{"a": ["ok", "\\udbff"]}]',
    "infinity": "1e400",
    "minus infinity": "-1e400",
    "integer past 2**53": str(2**53),
    "huge integer": "1" + "0" * 400,
    "nesting 980 deep": "[" * 980 + "]" * 980,
    f"nesting {MAX_DEPTH} deep": "[" * MAX_DEPTH + "]" * MAX_DEPTH,
    "nesting 5000 deep": "[" * 5000 + "]" * 5000,
}


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def room_server(request, tmp_path):
    redis = request.getfixturevalue("redis_server_path") if request.param == "redis" else None
    async with log_where(request.param, tmp_path, redis) as where:
        srv = ControlServer(port=0, log=open_log(where), presence_window=0)
        srv.add_room(ROOM)
        srv.start()
        try:
            yield srv
        finally:
            await srv.stop()


class Peer:
    """A `websockets` client (independent of the server's own client code)."""

    def __init__(self, ws, name):
        self.ws, self.name, self.events = ws, name, []

    @classmethod
    async def open(cls, srv, name, resume=None):
        ws = await websockets.connect(srv.ws_url, subprotocols=[SUBPROTOCOL],
                                      open_timeout=WAIT, close_timeout=1)
        hello = {"type": "hello", "client": name}
        if resume is not None:
            hello["resume"] = resume
        await ws.send(json.dumps(hello))
        peer = cls(ws, name)
        await peer.until("welcome")
        if resume is None:
            await ws.send(json.dumps({"type": "join", "room": ROOM}))
            await peer.until("snapshot")
        return peer

    async def until(self, kind, **fields):
        """Read until a message of ``kind`` (with ``fields``) arrives; events are kept."""
        while True:
            msg = json.loads(await _timed(self.ws.recv()))
            if msg["type"] == "event":
                self.events.append(msg)
            if msg["type"] == kind and all(msg.get(k) == v for k, v in fields.items()):
                return msg

    async def send_raw(self, text):
        await self.ws.send(text)

    async def publish(self, msg_id, data_json):
        await self.ws.send(
            f'{{"type":"publish","room":"{ROOM}","id":"{msg_id}","data":{data_json}}}')

    async def answer(self, msg_id):
        """The ack or the error that answers ``msg_id``.

        An error may carry no id: a message nested deeper than the JSON parser goes
        cannot be read far enough to find one.
        """
        while True:
            msg = json.loads(await _timed(self.ws.recv()))
            if msg["type"] == "event":
                self.events.append(msg)
            elif msg["type"] == "ack" and msg["id"] == msg_id:
                return msg
            elif msg["type"] == "error" and msg.get("id") in (msg_id, None):
                return msg


async def _timed(awaitable):
    return await asyncio.wait_for(awaitable, WAIT)


def seqs(events):
    return [e["seq"] for e in events]


async def test_hostile_payloads_are_refused_and_the_room_keeps_flowing(room_server):
    sender = await Peer.open(room_server, "sender")
    bystander = await Peer.open(room_server, "bystander")
    accepted = []
    for n, (name, data) in enumerate(HOSTILE_DATA.items()):
        await sender.publish(f"bad{n}", data)
        reply = await sender.answer(f"bad{n}")
        assert reply["type"] == "error" and reply["code"] == "bad-data", (name, reply)
        # The sender's connection still works, and the room still flows, with no gap.
        await sender.publish(f"ok{n}", json.dumps({"after": name}))
        ack = await sender.answer(f"ok{n}")
        assert ack["type"] == "ack", (name, ack)
        accepted.append(ack["seq"])
        event = await bystander.until("event", id=f"ok{n}")
        assert event["seq"] == ack["seq"]
    assert seqs(bystander.events) == accepted == list(range(1, len(accepted) + 1))
    # Nothing refused was stored: a resume from 0 gets exactly the accepted events.
    late = await Peer.open(room_server, "late", resume={ROOM: 0})
    recovered = await late.until("recovered")
    assert recovered["complete"] is True
    assert seqs(late.events) == list(range(1, accepted[-1] + 1))
    assert [e["id"] for e in late.events] == [f"ok{n}" for n in range(len(HOSTILE_DATA))]


@pytest.mark.parametrize("message", [
    '{"type":"publish","room":"chat","id":"\\ud800","data":1}',   # the id itself
    '{"type":"hello","client":"\\udfff"}',                         # a second hello's name
    '{"type":"join","room":"\\ud800"}',
    '{"type":"set","room":"chat","id":"s1","target":"x","value":1e999}',
])
async def test_surrogates_and_infinities_anywhere_get_an_error_not_a_dead_session(
        room_server, message):
    sender = await Peer.open(room_server, "sender")
    bystander = await Peer.open(room_server, "bystander")
    await sender.send_raw(message)
    error = await sender.until("error")
    assert error["code"] == "bad-data"
    assert "\\ud" not in json.dumps(error), "the reply itself must be sendable"
    await sender.publish("after", '"still here"')
    ack = await sender.answer("after")
    assert ack["type"] == "ack"
    assert (await bystander.until("event", id="after"))["seq"] == ack["seq"]


async def test_a_lone_surrogate_in_a_client_name_cannot_kill_presence(room_server):
    """The name goes into every member's presence: refused at hello, the room lives on."""
    bystander = await Peer.open(room_server, "bystander")
    ws = await websockets.connect(room_server.ws_url, subprotocols=[SUBPROTOCOL])
    await ws.send('{"type":"hello","client":"\\ud800"}')
    reply = json.loads(await _timed(ws.recv()))
    assert reply["type"] == "error" and reply["code"] == "bad-data"
    await ws.close()
    sender = await Peer.open(room_server, "sender")
    await sender.publish("p", "1")
    ack = await sender.answer("p")
    assert (await bystander.until("event", id="p"))["seq"] == ack["seq"]


async def test_resume_names_an_unknown_room_next_to_a_good_one(room_server):
    sender = await Peer.open(room_server, "sender")
    for n in range(3):
        await sender.publish(f"p{n}", str(n))
        await sender.answer(f"p{n}")
    ws = await websockets.connect(room_server.ws_url, subprotocols=[SUBPROTOCOL])
    await ws.send(json.dumps({"type": "hello", "resume": {"nowhere": 0, ROOM: 1}}))
    peer = Peer(ws, "resumer")
    error = await peer.until("error")
    assert error["code"] == "unknown-room"
    recovered = await peer.until("recovered", room=ROOM)
    assert recovered["complete"] is True
    assert seqs(peer.events) == [2, 3], "the good room is resumed all the same"


async def test_the_kernel_side_is_checked_at_the_same_door(room_server):
    from wsdemo.core.protocol import ProtocolError

    bystander = await Peer.open(room_server, "bystander")
    for bad in ("\ud800", float("inf"), _nested(MAX_DEPTH + 1), MAX_SAFE_INTEGER + 1,
                object()):
        with pytest.raises(ProtocolError):
            await room_server.publish(ROOM, bad)
    event = await room_server.publish(ROOM, {"fine": True})
    assert (await bystander.until("event", id=event.id))["seq"] == event.seq == 1


def _nested(depth):
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


# --- the fuzz: generated payloads through a live room ------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False),  # NaN has no JSON text; +-inf are written as 1e400 below
    st.text(alphabet=st.characters(exclude_categories=[]), max_size=20),  # surrogates too
)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.text(alphabet=st.characters(exclude_categories=[]), max_size=5), inner,
                    max_size=4)),
    max_leaves=30)
deep = st.integers(min_value=1, max_value=120).map(lambda d: "[" * d + "]" * d)


def to_json(value) -> str:
    text = json.dumps(value, ensure_ascii=True)  # \\udXXX escapes for lone surrogates
    return text.replace("Infinity", "1e400")  # json.dumps writes inf as Infinity


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payloads=st.lists(st.one_of(json_values.map(to_json), deep), min_size=1, max_size=8))
async def test_fuzzed_publishes_never_stall_the_room_or_open_a_gap(fuzz_server, payloads):
    srv, sender, bystander = fuzz_server
    for data in payloads:
        msg_id = f"f{srv.fuzz_counter}"
        srv.fuzz_counter += 1
        await sender.publish(msg_id, data)
        reply = await sender.answer(msg_id)
        assert reply["type"] in ("ack", "error"), reply
        if reply["type"] == "ack":
            event = await bystander.until("event", id=msg_id)
            assert event["seq"] == reply["seq"]
            # What was accepted comes back as JSON that any encoder can send again.
            json.dumps(event["data"], allow_nan=False).encode("utf-8")
        else:
            assert reply["code"] in ("bad-data", "bad-message"), reply
    got = seqs(bystander.events)
    assert got == list(range(1, len(got) + 1)), "gap-free from the first event on"


@pytest.fixture
async def fuzz_server():
    srv = ControlServer(port=0)
    srv.add_room(ROOM)
    srv.start()
    srv.fuzz_counter = 0
    sender = await Peer.open(srv, "sender")
    bystander = await Peer.open(srv, "bystander")
    try:
        yield srv, sender, bystander
    finally:
        await srv.stop()


async def test_a_flooding_client_is_rate_limited_then_closed_4429_a_bystander_is_not():
    srv = ControlServer(port=0, rate_limit=10, rate_burst=5, presence_window=0)
    srv.add_room(ROOM)
    srv.start()
    try:
        flood = await Peer.open(srv, "flood")
        bystander = await Peer.open(srv, "bystander")
        for n in range(20):
            await flood.publish(f"f{n}", str(n))
        replies = []
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                msg = json.loads(await _timed(flood.ws.recv()))
                if msg["type"] in ("ack", "error"):
                    replies.append(msg)
        assert [r["type"] for r in replies[:5]] == ["ack"] * 5, "the burst is accepted"
        refused = [r for r in replies[5:] if r.get("code") == "rate-limited"]
        assert len(refused) == 4 and all(r["id"].startswith("f") for r in refused)
        assert flood.ws.close_code == 4429
        # The bystander got every accepted event and can still publish.
        for n in range(5):
            assert (await bystander.until("event", id=f"f{n}"))["seq"] == n + 1
        await bystander.publish("b", '"still served"')
        assert (await bystander.answer("b"))["seq"] == 6
    finally:
        await srv.stop()


# --- what a refusal says: the phrase, never the exception -----------------------------

# The signatures of Python's own messages (json, int(), recursion, codecs, KeyError...).
EXCEPTION_TEXT = ("Expecting", "delimiter", "line 1", "column", "(char", "Traceback",
                  "recursion", "codec", "object of type", "invalid literal", "KeyError",
                  "Error", "Exceeds the limit", "not subscriptable", "NoneType")

valid_messages = st.sampled_from([
    '{"type":"publish","room":"chat","id":"p","data":1}',
    '{"type":"set","room":"chat","id":"s","target":"x","value":1}',
    '{"type":"join","room":"chat","id":"j"}', '{"type":"leave","room":"chat"}',
    '{"type":"hello","client":"x","resume":{"chat":0}}',
])
mangled = st.tuples(valid_messages, st.integers(0, 60), st.text(max_size=6)).map(
    lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:])  # a cut, and something put in the cut
raw_frames = st.one_of(mangled, st.text(max_size=40),
                       st.integers(1, 5000).map(lambda n: '{"a":' * n + "1" + "}" * n),
                       st.integers(1, 5000).map(lambda n: "9" * n))


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frame=raw_frames)
async def test_a_refusal_says_a_phrase_never_an_exception_and_the_room_flows(fuzz_server,
                                                                             frame):
    srv, _, bystander = fuzz_server
    attacker = await Peer.open(srv, "attacker")
    await attacker.send_raw(frame)
    await attacker.send_raw('{"type":"join","room":"after-probe"}')  # an answer always comes
    said = []
    try:
        while True:
            msg = json.loads(await _timed(attacker.ws.recv()))
            if msg["type"] == "error":
                said.append(msg["message"])
                if msg.get("code") == "unknown-room":
                    break  # the probe's answer: the frame was answered before it
    except websockets.ConnectionClosed as closed:
        said.append(closed.rcvd.reason if closed.rcvd else "")
    for text in said:
        assert not any(s in text for s in EXCEPTION_TEXT), (frame, text)
    await attacker.ws.close()
    # A bystander in the room is still served, with no gap.
    msg_id = f"b{srv.fuzz_counter}"
    srv.fuzz_counter += 1
    await bystander.publish(msg_id, '"still here"')
    ack = await bystander.answer(msg_id)
    assert ack["type"] == "ack"
    assert seqs(bystander.events) == list(range(1, len(bystander.events) + 1))
