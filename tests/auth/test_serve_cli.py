"""`serve` with authentication from the command line, started as a user would:
`keys new`, `token`, `serve --secret-file --origin`, and an independent client."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import stat
import subprocess
import sys

import pytest
import websockets

from wsdemo.cli import _loopback
from wsdemo.core.protocol import SUBPROTOCOL

PY = [sys.executable, "-m", "wsdemo"]
ORIGIN = "https://course.example"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*PY, *args], capture_output=True, text=True, timeout=30)


def test_keys_new_writes_a_private_file_and_never_overwrites(tmp_path):
    path = tmp_path / "serve.keys"
    done = cli("keys", "new", str(path))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert re.fullmatch(r"k1:[A-Za-z0-9_-]{43}", path.read_text().splitlines()[-1])
    before = path.read_text()
    again = cli("keys", "new", str(path))
    assert again.returncode == 1 and "never overwritten" in again.stderr
    assert path.read_text() == before


def test_an_open_server_on_a_non_loopback_address_refuses_to_start():
    done = cli("serve", "--host", "0.0.0.0", "--port", "0", "--log", "memory")
    assert done.returncode == 1
    assert done.stderr.startswith("error: refusing to serve 0.0.0.0 open")
    assert "--secret-file" in done.stderr and "--open" in done.stderr


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.0.0.2", True),
                                                ("::1", True), ("localhost", True),
                                                ("0.0.0.0", False), ("::", False),
                                                ("192.0.2.1", False), ("example.org", False)])
def test_what_counts_as_loopback(host, loopback):
    assert _loopback(host) is loopback


@pytest.fixture
async def secured(tmp_path):
    keys = tmp_path / "serve.keys"
    assert cli("keys", "new", str(keys)).returncode == 0
    proc = await asyncio.create_subprocess_exec(
        *PY, "serve", "--port", "0", "--log", "memory", "--secret-file", str(keys),
        "--origin", ORIGIN, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        port = re.search(r"127\.0\.0\.1:(\d+)/", line)
        assert port, line + (await proc.stderr.read()).decode()
        yield f"ws://127.0.0.1:{port.group(1)}/ws", keys
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 10)


async def hello(url, token=None, origin=ORIGIN):
    ws = await websockets.connect(url, subprotocols=[SUBPROTOCOL], origin=origin)
    message = {"type": "hello", "client": "t"}
    if token is not None:
        message["token"] = token
    await ws.send(json.dumps(message))
    return ws


async def test_serve_with_a_secret_file_needs_a_token_that_the_token_command_signed(secured):
    url, keys = secured
    ws = await hello(url)  # no token
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 4401
    token = cli("token", "--secret-file", str(keys), "--sub", "ada",
                "--perm", "controls=read,set", "--perm", "*=read", "--ttl", "600")
    assert token.returncode == 0, token.stderr
    ws = await hello(url, token.stdout.strip())
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert welcome["type"] == "welcome" and welcome["user"] == "ada"
    await ws.send(json.dumps({"type": "join", "room": "controls"}))
    await ws.send(json.dumps({"type": "set", "room": "controls", "id": "s1",
                              "target": "speed", "value": 3}))
    while (msg := json.loads(await asyncio.wait_for(ws.recv(), 5)))["type"] != "ack":
        pass
    assert msg["id"] == "s1"
    await ws.send(json.dumps({"type": "join", "room": "chat"}))
    await ws.send(json.dumps({"type": "publish", "room": "chat", "id": "p1", "data": 1}))
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 4403, "read is not publish"


async def test_serve_with_origin_refuses_any_other_page(secured):
    url, _ = secured
    for origin in ("https://evil.example", "http://127.0.0.1:8000"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url, subprotocols=[SUBPROTOCOL], origin=origin)
        assert refused.value.response.status_code == 403
    ws = await hello(url)
    await ws.close()


def test_a_token_with_a_bad_grant_is_refused_in_one_line(tmp_path):
    keys = tmp_path / "k"
    cli("keys", "new", str(keys))
    done = cli("token", "--secret-file", str(keys), "--sub", "ada", "--perm", "controls")
    assert done.returncode == 1 and done.stderr.startswith("error: --perm 'controls'")


async def test_status_needs_an_admin_token_and_shows_only_readable_rooms(secured):
    import urllib.error
    import urllib.request

    url, keys = secured
    status_url = url.replace("ws://", "http://").removesuffix("/ws") + "/status"

    def fetch(token=None):
        request = urllib.request.Request(status_url)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as refused:
            return refused.code, None

    def token(*perms):
        args = [a for p in perms for a in ("--perm", p)]
        done = cli("token", "--secret-file", str(keys), "--sub", "ops", *args)
        return done.stdout.strip()

    assert (await asyncio.to_thread(fetch))[0] == 401
    assert (await asyncio.to_thread(fetch, "not.a.token"))[0] == 401
    assert (await asyncio.to_thread(fetch, token("*=read")))[0] == 403, "read is not admin"
    code, status = await asyncio.to_thread(fetch, token("*=admin", "controls=read"))
    assert code == 200
    assert set(status["rooms"]) == {"controls"}, "chat is not the admin's to read"
