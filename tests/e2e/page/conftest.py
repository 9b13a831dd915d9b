"""What the page test modules share: one event loop and one Chromium per module.

Starting Playwright and Chromium took longer than most page tests, so each page
module runs its tests in one module-wide loop (its ``pytestmark`` says so) with
these fixtures: the top conftest's, made to run in that loop.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.conftest import client_maker, demo_server, launched_chromium, opened_page

try:
    from playwright.async_api import expect
except ImportError:  # the browser fixture skips (or fails, where required) with the reason
    expect = None

PAGE_MARKS = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]
WAIT_MS = 5_000  # every wait on the page
WAIT_S = WAIT_MS / 1000
ROOM = "controls"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    """One Chromium for the module (conftest's, launched once)."""
    async with launched_chromium() as chromium:
        yield chromium


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser):
    async with opened_page(browser) as page:
        yield page


@pytest_asyncio.fixture(loop_scope="module")
async def server(demo_widgets):
    async with demo_server(demo_widgets) as srv:
        yield srv


@pytest_asyncio.fixture(loop_scope="module")
async def connect(server):
    async with client_maker(server) as make:
        yield make
