"""The control page end to end: Debian's Chromium (Playwright) against a real server.

Each test drives the page the way a person would (keyboard, mouse, fill) and
checks the other side through Python: the ipywidget itself, and a
:class:`ControlClient` in the same room. Waits are bounded; where Python waits
for the page, it waits for the event the page caused, not for time to pass.
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import Any

import pytest
import pytest_asyncio
import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

from tests.e2e.page.conftest import PAGE_MARKS, ROOM, WAIT_MS, WAIT_S, expect
from wsdemo import ControlClient, ControlServer

pytestmark = PAGE_MARKS  # one loop and one Chromium per module (tests/e2e/page/conftest.py)



# --- fixtures ------------------------------------------------------------------


# --- helpers -------------------------------------------------------------------


async def open_live(page, url: str) -> None:
    await page.goto(url)
    await expect(page.locator("#app")).to_have_attribute("data-state", "live", timeout=WAIT_MS)


def control(page, target: str):
    return page.locator(f'[data-target="{target}"]')


async def page_session(page) -> str:
    return await page.locator("#app").get_attribute("data-session")


async def next_set(client: ControlClient, target: str, *, sender: str | None = None,
                   timeout: float = WAIT_S) -> dict[str, Any]:
    """The next ``set`` event on ``target`` (from ``sender``, if given) that ``client`` gets."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"no set of {target!r} from {sender or 'anyone'} in {timeout:g} s")
        event = await client.next_event(ROOM, timeout=remaining)
        data = event.get("data") or {}
        if event["kind"] == "set" and data.get("target") == target and (
            sender is None or event["from"] == sender
        ):
            return event


async def page_has_seen(page, seq: int) -> None:
    """Wait until the page has processed every event up to ``seq``."""
    await page.wait_for_function(
        "seq => Number(document.getElementById('app').dataset.seq) >= seq", arg=seq,
        timeout=WAIT_MS,
    )


async def watcher(connect) -> ControlClient:
    client = await connect("watcher")
    await client.join(ROOM)
    return client


# --- drawing and state ---------------------------------------------------------


@pytest.mark.parametrize("path", ["", "index.html"])
async def test_page_draws_every_control_from_the_snapshot(page, server, path):
    await open_live(page, server.url + path)

    rows = page.locator("[data-control]")
    await expect(rows).to_have_count(6, timeout=WAIT_MS)
    assert await rows.evaluate_all("rs => rs.map(r => r.dataset.control)") == [
        "speed", "gain", "running", "mode", "label", "colour"]
    kinds = {"speed": "range", "gain": "range", "running": "checkbox", "label": "text",
             "colour": "color"}
    for target, kind in kinds.items():
        assert await control(page, target).get_attribute("type") == kind
    assert await control(page, "mode").evaluate("e => e.tagName") == "SELECT"
    speed = control(page, "speed")
    assert [await speed.get_attribute(a) for a in ("min", "max", "step")] == ["0", "10", "1"]
    assert await control(page, "gain").get_attribute("step") == "0.05"

    await expect(speed).to_have_value("5")
    await expect(page.locator('[data-readout="speed"]')).to_have_value("5")
    await expect(control(page, "gain")).to_have_value("0.5")
    await expect(control(page, "running")).not_to_be_checked()
    await expect(control(page, "mode")).to_have_value("0")  # the index of "idle"
    await expect(control(page, "mode").locator("option:checked")).to_have_text("idle")
    await expect(control(page, "label")).to_have_value("hello")
    await expect(control(page, "colour")).to_have_value("#1f77b4")

    # Every control is labelled (a click on the label text reaches the input).
    await expect(page.get_by_label("speed", exact=True)).to_have_attribute("data-target", "speed")
    await expect(page.get_by_label("colour", exact=True)).to_have_attribute("data-target", "colour")

    app = page.locator("#app")
    await expect(app).to_have_attribute("data-seq", "0")
    await expect(page.locator("#seq")).to_have_text("0")
    await expect(app).to_have_attribute("data-session", "s1")
    await expect(page.locator("#session")).to_have_text("s1")
    await expect(page.locator("#endpoint")).to_have_text(server.ws_url)
    await expect(page.locator("#members li")).to_have_text(["page"])
    await expect(control(page, "label")).to_be_enabled()
    # Open mode: no login form; the user is only the name the page claimed.
    await expect(page.locator("#login")).to_be_hidden()
    await expect(page.locator("#user")).to_have_text("page")
    await expect(page.locator("#logout")).to_be_hidden()
    await expect(page.locator("#pending")).to_have_text("none")


