"""Resume, offline delivery, exactly-once effects — and faults over real processes and sockets."""

import asyncio
import random
import signal
import subprocess
import sys

import pytest

from wsdemo import ControlClient, ControlServer
from wsdemo.client.reconnect import Backoff, ReconnectingClient
from wsdemo.stores.sqlite import SQLiteEventLog

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


class CuttingProxy:
    """A TCP proxy that cuts each connection after a random number of bytes (either way)."""

    def __init__(self, target_port, cuts, seed=6455):
        self.target_port = target_port
        self.cuts_left = cuts
        self.cut = 0
        self.rng = random.Random(seed)

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, client_r, client_w):
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        budget = [self.rng.randint(1, 1500) if self.cuts_left > 0 else None]
        if budget[0] is not None:
            self.cuts_left -= 1

        async def pump(reader, writer):
            try:
                while chunk := await reader.read(4096):
                    if budget[0] is not None:
                        if len(chunk) >= budget[0]:
                            writer.write(chunk[: budget[0]])  # part of a frame, then nothing
                            await writer.drain()
                            self.cut += 1
                            break
                        budget[0] -= len(chunk)
                    writer.write(chunk)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                for w in (client_w, server_w):
                    w.transport.abort()

        await asyncio.gather(pump(client_r, server_w), pump(server_r, client_w))

    async def stop(self):
        self.server.close()


async def test_connection_cut_mid_frame_200_times(sqlite_server):
    servers, _ = sqlite_server
    proxy = await CuttingProxy(servers[0].port, cuts=200).start()
    url = f"127.0.0.1:{proxy.port}"
    total = 200
    reader = ReconnectingClient(url, rooms=["chat"], client="reader", backoff=FAST, timeout=2)
    writer = ReconnectingClient(url, rooms=["chat"], client="writer", backoff=FAST, timeout=2)
    try:
        await asyncio.gather(reader.start(wait_live=False), writer.start(wait_live=False))
        # A first join is a snapshot: the reader must be in before seq 1 exists to see it
        # as an event (through a proxy that cuts, that can take a few attempts).
        await reader.wait_live(timeout=60)
        seen = []
        reading = asyncio.ensure_future(collect(reader, "chat", total, seen))
        pad = "p" * 200  # enough traffic for every cut to land somewhere
        acks = [await writer.publish("chat", {"i": i, "pad": pad}, id=f"m{i}", timeout=60)
                for i in range(total)]
        events = await asyncio.wait_for(reading, 60)
        assert proxy.cut == 200, f"only {proxy.cut} cuts happened"
        seq_of = {a["id"]: a["seq"] for a in acks}
        assert sorted(seq_of.values()) == list(range(1, total + 1))
        assert [e["seq"] for e in events] == list(range(1, total + 1))
        assert {e["id"]: e["seq"] for e in events} == seq_of
        assert reader.gaps == 0
    finally:
        await reader.close()
        await writer.close()
        await proxy.stop()


async def test_slow_consumer_cut_off_then_resumes_without_loss(tmp_path):
    srv = ControlServer(port=0, queue_limit=16,
                        log=SQLiteEventLog(tmp_path / "e.sqlite", synchronous="NORMAL"))
    srv.add_room("firehose", publish=False)
    srv.start()
    try:
        slow = await ControlClient.connect(srv.ws_url, client="slow")
        await slow.join("firehose")
        stream = slow._conn.protocol.stream
        # Stop reading: pause the socket, as a client stuck in a long computation would.
        stream.io_loop.remove_handler(stream.fileno())
        pad = "z" * 30_000
        sent = 0
        session = next(s for s in srv.sessions if s.client_name == "slow")
        while session in srv.sessions and not session._closing and sent < 3000:
            await srv.publish("firehose", {"n": sent, "pad": pad})
            sent += 1
        assert session._closing, "the server must cut off a reader that does not read"
        assert session.buffered_bytes <= srv.max_buffered_bytes + 2 * 31_000, \
            "what waits for it stays bounded"
        back = await ControlClient.connect(srv.ws_url, client="slow-again",
                                           resume={"firehose": 0})
        got = []
        while len(got) < sent:
            got.append((await back.next_event("firehose"))["seq"])
        assert got == list(range(1, sent + 1))
        await back.close()
        stream.close()
    finally:
        await srv.stop()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def durable_log(request, tmp_path):
    """``make()`` → a new log object on the same durable store (a file, or one Redis)."""
    if request.param == "sqlite":
        yield lambda: SQLiteEventLog(tmp_path / "e.sqlite", max_events=2)
        return
    from tests.support.redis import running_redis
    from wsdemo.stores.redis import RedisEventLog

    async with running_redis(request.getfixturevalue("redis_server_path"), tmp_path) as redis:
        yield lambda: RedisEventLog(redis.url, max_events=2)


async def test_a_restart_on_the_same_log_restores_the_controls(durable_log, demo_widgets):
    import ipywidgets as w

    srv = ControlServer(port=0, log=durable_log())
    srv.expose("speed", demo_widgets["speed"])
    srv.start()
    client = await ControlClient.connect(srv.ws_url)
    await client.join("controls")
    for value in (7, 8, 9, 3):
        await client.set("controls", "speed", value)
    await client.close()
    await srv.stop()
    fresh = w.IntSlider(value=5, min=0, max=10)  # a new kernel: the widget at its default
    srv = ControlServer(port=0, log=durable_log()).start()
    srv.expose("speed", fresh)  # exposed after start, as a notebook does
    try:
        back = await ControlClient.connect(srv.ws_url)
        snapshot = await back.join("controls")
        assert snapshot["seq"] == 4 and snapshot["state"] == {"speed": 3}
        assert fresh.value == 3, "the log's value is put back into the widget"
        await back.close()
    finally:
        await srv.stop()


async def test_resuming_against_another_log_gets_a_snapshot_not_a_wrong_replay(demo_widgets):
    first = ControlServer(port=0).start()
    first.expose("speed", demo_widgets["speed"])
    client = await ControlClient.connect(first.ws_url)
    await client.join("controls")
    for value in (1, 2, 3):
        await client.set("controls", "speed", value)
    epoch = client.welcome["epoch"]
    await client.close()
    port = first.port
    await first.stop()
    second = ControlServer(port=port).start()  # a new memory log: seqs start again
    second.expose("speed", demo_widgets["speed"])
    try:
        writer = await ControlClient.connect(second.ws_url)
        await writer.join("controls")
        for value in (7, 8, 9, 6, 5):
            await writer.set("controls", "speed", value)
        back = await ControlClient.connect(second.ws_url, resume={"controls": 3}, epoch=epoch)
        assert back.welcome["epoch"] != epoch
        kinds = []
        while not kinds or kinds[-1]["type"] != "recovered":
            kinds.append(await back.next_message())
        kinds = [k for k in kinds if k["type"] != "welcome"]
        assert [k["type"] for k in kinds] == ["snapshot", "recovered"], "no replay of 4-5"
        assert kinds[0]["state"] == {"speed": 5} and kinds[1]["complete"] is False
        await back.close()
        await writer.close()
    finally:
        await second.stop()


async def test_a_close_reason_is_also_said_in_band(server):
    client = await ControlClient.connect(server.ws_url)
    client.send_raw("not json")
    closed = await client.wait_closed()
    said = [m for m in client.received if m["type"] == "error"]
    assert said == [{"type": "error", "code": "closing", "close": 1007,
                     "message": closed.reason}]
