"""What the lessons' first cells need, so that those cells stay short.

* :func:`capture_logs` — keep the servers' log records in a list instead of printing
  them (a record printed by a server in the kernel lands in whichever cell runs next);
* :func:`show` — one protocol message as one line of JSON;
* :func:`until` — wait, bounded, until a condition holds;
* :func:`start_serve` — ``python -m wsdemo serve ARGS…`` as a real process, ready once it
  prints the line with its address; :class:`Served` stops or kills it;
* :func:`start_redis` — a ``redis-server`` of the lesson's own on a free loopback port;
  :class:`RedisServer` kills it and starts it again on the same port and folder;
* :func:`stop_all` — the clean-up cell's one call: every process started here, stopped;
* :class:`Missing` — raised when a program a cell needs is not installed; Jupyter shows
  it as one line saying how to install it, not as a traceback.

Every wait is bounded and reads what the process prints rather than sleeping.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "SERVER_LOGGERS",
    "LogRecords",
    "Missing",
    "RedisServer",
    "ServeFailed",
    "Served",
    "capture_logs",
    "free_port",
    "need",
    "running",
    "show",
    "start_redis",
    "start_serve",
    "stop_all",
    "until",
]

WAIT = 20.0  # bound on starting and stopping a process; a healthy one needs a fraction

INSTALL = {
    "redis-server": "Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install "
                    "redis; Binder has it (binder/apt.txt). Then restart the kernel",
}


# --- logs -------------------------------------------------------------------------------------

class LogRecords(logging.Handler):
    """Keeps log records instead of printing them."""

    def __init__(self, level: int = logging.INFO):
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, logger: str | None = None) -> list[str]:
        """The messages kept, of one logger (its exact name) or of all."""
        return [r.getMessage() for r in self.records if logger is None or r.name == logger]


#: The loggers the servers write to. Tornado's three, not ``tornado`` itself: the kernel
#: prints ``tornado`` to stderr with a handler of its own, which a record of a child
#: logger would still reach if only ``tornado`` stopped passing records up.
SERVER_LOGGERS = ("wsdemo", "tornado.access", "tornado.application", "tornado.general")


def capture_logs(*names: str, level: int = logging.INFO,
                 logger_level: int | None = None) -> LogRecords:
    """Route the loggers ``names`` (default :data:`SERVER_LOGGERS`) into one new list.

    The list keeps records of ``level`` and above. Each logger stops passing records up
    to its parents (the kernel would print them); ``logger_level``, where given, is set
    on each logger too (``logging.DEBUG`` to see records a logger would not make at its
    default level). Running the cell again replaces the earlier list's handler instead
    of adding a second one, so nothing is recorded twice.
    """
    handler = LogRecords(level)
    for name in names or SERVER_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, LogRecords)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        if logger_level is not None:
            logger.setLevel(logger_level)
        logger.propagate = False
    return handler


# --- small helpers ----------------------------------------------------------------------------

def show(message: Mapping[str, Any], arrow: str = "") -> None:
    """Print one protocol message as one line of JSON, its fields in the order written."""
    print(arrow + json.dumps(message, ensure_ascii=False))


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Return once ``predicate()`` holds (checked every 5 ms); TimeoutError naming ``what``."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise TimeoutError(f"{what}: not within {timeout:g} s") from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS's pick), left closed for someone to bind."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class Missing(RuntimeError):
    """A program a cell needs is not installed here.

    IPython shows an exception with ``_render_traceback_`` as the lines it returns: the
    learner sees one line saying what is missing and how to install it.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


def need(program: str, why: str = "") -> str:
    """The path of ``program``; :class:`Missing`, with how to install it, where it is absent."""
    path = shutil.which(program)
    if path is None:
        how = INSTALL.get(program, f"install {program}")
        raise Missing(f"{program} is not installed here{' — ' + why if why else ''}. {how}.")
    return path


# --- processes --------------------------------------------------------------------------------

_started: list[_Process] = []  # every process started here, for stop_all()


class _Process:
    """A child process whose output is read to the end (a full pipe would stop it),
    keeping the last lines."""

    proc: asyncio.subprocess.Process | None = None

    def __init__(self) -> None:
        self.output: collections.deque[str] = collections.deque(maxlen=200)
        self._readers: list[asyncio.Task] = []

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _keep_reading(self, stream: asyncio.StreamReader | None) -> None:
        async def read() -> None:
            async for line in stream:
                self.output.append(line.decode(errors="replace").rstrip("\n"))

        if stream is not None:
            self._readers.append(asyncio.ensure_future(read()))

    async def _read_until(self, marker: str, timeout: float) -> str:
        """Keep stdout's lines until one holds ``marker``: that line, or "" if stdout ended
        first. TimeoutError after ``timeout`` (the process is killed then)."""
        assert self.proc is not None and self.proc.stdout is not None
        stream = self.proc.stdout

        async def read() -> str:
            while line := (await stream.readline()).decode(errors="replace"):
                self.output.append(line.rstrip("\n"))
                if marker in line:
                    return line
            return ""

        try:
            return await asyncio.wait_for(read(), timeout)
        except TimeoutError:
            await self.kill()
            raise

    async def _ended(self) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), WAIT)
        if self._readers:
            await asyncio.wait_for(asyncio.gather(*self._readers), WAIT)
            self._readers.clear()
        return code

    async def kill(self) -> int | None:
        """``kill -9``: no shutdown code runs. Returns the exit status (-9)."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
        return await self._ended() if self.proc is not None else None

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within the bound. Returns the status."""
        if not self.running:
            return await self._ended() if self.proc is not None else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), WAIT)
        except TimeoutError:
            self.proc.send_signal(signal.SIGKILL)
        return await self._ended()


