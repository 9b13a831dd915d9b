"""What the lab's tests share: a tap in front of the module's own ``server`` fixture."""

from __future__ import annotations

import pytest

from wsdemo.tap import Tap


@pytest.fixture
async def tap(server):
    """The project's tap between a test's client and ``server`` (each module's own)."""
    tap = await Tap(("127.0.0.1", server.port)).start()
    yield tap
    await tap.close()
