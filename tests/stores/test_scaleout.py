"""Two control-server processes on one real redis-server: routing, failover, Redis outage."""

import asyncio
import json
import signal
import subprocess
import sys

import pytest

from wsdemo import ControlClient
from wsdemo.client.reconnect import Backoff, ReconnectingClient

pytestmark = pytest.mark.redis
FAST = Backoff(initial=0.02, factor=2, cap=0.3, jitter=0.5)


class ServerProcess:
    """``python -m wsdemo serve`` on the shared Redis log, as a real process."""

    def __init__(self, redis_url: str, port: int = 0, *extra: str):
        self.redis_url = redis_url
        self.port = port
        self.extra = extra
        self.proc = None

    async def start(self):
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wsdemo", "serve", "--port", str(self.port),
            "--log", self.redis_url, "--no-demo", "--room", "chat", *self.extra,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 20)).decode()
        assert "control server on" in line, line + (await self.proc.stderr.read()).decode()
        self.port = int(line.split("127.0.0.1:")[1].split("/")[0])
        self.url = f"127.0.0.1:{self.port}"
        return self

    async def kill(self, sig=signal.SIGKILL):
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:  # a clean stop takes about a second; allow for a loaded machine
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
                raise


@pytest.fixture
async def two(aof_redis):
    # appendfsync always: an ack means kept (see redis_log)
    servers = [await ServerProcess(aof_redis.url, 0, "--presence-ttl", "1.5").start()
               for _ in range(2)]
    yield servers
    # Every one stopped, even if one of them does not stop cleanly (that one fails).
    stopped = await asyncio.gather(*(server.kill(signal.SIGTERM) for server in servers),
                                   return_exceptions=True)
    failed = [s for s in stopped if isinstance(s, BaseException)]
    if failed:
        raise failed[0]


async def test_fifty_clients_on_two_servers_see_every_event_once_in_one_order(two):
    clients = []
    for i in range(50):
        # Bounds for a loaded 2-core machine running two servers, Redis and 50 clients.
        client = await ControlClient.connect(two[i % 2].url, client=f"c{i}", timeout=30)
        await client.join("chat")
        clients.append(client)
    await asyncio.gather(*(c.publish("chat", {"c": i, "n": n})
                           for n in range(4) for i, c in enumerate(clients)))
    total = 200
    orders = set()
    for client in clients:
        got = [await client.next_event("chat", timeout=30) for _ in range(total)]
        assert [e["seq"] for e in got] == list(range(1, total + 1))
        orders.add(tuple(e["id"] for e in got))
    assert len(orders) == 1, "both servers deliver the same events in the same order"
    for client in clients:
        await client.close()


async def test_kill_one_server_its_clients_move_and_resume_without_loss(two):
    a, b = two
    readers = [await ReconnectingClient([s.url, other.url], rooms=["chat"], client=f"r{i}",
                                        backoff=FAST, timeout=3).start()
               for i, (s, other) in enumerate([(a, b), (b, a), (a, b), (b, a)])]
    writer = await ReconnectingClient([b.url], rooms=["chat"], client="w", backoff=FAST).start()
    total = 60
    for n in range(total):
        if n == 20:
            await a.kill()  # kill -9 server A mid-stream
        await writer.publish("chat", n, id=f"m{n}", timeout=20)
    for reader in readers:
        got = [await reader.next_event("chat", timeout=20) for _ in range(total)]
        assert [e["seq"] for e in got] == list(range(1, total + 1))
        assert [e["data"] for e in got] == list(range(total))
        assert reader.gaps == 0
    moved = [r for r in readers if r.connections >= 2]
    assert len(moved) == 2, "the clients of A reconnected to B"
    for client in [*readers, writer]:
        await client.close()


async def test_redis_outage_refuses_publishes_then_recovers(two, aof_redis):
    redis = aof_redis
    client = await ControlClient.connect(two[0].url, timeout=10)
    await client.join("chat")
    other = await ControlClient.connect(two[1].url, timeout=10)
    await other.join("chat")
    assert (await client.publish("chat", "before"))["seq"] == 1
    await redis.kill()
    with pytest.raises(Exception) as refused:
        await client.publish("chat", "during", id="during-1")
    assert getattr(refused.value, "code", None) == "unavailable", refused.value
    assert client.closed is None, "an outage is an error reply, not a dropped connection"
    await redis.start(aof=True)
    ack = await client.request({"type": "publish", "room": "chat", "id": "during-1",
                                "data": "during"})  # the same id, retried
    assert ack["seq"] == 2
    got = [await other.next_event("chat", timeout=20) for _ in range(2)]
    assert [(e["seq"], e["data"]) for e in got] == [(1, "before"), (2, "during")]
    await client.close()
    await other.close()


async def test_status_says_which_log_a_server_uses(two):
    from tornado.httpclient import AsyncHTTPClient

    reply = await AsyncHTTPClient().fetch(f"http://{two[0].url}/status", request_timeout=10)
    status = json.loads(reply.body)
    assert status["log"] == "redis" and status["rooms"] == {"chat": 0}


async def until_presence(client, check, timeout=15):
    while True:
        message = await client.next_message(timeout=timeout)
        if message["type"] == "presence" and check(message):
            return message


async def test_presence_across_both_servers_and_a_dead_servers_members_go(two):
    a, b = two
    alice = await ControlClient.connect(a.url, client="alice", timeout=10)
    await alice.join("chat")
    bob = await ControlClient.connect(b.url, client="bob", timeout=10)
    await bob.join("chat")
    both = [{"user": "alice", "connections": 1}, {"user": "bob", "connections": 1}]
    await until_presence(alice, lambda m: m["members"] == both)  # bob is on the other server
    await until_presence(bob, lambda m: m["members"] == both)
    await b.kill()  # server B dies without a word: its heartbeat runs out (1.5 s)
    gone = await until_presence(alice, lambda m: "bob" in m["left"])
    assert gone["members"] == [{"user": "alice", "connections": 1}]
    await alice.close()
