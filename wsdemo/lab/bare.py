"""The failure lab's bare server: a plain Tornado WebSocket broadcast, nothing more.

Every text message a client sends is written, unchanged, to every client
connected at that moment — the sender included. That is all. It has no
message ids, no sequence numbers, no rooms, no log and no login: exactly what
a WebSocket gives you before the application adds anything. Whatever a client
puts in its messages (a room name, an id) is the client's convention; this
server never reads it.

Started two ways:

* on the running asyncio loop — ``BareBroadcastServer(port=0).start()``;
* as its own process — ``python -m wsdemo.lab bare --port 0`` prints
  ``bare broadcast server on ws://127.0.0.1:PORT/ws`` once it listens, and
  stops on SIGTERM or Ctrl-C (the multi-server experiments run two of them).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

__all__ = ["BareBroadcastServer", "main"]

logger = logging.getLogger("wsdemo.lab")


def _retrieve(future: Any) -> None:
    # write_message returns a Task that fails when the peer is already gone.
    # Nobody awaits a broadcast, so read the exception here: otherwise asyncio
    # reports "exception was never retrieved" into whatever runs next.
    if not future.cancelled():
        future.exception()


class _BroadcastHandler(tornado.websocket.WebSocketHandler):
    def initialize(self, server: BareBroadcastServer) -> None:
        self.server = server

    def check_origin(self, origin: str) -> bool:
        return True  # bare: it checks nothing, the Origin header included

    def open(self) -> None:
        self.server.clients[self] = None

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.server.broadcast(message)

    def on_close(self) -> None:
        self.server.clients.pop(self, None)
        if not self.server.clients and self.server._all_closed is not None:
            self.server._all_closed.set()


class BareBroadcastServer:
    """Rebroadcasts every text message to every connected client, at ``/ws``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.clients: dict[_BroadcastHandler, None] = {}  # a dict keeps connection order
        self.broadcasts = 0  # messages rebroadcast since start
        self._http: tornado.httpserver.HTTPServer | None = None
        self._all_closed: asyncio.Event | None = None
        self._app = tornado.web.Application([(r"/ws", _BroadcastHandler, {"server": self})])

    def start(self) -> BareBroadcastServer:
        """Listen on ``host:port`` on the running loop; returns ``self``."""
        if self._http is None:
            sockets = tornado.netutil.bind_sockets(self.port, self.host)
            self.port = sockets[0].getsockname()[1]
            self._http = tornado.httpserver.HTTPServer(self._app)
            self._http.add_sockets(sockets)
        return self

    @property
    def running(self) -> bool:
        return self._http is not None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    def broadcast(self, text: str) -> int:
        """Write ``text`` to every connected client; returns how many."""
        self.broadcasts += 1
        sent = 0
        for client in list(self.clients):
            try:
                client.write_message(text).add_done_callback(_retrieve)
            except tornado.websocket.WebSocketClosedError:
                continue
            sent += 1
        return sent

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and close every client (1001), waiting at most ``timeout``."""
        if self._http is None:
            return
        self._http.stop()
        self._http = None
        if self.clients:
            self._all_closed = asyncio.Event()
            for client in list(self.clients):
                client.close(1001, "server stopping")
            try:
                await asyncio.wait_for(self._all_closed.wait(), timeout)
            except TimeoutError:
                logger.warning("%d bare client(s) did not close in time", len(self.clients))
            self._all_closed = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<BareBroadcastServer {state}, {len(self.clients)} client(s)>"


async def _serve(host: str, port: int, stop_on_eof: bool) -> None:
    server = BareBroadcastServer(host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = None
    if stop_on_eof:
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

        async def stop_at_eof() -> None:
            await stdin.read()  # returns at end of file: the parent is gone
            stop.set()

        watcher = asyncio.ensure_future(stop_at_eof())
    # The parent reads this line to learn the port (it may have asked for 0); by
    # now a SIGTERM stops the server cleanly.
    print(f"bare broadcast server on {server.ws_url}", flush=True)
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wsdemo.lab",
        description="Servers for the failure lab (notebook 04).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bare = commands.add_parser(
        "bare", help="run a bare Tornado broadcast server until SIGTERM or Ctrl-C",
        description="A plain Tornado WebSocket server at /ws that rebroadcasts every text "
        "message to every client: no ids, no seq, no rooms, no auth.")
    bare.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    bare.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    bare.add_argument("--stop-on-eof", action="store_true",
                      help="also stop when standard input ends (when started by a parent "
                      "process that holds the other end of a pipe)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.host, args.port, args.stop_on_eof))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    return 0
