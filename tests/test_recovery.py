"""Resume, offline delivery, exactly-once effects — and faults over real processes and sockets."""

import asyncio
import random
import signal
import subprocess
import sys

import pytest

from wsdemo import ControlClient, ControlServer
from wsdemo.reconnect import Backoff, ReconnectingClient
from wsdemo.sqlite_log import SQLiteEventLog

FAST = Backoff(initial=0.02, factor=2, cap=0.3, jitter=0.5)


def received_seqs(client, room):
    return [m["seq"] for m in client.received if m["type"] == "event" and m["room"] == room]


async def drain(client, room, count, timeout=10):
    return [await client.next_event(room, timeout=timeout) for _ in range(count)]


@pytest.fixture
async def sqlite_server(tmp_path, demo_widgets):
    path = tmp_path / "events.sqlite"

    def make(port=0):
        srv = ControlServer(port=port, log=SQLiteEventLog(path, synchronous="NORMAL"))
        for name, widget in demo_widgets.items():
            srv.expose(name, widget)
        srv.add_room("chat")
        return srv.start()

    servers = [make()]
    yield servers, make
    for srv in servers:
        await srv.stop()


async def test_offline_client_gets_what_it_missed_after_a_restart(sqlite_server):
    servers, make = sqlite_server
    srv = servers[0]
    reader = await ReconnectingClient(srv.ws_url, rooms=["chat"], backoff=FAST).start()
    writer = await ReconnectingClient(srv.ws_url, rooms=["chat"], backoff=FAST).start()
    for i in range(3):
        await writer.publish("chat", {"n": i})
    assert [e["seq"] for e in await drain(reader, "chat", 3)] == [1, 2, 3]
    await reader.close()  # away
    for i in range(3, 8):
        await writer.publish("chat", {"n": i})
    await writer.close()
    port = srv.port
    await srv.stop()  # and the server restarts on the same file
    servers[0] = make(port)
    back = ReconnectingClient(servers[0].ws_url, rooms=["chat"], backoff=FAST)
    back.last_seq = dict(reader.last_seq)
    await back.start()
    missed = await drain(back, "chat", 5)
    assert [e["seq"] for e in missed] == [4, 5, 6, 7, 8]
    assert [e["data"]["n"] for e in missed] == [3, 4, 5, 6, 7]
    await back.close()


async def test_drop_and_resume_no_gap_no_duplicate(sqlite_server):
    servers, _ = sqlite_server
    srv = servers[0]
    reader = await ReconnectingClient(srv.ws_url, rooms=["chat"], backoff=FAST).start()
    writer = await ControlClient.connect(srv.ws_url)
    await writer.join("chat")
    for i in range(40):
        await writer.publish("chat", i)
        if i in (10, 25):
            reader.drop()
    seen = await drain(reader, "chat", 40)
    assert [e["seq"] for e in seen] == list(range(1, 41))
    assert reader.gaps == 0 and reader.connections >= 2
    assert "resuming" in reader.status_history
    await writer.close()
    await reader.close()


async def test_retry_after_lost_ack_takes_effect_once(sqlite_server, demo_widgets):
    servers, _ = sqlite_server
    srv = servers[0]
    watcher = await ControlClient.connect(srv.ws_url)
    await watcher.join("controls")
    client = await ReconnectingClient(srv.ws_url, rooms=["controls"], backoff=FAST).start()
    request = asyncio.ensure_future(client.set("controls", "speed", 9, id="only-once"))
    await watcher.next_event("controls")  # the set was applied...
    client.drop()  # ...and the connection dies, maybe before the ack arrived
    ack = await asyncio.wait_for(request, 10)
    assert ack["seq"] == 1
    await watcher.set("controls", "gain", 0.1)
    events = [m for m in watcher.received if m["type"] == "event"]
    assert [e["id"] for e in events].count("only-once") == 1
    assert demo_widgets["speed"].value == 9
    await client.close()
    await watcher.close()


