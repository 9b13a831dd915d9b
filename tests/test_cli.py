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


def test_course_opens_the_learners_copy_and_the_tests_stay_green(tmp_path):
    """`.venv/bin/python -m wsdemo course`, typed without activating the venv: this
    Python's JupyterLab (there is no `jupyter` on PATH), rooted at the repository, on
    the learner's copy of the index. The learner's work saved there (as JupyterLab
    autosaves it) leaves notebooks/ as it was, and strict nbval on it still passes."""
    import secrets
    import shutil
    import tempfile
    import urllib.request

    from tests.support.jupyter import JupyterProcess, loopback_args, private_dirs

    stored = (ROOT / "notebooks" / "00-index.ipynb").read_bytes()
    # Inside the root (JupyterLab opens nothing outside it, nor a hidden folder), in
    # the git-ignored build/: never the developer's own my-course/.
    (ROOT / "build").mkdir(exist_ok=True)
    copy = Path(tempfile.mkdtemp(dir=ROOT / "build", prefix="test-course-"))
    token = secrets.token_hex(8)
    env = {"HOME": str(tmp_path), "PATH": str(tmp_path / "empty"), "LANG": "C.UTF-8",
           "WSDEMO_COURSE_COPY": str(copy), **private_dirs(tmp_path)}
    lab = JupyterProcess([sys.executable, "-m", "wsdemo", "course", *loopback_args(token)],
                         env=env, cwd=ROOT, name="wsdemo course")
    try:
        origin = lab.wait_listening(60)
        running = next(line for line in lab.lines if line.startswith("running: "))
        assert running.startswith(f"running: {sys.executable} -m jupyterlab "
                                  f"--ServerApp.root_dir={ROOT} build/{copy.name}/00-index.ipynb")

        def contents(path, method="GET", body=None):
            request = urllib.request.Request(
                f"{origin}/api/contents/{path}", method=method,
                data=None if body is None else json.dumps(body).encode(),
                headers={"Content-Type": "application/json",
                         "Authorization": f"token {token}"})
            with urllib.request.urlopen(request, timeout=30) as reply:
                return json.loads(reply.read())

        index = contents(f"build/{copy.name}/00-index.ipynb")
        assert index["type"] == "notebook", lab.tail()
        assert contents("wsdemo/server/app.py?content=0")["type"] == "file", \
            "the package is one click away"
        # The learner ran a cell: new output, saved by JupyterLab into the copy.
        notebook = index["content"]
        notebook["cells"][0]["source"] = "My notes on the course.\n"
        contents(f"build/{copy.name}/00-index.ipynb", "PUT",
                 {"type": "notebook", "format": "json", "content": notebook})
        assert "My notes" in (copy / "00-index.ipynb").read_text()
    finally:
        lab.stop(20)
        shutil.rmtree(copy, ignore_errors=True)
    assert (ROOT / "notebooks" / "00-index.ipynb").read_bytes() == stored
    nbval = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
                            "notebooks/00-index.ipynb"], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert nbval.returncode == 0, nbval.stdout[-2000:]


def test_course_keeps_the_learners_work_and_reset_starts_over(tmp_path, monkeypatch):
    from wsdemo import cli

    copy = tmp_path / "my-course"
    first = cli.learners_copy(copy)
    assert "00-index.ipynb" in first and (copy / "08-measuring-it.ipynb").exists()
    (copy / "00-index.ipynb").write_text("the learner's work")
    assert cli.learners_copy(copy) == [], "a second run copies nothing over the work"
    assert (copy / "00-index.ipynb").read_text() == "the learner's work"
    assert "00-index.ipynb" in cli.learners_copy(copy, reset=True)
    assert (copy / "00-index.ipynb").read_bytes() == \
        (cli.ROOT / "notebooks" / "00-index.ipynb").read_bytes()


@pytest.mark.parametrize("command", [["serve", "--log", "memory", "--port"],
                                     ["tap", "--to", "127.0.0.1:1", "--listen"]])
@pytest.mark.parametrize("bad", ["99999", "65536", "-1", "x"])
async def test_every_command_refuses_a_port_out_of_range(command, bad):
    code, out, err = await run(*command, bad)
    assert code == 2, (out, err)
    assert err.strip().splitlines()[-1].endswith(
        f"not a port number: {bad!r}" if bad == "x"
        else f"port {bad} is out of range: 1-65535, or 0 to pick a free one")


async def test_a_busy_port_has_one_wording_and_one_exit_code():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        said = []
        for command in (["serve", "--log", "memory", "--port", port],
                        ["tap", "--to", "127.0.0.1:1", "--listen", port]):
            code, _, err = await run(*command)
            said.append((code, err.strip()))
    assert said == [(1, f"error: cannot listen on 127.0.0.1:{port}: Address already in use")] * 2


async def test_an_unknown_log_scheme_is_refused_with_the_known_ones():
    code, _, err = await run("serve", "--port", "0", "--log", "bogus://x")
    assert code == 1
    assert err.strip() == ("error: unknown event log 'bogus://x': use 'memory', a SQLite file "
                           "(PATH or sqlite:PATH), or redis://HOST:PORT/DB")
    out = subprocess.run([*PY, "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert "memory" in out.stdout and "redis://" in out.stdout and "SQLite" in out.stdout


async def test_a_server_that_never_answers_is_reported_as_a_time_out():
    import socket

    with socket.socket() as silent:  # accepts the TCP connection, never answers the upgrade
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        code, _, err = await run("client", f"127.0.0.1:{port}", "set", "speed", "1",
                                 "--timeout", "0.5")
    assert code == 1
    assert err.strip() == (f"error: cannot connect to ws://127.0.0.1:{port}/ws: no answer "
                           "in 0.5 s (timed out)")
