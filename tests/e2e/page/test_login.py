"""The control page against a server that wants a login (``JWTAccess``).

The page connects, is refused with 4401, shows its login form, posts the
credentials to ``POST /token`` and sends the token in ``hello``. These tests
check that flow in Debian's Chromium, and that the token stays out of every
place it could leak from (the URL, storage, cookies, the DOM); that a user who
may only read is refused (4403) when they try to set; and that a token which
expires while the page is live brings the form back, after which the page
resumes where it was and sends what waited in its outbox.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest_asyncio

from tests.e2e.page.conftest import PAGE_MARKS, ROOM, WAIT_MS, WAIT_S, expect
from wsdemo import ControlClient, ControlServer
from wsdemo.auth import JWTAccess, KeyRing

pytestmark = PAGE_MARKS  # one loop and one Chromium per module (tests/e2e/page/conftest.py)

PASSWORDS = {"ada": "correct horse", "rita": "read only"}


@pytest_asyncio.fixture(loop_scope="module")
async def secured(demo_widgets):
    """``(server, access)``: the demo controls behind JWT logins.

    ada may read and set the controls; rita may only read them.
    """
    access = JWTAccess(KeyRing.generate("k1"))
    access.add_user("ada", PASSWORDS["ada"], {ROOM: ["read", "set"], "chat": ["read"]})
    access.add_user("rita", PASSWORDS["rita"], {ROOM: ["read"]})
    srv = ControlServer(port=0, hello_timeout=2.0, access=access)
    for name, widget in demo_widgets.items():
        srv.expose(name, widget)
    srv.start()
    try:
        yield srv, access
    finally:
        await srv.stop()


async def watcher(srv: ControlServer, access: JWTAccess) -> ControlClient:
    token = access.issue_token("watcher", {ROOM: ["read", "set"]}, ttl=600)
    client = await ControlClient.connect(srv.ws_url, client="watcher", token=token)
    await client.join(ROOM)
    return client


def control(page, target: str):
    return page.locator(f'[data-target="{target}"]')


async def next_set(client: ControlClient, target: str, *, sender: str | None = None
                   ) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        event = await client.next_event(ROOM, timeout=max(0.01, deadline - loop.time()))
        data = event.get("data") or {}
        if data.get("target") == target and sender in (None, event["from"]):
            return event


async def log_in(page, user: str, password: str) -> dict[str, Any]:
    """Fill the form and submit it; returns the endpoint's JSON answer."""
    await page.get_by_label("user", exact=True).fill(user)
    await page.get_by_label("password", exact=True).fill(password)
    async with page.expect_response("**/token", timeout=WAIT_MS) as answer:
        await page.get_by_label("password", exact=True).press("Enter")
    response = await answer.value
    return {"status": response.status, **(await response.json())}


# --- logging in ----------------------------------------------------------------------


async def test_login_form_gets_a_token_and_keeps_it_out_of_sight(page, secured, demo_widgets):
    srv, access = secured
    client = await watcher(srv, access)
    sent: list[str] = []  # every frame the page sends, to find the token in hello
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload)))
    app = page.locator("#app")

    await page.goto(srv.url)
    # Refused for want of a token: the form, not a retry loop.
    await expect(app).to_have_attribute("data-state", "login", timeout=WAIT_MS)
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#login-why")).to_have_text("This server needs a login.")
    await expect(page.locator("#log li.conn").first).to_contain_text(
        "closed 4401 bad token: no token")
    await expect(page.get_by_label("user", exact=True)).to_be_focused()

    # A wrong password: the endpoint's error, the field emptied, still no connection.
    bad = await log_in(page, "ada", "wrong")
    assert bad == {"status": 401, "error": "wrong user or password"}
    await expect(page.locator("#login-error")).to_have_text("wrong user or password")
    await expect(page.get_by_label("password", exact=True)).to_have_value("")
    await expect(page.get_by_label("password", exact=True)).to_be_focused()
    await expect(app).to_have_attribute("data-state", "login")

    # The right one: live as ada.
    async with page.expect_request("**/token") as posted:
        good = await log_in(page, "ada", PASSWORDS["ada"])
    request = await posted.value
    token = good["token"]
    assert good["status"] == 200 and good["user"] == "ada"
    # The credentials went as a JSON body to the server's own endpoint, never in a URL.
    assert request.method == "POST" and request.url == srv.url + "token"
    assert request.post_data_json == {"user": "ada", "password": PASSWORDS["ada"]}
    await expect(app).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    await expect(page.locator("#login")).to_be_hidden()
    await expect(page.locator("#user")).to_have_text("ada")
    await expect(page.locator("#logout")).to_be_visible()
    await expect(page.locator("#members li")).to_have_text(["ada", "watcher"], timeout=WAIT_MS)

    # The token travelled in hello, and only there.
    hellos = [json.loads(f) for f in sent if '"hello"' in f]
    assert "token" not in hellos[0] and hellos[-1]["token"] == token
    assert [json.loads(f)["type"] for f in sent if token in f] == ["hello"]
    # ...and is nowhere else a script, another tab or a screenshot could find it.
    assert token not in page.url
    kept = await page.evaluate("""() => JSON.stringify([
        Object.entries(localStorage), Object.entries(sessionStorage), document.cookie,
        document.documentElement.outerHTML])""")
    assert token not in kept
    assert PASSWORDS["ada"] not in kept
    assert all(token not in c["value"] for c in await page.context.cookies())
    await expect(page.get_by_label("password", exact=True)).to_have_value("")

    # And it works: ada moves the slider, the widget follows.
    await control(page, "speed").focus()
    await page.keyboard.press("ArrowRight")
    session = await app.get_attribute("data-session")
    event = await next_set(client, "speed", sender=session)
    assert event["data"]["value"] == 6 == demo_widgets["speed"].value

    # Logging out forgets the token and asks again.
    await page.locator("#logout").click()
    await expect(app).to_have_attribute("data-state", "login", timeout=WAIT_MS)
    await expect(page.locator("#user")).to_have_text("–")
    await expect(page.locator("#members li")).to_have_text(["unknown while disconnected"])


