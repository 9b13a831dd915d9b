"""Shared fixtures: a real control server on a random loopback port, and the
rule for optional tools (Chromium, Redis, a Binder rebuild): skip with a one-line reason where
they are missing, fail instead where ``WSDEMO_REQUIRE`` says they must run."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

from tests.support.redis import running_redis

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


@contextlib.asynccontextmanager
async def launched_chromium(*extra_args: str):
    """A headless Debian Chromium driven by Playwright (never a downloaded browser),
    with ``CHROMIUM_ARGS`` and ``extra_args``.

    Skips, or fails where required, when Chromium or Playwright is missing.
    """
    need("browser", Path(CHROMIUM).exists(), f"{CHROMIUM} not installed (apt-get install chromium)")
    try:
        import playwright.async_api as playwright_api
    except ImportError:
        need("browser", False, "playwright is not installed (pip install playwright)")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM,
                                            args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def opened_page(browser):
    """A fresh page in its own context; any uncaught JavaScript error fails the test."""
    context = await browser.new_context(viewport={"width": 1000, "height": 800})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
async def browser():
    async with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def redis_server_path() -> str:
    path = shutil.which("redis-server") or ""
    need("redis", bool(path), "redis-server not installed (apt-get install redis-server)")
    return path


@pytest.fixture
async def redis_proc(redis_server_path, tmp_path):
    """A ``redis-server`` of this test's own, on a free loopback port, no persistence."""
    async with running_redis(redis_server_path, tmp_path) as server:
        yield server


@pytest.fixture
async def aof_redis(redis_server_path, tmp_path):
    """Redis with ``appendonly yes`` + ``appendfsync always``: what it acknowledges, it keeps."""
    async with running_redis(redis_server_path, tmp_path, aof=True) as server:
        yield server


@pytest.fixture
def demo_widgets():
    from wsdemo.cli import demo_controls

    return demo_controls()


@contextlib.asynccontextmanager
async def demo_server(demo_widgets, **options):
    """A control server on a random port: the demo controls in room 'controls', a room 'chat'."""
    from wsdemo import ControlServer

    srv = ControlServer(port=0, hello_timeout=2.0, **options)
    for name, widget in demo_widgets.items():
        srv.expose(name, widget)
    srv.add_room("chat")
    srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@contextlib.asynccontextmanager
async def client_maker(server):
    """``await make(name)`` → a ControlClient that has said hello; all closed at the end."""
    from wsdemo import ControlClient

    clients = []

    async def make(name: str = "test", **kwargs):
        client = await ControlClient.connect(server.ws_url, client=name, **kwargs)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
async def server(demo_widgets):
    async with demo_server(demo_widgets) as srv:
        yield srv


@pytest.fixture
async def connect(server):
    async with client_maker(server) as make:
        yield make
