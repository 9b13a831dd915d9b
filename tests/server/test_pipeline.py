"""One client's publishes are appended together, and every reply keeps the order of the requests."""

from __future__ import annotations

import asyncio
import json

import websockets

from wsdemo import ControlServer, SQLiteEventLog
from wsdemo.core.protocol import SUBPROTOCOL


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
