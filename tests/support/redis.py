"""A real ``redis-server`` for the tests (the log, presence and scale-out ones)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from pathlib import Path

WAIT = 15.0  # bound on start and stop; a healthy Redis needs a fraction of it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProcess:
    """One ``redis-server`` on a fixed loopback port and folder, which a test may
    kill and start again (same port, same folder: the same Redis, restarted)."""

    def __init__(self, path: str, folder: Path):
        self.path = path
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: asyncio.subprocess.Process | None = None
        self.output: list[str] = []
        self._drain: asyncio.Task | None = None

    async def start(self, *, aof: bool = False) -> None:
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if aof
                       else ["--appendonly", "no"])
        self.proc = await asyncio.create_subprocess_exec(
            self.path, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
            str(self.folder), "--save", "", *persistence,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        # Ready once it says so (after loading its AOF): read its log, no polling.
        await asyncio.wait_for(self._until_ready(), WAIT)
        self._drain = asyncio.create_task(self._read_rest())

    async def _until_ready(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = (await self.proc.stdout.readline()).decode(errors="replace")
            if not line:
                raise RuntimeError("redis-server exited:\n" + "".join(self.output))
            self.output.append(line)
            if "Ready to accept connections" in line:
                return

    async def _read_rest(self) -> None:
        # Keep reading, or a full pipe would one day stop Redis mid-test.
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.output.append(line.decode(errors="replace"))

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(sig)
        await asyncio.wait_for(self.proc.wait(), WAIT)
        if self._drain is not None:
            await asyncio.wait_for(self._drain, WAIT)


@contextlib.asynccontextmanager
async def running_redis(path: str, folder: Path, *, aof: bool = False):
    """A started :class:`RedisProcess`, stopped (SIGTERM) at the end."""
    server = RedisProcess(path, folder)
    await server.start(aof=aof)
    try:
        yield server
    finally:
        await server.kill(signal.SIGTERM)
