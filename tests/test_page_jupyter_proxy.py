"""The control page through the real jupyter-server-proxy, as on Binder.

A ``jupyter server`` subprocess (token auth, only the proxy extension loaded,
its own config and runtime dirs) proxies ``/proxy/PORT`` to the control server
running in this test's loop. The page is opened with and without the trailing
slash — the case that breaks a page which takes its WebSocket path from its
own directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sys

import pytest

try:
    from playwright.async_api import expect
except ImportError:  # the browser fixture skips (or fails, where required) with the reason
    expect = None

pytestmark = pytest.mark.browser

WAIT_MS = 5_000
START_S = 10.0  # jupyter server is up in ~1 s with one extension; allow a busy machine


@pytest.fixture
async def jupyter(tmp_path):
    """``(base_url, token)`` of a jupyter server with jupyter-server-proxy."""
    pytest.importorskip("jupyter_server_proxy")
    config = tmp_path / "config"
    config.mkdir()
    # Only the proxy: JupyterLab and friends would triple the start-up time.
    extensions = {"jupyter_server_proxy": True, "jupyterlab": False, "jupyter_lsp": False,
                  "notebook_shim": False, "jupyter_server_terminals": False}
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": extensions}}))
    root = tmp_path / "root"
    root.mkdir()
    token = secrets.token_hex(16)
    # Its own dirs: no user config, cookie secret or runtime file of the machine's.
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )
    lines: list[str] = []

    async def read_until_listening() -> str:
        while line := (await proc.stdout.readline()).decode(errors="replace"):
            lines.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            if found:
                return found.group(1)
        raise RuntimeError("jupyter server exited:\n" + "".join(lines[-20:]))

    async def drain() -> None:  # a full pipe would stall the server's logging
        while line := await proc.stdout.readline():
            lines.append(line.decode(errors="replace"))

    drainer = None
    try:
        try:
            base = await asyncio.wait_for(read_until_listening(), START_S)
        except TimeoutError:
            raise AssertionError(
                f"jupyter server not up in {START_S:g} s:\n" + "".join(lines[-20:])) from None
        drainer = asyncio.ensure_future(drain())
        yield base, token
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if drainer is not None:
            await drainer


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
