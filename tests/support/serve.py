"""``python -m wsdemo serve`` started as a user starts it (a subprocess, CLI options),
and the raw requests an attacker would send it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

PY = [sys.executable, "-m", "wsdemo"]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*PY, *args], capture_output=True, text=True, timeout=60,
                          input=stdin)


@dataclass
class Served:
    port: int
    scheme: str  # http or https
    proc: asyncio.subprocess.Process

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.scheme == 'https' else 'ws'}://127.0.0.1:{self.port}/ws"


@contextlib.asynccontextmanager
async def serving(*options: str) -> AsyncIterator[Served]:
    """``serve --port 0 --log memory OPTIONS``, until the block ends (then SIGINT)."""
    proc = await asyncio.create_subprocess_exec(
        *PY, "serve", "--port", "0", "--log", "memory", *options,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        found = re.search(r"(https?)://127\.0\.0\.1:(\d+)/", line)
        if not found:
            await proc.wait()
            raise AssertionError(line + (await proc.stderr.read()).decode())
        yield Served(int(found.group(2)), found.group(1), proc)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 15)


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
