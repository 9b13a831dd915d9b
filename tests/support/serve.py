"""``python -m wsdemo serve`` started as a user starts it (a subprocess, CLI options),
and the raw requests an attacker would send it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from wsdemo.lab.lesson import start_serve

PY = [sys.executable, "-m", "wsdemo"]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*PY, *args], capture_output=True, text=True, timeout=60,
                          input=stdin)


class Served:
    """Where a ``serve`` started by :func:`serving` listens."""

    def __init__(self, process: Any):
        page = urlsplit(process.page)  # what serve printed: http(s)://HOST:PORT/
        self.process, self.scheme, self.port = process, page.scheme, page.port

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.scheme == 'https' else 'ws'}://127.0.0.1:{self.port}/ws"


@contextlib.asynccontextmanager
async def serving(*options: str) -> AsyncIterator[Served]:
    """``serve --port 0 --log memory OPTIONS`` (the lessons' own starter), until the block
    ends; if it exits instead of listening, ServeFailed carries its error line."""
    process = await start_serve("--port", "0", "--log", "memory", *options, timeout=30)
    try:
        yield Served(process)
    finally:
        await process.stop()


def upgrade_request(host: str, *, origin: str | None = None, path: str = "/ws",
                    protocol: str | None = "wsdemo.v1") -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             "Sec-WebSocket-Version: 13"]
    if protocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def raw_exchange(port: int, request: bytes, *, source: str = "127.0.0.1",
                       timeout: float = 5.0) -> str:
    """Send ``request`` from ``source`` and return the head of what comes back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        return head.decode("latin-1")
    finally:
        writer.close()


def socket_from(source: str, port: int) -> socket.socket:
    """A TCP socket connected to 127.0.0.1:``port`` from the loopback address ``source``:
    another client address on one machine (all of 127.0.0.0/8 is loopback)."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock
