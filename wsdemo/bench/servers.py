"""The servers the benchmark measures, each run in its own process.

``python -m wsdemo.bench.servers KIND [--cpu 0] [--events N] [--log WHERE] [--deflate]``
starts one server on a free loopback port, prints one JSON line
``{"ready": port, "pid": pid}`` and serves until its stdin closes (so it dies
with the benchmark that started it) or it gets SIGTERM.

Kinds, each doing the same jobs as plainly as it can:

``raw``
    asyncio protocols and nothing else: the upgrade answered by hand, then the
    bytes echoed (``/echo``), a pre-encoded frame written to every connection
    per frame received (``/broadcast``), or pre-encoded events written in
    large chunks (``/replay``). No server can do less: it is the floor a
    server can reach, and so the ceiling of what the load generator can show.
``tornado``
    Tornado ``WebSocketHandler`` s doing the same, the obvious way.
``websockets``
    The ``websockets`` library's asyncio server, with its ``broadcast()``.
``wsdemo``
    The control server itself (:class:`wsdemo.server.ControlServer`): a
    ``controls`` room with one slider, a ``bench`` room that takes publishes,
    a ``history`` room, and an event log (memory, a SQLite file, or Redis)
    holding ``--events`` events of the history room, for a client to catch up on.

The same events (``event_texts``) are what every kind replays, byte for byte.

``--deflate`` (``tornado`` and ``wsdemo`` only) accepts a client's offer of
permessage-deflate (RFC 7692) with Tornado's defaults; without it every kind
declines the offer, as Tornado does unless a handler's
``get_compression_options()`` returns a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.eventlog import Event
from ..core.protocol import encode
from ..wire import Frame, Opcode, accept_key
from .load import pin_to_cpu, raise_fd_limit

__all__ = ["BENCH_DATA", "event_texts", "main", "recovered_text"]

BENCH_ROOM = "bench"  # where the benchmark publishes
HISTORY_ROOM = "history"  # what a catching-up client missed: nobody publishes here
BENCH_DATA = "x" * 16  # the data of every benchmark message: small, as a control change is
BACKLOG = 4096  # 10,000 connections arrive in bursts


def event_texts(count: int) -> list[str]:
    """The ``event`` messages ``1..count`` of the history room, as the control server sends
    them."""
    return [encode(Event(HISTORY_ROOM, seq, f"e{seq:07d}", "bench", "publish", BENCH_DATA)
                   .to_message()) for seq in range(1, count + 1)]


def recovered_text(count: int) -> str:
    return encode({"type": "recovered", "room": HISTORY_ROOM, "from": 1, "to": count,
                   "complete": True})


def _server_frame(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize()


# --- raw asyncio ------------------------------------------------------------------------

class _RawState:
    def __init__(self, events: int):
        self.broadcast: set[_RawConnection] = set()
        # What a broadcast sends per frame received: an unmasked frame of the size of a
        # publish (the raw server does not decode what it relays).
        self.broadcast_frame = _server_frame(
            encode({"type": "publish", "room": BENCH_ROOM, "id": "p0000000", "data": BENCH_DATA}))
        frames = [_server_frame(t) for t in event_texts(events)]
        self.replay_chunks = [b"".join(frames[i:i + 1000]) for i in range(0, len(frames), 1000)]
        self.replay_end = _server_frame(recovered_text(events))


def count_frames(buf: bytes) -> tuple[int, int]:
    """(complete frames in ``buf``, bytes they take): structure only, payloads untouched."""
    n, i, count = len(buf), 0, 0
    while n - i >= 2:
        b1 = buf[i + 1]
        size, start = b1 & 0x7F, i + 2
        if size == 126:
            if n - i < 4:
                break
            size, start = (buf[i + 2] << 8) | buf[i + 3], i + 4
        elif size == 127:
            if n - i < 10:
                break
            size, start = int.from_bytes(buf[i + 2:i + 10], "big"), i + 10
        end = start + size + (4 if b1 & 0x80 else 0)
        if end > n:
            break
        count += 1
        i = end
    return count, i


class _RawConnection(asyncio.Protocol):
    def __init__(self, state: _RawState):
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.path: str | None = None
        self.rest = b""
        self.replaying = False
        self._can_write: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.path is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            data = bytes(self.head[end + 4:])
            self._upgrade(bytes(self.head[:end]))
            if not data:
                return
        if self.path == "/echo":
            assert self.transport is not None
            self.transport.write(data)
        elif self.path == "/broadcast":
            buf = self.rest + data
            count, used = count_frames(buf)
            self.rest = buf[used:]
            if count:
                out = self.state.broadcast_frame * count
                for conn in self.state.broadcast:
                    if conn.transport is not None and not conn.transport.is_closing():
                        conn.transport.write(out)
        elif self.path == "/replay" and not self.replaying:
            self.replaying = True
            asyncio.ensure_future(self._replay())

    def _upgrade(self, head: bytes) -> None:
        assert self.transport is not None
        lines = head.decode("latin-1").split("\r\n")
        self.path = lines[0].split(" ")[1]
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        key = {k.lower(): v for k, v in headers.items()}.get("sec-websocket-key", "")
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n")
        if self.path == "/broadcast":
            self.state.broadcast.add(self)

    async def _replay(self) -> None:
        assert self.transport is not None
        for chunk in self.state.replay_chunks:
            if self.transport.is_closing():
                return
            self.transport.write(chunk)
            if self._can_write is not None:  # paced by the client's reading, like the others
                await self._can_write
        self.transport.write(self.state.replay_end)

    def pause_writing(self) -> None:
        self._can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        self._can_write = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.broadcast.discard(self)
        self.resume_writing()


async def start_raw(args: argparse.Namespace) -> Callable[[], Awaitable[None]]:
    state = _RawState(args.events)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _RawConnection(state), "127.0.0.1", 0,
                                      backlog=BACKLOG)
    args.port = server.sockets[0].getsockname()[1]

    async def stop() -> None:
        server.close()

    return stop


# --- bare Tornado ---------------------------------------------------------------------------

async def start_tornado(args: argparse.Namespace) -> Callable[[], Awaitable[None]]:
    import tornado.httpserver
    import tornado.netutil
    import tornado.web
    import tornado.websocket

    clients: set[tornado.websocket.WebSocketHandler] = set()
    events = event_texts(args.events)
    end = recovered_text(args.events)
    compression = {} if args.deflate else None

    class Handler(tornado.websocket.WebSocketHandler):
        def get_compression_options(self) -> dict[str, Any] | None:
            return compression  # Tornado's switch: None declines permessage-deflate

    class Echo(Handler):
        def on_message(self, message: str | bytes) -> None:
            self.write_message(message, binary=isinstance(message, bytes))

    class Broadcast(Handler):
        def open(self) -> None:
            clients.add(self)

        def on_message(self, message: str | bytes) -> None:
            data = message.encode() if isinstance(message, str) else message  # encoded once
            for client in list(clients):
                try:
                    client.write_message(data)
                except tornado.websocket.WebSocketClosedError:
                    clients.discard(client)

        def on_close(self) -> None:
            clients.discard(self)

    class Replay(Handler):
        started = False

        async def on_message(self, message: str | bytes) -> None:
            if self.started:
                return
            self.started = True
            try:
                for n, text in enumerate(events):
                    written = self.write_message(text)
                    if n % 64 == 63:  # paced by the client's reading, like the others
                        await written
                self.write_message(end)
            except tornado.websocket.WebSocketClosedError:
                return

    class Idle(Handler):
        pass

    app = tornado.web.Application(
        [(r"/echo", Echo), (r"/broadcast", Broadcast), (r"/replay", Replay), (r"/.*", Idle)],
        websocket_ping_interval=20.0, websocket_ping_timeout=20.0,  # as the control server
    )
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", backlog=BACKLOG)
    args.port = sockets[0].getsockname()[1]
    http = tornado.httpserver.HTTPServer(app)
    http.add_sockets(sockets)

    async def stop() -> None:
        http.stop()

    return stop


# --- websockets -------------------------------------------------------------------------------

async def start_websockets(args: argparse.Namespace) -> Callable[[], Awaitable[None]]:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    clients: set[ServerConnection] = set()
    events = event_texts(args.events)
    end = recovered_text(args.events)

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        if path == "/echo":
            async for message in ws:
                await ws.send(message)
        elif path == "/broadcast":
            clients.add(ws)
            try:
                async for message in ws:
                    broadcast(clients, message)
            finally:
                clients.discard(ws)
        elif path == "/replay":
            await ws.recv()
            for text in events:
                await ws.send(text)  # waits only when the write buffer is full
            await ws.send(end)
        else:
            await ws.wait_closed()

    # No compression, as the others; the library's default pings (20 s), as the others.
    server = await serve(handler, "127.0.0.1", 0, compression=None, backlog=BACKLOG)
    args.port = next(iter(server.sockets)).getsockname()[1]

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return stop


# --- the control server --------------------------------------------------------------------

async def open_bench_log(where: str, events: int, synchronous: str) -> Any:
    """The control server's log, holding ``events`` events of the history room."""
    from ..core.eventlog import MemoryEventLog

    if where == "memory":
        log = MemoryEventLog(max_events=max(10_000, events), max_ids=max(100_000, events))
        for seq in range(1, events + 1):  # the same events as event_texts()
            log.append_now(HISTORY_ROOM, f"e{seq:07d}", "bench", "publish", BENCH_DATA)
        return log
    if where.startswith(("redis://", "rediss://")):
        from ..stores import open_log

        if events:
            raise ValueError("--events is not supported with a Redis log")
        return open_log(where)
    from ..stores.sqlite import SCHEMA_VERSION, SQLiteEventLog

    path = where.removeprefix("sqlite:")
    if events:
        await _prefill_sqlite(path, events, SCHEMA_VERSION)
    return SQLiteEventLog(path, synchronous=synchronous, max_events=max(1_000_000, events))


