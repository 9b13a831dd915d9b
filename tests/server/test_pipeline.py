"""One client's publishes are appended together, and every reply keeps the order of the requests."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
import websockets

from tests.support.logs import log_where
from wsdemo import ControlServer, SQLiteEventLog
from wsdemo.core.protocol import SUBPROTOCOL
from wsdemo.stores import open_log


async def test_one_clients_publishes_share_commits_and_replies_keep_request_order(tmp_path):
    log = SQLiteEventLog(tmp_path / "p.sqlite", synchronous="NORMAL")
    srv = ControlServer(port=0, log=log, presence_window=0)
    srv.add_room("chat")
    srv.add_room("other")
    srv.start()
    try:
        ws = await websockets.connect(srv.ws_url, subprotocols=[SUBPROTOCOL])
        await ws.send(json.dumps({"type": "hello", "client": "p"}))
        await ws.send(json.dumps({"type": "join", "room": "chat", "id": "j1"}))
        total = 300
        # All at once, then a join: its snapshot must come after the last ack.
        for n in range(total):
            await ws.send(json.dumps({"type": "publish", "room": "chat", "id": f"p{n}",
                                      "data": n}))
        await ws.send(json.dumps({"type": "join", "room": "other", "id": "j2"}))
        replies = []
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if msg["type"] in ("ack", "snapshot", "error"):
                replies.append(msg)
            if msg["type"] == "snapshot" and msg.get("id") == "j2":
                break
        acks = [m for m in replies if m["type"] == "ack"]
        assert [a["id"] for a in acks] == [f"p{n}" for n in range(total)]
        assert [a["seq"] for a in acks] == list(range(1, total + 1))
        assert replies[-1]["id"] == "j2" and replies[-2] == acks[-1], "the join waited"
        assert log.transactions < total // 2, f"{log.transactions} commits for {total}"
        await ws.close()
    finally:
        await srv.stop()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_a_clients_burst_is_stored_in_the_order_it_was_sent(kind, tmp_path, request):
    """Found by lesson 07: Redis may commit concurrent appends out of order (several
    connections), so there a client's appends go one at a time; SQLite keeps them
    in order while they share commits."""
    redis = request.getfixturevalue("redis_server_path") if kind == "redis" else None
    async with contextlib.AsyncExitStack() as stack:
        where = await stack.enter_async_context(log_where(kind, tmp_path, redis))
        srv = ControlServer(port=0, log=open_log(where), presence_window=0)
        srv.add_room("chat")
        srv.start()
        stack.push_async_callback(srv.stop)
        writers = []
        for w in range(3):
            # max_queue=None: the others' events are left unread, and a full queue
            # would stop this client reading the server's close until close_timeout.
            ws = await websockets.connect(srv.ws_url, subprotocols=[SUBPROTOCOL],
                                          max_queue=None)
            await ws.send(json.dumps({"type": "hello", "client": f"w{w}"}))
            await ws.send(json.dumps({"type": "join", "room": "chat"}))
            writers.append(ws)
        for n in range(40):
            for w, ws in enumerate(writers):
                await ws.send(json.dumps({"type": "publish", "room": "chat",
                                          "id": f"w{w}-{n}", "data": n}))
        for w, ws in enumerate(writers):
            acks = []
            while len(acks) < 40:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if msg["type"] == "ack":
                    acks.append(msg)
            assert [a["id"] for a in acks] == [f"w{w}-{n}" for n in range(40)]
            seqs = [a["seq"] for a in acks]
            assert seqs == sorted(seqs), f"w{w}'s publishes stored out of order: {seqs}"
            await ws.close()
