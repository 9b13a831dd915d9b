"""`python -m wsdemo`: a real server process and real client processes."""

import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PY = [sys.executable, "-m", "wsdemo"]


async def run(*args: str, timeout: float = 20) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *PY, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        raise
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def served():
    proc = await asyncio.create_subprocess_exec(
        *PY, "serve", "--port", "0", "--log", "memory",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, f"serve printed {line!r}"
        yield url.group(0)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, "serve must stop cleanly on Ctrl-C"


async def test_set_then_watch_sees_it(served):
    code, out, err = await run("client", served, "set", "speed", "7", "--id", "cli-1")
    assert code == 0, err
    assert json.loads(out) == {"type": "ack", "id": "cli-1", "room": "controls", "seq": 1,
                               "duplicate": False}
    watcher = await asyncio.create_subprocess_exec(
        *PY, "client", served, "watch", "--count", "1", stdout=subprocess.PIPE)
    # The snapshot line says the watcher has joined: a set after it must reach it.
    snapshot = json.loads(await asyncio.wait_for(watcher.stdout.readline(), 20))
    assert snapshot["type"] == "snapshot" and snapshot["state"]["speed"] == 7
    code, out, err = await run("client", served, "set", "mode", '"sweep"')
    assert code == 0, err
    event = json.loads(await asyncio.wait_for(watcher.stdout.readline(), 20))
    assert event["seq"] == 2 and event["data"] == {"target": "mode", "value": "sweep"}
    assert await asyncio.wait_for(watcher.wait(), 20) == 0


async def test_out_of_range_is_one_line_error(served):
    code, out, err = await run("client", served, "set", "speed", "70")
    assert code == 1 and out == ""
    assert err.strip() == "error: out-of-range: speed: 70 is above the maximum 10"


async def test_publish_to_chat(served):
    code, out, err = await run("client", served, "--room", "chat", "publish", "hello")
    assert code == 2, "--room belongs after the action"
    code, out, err = await run("client", served, "publish", "hello", "--room", "chat")
    assert code == 0, err
    assert json.loads(out)["seq"] == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:1", "error: cannot connect to ws://127.0.0.1:1/ws: connection refused "
                        "(is the server running?)"),
        ("ftp://127.0.0.1:1/", "error: bad URL 'ftp://127.0.0.1:1/': the scheme must be ws, "
                               "wss, http or https"),
        ("ws://127.0.0.1:99999/ws", "error: bad URL 'ws://127.0.0.1:99999/ws': the port is "
                                    "not a number from 0 to 65535"),
    ],
)
async def test_connection_errors_are_one_line(url, message):
    code, out, err = await run("client", url, "watch")
    assert code == 1
    assert err.strip() == message


async def test_refused_upgrade_is_one_line():
    # A plain HTTP server that is not a control server: the upgrade is refused.
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        code, out, err = await run("client", f"127.0.0.1:{port}", "watch")
    finally:
        srv.close()
    assert code == 1
    assert err.strip() == (f"error: cannot connect to ws://127.0.0.1:{port}/ws: the server "
                           "refused the upgrade with HTTP 404")


@pytest.mark.parametrize(
    "command",
    [[], ["serve"], ["client", "x"], ["client", "x", "watch"], ["client", "x", "set"],
     ["client", "x", "publish"], ["tap"], ["notebooks"], ["course"], ["bench"]],
)
def test_every_command_has_help(command):
    out = subprocess.run([*PY, *command, "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m wsdemo")


ROOT = Path(__file__).resolve().parent.parent


def test_course_starts_this_pythons_jupyterlab_without_the_venv_on_path(tmp_path):
    """The README's `.venv/bin/python -m wsdemo course`, typed without activating the
    venv: JupyterLab must come from that Python, not from whatever `jupyter` is on
    PATH (here there is none), and open the index notebook."""
    import secrets
    import urllib.request

    from tests.support.jupyter import JupyterProcess, loopback_args, private_dirs

    token = secrets.token_hex(8)
    env = {"HOME": str(tmp_path), "PATH": str(tmp_path / "empty"), "LANG": "C.UTF-8",
           **private_dirs(tmp_path)}
    lab = JupyterProcess([sys.executable, "-m", "wsdemo", "course", *loopback_args(token)],
                         env=env, cwd=ROOT, name="wsdemo course")
    try:
        origin = lab.wait_listening(60)
        assert lab.lines[0].startswith(f"running: {sys.executable} -m jupyterlab "
                                       "notebooks/00-index.ipynb"), lab.lines[0]
        url = f"{origin}/api/contents/00-index.ipynb?content=0&token={token}"
        with urllib.request.urlopen(url, timeout=30) as reply:
            assert json.loads(reply.read())["type"] == "notebook", lab.tail()
    finally:
        lab.stop(20)