async def _prefill_sqlite(path: str, events: int, schema: int) -> None:
    """Write the events in one transaction.

    Through the log's own ``append`` this would be one committed transaction
    per event (about 1,000 a second with a disk sync each): minutes for
    100,000. The rows are the ones ``append`` writes (schema 2: each event's
    stored size, each room's total); another schema falls back to ``append``
    rather than guessing.
    """
    from ..core.eventlog import stored_size
    from ..stores.sqlite import SQLiteEventLog

    log = SQLiteEventLog(path, synchronous="NORMAL", max_events=max(1_000_000, events))
    if schema != 2:
        for seq in range(1, events + 1):
            await log.append(HISTORY_ROOM, f"e{seq:07d}", "bench", "publish", BENCH_DATA)
        await log.close()
        return
    await log.close()  # it made the schema
    data = json.dumps(BENCH_DATA, separators=(",", ":"))
    now = time.time()
    sizes = [stored_size(f"e{s:07d}", "bench", data) for s in range(1, events + 1)]
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO events (room, seq, id, sender, kind, data, time, size) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       ((HISTORY_ROOM, s, f"e{s:07d}", "bench", "publish", data, now,
                         sizes[s - 1]) for s in range(1, events + 1)))
        db.executemany("INSERT INTO ids VALUES (?, ?, ?)",
                       ((HISTORY_ROOM, f"e{s:07d}", s) for s in range(1, events + 1)))
        db.execute("INSERT OR REPLACE INTO rooms (room, last_seq, held_bytes) VALUES (?, ?, ?)",
                   (HISTORY_ROOM, events, sum(sizes)))
        db.execute("COMMIT")
    finally:
        db.close()


