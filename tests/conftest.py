"""Shared fixtures: a real control server on a random loopback port, and the
rule for optional tools (Chromium, Redis, a Binder rebuild): skip with a one-line reason where
they are missing, fail instead where ``WSDEMO_REQUIRE`` says they must run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def required(kind: str) -> bool:
    """True where ``WSDEMO_REQUIRE`` (comma-separated: browser, redis, binder) names ``kind``."""
    wanted = os.environ.get("WSDEMO_REQUIRE", "")
    return kind in {w.strip() for w in wanted.split(",")}


def need(kind: str, available: bool, reason: str) -> None:
    """Skip (or fail, where required) a test whose tool is missing."""
    if available:
        return
    if required(kind):
        wanted = os.environ.get("WSDEMO_REQUIRE")
        pytest.fail(f"{reason} (WSDEMO_REQUIRE={wanted} says it must run)")
    pytest.skip(reason)


@pytest.fixture
def chromium_path() -> str:
    need("browser", Path(CHROMIUM).exists(), f"{CHROMIUM} not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path):
    """A headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    try:
        import playwright.async_api as playwright_api
    except ImportError:
        need("browser", False, "playwright is not installed (pip install playwright)")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def redis_server_path() -> str:
    path = shutil.which("redis-server") or ""
    need("redis", bool(path), "redis-server not installed (apt-get install redis-server)")
    return path


@pytest.fixture
def demo_widgets():
    from wsdemo.cli import demo_controls

    return demo_controls()


@pytest.fixture
async def server(demo_widgets):
    """A control server on a random port with the demo controls in room 'controls'."""
    from wsdemo import ControlServer

    srv = ControlServer(port=0, hello_timeout=2.0)
    for name, widget in demo_widgets.items():
        srv.expose(name, widget)
    srv.add_room("chat")
    srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def connect(server):
    """``await connect(name)`` → a ControlClient that has said hello; all closed at the end."""
    from wsdemo import ControlClient

    clients = []

    async def make(name: str = "test", **kwargs):
        client = await ControlClient.connect(server.ws_url, client=name, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