async def test_a_reader_who_sets_is_refused_with_4403(page, secured, demo_widgets):
    srv, access = secured
    app = page.locator("#app")
    await page.goto(srv.url)
    await expect(app).to_have_attribute("data-state", "login", timeout=WAIT_MS)
    assert (await log_in(page, "rita", PASSWORDS["rita"]))["status"] == 200
    await expect(app).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    await expect(page.locator("#user")).to_have_text("rita")
    await expect(control(page, "speed")).to_have_value("5")  # reading is allowed

    await control(page, "speed").focus()
    await page.keyboard.press("ArrowRight")

    # The server closes with 4403; the page says why, drops the refused set
    # and does not retry on its own (the next try would be refused too).
    await expect(app).to_have_attribute("data-state", "closed", timeout=WAIT_MS)
    await expect(page.locator("#status")).to_contain_text(
        "4403 forbidden: rita may not set in 'controls'")
    await expect(page.locator('[data-control="speed"] .control-error')).to_contain_text(
        "not applied: 4403 forbidden")
    await expect(control(page, "speed")).to_have_value("5")
    await expect(page.locator("#pending")).to_have_text("none")
    await expect(page.locator("#reconnect")).to_be_visible()
    await expect(page.locator("#login")).to_be_hidden()
    assert demo_widgets["speed"].value == 5
    assert srv.clients() == []


async def test_an_expired_token_brings_the_form_back_and_the_page_resumes(
        page, secured, demo_widgets):
    srv, access = secured
    client = await watcher(srv, access)
    app = page.locator("#app")
    await page.goto(srv.url)
    await expect(app).to_have_attribute("data-state", "login", timeout=WAIT_MS)

    # Tokens from the endpoint now live 1-2 s (whole seconds, from a whole-second iat).
    access.ttl, access.leeway = 2, 0
    assert (await log_in(page, "ada", PASSWORDS["ada"]))["status"] == 200
    await expect(app).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    ack = await client.set(ROOM, "mode", "sweep")
    await expect(app).to_have_attribute("data-seq", str(ack["seq"]), timeout=WAIT_MS)

    # The server ends the connection when the token expires: the form is back,
    # with the user's name kept and the password to type again.
    await expect(app).to_have_attribute("data-state", "login", timeout=WAIT_MS)
    await expect(page.locator("#login-why")).to_contain_text("Your login has expired")
    await expect(page.locator("#log li.conn").first).to_contain_text(
        "closed 4401 bad token: token expired")
    await expect(page.get_by_label("user", exact=True)).to_have_value("ada")
    await expect(page.get_by_label("password", exact=True)).to_be_focused()

    # Meanwhile the room moves on, and the user changes a control: it waits.
    missed = await client.set(ROOM, "speed", 2)
    await control(page, "gain").focus()
    await page.keyboard.press("ArrowRight")
    await expect(page.locator("#pending")).to_have_text("gain=0.55")
    await expect(page.locator('[data-control="gain"]')).to_have_attribute("data-pending", "")

    access.ttl = 600
    assert (await log_in(page, "ada", PASSWORDS["ada"]))["status"] == 200
    await expect(app).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    assert (await page.evaluate("wsdemo.history()"))[-5:] == [
        "live", "login", "connecting", "resuming", "live"]

    # Resumed, not joined afresh: the missed event is in the log once, and the
    # queued change went out once, from the new session.
    event = await next_set(client, "gain", sender=await app.get_attribute("data-session"))
    assert event["data"]["value"] == 0.55 == demo_widgets["gain"].value
    await expect(app).to_have_attribute("data-seq", str(event["seq"]), timeout=WAIT_MS)
    await expect(page.locator(f'#log li.event[data-seq="{missed["seq"]}"]')).to_have_count(1)
    await expect(page.locator("#log li.replayed")).to_have_count(1)
    await expect(control(page, "speed")).to_have_value("2")
    await expect(page.locator("#pending")).to_have_text("none")
    gains = [e for e in await srv.log.read_after(ROOM, 0) if e.data["target"] == "gain"]
    assert len(gains) == 1