async def start_wsdemo(args: argparse.Namespace) -> Callable[[], Awaitable[None]]:
    import ipywidgets as widgets

    from ..server.app import ControlServer

    log = await open_bench_log(args.log, args.events, args.sync)
    server = ControlServer("127.0.0.1", 0, log=log, ping_interval=20.0,
                           compression={} if args.deflate else None)
    server.add_room(BENCH_ROOM)
    server.add_room(HISTORY_ROOM)
    server.expose("speed", widgets.IntSlider(value=5, min=0, max=10, step=1), room="controls")
    server.start()
    args.port = server.port

    async def stop() -> None:
        await server.stop(timeout=2.0)

    return stop


STARTERS = {
    "raw": start_raw,
    "tornado": start_tornado,
    "websockets": start_websockets,
    "wsdemo": start_wsdemo,
}


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop_server = await STARTERS[args.kind](args)
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_signal_handler(signal.SIGINT, done.set)

    # End of stdin means the benchmark is gone: never outlive it.
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch_stdin() -> None:
        while await reader.read(1024):
            pass
        done.set()

    watcher = asyncio.ensure_future(watch_stdin())
    print(json.dumps({"ready": args.port, "pid": os.getpid()}), flush=True)
    await done.wait()
    watcher.cancel()
    try:
        await asyncio.wait_for(stop_server(), 3)
    except Exception:  # stopping is best effort: the process ends either way
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsdemo.bench.servers",
                                     description="One server for the benchmark (run by "
                                     "python -m wsdemo bench).")
    parser.add_argument("kind", choices=sorted(STARTERS))
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--events", type=int, default=0,
                        help="events held for a replay (wsdemo: prefilled into its log)")
    parser.add_argument("--log", default="memory",
                        help="wsdemo's event log: memory, sqlite:PATH or redis://...")
    parser.add_argument("--sync", default="FULL", choices=["FULL", "NORMAL"],
                        help="SQLite synchronous mode (FULL, the default of the log)")
    parser.add_argument("--deflate", action="store_true",
                        help="accept permessage-deflate (tornado and wsdemo only)")
    args = parser.parse_args(argv)
    if args.deflate and args.kind not in ("tornado", "wsdemo"):
        parser.error(f"--deflate is for tornado and wsdemo, not {args.kind}")
    pin_to_cpu(args.cpu)
    raise_fd_limit()
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