# --- both ways ---------------------------------------------------------------------


async def test_moving_a_slider_in_the_page_changes_the_widget(page, server, demo_widgets,
                                                              connect):
    client = await watcher(connect)
    await open_live(page, server.url)
    session = await page_session(page)

    await control(page, "speed").focus()
    await page.keyboard.press("ArrowRight")

    event = await next_set(client, "speed", sender=session)
    assert event["data"]["value"] == 6
    assert demo_widgets["speed"].value == 6  # applied before the event went out
    await expect(page.locator("#app")).to_have_attribute("data-seq", str(event["seq"]))
    await expect(page.locator("#log li.event").first).to_contain_text(
        f"#{event['seq']} {session} (you) speed=6")


async def test_a_change_in_the_notebook_moves_the_page(page, server, demo_widgets):
    await open_live(page, server.url)

    demo_widgets["speed"].value = 3
    demo_widgets["gain"].value = 0.25

    await expect(control(page, "speed")).to_have_value("3", timeout=WAIT_MS)
    await expect(page.locator('[data-readout="speed"]')).to_have_value("3")
    await expect(control(page, "gain")).to_have_value("0.25", timeout=WAIT_MS)
    await expect(page.locator("#log li.event").first).to_contain_text("kernel gain=0.25")


async def test_page_python_client_and_widget_stay_in_step(page, server, demo_widgets, connect):
    client = await watcher(connect)
    await open_live(page, server.url)
    session = await page_session(page)
    await expect(page.locator("#members li")).to_have_text(["page", "watcher"],
                                                           timeout=WAIT_MS)

    # Python → page, for every kind of control.
    for target, value in [("speed", 8), ("gain", 0.75), ("running", True), ("mode", "hold"),
                          ("label", "from python"), ("colour", "#ff8800")]:
        await client.set(ROOM, target, value)
    await expect(control(page, "speed")).to_have_value("8", timeout=WAIT_MS)
    await expect(control(page, "gain")).to_have_value("0.75", timeout=WAIT_MS)
    await expect(control(page, "running")).to_be_checked(timeout=WAIT_MS)
    await expect(control(page, "mode").locator("option:checked")).to_have_text("hold")
    await expect(control(page, "label")).to_have_value("from python", timeout=WAIT_MS)
    await expect(control(page, "colour")).to_have_value("#ff8800", timeout=WAIT_MS)

    # Page → Python, for every kind of control.
    await control(page, "speed").fill("2")
    assert (await next_set(client, "speed", sender=session))["data"]["value"] == 2
    await control(page, "gain").fill("0.1")
    assert (await next_set(client, "gain", sender=session))["data"]["value"] == 0.1
    await control(page, "running").uncheck()
    assert (await next_set(client, "running", sender=session))["data"]["value"] is False
    await control(page, "mode").select_option(label="sweep")
    assert (await next_set(client, "mode", sender=session))["data"]["value"] == "sweep"
    await control(page, "colour").fill("#00aa44")
    assert (await next_set(client, "colour", sender=session))["data"]["value"] == "#00aa44"
    await control(page, "label").fill("typed in the page")
    await control(page, "label").press("Enter")
    assert (await next_set(client, "label", sender=session))["data"]["value"] == (
        "typed in the page")

    expected = {"speed": 2, "gain": 0.1, "running": False, "mode": "sweep",
                "label": "typed in the page", "colour": "#00aa44"}
    assert {t: w.value for t, w in demo_widgets.items()} == expected
    snapshot = await client.join(ROOM)  # the server's own state agrees
    assert snapshot["state"] == expected


