"""The control page through the real jupyter-server-proxy, as on Binder.

A ``jupyter server`` subprocess (token auth, only the proxy extension loaded,
its own config and runtime dirs) proxies ``/proxy/PORT`` to the control server
running in this test's loop. The page is opened with and without the trailing
slash — the case that breaks a page which takes its WebSocket path from its
own directory.
"""

from __future__ import annotations

import os
import secrets
import sys

import pytest

from tests.support.jupyter import JupyterProcess, loopback_args, private_dirs, write_server_config
from wsdemo import ControlServer
from wsdemo.auth import JWTAccess, KeyRing

try:
    from playwright.async_api import expect
except ImportError:  # the browser fixture skips (or fails, where required) with the reason
    expect = None

pytestmark = pytest.mark.browser

WAIT_MS = 5_000
START_S = 30.0  # jupyter server is up in 1-5 s with one extension; allow a busy shared machine


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    """``(base_url, token)`` of a jupyter server with jupyter-server-proxy, one per module."""
    pytest.importorskip("jupyter_server_proxy")
    tmp = tmp_path_factory.mktemp("jupyter")
    # Only the proxy: JupyterLab and friends would triple the start-up time.
    write_server_config(tmp / "config", {
        "jupyter_server_proxy": True, "jupyterlab": False, "jupyter_lsp": False,
        "notebook_shim": False, "jupyter_server_terminals": False})
    root = tmp / "root"
    root.mkdir()
    token = secrets.token_hex(16)
    server = JupyterProcess(
        [sys.executable, "-m", "jupyter_server", "--allow-root", *loopback_args(token),
         f"--ServerApp.root_dir={root}"],
        env={**os.environ, **private_dirs(tmp)}, name="jupyter server")
    try:
        yield server.wait_listening(START_S), token
    finally:
        server.stop(10)


async def test_page_through_jupyter_server_proxy(browser, server, demo_widgets, connect,
                                                 jupyter):
    base, token = jupyter
    client = await connect("watcher")
    await client.join("controls")
    for speed, mode, slash in [(6, "sweep", ""), (7, "hold", "/")]:
        context = await browser.new_context()
        errors: list[str] = []
        try:
            page = await context.new_page()
            page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
            # ?token= logs the browser in (a cookie), which the WebSocket then carries.
            await page.goto(f"{base}/proxy/{server.port}{slash}?token={token}")
            app = page.locator("#app")
            await expect(app).to_have_attribute("data-state", "live", timeout=WAIT_MS)

            ws_url = f"{base.replace('http:', 'ws:')}/proxy/{server.port}/ws"
            assert await page.evaluate("wsdemo.url") == ws_url, slash
            await page.locator('[data-target="speed"]').focus()
            await page.keyboard.press("ArrowRight")
            session = await app.get_attribute("data-session")
            while (event := await client.next_event("controls", timeout=WAIT_MS / 1000)
                   )["from"] != session:
                pass
            assert event["data"] == {"target": "speed", "value": speed}, slash
            assert demo_widgets["speed"].value == speed

            demo_widgets["mode"].value = mode
            await expect(page.locator('[data-target="mode"] option:checked')).to_have_text(
                mode, timeout=WAIT_MS)
        finally:
            await context.close()
        assert not errors, f"JavaScript errors on the page at /proxy/PORT{slash}: {errors}"


async def test_page_logs_in_through_jupyter_server_proxy(browser, demo_widgets, jupyter):
    """The login form behind the proxy, as on Binder.

    jupyter-server-proxy 4.6 closes the browser's side of the WebSocket without
    the server's close code (the browser sees 1005, never 4401 or 4403), so
    the page finds out otherwise that it needs a login, and gives up a set
    the server keeps refusing. At ``/proxy/PORT`` (no slash) the login goes to
    ``/proxy/PORT/token``, not ``/proxy/token``.
    """
    base, jupyter_token = jupyter
    access = JWTAccess(KeyRing.generate("k1"))
    access.add_user("ada", "correct horse", {"controls": ["read", "set"]})
    access.add_user("rita", "read only", {"controls": ["read"]})
    srv = ControlServer(port=0, hello_timeout=2.0, access=access)
    for name, widget in demo_widgets.items():
        srv.expose(name, widget)
    srv.start()
    context = await browser.new_context()
    errors: list[str] = []
    try:
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # The Jupyter token logs the browser in to Jupyter (a cookie); the
        # control server wants its own login, through the page's form.
        await page.goto(f"{base}/proxy/{srv.port}?token={jupyter_token}")
        app = page.locator("#app")
        await expect(app).to_have_attribute("data-state", "login", timeout=WAIT_MS)
        await expect(page.locator("#log li.conn").first).to_contain_text(
            "closed 1005 closed without a code")
        await expect(page.locator("#login-why")).to_have_text("This server needs a login.")
        assert await page.evaluate("wsdemo.loginUrl") == f"{base}/proxy/{srv.port}/token"

        await page.get_by_label("user", exact=True).fill("ada")
        await page.get_by_label("password", exact=True).fill("correct horse")
        async with page.expect_response("**/token", timeout=WAIT_MS) as answer:
            await page.get_by_label("password", exact=True).press("Enter")
        response = await answer.value
        assert response.url == f"{base}/proxy/{srv.port}/token" and response.ok
        await expect(app).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        await expect(page.locator("#user")).to_have_text("ada")

        await page.locator('[data-target="speed"]').focus()
        await page.keyboard.press("ArrowRight")
        await page.wait_for_function("() => document.getElementById('app').dataset.seq === '1'",
                                     timeout=WAIT_MS)
        assert demo_widgets["speed"].value == 6

        # A reader's set: each try ends in a close without a code (a hidden
        # 4403); after a few the page gives it up, says so, and stays connected.
        await page.locator("#logout").click()
        await page.get_by_label("user", exact=True).fill("rita")
        await page.get_by_label("password", exact=True).fill("read only")
        await page.get_by_label("password", exact=True).press("Enter")
        await expect(page.locator("#user")).to_have_text("rita", timeout=WAIT_MS)
        await expect(app).to_have_attribute("data-state", "live")
        await page.locator('[data-target="speed"]').focus()
        await page.keyboard.press("ArrowRight")
        await expect(page.locator('[data-control="speed"] .control-error')).to_contain_text(
            "not applied: the connection closed each of the 3 times", timeout=10_000)
        await expect(app).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        await expect(page.locator("#pending")).to_have_text("none")
        await expect(page.locator('[data-target="speed"]')).to_have_value("6")
        assert demo_widgets["speed"].value == 6
    finally:
        await context.close()
        await srv.stop()
    assert not errors, f"JavaScript errors on the page: {errors}"
