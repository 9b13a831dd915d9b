"""Two servers on one shared log: every event reaches every member, on either server,
once and in the same seq order (the fan-out a Redis log gives, tested without Redis)."""

import asyncio

import ipywidgets as w
import pytest

from wsdemo import ControlClient, ControlServer
from wsdemo.core.eventlog import MemoryEventLog


class SharedMemoryLog(MemoryEventLog):
    """A memory log that several servers in one process share, with ``follow``."""

    shared = True

    def __init__(self):
        super().__init__()
        self._appended = asyncio.Condition()

    async def append(self, *args):
        appended = self.append_now(*args)
        async with self._appended:
            self._appended.notify_all()
        return appended

    async def follow(self, room, after):
        while True:
            for event in await self.read_after(room, after):
                yield event
                after = event.seq
            async with self._appended:
                if self.last_seq_now(room) <= after:
                    await self._appended.wait()

    async def close(self):  # shared: each server closes its view, not the store
        return None


@pytest.fixture
async def two_servers():
    log = SharedMemoryLog()
    widgets = []
    servers = []
    for _ in range(2):
        srv = ControlServer(port=0, log=log)
        slider = w.IntSlider(value=0, min=0, max=100)
        srv.expose("level", slider)
        srv.add_room("chat")
        widgets.append(slider)
        servers.append(srv.start())
    yield servers, widgets
    for srv in servers:
        await srv.stop()


async def test_events_reach_members_of_both_servers_in_the_same_order(two_servers):
    servers, _ = two_servers
    clients = []
    for i in range(6):
        client = await ControlClient.connect(servers[i % 2].ws_url, client=f"c{i}")
        await client.join("chat")
        clients.append(client)
    await asyncio.gather(*(c.publish("chat", {"from": i, "n": n})
                           for n in range(10) for i, c in enumerate(clients)))
    for client in clients:
        got = [await client.next_event("chat") for _ in range(60)]
        assert [e["seq"] for e in got] == list(range(1, 61))
        with pytest.raises(TimeoutError):
            await client.next_event("chat", timeout=0.2)  # and nothing twice
    orders = {tuple(e["id"] for e in c.received if e["type"] == "event") for c in clients}
    assert len(orders) == 1, "every client saw the same order"
    for client in clients:
        await client.close()


async def test_a_set_on_one_server_moves_the_widget_of_the_other(two_servers):
    servers, widgets = two_servers
    a = await ControlClient.connect(servers[0].ws_url)
    b = await ControlClient.connect(servers[1].ws_url)
    await a.join("controls")
    await b.join("controls")
    await a.set("controls", "level", 42)
    event = await b.next_event("controls")
    assert event["data"] == {"target": "level", "value": 42}
    assert (await a.next_event("controls"))["seq"] == event["seq"] == 1
    assert widgets[0].value == widgets[1].value == 42
    widgets[1].value = 7  # a kernel change on server B reaches A's clients and widget
    event = await a.next_event("controls")
    assert event["from"] == "kernel" and event["data"]["value"] == 7
    await b.next_event("controls")  # B's own client sees it once too
    assert widgets[0].value == 7
    with pytest.raises(TimeoutError):
        await b.next_event("controls", timeout=0.2)
    await a.close()
    await b.close()


async def test_resume_on_the_other_server(two_servers):
    servers, _ = two_servers
    writer = await ControlClient.connect(servers[0].ws_url)
    await writer.join("chat")
    for n in range(5):
        await writer.publish("chat", n)
    back = await ControlClient.connect(servers[1].ws_url, resume={"chat": 2})
    seqs = []
    while True:
        message = await back.next_message()
        if message["type"] == "event":
            seqs.append(message["seq"])
        if message["type"] == "recovered":
            break
    assert seqs == [3, 4, 5] and message["complete"] is True
    await writer.publish("chat", 5)
    assert [(await back.next_event("chat"))["seq"] for _ in range(4)] == [3, 4, 5, 6]
    await writer.close()
    await back.close()