async def test_text_is_sent_on_enter_not_per_keystroke(page, server, demo_widgets, connect):
    client = await watcher(connect)
    await open_live(page, server.url)
    session = await page_session(page)
    label = control(page, "label")

    await label.fill("")
    await label.press_sequentially("abc")
    # Someone else changes the label while this user is typing: the field keeps
    # what the user typed, and nothing was sent for the keystrokes.
    ack = await client.set(ROOM, "label", "meanwhile")
    await page_has_seen(page, ack["seq"])
    await expect(label).to_have_value("abc")
    assert demo_widgets["label"].value == "meanwhile"

    await label.press("Escape")  # give up the edit: the server's value comes back
    await expect(label).to_have_value("meanwhile")

    await label.fill("final")
    await label.press("Enter")
    event = await next_set(client, "label", sender=session)
    assert event["data"]["value"] == "final"
    assert demo_widgets["label"].value == "final"


async def test_the_echo_does_not_fight_a_drag(page, server, demo_widgets, connect):
    client = await watcher(connect)
    await open_live(page, server.url)
    session = await page_session(page)
    speed = control(page, "speed")
    box = await speed.bounding_box()
    y = box["y"] + box["height"] / 2

    # Grab the thumb (at 5 of 0..10, the middle) and drag it to the right.
    await page.mouse.move(box["x"] + box["width"] / 2, y)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.85, y, steps=5)
    dragged = int(await speed.input_value())
    assert dragged > 5
    while (await next_set(client, "speed", sender=session))["data"]["value"] != dragged:
        pass  # the sets on the way there
    assert demo_widgets["speed"].value == dragged

    # Mid-drag, someone else sets the slider: the page sees the event but keeps
    # the thumb where the hand is.
    ack = await client.set(ROOM, "speed", 1)
    await page_has_seen(page, ack["seq"])
    await expect(page.locator("#log li.event").first).to_contain_text("speed=1")
    assert await speed.input_value() == str(dragged)

    # Letting go is the user's last word: it goes to the server, and everyone
    # (widget, Python client, page) ends on it.
    await page.mouse.up()
    event = await next_set(client, "speed", sender=session)
    assert event["data"]["value"] == dragged
    assert demo_widgets["speed"].value == dragged
    await page_has_seen(page, event["seq"])
    await expect(speed).to_have_value(str(dragged))
    await expect(page.locator('[data-control="speed"]')).not_to_have_attribute(
        "data-pending", "")


# --- errors ------------------------------------------------------------------------


async def test_a_refused_value_shows_an_error_and_the_connection_stays_live(
        page, server, demo_widgets, connect):
    client = await watcher(connect)
    await open_live(page, server.url)
    session = await page_session(page)
    row = page.locator('[data-control="speed"]')

    await page.evaluate("wsdemo.set('speed', 99)")

    await expect(row).to_have_attribute("data-error", "", timeout=WAIT_MS)
    await expect(row.locator(".control-error")).to_contain_text(
        "out-of-range: speed: 99 is above the maximum 10")
    await expect(page.locator("#log li.error").first).to_contain_text("out-of-range")
    await expect(control(page, "speed")).to_have_value("5")  # back to the server's value
    assert demo_widgets["speed"].value == 5

    # Typed into the number box: the page does not clamp, the server refuses.
    number = page.locator('[data-readout="speed"]')
    await number.fill("-3")
    await number.press("Enter")
    await expect(row.locator(".control-error")).to_contain_text("below the minimum 0",
                                                                timeout=WAIT_MS)
    await number.blur()
    await expect(number).to_have_value("5")

    # A raw message the page would never send: answered, logged, still live.
    await page.evaluate(
        "wsdemo.send({type: 'set', room: 'controls', id: 'raw-1', target: 'nope', value: 1})")
    await expect(page.locator("#notice")).to_contain_text("unknown-target", timeout=WAIT_MS)
    await expect(page.locator("#log li.error").first).to_contain_text("no control 'nope'")
    await expect(page.locator("#app")).to_have_attribute("data-state", "live")

    # The next good set clears the control's error.
    await control(page, "speed").focus()
    await page.keyboard.press("ArrowLeft")
    assert (await next_set(client, "speed", sender=session))["data"]["value"] == 4
    await expect(row).not_to_have_attribute("data-error", "", timeout=WAIT_MS)
    await expect(row.locator(".control-error")).to_have_text("")


