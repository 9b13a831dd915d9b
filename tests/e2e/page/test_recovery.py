"""The control page loses its connection and loses nothing: resume and outbox.

Like :class:`wsdemo.client.reconnect.ReconnectingClient`, the page remembers the last
seq it applied and sends it in ``hello.resume`` when it comes back; the server
replays what was missed, and the page shows each event once. Every set keeps
its id until acknowledged and is sent again with that id after a reconnect,
so a set made while away, or one whose ack was lost, takes effect once.

Two ways to keep the page away on purpose, with no sleeps: the browser is put
offline (its reconnect attempts fail until it is back online, and the
"online" event brings it back at once), or its WebSocket is routed through
Playwright, which drops one ack and cuts the connection.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest_asyncio

from tests.e2e.page.conftest import PAGE_MARKS, ROOM, WAIT_MS, WAIT_S, expect
from wsdemo import ControlClient, ControlServer
from wsdemo.stores.sqlite import SQLiteEventLog

pytestmark = PAGE_MARKS  # one loop and one Chromium per module (tests/e2e/page/conftest.py)



def serve(port: int, widgets: dict[str, Any], path: Path) -> ControlServer:
    """A control server with the demo controls, its events in the SQLite file ``path``."""
    srv = ControlServer(port=port, hello_timeout=2.0, log=SQLiteEventLog(path))
    for name, widget in widgets.items():
        srv.expose(name, widget)
    return srv.start()


@pytest_asyncio.fixture(loop_scope="module")
async def durable(demo_widgets, tmp_path):
    """``(server, watcher)``: a server on a SQLite log, and a client in its room."""
    srv = serve(0, demo_widgets, tmp_path / "events.sqlite")
    try:
        watcher = await ControlClient.connect(srv.ws_url, client="watcher")
        try:
            await watcher.join(ROOM)
            yield srv, watcher
        finally:
            await watcher.close()
    finally:
        await srv.stop()


def control(page, target: str):
    return page.locator(f'[data-target="{target}"]')


async def open_live(page, url: str) -> None:
    await page.goto(url)
    await expect(page.locator("#app")).to_have_attribute("data-state", "live", timeout=WAIT_MS)


async def page_has_seen(page, seq: int) -> None:
    await page.wait_for_function(
        "seq => Number(document.getElementById('app').dataset.seq) >= seq", arg=seq,
        timeout=WAIT_MS)


async def logged_seqs(page) -> list[int]:
    """The seq of every event line in the page's log, oldest first."""
    seqs = await page.locator("#log li.event").evaluate_all(
        "items => items.map(i => Number(i.dataset.seq))")
    return seqs[::-1]


async def next_set(client: ControlClient, target: str, *, sender: str | None = None
                   ) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        event = await client.next_event(ROOM, timeout=max(0.01, deadline - loop.time()))
        data = event.get("data") or {}
        if data.get("target") == target and sender in (None, event["from"]):
            return event


async def test_page_resumes_across_a_restart_and_sends_what_waited(page, demo_widgets,
                                                                   tmp_path):
    db = tmp_path / "events.sqlite"
    first = serve(0, demo_widgets, db)
    second = client = None
    app = page.locator("#app")
    try:
        await open_live(page, first.url)
        # Some history, seen live: seq 1 from the page, seq 2 from the kernel.
        await control(page, "speed").focus()
        await page.keyboard.press("ArrowRight")
        demo_widgets["gain"].value = 0.25
        await page_has_seen(page, 2)
        assert await logged_seqs(page) == [1, 2]

        # The page goes away: offline, so it cannot come back before we say so.
        await page.context.set_offline(True)
        await first.stop()
        await expect(app).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)

        # A change made while away waits in the outbox, and says so.
        await control(page, "running").check()
        await expect(page.locator("#pending")).to_have_text("running=true")
        await expect(app).to_have_attribute("data-pending", "1")
        await expect(page.locator('[data-control="running"]')).to_have_attribute(
            "data-pending", "")

        # A new server on the same port and the same file; the room moves on.
        second = serve(first.port, demo_widgets, db)
        client = await ControlClient.connect(second.ws_url, client="python")
        await client.join(ROOM)
        missed = [(await client.set(ROOM, "speed", 8))["seq"],
                  (await client.set(ROOM, "mode", "hold"))["seq"],
                  (await client.set(ROOM, "label", "while away"))["seq"]]
        demo_widgets["colour"].value = "#ff8800"
        missed.append((await next_set(client, "colour"))["seq"])
        assert missed == [3, 4, 5, 6]  # the file kept the count

        # Back online: the page resumes from seq 2 at once (no backoff to sit out).
        await page.context.set_offline(False)
        await expect(app).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        history = await page.evaluate("wsdemo.history()")
        assert history[-3:] == ["connecting", "resuming", "live"], history

        # Then the queued change, once, from the new session.
        session = await app.get_attribute("data-session")
        sent = await next_set(client, "running", sender=session)
        assert sent["seq"] == 7 and demo_widgets["running"].value is True
        await page_has_seen(page, 7)

        # Every event shown exactly once, in order; the missed ones marked as replayed.
        assert await logged_seqs(page) == [1, 2, 3, 4, 5, 6, 7]
        replayed = await page.locator("#log li.replayed").evaluate_all(
            "items => items.map(i => Number(i.dataset.seq))")
        assert sorted(replayed) == missed
        await expect(page.locator("#log li.conn").filter(has_text="resumed at")).to_contain_text(
            "resumed at seq 6: 4 missed events replayed")
        await expect(app).to_have_attribute("data-seq", "7")
        await expect(page.locator("#seq")).to_have_text("7")
        await expect(page.locator("#pending")).to_have_text("none")
        await expect(control(page, "speed")).to_have_value("8")
        await expect(control(page, "mode").locator("option:checked")).to_have_text("hold")
        await expect(control(page, "label")).to_have_value("while away")
        await expect(control(page, "colour")).to_have_value("#ff8800")
        await expect(control(page, "running")).to_be_checked()
        assert (await page.evaluate("wsdemo.stats()"))["duplicatesDropped"] == 0
        runs = [e for e in await second.log.read_after(ROOM, 0)
                if e.data["target"] == "running"]
        assert len(runs) == 1
    finally:
        if client is not None:
            await client.close()
        await first.stop()
        if second is not None:
            await second.stop()


