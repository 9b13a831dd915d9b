"""The wire tap: a TCP proxy that records every chunk and says what it means.

Put it between a client and a server::

    async with Tap(to=("127.0.0.1", server_port)) as tap:
        ...connect the client to tap.port instead of server_port...
        await tap.wait_for(lambda cap: cap.upgraded, timeout=5)
    tap.capture          # a Capture: .table(), HTML in a notebook, .plot()

or from a shell, in front of anything (a Jupyter server, the control server)::

    python -m wsdemo tap --listen 9000 --to 127.0.0.1:8888

The tap does not speak HTTP or WebSocket: it copies bytes both ways, unchanged,
and records each read with its direction and ``time.monotonic()``. Decoding is
a separate, sans-I/O step (:mod:`wsdemo.tap.decode`) run on the same bytes —
HTTP messages until a ``101``, WebSocket frames after it, HTTP request/response
pairs for as long as a keep-alive connection never upgrades.

Each chunk is recorded *before* it is forwarded, so once a client has received
an answer, everything that led to it is already in the capture.

``Tap(..., delay=0.05)`` holds every chunk 50 ms before forwarding it, in each
direction: loopback made to behave like a longer path (a round trip gains
2 × ``delay``), so that what costs round trips shows up against what does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Self, TextIO

from .capture import Capture, Chunk, Message
from .decode import Direction
from .jupyter import kernel_summary

__all__ = ["Tap", "main", "parse_target", "quiet_when_cut", "start_tap"]

log = logging.getLogger(__name__)

_READ_SIZE = 65536


def quiet_when_cut(handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """``handler`` for ``asyncio.start_server``, ending normally when its task is cancelled.

    A server that cuts its connections on close cancels their handler tasks, and
    Python 3.11's ``start_server`` then asks each for its exception and logs the
    ``CancelledError`` as an error with a traceback (fixed in 3.12). A handler task
    is awaited by nobody but the server's own close, so ending it quietly loses nothing.
    """
    async def run(*args: Any) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await handler(*args)

    return run


class Tap:
    """A recording TCP proxy: listen on ``host:port``, forward to ``to``.

    ``port=0`` picks a free port (read :attr:`port` after :meth:`start`).
    ``on_message(message)`` is called for each decoded message and
    ``on_chunk(chunk)`` for each chunk, on the event loop, as they happen.
    ``delay`` (seconds, default 0) is added to every chunk's trip through the
    tap, each way, with order and spacing kept; the capture records when a
    chunk *reached* the tap. The held bytes are buffered without a bound: a
    tool for lessons and tests, not for bulk traffic.
    """

    def __init__(
        self,
        to: tuple[str, int] | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_message: Callable[[Message], None] | None = None,
        on_chunk: Callable[[Chunk], None] | None = None,
        delay: float = 0.0,
    ) -> None:
        if not delay >= 0:
            raise ValueError(f"delay must be a number of seconds >= 0, got {delay!r}")
        self.delay = float(delay)
        self.target = parse_target(to) if isinstance(to, str) else (to[0], int(to[1]))
        self.host = host
        self._requested_port = port
        self.capture = Capture()
        self.on_message = on_message
        self.on_chunk = on_chunk
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._changed: asyncio.Condition | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the tap is not started")
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> Self:
        if self._server is None:
            self._changed = asyncio.Condition()
            self._server = await asyncio.start_server(
                quiet_when_cut(self._serve), self.host, self._requested_port
            )
        return self

    async def close(self) -> None:
        """Stop listening and cut every proxied connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def wait_for(self, predicate: Callable[[Capture], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate(capture)`` is true; TimeoutError after ``timeout`` s."""
        if self._changed is None:
            raise RuntimeError("the tap is not started")
        changed = self._changed

        async def until() -> None:
            async with changed:
                await changed.wait_for(lambda: predicate(self.capture))

        await asyncio.wait_for(until(), timeout)

    async def wait_closed(self, conn: int | None = None, timeout: float = 5.0) -> None:
        """Wait until both directions of ``conn`` (default: every connection) ended."""

        def done(cap: Capture) -> bool:
            infos = [cap.connections[conn]] if conn is not None else cap.connections.values()
            return all(len(i.closed) == 2 for i in infos)

        await self.wait_for(done, timeout)

    # -- the proxy --

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_w)
        try:
            try:
                server_r, server_w = await asyncio.open_connection(*self.target)
            except OSError as exc:
                log.warning("tap: cannot reach %s:%s: %s", *self.target, exc)
                client_w.close()
                return
            self._writers.add(server_w)
            conn = self.capture.open_connection(
                client_w.get_extra_info("peername"), server_w.get_extra_info("sockname")
            )
            up = asyncio.ensure_future(self._pump(conn, Direction.C2S, client_r, server_w))
            down = asyncio.ensure_future(self._pump(conn, Direction.S2C, server_r, client_w))
            try:
                await asyncio.gather(up, down)
            finally:
                up.cancel()
                down.cancel()
                for writer in (client_w, server_w):
                    writer.close()
                    self._writers.discard(writer)
                # record the end even if we were cancelled mid-read
                for direction in Direction:
                    await self._record_eof(conn, direction)
        finally:
            self._writers.discard(client_w)
            self._tasks.discard(task)

    async def _pump(
        self,
        conn: int,
        direction: Direction,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        line = _DelayLine(writer, self.delay) if self.delay else None
        try:
            while True:
                data = await reader.read(_READ_SIZE)
                if not data:
                    break
                await self._record(conn, direction, data)
                if line is None:
                    writer.write(data)
                    await writer.drain()
                else:
                    line.send(data)
            if line is not None:
                await line.flush()
        except (ConnectionError, OSError) as exc:
            log.info("tap: connection %d %s: %s", conn, direction.value, exc)
            # one side is gone: so is the conversation
            writer.close()
        finally:
            if line is not None:
                line.stop()
            await self._record_eof(conn, direction)
            if not writer.is_closing() and writer.can_write_eof():
                with contextlib.suppress(OSError):
                    writer.write_eof()

    async def _record(self, conn: int, direction: Direction, data: bytes) -> None:
        before = len(self.capture.chunks)
        messages = self.capture.record(conn, direction, data)
        await self._announce(before, messages)

    async def _record_eof(self, conn: int, direction: Direction) -> None:
        before = len(self.capture.chunks)
        messages = self.capture.record_eof(conn, direction)
        if len(self.capture.chunks) != before:
            await self._announce(before, messages)

    async def _announce(self, first_chunk: int, messages: list[Message]) -> None:
        if self.on_chunk is not None:
            for chunk in self.capture.chunks[first_chunk:]:
                self._safely(self.on_chunk, chunk)
        if self.on_message is not None:
            for message in messages:
                self._safely(self.on_message, message)
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    @staticmethod
    def _safely(callback: Callable[[Any], None], arg: Any) -> None:
        # a broken display callback must not break the connection it watches
        try:
            callback(arg)
        except Exception:
            log.exception("tap: callback %r failed", callback)


class _DelayLine:
    """Write each chunk ``delay`` seconds after it was read, in order (``Tap(delay=...)``)."""

    def __init__(self, writer: asyncio.StreamWriter, delay: float) -> None:
        self._writer = writer
        self._delay = delay
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._run())

    def send(self, data: bytes) -> None:
        if self._task.done():
            self._task.result()  # the write that failed raises here
            raise ConnectionError("the delayed side of the tap stopped")
        self._queue.put_nowait((self._loop.time() + self._delay, data))

    async def flush(self) -> None:
        """Wait until every chunk sent so far has been written (or a write failed)."""
        joined = asyncio.ensure_future(self._queue.join())
        try:
            await asyncio.wait({joined, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
        if self._task.done():
            self._task.result()

    def stop(self) -> None:
        if self._task.done():
            if not self._task.cancelled():
                self._task.exception()  # already reported by send/flush, or moot
        else:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            due, data = await self._queue.get()
            await asyncio.sleep(max(0.0, due - self._loop.time()))
            self._writer.write(data)
            await self._writer.drain()
            self._queue.task_done()


async def start_tap(
    to: tuple[str, int] | str | int, *, host: str = "127.0.0.1", port: int = 0
) -> Tap:
    """Start a tap in front of ``to`` (a port on 127.0.0.1, ``"host:port"`` or a tuple)."""
    target: tuple[str, int] | str = ("127.0.0.1", to) if isinstance(to, int) else to
    return await Tap(target, host=host, port=port).start()


def parse_target(text: str) -> tuple[str, int]:
    """``"host:port"``, ``"[::1]:port"`` or ``"port"`` (meaning 127.0.0.1)."""
    text = text.strip()
    if text.isdigit():
        return "127.0.0.1", int(text)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _print_line(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


async def main(listen: int, to: str, host: str = "127.0.0.1") -> int:
    """``python -m wsdemo tap``: proxy ``host:listen`` → ``to`` and print what passes.

    Each chunk is printed as it arrives, followed by what it completed (an
    HTTP message, a frame, end of stream). Runs until Ctrl-C; returns the exit
    code (0 after Ctrl-C, 2 for a bad ``--to``); a port that cannot be listened
    on raises ``OSError``, which the command line reports as every command does.
    """
    out = sys.stdout
    try:
        target = parse_target(to)
    except ValueError as exc:
        print(f"wsdemo tap: {exc}", file=sys.stderr)
        return 2
    tap = Tap(target, host=host, port=listen)

    def show_chunk(chunk: Chunk) -> None:
        t = (chunk.t - tap.capture.t0) * 1000
        what = "FIN" if chunk.eof else f"{len(chunk.data)} B"
        _print_line(out, f"[{t:9.1f} ms] conn {chunk.conn} {chunk.direction.value}: chunk {what}")

    def show_message(message: Message) -> None:
        _print_line(out, f"    {message.direction.arrow} {message.kind:5} {message.nbytes:6} B  "
                         f"{message.summary}")
        if message.kind == "frame":
            # in front of Jupyter, name the kernel message a frame carries
            label = kernel_summary(message.frame)
            if label is not None:
                _print_line(out, f"      kernel message: {label}")

    tap.on_chunk = show_chunk
    tap.on_message = show_message
    await tap.start()
    _print_line(out, f"wsdemo tap: {host}:{tap.port} -> {target[0]}:{target[1]} (Ctrl-C stops)")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        pass
    finally:
        await tap.close()
        cap = tap.capture
        _print_line(out, f"wsdemo tap: {len(cap.connections)} connection(s), "
                         f"{cap.nbytes()} bytes, {len(cap.messages)} messages")
    return 0
