"""The tap in front of a real Jupyter server shows Jupyter's own kernel WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import sys
import uuid

import pytest
import tornado.httpclient
import tornado.websocket

from tests.support.jupyter import loopback_args
from wsdemo.tap import Direction, Tap
from wsdemo.tap.jupyter import V1_SUBPROTOCOL, decode_v1, encode_v1, kernel_message
from wsdemo.wire import Opcode

TOKEN = "wsdemo-test-token"
EXTENSIONS_OFF = repr({name: False for name in (
    "jupyterlab", "jupyter_lsp", "jupyter_server_proxy", "notebook_shim",
    "jupyter_server_terminals",
)})
URL_LINE = re.compile(rb"http://127\.0\.0\.1:(\d+)/")


async def _drain(stream: asyncio.StreamReader) -> None:
    # keep reading the log so a full pipe never blocks the server
    while await stream.readline():
        pass


async def accepting(proc: asyncio.subprocess.Process, port: int) -> None:
    """Wait until the server accepts connections on ``port``.

    Jupyter logs its URL before it listens: the listen is a callback that runs
    once its event loop starts (``ServerApp._bind_http_server``). No log line
    marks that moment, so probe the port itself, a few times a second.
    """
    while True:
        if proc.returncode is not None:
            raise RuntimeError(f"jupyter server exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


@pytest.fixture
async def jupyter_port(tmp_path):
    # This Python's jupyter_server (as it is started below), not a `jupyter` on PATH:
    # a venv that is not activated has no such command, and the test ran nowhere.
    if importlib.util.find_spec("jupyter_server") is None:
        pytest.skip("jupyter_server is not installed")
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), JUPYTER_PLATFORM_DIRS="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jupyter_server", "--allow-root", *loopback_args(TOKEN),
        f"--ServerApp.root_dir={tmp_path}",
        # The kernel REST API and its WebSocket are the server's own handlers;
        # the Lab/LSP/proxy extensions only double the start-up time.
        f"--ServerApp.jpserver_extensions={EXTENSIONS_OFF}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
    )
    assert proc.stderr is not None
    drain = None
    try:
        async def port_from_log() -> int:
            assert proc.stderr is not None
            while line := await proc.stderr.readline():
                if match := URL_LINE.search(line):
                    return int(match.group(1))
            raise RuntimeError("jupyter server exited before listening")

        port = await asyncio.wait_for(port_from_log(), 60)
        drain = asyncio.ensure_future(_drain(proc.stderr))
        await asyncio.wait_for(accepting(proc, port), 30)
        yield port
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await asyncio.wait_for(proc.wait(), 5)
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain


def execute_request(session: str, code: str) -> dict:
    return {
        "channel": "shell",
        "header": {
            "msg_id": uuid.uuid4().hex, "msg_type": "execute_request", "session": session,
            "username": "wsdemo", "version": "5.3", "date": "2026-01-01T00:00:00Z",
        },
        "parent_header": {},
        "metadata": {},
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }


async def run_code(ws, request: dict, binary: bool) -> dict:
    """Send an execute_request and read until its execute_reply (bounded by the caller)."""
    await ws.write_message(encode_v1(request) if binary else json.dumps(request), binary=binary)
    while True:
        raw = await ws.read_message()
        assert raw is not None, "the kernel WebSocket closed"
        reply = decode_v1(raw) if binary else json.loads(raw)
        parent = reply.get("parent_header") or {}
        if (reply["header"]["msg_type"] == "execute_reply"
                and parent.get("msg_id") == request["header"]["msg_id"]):
            return reply


async def test_tap_shows_jupyters_kernel_websocket(jupyter_port):
    auth = {"Authorization": f"token {TOKEN}"}
    http = tornado.httpclient.AsyncHTTPClient()
    async with Tap(("127.0.0.1", jupyter_port)) as tap:
        base = f"127.0.0.1:{tap.port}"
        response = await asyncio.wait_for(http.fetch(
            f"http://{base}/api/kernels", method="POST", headers=auth,
            body=json.dumps({"name": "python3"})), 60)
        kernel_id = json.loads(response.body)["id"]
        session = uuid.uuid4().hex
        url = f"ws://{base}/api/kernels/{kernel_id}/channels?session_id={session}"
        try:
            # The default encoding: JSON in text frames.
            ws = await asyncio.wait_for(tornado.websocket.websocket_connect(
                tornado.httpclient.HTTPRequest(url, headers=auth)), 60)
            reply = await asyncio.wait_for(run_code(ws, execute_request(session, "6 * 7"),
                                                    binary=False), 60)
            assert reply["content"]["status"] == "ok"
            ws.close(1000)
            # What JupyterLab asks for: the v1 subprotocol, binary frames.
            ws1 = await asyncio.wait_for(tornado.websocket.websocket_connect(
                tornado.httpclient.HTTPRequest(url, headers=auth),
                subprotocols=[V1_SUBPROTOCOL]), 60)
            assert ws1.selected_subprotocol == V1_SUBPROTOCOL
            reply = await asyncio.wait_for(run_code(ws1, execute_request(session, "1 + 1"),
                                                    binary=True), 60)
            assert reply["content"]["status"] == "ok"
            ws1.close(1000)
        finally:
            await asyncio.wait_for(http.fetch(f"http://{base}/api/kernels/{kernel_id}",
                                              method="DELETE", headers=auth), 30)
        await tap.wait_for(
            lambda cap: sum(1 for m in cap.frames if m.frame.opcode == Opcode.CLOSE) >= 4, 10)

    cap = tap.capture
    upgrades = [m for m in cap.http if m.http.asks_for_websocket]
    assert len(upgrades) == 2
    assert all(f"/api/kernels/{kernel_id}/channels" in m.http.target for m in upgrades)
    switched = [m for m in cap.http if m.http.status == 101]
    assert len(switched) == 2
    assert switched[0].http.header("Sec-WebSocket-Protocol") is None
    assert switched[1].http.header("Sec-WebSocket-Protocol") == V1_SUBPROTOCOL
    # plain REST calls went through the same tap as request/response pairs
    assert any(m.http.start_line.startswith("POST /api/kernels ") for m in cap.http)

    legacy_conn, v1_conn = switched[0].conn, switched[1].conn
    text = [m for m in cap.frames if m.conn == legacy_conn and m.frame.opcode == Opcode.TEXT]
    binary = [m for m in cap.frames if m.conn == v1_conn and m.frame.opcode == Opcode.BINARY]
    assert text and binary

    def types(frames, direction):
        return [kernel_message(m.frame)["header"]["msg_type"]
                for m in frames if m.direction is direction]

    for frames in (text, binary):
        assert all(kernel_message(m.frame) is not None for m in frames)
        assert "execute_request" in types(frames, Direction.C2S)
        assert "execute_reply" in types(frames, Direction.S2C)
        assert all(m.frame.masked for m in frames if m.direction is Direction.C2S)
    results = [kernel_message(m.frame)["content"] for m in text + binary
               if kernel_message(m.frame)["header"]["msg_type"] == "execute_result"]
    assert [r["data"]["text/plain"] for r in results] == ["42", "2"]