async def test_incomplete_resume_gets_a_snapshot(tmp_path, demo_widgets):
    srv = ControlServer(port=0, log=SQLiteEventLog(tmp_path / "e.sqlite", max_events=3))
    srv.expose("speed", demo_widgets["speed"])
    srv.start()
    try:
        writer = await ControlClient.connect(srv.ws_url)
        await writer.join("controls")
        for value in range(1, 9):
            await writer.set("controls", "speed", value)
        back = await ControlClient.connect(srv.ws_url, resume={"controls": 1})
        kinds = []
        while not kinds or kinds[-1]["type"] != "recovered":
            kinds.append(await back.next_message())
        kinds = [k for k in kinds if k["type"] != "welcome"]
        assert [k["type"] for k in kinds] == ["snapshot", "recovered"]
        assert kinds[0]["seq"] == 8 and kinds[0]["state"]["speed"] == 8
        assert kinds[1] == {"type": "recovered", "room": "controls", "from": 2, "to": 8,
                            "complete": False}
        await back.close()
        await writer.close()
    finally:
        await srv.stop()


async def test_backoff_grows_with_jitter_and_caps():
    backoff = Backoff(initial=0.1, factor=2, cap=1.0, jitter=0.5)
    rng = random.Random(7)
    delays = [backoff.delay(n, rng) for n in range(8)]
    assert all(0.05 <= d <= 0.1 for d in delays[:1])
    assert all(0.5 <= d <= 1.0 for d in delays[4:])
    assert len(set(delays)) == len(delays), "jitter: no two waits alike"


async def test_gives_up_on_forbidden_and_after_max_attempts():
    client = ReconnectingClient("127.0.0.1:1", backoff=Backoff(initial=0.01, max_attempts=3))
    with pytest.raises(Exception, match="3 attempts failed"):
        await client.start()
    assert client.status == "gave up"
    await client.close()


# --- faults over real processes -----------------------------------------------------------


async def start_server_process(port, path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wsdemo", "serve", "--port", str(port), "--log", str(path),
        "--no-demo", "--room", "chat", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    assert "control server on" in line, line + (await proc.stderr.read()).decode()
    return proc, int(line.split("127.0.0.1:")[1].split("/")[0])


async def collect(client, room, total, seen):
    """Every event delivered to ``client`` until seq ``total``: what a reader really saw."""
    while not seen or seen[-1]["seq"] < total:
        seen.append(await client.next_event(room, timeout=30))
    return seen


async def test_kill_9_while_publishing_and_reading(tmp_path):
    path = tmp_path / "events.sqlite"
    proc, port = await start_server_process(0, path)
    url = f"127.0.0.1:{port}"
    per_writer = 60
    total = 3 * per_writer
    clients = []
    try:
        readers = [await ReconnectingClient(url, rooms=["chat"], client=f"r{i}",
                                            backoff=FAST).start() for i in range(3)]
        writers = [await ReconnectingClient(url, rooms=["chat"], client=f"w{i}",
                                            backoff=FAST, timeout=3).start() for i in range(3)]
        clients = readers + writers
        seen = [[] for _ in readers]
        reading = [asyncio.ensure_future(collect(r, "chat", total, s))
                   for r, s in zip(readers, seen, strict=True)]

        async def write(w, n):
            return [await w.publish("chat", {"w": n, "i": i}, id=f"w{n}-{i}", timeout=30)
                    for i in range(per_writer)]

        writing = [asyncio.ensure_future(write(w, n)) for n, w in enumerate(writers)]
        while len(seen[0]) < total // 3:  # kill it a third of the way through
            await asyncio.wait(reading + writing, timeout=0.05,
                               return_when=asyncio.FIRST_EXCEPTION)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        proc, _ = await start_server_process(port, path)

        acks = [a for job in await asyncio.wait_for(asyncio.gather(*writing), 60) for a in job]
        seq_of = {a["id"]: a["seq"] for a in acks}
        assert len(seq_of) == total, "every publish acknowledged once in the end"
        assert sorted(seq_of.values()) == list(range(1, total + 1)), "no gap, no double seq"
        for events in await asyncio.wait_for(asyncio.gather(*reading), 60):
            assert [e["seq"] for e in events] == list(range(1, total + 1))
            assert {e["id"]: e["seq"] for e in events} == seq_of
        assert all(r.gaps == 0 for r in readers)
        assert all(r.connections >= 2 for r in clients), "every client really reconnected"
    finally:
        for client in clients:
            await client.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 10)