class ServeFailed(RuntimeError):
    """``python -m wsdemo serve`` exited before it listened; the message is its last line."""


class Served(_Process):
    """A running ``python -m wsdemo serve``: its ``url`` (WebSocket) and ``page`` (HTTP)."""

    def __init__(self, args: list[str]):
        super().__init__()
        self.args = args
        self.url = ""
        self.page = ""

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"<wsdemo serve {' '.join(self.args)}: {self.url or 'not listening'}, {state}>"


LISTENING = "control server on "  # the first line serve prints (wsdemo/cli.py)


async def start_serve(*args: str, env: Mapping[str, str] | None = None,
                      cwd: str | Path | None = None, timeout: float = WAIT) -> Served:
    """Start ``python -m wsdemo serve ARGS…`` and return once it prints where it listens.

    ``args`` are the command line as typed in a terminal (``"--port", "0", "--log",
    "events.sqlite"``; give ``--port 0`` for a free port). ``env`` is added to this
    process's environment. Its output is read to the end and the last lines are kept in
    :attr:`Served.output`; if it exits first, :class:`ServeFailed` carries the last line it
    wrote (its error). Raises TimeoutError if it neither listens nor exits in ``timeout``.
    """
    served = Served([str(a) for a in args])
    served.proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wsdemo", "serve", *served.args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=None if env is None else {**os.environ, **env}, cwd=cwd)
    _started.append(served)
    served._keep_reading(served.proc.stderr)

    try:
        first = await served._read_until(LISTENING, timeout)
    except TimeoutError:
        raise TimeoutError(f"wsdemo serve did not listen within {timeout:g} s") from None
    served._keep_reading(served.proc.stdout)
    if not first:
        await served._ended()
        last = [line for line in served.output if line.strip()] or ["no output"]
        raise ServeFailed(last[-1])
    served.page = first.split(LISTENING, 1)[1].split()[0]
    served.url = first.split("(WebSocket ", 1)[1].split(")", 1)[0]
    return served


class RedisServer(_Process):
    """A ``redis-server`` on a fixed loopback port and folder, which a lesson may kill and
    start again: the same port and folder, so the same Redis, restarted (it reloads its
    append-only file before it says it is ready)."""

    def __init__(self, path: str, folder: Path, port: int, options: list[str]):
        super().__init__()
        self.path, self.folder, self.port, self.options = path, Path(folder), port, options
        self.url = f"redis://127.0.0.1:{port}/0"

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"<redis-server on {self.url}, {state}>"

    async def start(self, timeout: float = WAIT) -> RedisServer:
        """Start it; return once it logs "Ready to accept connections"."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        self.proc = await asyncio.create_subprocess_exec(
            self.path, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
            str(self.folder), *self.options,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        if self not in _started:
            _started.append(self)

        try:
            ok = await self._read_until("Ready to accept connections", timeout)
        except TimeoutError:
            raise TimeoutError(f"redis-server was not ready within {timeout:g} s") from None
        self._keep_reading(self.proc.stdout)
        if not ok:
            await self._ended()
            raise RuntimeError("redis-server exited: " + " | ".join(list(self.output)[-3:]))
        return self


async def start_redis(folder: str | Path, *, port: int | None = None,
                      appendfsync: str | None = "always",
                      extra: Iterable[str] = ()) -> RedisServer:
    """A ``redis-server`` of the lesson's own on a free loopback port, files in ``folder``.

    No snapshots (``--save ""``). ``appendfsync="always"`` (the default) turns on the
    append-only file, written and fsynced before Redis answers; ``"everysec"`` or ``"no"``
    the weaker promises; ``None`` no persistence at all. Raises :class:`Missing` where
    ``redis-server`` is not installed.
    """
    path = need("redis-server", "this cell starts one")
    options = ["--save", ""]
    options += (["--appendonly", "no"] if appendfsync is None
                else ["--appendonly", "yes", "--appendfsync", appendfsync])
    server = RedisServer(path, Path(folder), port or free_port(), options + list(extra))
    return await server.start()


def running() -> list[_Process]:
    """The processes started here that are still running."""
    return [p for p in _started if p.running]


async def stop_all() -> int:
    """Stop every process started here that still runs; returns how many were stopped."""
    left = running()
    for process in left:
        await process.stop()
    return len(left)