async def test_unknown_room_says_so_and_lists_the_rooms(page, server):
    await page.goto(server.url + "?room=nope")
    notice = page.locator("#notice")
    await expect(notice).to_contain_text("Cannot join room “nope”", timeout=WAIT_MS)
    await expect(notice.locator("a")).to_have_text(["chat", "controls"])
    await notice.get_by_role("link", name="controls").click()
    await page.wait_for_url("**/?room=controls", timeout=WAIT_MS)
    await expect(page.locator("#app")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    await expect(page.locator("[data-control]")).to_have_count(6)


async def test_a_room_without_controls_shows_its_events(page, server, connect):
    await open_live(page, server.url + "?room=chat")
    await expect(page.locator("#notice")).to_contain_text("no controls")
    client = await connect("chatter")
    await client.join("chat")
    ack = await client.publish("chat", {"text": "hi"})
    await expect(page.locator("#log li.event").first).to_contain_text(
        f'#{ack["seq"]} {client.session} {{"text":"hi"}}', timeout=WAIT_MS)


# --- reconnecting ------------------------------------------------------------------


def _serve_demo(port: int, widgets: dict[str, Any]) -> ControlServer:
    srv = ControlServer(port=port, hello_timeout=2.0)
    for name, widget in widgets.items():
        srv.expose(name, widget)
    srv.add_room("chat")
    return srv.start()


async def test_page_reconnects_by_itself_after_a_restart(page, demo_widgets):
    first = _serve_demo(0, demo_widgets)
    second = None
    try:
        await open_live(page, first.url)
        demo_widgets["gain"].value = 0.75  # seq 1 of the first server's (memory) log
        await page_has_seen(page, 1)
        await first.stop()  # closes every client with 1001
        app = page.locator("#app")
        await expect(app).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
        await expect(page.locator("#status-text")).to_contain_text("reconnecting in")
        await expect(page.locator("#log li.conn").first).to_contain_text(
            "closed 1001 going away: server stopping")
        # Still usable: a change made now would wait in the outbox (test_page_recovery).
        await expect(control(page, "speed")).to_be_enabled()
        await expect(page.locator("#members li")).to_have_text(["unknown while disconnected"])

        demo_widgets["speed"].value = 9  # changed while no server was watching
        second = _serve_demo(first.port, demo_widgets)
        await expect(app).to_have_attribute("data-state", "live", timeout=10_000)
        # The page resumed from seq 1; a new memory log holds nothing past 0, so
        # the server answered with a snapshot (complete: false), not a replay.
        assert (await page.evaluate("wsdemo.history()"))[-2:] == ["resuming", "live"]
        await expect(page.locator("#log li.conn").nth(1)).to_contain_text(
            "the log no longer holds all that was missed: state at seq 0")
        await expect(control(page, "speed")).to_have_value("9")
        await expect(control(page, "gain")).to_have_value("0.75")
        await expect(app).to_have_attribute("data-seq", "0")  # a new server, a new log
        await expect(page.locator("#members li")).to_have_text(["page"])

        # And it works both ways on the new connection.
        client = await ControlClient.connect(second.ws_url, client="watcher")
        try:
            await client.join(ROOM)
            await control(page, "speed").focus()
            await page.keyboard.press("ArrowLeft")
            event = await next_set(client, "speed", sender=await page_session(page))
            assert event["data"]["value"] == 8 == demo_widgets["speed"].value
        finally:
            await client.close()
    finally:
        await first.stop()
        if second is not None:
            await second.stop()


class _ClosingSession(tornado.websocket.WebSocketHandler):
    """Accepts wsdemo.v1, then closes at once with the code under test."""

    def initialize(self, code: int, opened: list[int], second_open: asyncio.Event) -> None:
        self.code = code
        self.opened = opened
        self.second_open = second_open

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return "wsdemo.v1" if "wsdemo.v1" in subprotocols else None

    def open(self) -> None:
        self.opened.append(1)
        if len(self.opened) >= 2:
            self.second_open.set()
        self.close(self.code, "test says so")


class _Page(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(resources.files("wsdemo.server").joinpath("static/index.html").read_bytes())


def _listen(app: tornado.web.Application) -> tuple[tornado.httpserver.HTTPServer, int]:
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    http = tornado.httpserver.HTTPServer(app)
    http.add_sockets(sockets)
    return http, sockets[0].getsockname()[1]


RETRY_AFTER = {4401: False, 4403: False, 1008: False, 1011: True, 1013: True, 4408: True}


async def test_close_codes_decide_whether_to_retry(browser):
    """Refused credentials or origin: stay closed. A fault or overload: come back."""
    for code, retries in RETRY_AFTER.items():
        opened: list[int] = []
        second_open = asyncio.Event()
        app = tornado.web.Application([
            (r"/", _Page),
            (r"/ws", _ClosingSession,
             {"code": code, "opened": opened, "second_open": second_open}),
        ])
        http, port = _listen(app)
        context = await browser.new_context()
        try:
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
            await page.goto(f"http://127.0.0.1:{port}/")
            log = page.locator("#log li.conn").first
            await expect(log).to_contain_text(f"closed {code}", timeout=WAIT_MS)
            if retries:
                await asyncio.wait_for(second_open.wait(), WAIT_S)  # back by itself
            elif code == 4401:
                # A refused token: ask for a login (test_page_login), do not retry.
                await expect(page.locator("#app")).to_have_attribute("data-state", "login")
                await expect(page.locator("#login")).to_be_visible()
                await expect(page.locator("#login-why")).to_contain_text("test says so")
                assert len(opened) == 1, code
            else:
                app_state = page.locator("#app")
                await expect(app_state).to_have_attribute("data-state", "closed")
                await expect(page.locator("#status")).to_contain_text(f"{code}")
                await expect(page.locator("#reconnect")).to_be_visible()
                await expect(page.locator("#login")).to_be_hidden()
                assert len(opened) == 1, code  # no retry timer was set
            assert not errors, f"JavaScript errors on the page: {errors}"
        finally:
            await context.close()
            http.stop()


# --- behind a path prefix (jupyter-server-proxy) -----------------------------------


class _PrefixProxy(tornado.websocket.WebSocketHandler):
    """``[/user/NAME]/proxy/PORT/rest`` → ``127.0.0.1:PORT/rest``, HTTP GET and WebSocket.

    Modelled on jupyter-server-proxy: ``/proxy/PORT`` (no slash) is served as
    ``/`` without a redirect, one route takes both plain requests and upgrades,
    and the browser's ``Host`` and ``Origin`` go upstream unchanged (its
    ``proxy_request_headers`` copies the request's headers).
    """

    upstream: tornado.websocket.WebSocketClientConnection | None = None
    subprotocols: list[str] = []

    async def get(self, port: str, rest: str) -> None:
        self.target = f"127.0.0.1:{port}{rest or '/'}"
        if self.request.headers.get("Upgrade", "").lower() == "websocket":
            await super().get(port, rest)
            return
        response = await tornado.httpclient.AsyncHTTPClient().fetch(
            f"http://{self.target}", raise_error=False,
            headers={"Host": self.request.headers["Host"]})
        self.set_status(response.code)
        for name in ("Content-Type", "Cache-Control"):
            if name in response.headers:
                self.set_header(name, response.headers[name])
        self.finish(response.body)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        self.subprotocols = subprotocols
        return subprotocols[0] if subprotocols else None

    async def open(self, port: str, rest: str) -> None:
        headers = {"Host": self.request.headers["Host"]}
        if "Origin" in self.request.headers:
            headers["Origin"] = self.request.headers["Origin"]
        request = tornado.httpclient.HTTPRequest(f"ws://{self.target}", headers=headers)
        try:
            self.upstream = await tornado.websocket.websocket_connect(
                request, subprotocols=self.subprotocols)
        except Exception:
            self.close(1011, "upstream unreachable")
            return
        asyncio.ensure_future(self._pump(self.upstream))

    async def _pump(self, upstream: tornado.websocket.WebSocketClientConnection) -> None:
        while (message := await upstream.read_message()) is not None:
            try:
                await self.write_message(message)
            except tornado.websocket.WebSocketClosedError:
                return
        self.close(upstream.close_code or 1011, upstream.close_reason or "")

    async def on_message(self, message: str | bytes) -> None:
        if self.upstream is not None:
            await self.upstream.write_message(message)

    def on_close(self) -> None:
        if self.upstream is not None:
            self.upstream.close()


@pytest_asyncio.fixture(loop_scope="module")
async def prefix_proxy():
    app = tornado.web.Application([(r"(?:/user/[^/]+)?/proxy/(\d+)(/.*)?", _PrefixProxy)])
    http, port = _listen(app)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        http.stop()


@pytest.mark.parametrize(
    "path", ["/proxy/{port}", "/proxy/{port}/", "/proxy/{port}/index.html",
             "/user/ada/proxy/{port}/"])
async def test_page_works_behind_a_proxy_prefix(page, server, demo_widgets, connect,
                                                prefix_proxy, path):
    client = await watcher(connect)
    path = path.format(port=server.port)
    prefix = path.removesuffix("index.html").rstrip("/")

    await open_live(page, prefix_proxy + path)

    ws_url = prefix_proxy.replace("http:", "ws:") + prefix + "/ws"
    assert await page.evaluate("wsdemo.url") == ws_url
    await expect(page.locator("#endpoint")).to_have_text(ws_url)
    await expect(page.locator("[data-control]")).to_have_count(6)
    await control(page, "speed").focus()
    await page.keyboard.press("ArrowRight")
    event = await next_set(client, "speed", sender=await page_session(page))
    assert event["data"]["value"] == 6 == demo_widgets["speed"].value
    demo_widgets["mode"].value = "hold"
    await expect(control(page, "mode").locator("option:checked")).to_have_text(
        "hold", timeout=WAIT_MS)


SOCKET_URLS = {
    # jupyter-server-proxy under a hub, with and without the slash
    "https://hub.example/user/ada/proxy/8765/": "wss://hub.example/user/ada/proxy/8765/ws",
    "https://hub.example/user/ada/proxy/8765": "wss://hub.example/user/ada/proxy/8765/ws",
    "http://h/proxy/9000/index.html": "ws://h/proxy/9000/ws",
    "http://h/user/proxy/proxy/9000/": "ws://h/user/proxy/proxy/9000/ws",  # a user named proxy
    # served directly: the page's directory
    "http://127.0.0.1:8765/": "ws://127.0.0.1:8765/ws",
    "http://127.0.0.1:8765/index.html": "ws://127.0.0.1:8765/ws",
    "http://h:8080/tools/wsdemo/index.html": "ws://h:8080/tools/wsdemo/ws",
    "http://h/proxy/90x/": "ws://h/proxy/90x/ws",  # not a port: just a directory
}


async def test_the_socket_url_follows_the_page_location(page, server):
    # Only the rule, fed URLs the browser never visits (no lookup of hub.example).
    await open_live(page, server.url)
    got = await page.evaluate(
        "hrefs => hrefs.map(h => wsdemo.socketUrl(new URL(h)))", list(SOCKET_URLS))
    assert dict(zip(SOCKET_URLS, got, strict=True)) == SOCKET_URLS
    # The login endpoint sits beside the WebSocket: same prefix, same rule
    # (a bare relative "token" would miss the server at /proxy/PORT, no slash).
    got = await page.evaluate(
        "hrefs => hrefs.map(h => wsdemo.tokenUrl(new URL(h)))", list(SOCKET_URLS))
    expected = [ws.replace("ws", "http", 1).removesuffix("/ws") + "/token"
                for ws in SOCKET_URLS.values()]
    assert got == expected
    assert await page.evaluate("wsdemo.loginUrl") == server.url + "token"


async def test_protocol_constants_match_the_page():  # async: the module's asyncio mark
    """The page hard-codes the subprotocol and no-retry codes; keep them in step."""
    from wsdemo.core.protocol import SUBPROTOCOL, CloseCode

    text = resources.files("wsdemo.server").joinpath("static/index.html").read_text()
    assert f'const PROTOCOL = "{SUBPROTOCOL}";' in text
    no_retry = {CloseCode.POLICY_VIOLATION, CloseCode.BAD_TOKEN, CloseCode.FORBIDDEN}
    assert f"new Set({json.dumps(sorted(int(c) for c in no_retry))})" in text
