"""Retention by bytes through a real ControlServer, on each log: one client floods a
room with large publishes; a bystander in the same room still gets every event, in
order, with no gap in seq, while the log holds no more than its ``max_bytes``. A
resume from before what is held is told so (``complete: false``), one from inside
it is replayed. A publish larger than the room may hold is refused with an
``error`` to its sender alone, and uses no seq."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.support.logs import log_where
from wsdemo import ControlClient, ControlServer, ServerError
from wsdemo.stores import open_log

WAIT = 20.0  # bound on every wait; a healthy run needs a fraction of it
KINDS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)]
BLOB = 40_000  # characters per flood message: under the 64 KiB message limit
FLOOD = 120
WINDOW = 8  # publishes in flight at once


@pytest.fixture(params=KINDS)
async def serve(request, tmp_path):
    """``await serve(max_bytes=...)`` → (a started server with a room 'chat', its log)."""
    redis = request.getfixturevalue("redis_server_path") if request.param == "redis" else None
    async with log_where(request.param, tmp_path, redis) as where:
        options = {"synchronous": "NORMAL"} if request.param == "sqlite" else {}
        servers = []

        async def make(**limits):
            log = open_log(where, **options, **limits)
            srv = ControlServer(port=0, log=log, hello_timeout=WAIT)
            srv.add_room("chat")
            servers.append(srv.start())
            return srv, log

        make.kind = request.param
        try:
            yield make
        finally:
            for srv in servers:
                await srv.stop()  # closes its log


@contextlib.asynccontextmanager
async def clients(srv, *names, **options):
    made = []
    try:
        for name in names:
            made.append(await ControlClient.connect(srv.ws_url, client=name, timeout=WAIT,
                                                    **options))
        yield made
    finally:
        for client in made:
            await client.close()


async def until_recovered(client) -> list[dict]:
    """The messages up to and including the first ``recovered``, welcome left out."""
    seen = []
    while not seen or seen[-1]["type"] != "recovered":
        message = await client.next_message(timeout=WAIT)
        if message["type"] != "welcome":
            seen.append(message)
    return seen


async def test_a_flood_of_large_publishes_is_bounded_and_the_bystander_misses_nothing(serve):
    max_bytes = 12 * BLOB  # 11 flood events (each a little over BLOB stored)
    srv, log = await serve(max_bytes=max_bytes)
    async with clients(srv, "flooder", "bystander") as (flooder, bystander):
        for client in (flooder, bystander):
            await client.join("chat")
        acks, got = [], []
        for start in range(0, FLOOD, WINDOW):
            window = await asyncio.wait_for(asyncio.gather(*(
                flooder.publish("chat", {"n": n, "blob": chr(65 + n % 26) * BLOB})
                for n in range(start, min(start + WINDOW, FLOOD)))), WAIT)
            acks += window
            # Read each window before the next: with Redis, a server broadcasts what
            # it follows from the log, and a follower that fell further behind than
            # the room holds (11 events here) would have to close the room's members
            # (1013, resume). A window smaller than that keeps this test about
            # retention, not about a follower's pace.
            got += [await bystander.next_event("chat", timeout=WAIT) for _ in window]
        assert sorted(a["seq"] for a in acks) == list(range(1, FLOOD + 1))
        assert [e["seq"] for e in got] == list(range(1, FLOOD + 1)), "every event, in order"
        # The acks' order is the log's; each event carries what was published, whole.
        by_seq = {a["seq"]: a["id"] for a in acks}
        assert [e["id"] for e in got] == [by_seq[s] for s in range(1, FLOOD + 1)]
        for event in got:
            n = event["data"]["n"]
            assert event["data"]["blob"] == chr(65 + n % 26) * BLOB
        assert [e["data"]["n"] for e in got if e["from"] == flooder.session] == \
            sorted(e["data"]["n"] for e in got)
        assert await log.held_bytes("chat") <= max_bytes
        first = await log.first_seq("chat")
        assert 100 < first <= FLOOD, "most of the flood is past retention"
        assert await log.last_seq("chat") == FLOOD

    # A resume from before what is held: told so, with a snapshot; from inside: replayed.
    async with clients(srv, "late", resume={"chat": first - 2}) as (late,):
        seen = await until_recovered(late)
        assert [m["type"] for m in seen] == ["snapshot", "recovered"]
        assert seen[1] == {"type": "recovered", "room": "chat", "from": first - 1,
                           "to": FLOOD, "complete": False}
    async with clients(srv, "close", resume={"chat": first - 1}) as (close,):
        seen = await until_recovered(close)
        assert [m["seq"] for m in seen if m["type"] == "event"] == list(range(first, FLOOD + 1))
        assert seen[-1] == {"type": "recovered", "room": "chat", "from": first, "to": FLOOD,
                            "complete": True}


async def test_a_publish_larger_than_the_room_may_hold_is_refused_alone(serve):
    srv, log = await serve(max_bytes=20_000)
    async with clients(srv, "sender", "bystander") as (sender, bystander):
        for client in (sender, bystander):
            await client.join("chat")
        await sender.publish("chat", "before", id="p1")
        with pytest.raises(ServerError) as refused:
            await sender.publish("chat", "x" * 30_000, id="big")
        assert refused.value.reply["id"] == "big"
        # The sender's connection goes on, and the refused publish used no seq.
        after = await sender.publish("chat", "after", id="p2")
        assert after["seq"] == 2 and not after["duplicate"]
        await bystander.publish("chat", "mine", id="b1")
        got = [await bystander.next_event("chat", timeout=WAIT) for _ in range(3)]
        assert [(e["seq"], e["id"]) for e in got] == [(1, "p1"), (2, "p2"), (3, "b1")]
        assert [e.data for e in await log.read_after("chat", 0)] == ["before", "after",
                                                                     "mine"]
        assert not [m for m in bystander.received if m["type"] == "error"]


async def test_the_refusal_says_bad_data(serve):
    # Memory refuses while the message is handled, SQLite and Redis when the append is
    # awaited: the sender hears the same either way.
    srv, _ = await serve(max_bytes=20_000)
    async with clients(srv, "sender") as (sender,):
        await sender.join("chat")
        with pytest.raises(ServerError) as refused:
            await sender.publish("chat", "x" * 30_000, id="big")
        assert refused.value.code == "bad-data"
        assert "too large" in refused.value.reply["message"]