async def test_a_set_whose_ack_was_lost_is_applied_once(page, durable, demo_widgets):
    """The set reaches the server, its ack does not: the retry is recognised."""
    server, watcher = durable
    from_page: list[dict[str, Any]] = []
    connections: list[Any] = []
    doubled = {"events": 0}

    def route(ws) -> None:
        # Every connection of the page goes through here. The first one dies
        # with the first ack (nothing after it reaches the page); the next ones
        # deliver every event twice, as a misbehaving proxy might.
        first = not connections
        connections.append(ws)
        upstream = ws.connect_to_server()
        dead = False

        def page_sent(message: str) -> None:
            from_page.append(json.loads(message))
            upstream.send(message)

        def server_sent(message: str) -> None:
            nonlocal dead
            if dead:
                return
            kind = json.loads(message)["type"]
            if first and kind == "ack":
                dead = True  # the ack is lost with the connection, as when a network drops
                asyncio.ensure_future(ws.close(code=1001, reason="cut by the test"))
                asyncio.ensure_future(upstream.close())
                return
            ws.send(message)
            if not first and kind == "event":
                ws.send(message)
                doubled["events"] += 1

        ws.on_message(page_sent)
        upstream.on_message(server_sent)

    await page.route_web_socket("**/ws", route)
    await open_live(page, server.url)
    app = page.locator("#app")
    first_session = await app.get_attribute("data-session")

    await control(page, "speed").focus()
    await page.keyboard.press("ArrowRight")

    # Applied (the watcher sees it) though the page never heard its ack.
    event = await next_set(watcher, "speed", sender=first_session)
    assert event["data"]["value"] == 6 == demo_widgets["speed"].value
    await expect(page.locator("#log li.conn").filter(has_text="cut by the test")).to_have_count(
        1, timeout=WAIT_MS)

    # The page comes back, resumes (the replay brings the event of its own set),
    # sends the set again with the same id, and the server answers "duplicate".
    await expect(page.locator("#log li.conn").first).to_contain_text(
        f"speed=6 was already applied at seq {event['seq']}", timeout=WAIT_MS)
    await expect(app).to_have_attribute("data-state", "live")
    await expect(page.locator("#pending")).to_have_text("none")
    await expect(page.locator('[data-control="speed"]')).not_to_have_attribute(
        "data-pending", "")
    await expect(control(page, "speed")).to_have_value("6")

    sets = [m for m in from_page if m["type"] == "set"]
    assert [(m["id"], m["value"]) for m in sets] == [(event["id"], 6)] * 2
    hellos = [m for m in from_page if m["type"] == "hello"]
    assert "resume" not in hellos[0] and hellos[1]["resume"] == {ROOM: event["seq"] - 1}
    # Once in the log, once in the page's log, once at the widget.
    speeds = [e for e in await server.log.read_after(ROOM, 0) if e.data["target"] == "speed"]
    assert len(speeds) == 1
    await expect(page.locator(f'#log li.event[data-seq="{event["seq"]}"]')).to_have_count(1)
    assert demo_widgets["speed"].value == 6

    # And the next change goes out once, as usual.
    await page.keyboard.press("ArrowRight")
    event = await next_set(watcher, "speed", sender=await app.get_attribute("data-session"))
    assert event["data"]["value"] == 7 == demo_widgets["speed"].value
    await page_has_seen(page, event["seq"])
    assert await logged_seqs(page) == [1, 2]
    # Each event came twice on the second connection and was shown once.
    assert len(connections) == 2 and doubled["events"] == 2
    assert (await page.evaluate("wsdemo.stats()"))["duplicatesDropped"] == 2
