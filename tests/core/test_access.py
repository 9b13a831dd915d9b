"""The server's access hook: refusal at hello (4401), per-action checks (4403), expiry (4401)."""

import time

import pytest

from wsdemo import ControlClient, ControlServer
from wsdemo.core.access import AccessDenied, OpenAccess, Principal


class ListAccess:
    """A test double with a real rule: tokens name a user; 'reader' may only read."""

    open = False

    def __init__(self, expires_in=None):
        self.expires_in = expires_in

    def authenticate(self, hello, origin):
        if hello.token not in ("writer", "reader"):
            raise AccessDenied("unknown token")
        expires = None if self.expires_in is None else time.time() + self.expires_in
        return Principal(user=hello.token, expires=expires)

    def authorize(self, principal, action, room):
        return principal.user == "writer" or action == "read"


@pytest.fixture
async def guarded(demo_widgets, request):
    srv = ControlServer(port=0, access=ListAccess(getattr(request, "param", None))).start()
    srv.expose("speed", demo_widgets["speed"])
    yield srv
    await srv.stop()


async def test_bad_token_closes_4401(guarded):
    client = await ControlClient.connect(guarded.ws_url, hello=False)
    client.send({"type": "hello", "token": "forged"})
    assert (await client.wait_closed()).code == 4401


async def test_reader_may_join_but_not_set(guarded, demo_widgets):
    writer = await ControlClient.connect(guarded.ws_url, token="writer")
    reader = await ControlClient.connect(guarded.ws_url, token="reader")
    assert reader.welcome["user"] == "reader"
    await reader.join("controls")
    await writer.join("controls")
    reader.send({"type": "set", "room": "controls", "id": "x", "target": "speed", "value": 1})
    closed = await reader.wait_closed()
    assert closed.code == 4403 and "reader may not set" in closed.reason
    assert demo_widgets["speed"].value == 5
    assert (await writer.set("controls", "speed", 6))["seq"] == 1
    await writer.close()


@pytest.mark.parametrize("guarded", [0.3], indirect=True)
async def test_token_expiry_disconnects_with_4401(guarded):
    client = await ControlClient.connect(guarded.ws_url, token="writer")
    closed = await client.wait_closed(timeout=5)
    assert closed.code == 4401 and closed.reason == "token expired"


def test_open_access_lets_everyone_do_everything():
    principal = OpenAccess().authenticate(type("H", (), {"client": None})(), None)
    assert principal.user == "anonymous"
    assert all(OpenAccess().authorize(principal, a, "r") for a in ("read", "publish", "set"))


async def test_open_mode_is_said_loudly(demo_widgets):
    srv = ControlServer(port=0).start()
    try:
        assert "OPEN MODE" in repr(srv)
    finally:
        await srv.stop()
