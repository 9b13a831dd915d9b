"""Targets for the failure lab: one experiment, run against different servers.

An experiment in :mod:`wsdemo.lab` never talks to a server directly. It talks
to a :class:`Target` — an adapter that starts servers, opens client
:class:`Link` objects and restarts what it started — so the same experiment,
line for line, runs against:

* :class:`BareTarget` — :class:`~wsdemo.lab.bare.BareBroadcastServer`, a plain
  Tornado broadcast (in this process, or one process per server);
* :class:`ControlTarget` — the course's :class:`~wsdemo.server.ControlServer`,
  configured with an event log (``memory``, ``sqlite``; ``redis://…`` once it
  exists), an access hook (open mode, or a token scheme such as
  :class:`wsdemo.auth.JWTAccess`) and resume on or off.

The interface, in one place::

    target.name, target.shares_rooms, target.has_presence
    await target.start(servers=1) / await target.restart() / await target.stop()
    async with target.running(servers=2): ...          # start, and always stop
    target.credentials(user, {room: [actions]})        # a token, or None (nothing to show)
    link = await target.connect(name, server=0, credentials=None, lossy=False, resume=None)
    await target.server_publish(room, id, data, server=0)
    await target.history(room)                         # what a newcomer can read of the past

    await link.join(room); await link.leave(room)
    await link.publish(room, id, data); await link.set(room, t, v, id)
    link.seen, link.numbers(room), link.members(room), link.last_seq(room)
    await link.wait_until(predicate, what)             # bounded by link.timeout
    link.abort(); link.lose_replies(); link.cut(); await link.close()
    link = await link.reconnect(server=1)              # same client, new connection

Each :meth:`Target.start` gives fresh servers (empty rooms, a new temporary
SQLite file), so experiments do not see each other's messages. A target that
cannot do what an experiment needs raises :class:`NotAvailable`; the experiment
reports "not available yet" instead of pretending.

The messages an experiment sends carry their own number, ``data = {"n": 7}``,
so what a client received can be compared with what was sent whatever the
server adds (a ``seq``) or does not add (anything at all).

Why one file of this length: every target implements the same small interface, kept
side by side so they stay alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tornado.httpclient
import tornado.websocket

from .bare import BareBroadcastServer

__all__ = [
    "BareTarget",
    "ConnectionLost",
    "ControlTarget",
    "Delivery",
    "LAB_ROOMS",
    "Link",
    "LossyProxy",
    "NotAvailable",
    "Refused",
    "Target",
]

logger = logging.getLogger("wsdemo.lab")

#: The rooms every lab server has; ``ops`` also has one control, ``speed`` (0-10).
LAB_ROOMS = ("lab", "lobby", "ops", "kitchen", "garage")

# Close codes that mean "the server said no", as opposed to "the connection broke".
_REFUSAL_CODES = {1008, 4401, 4403, 4408}


class NotAvailable(Exception):
    """The target cannot do what the experiment needs (yet): say so, do not fake it."""


class Refused(Exception):
    """The server refused: an HTTP status at the upgrade, a close code, or an error reply."""

    def __init__(self, code: int | str | None, reason: str):
        super().__init__(f"{code}: {reason}" if code is not None else reason)
        self.code = code
        self.reason = reason


class ConnectionLost(Exception):
    """The connection ended before the awaited thing arrived (no ack, no echo)."""


@dataclass(frozen=True)
class Delivery:
    """One room message as a client received it. ``seq`` is None where the server has none."""

    room: str | None
    id: str | None
    kind: str
    data: Any
    seq: int | None

    @property
    def n(self) -> int | None:
        """The experiment's own number for this message, if it carries one."""
        n = self.data.get("n") if isinstance(self.data, dict) else None
        return n if isinstance(n, int) else None


# --- the lossy proxy ------------------------------------------------------------


class LossyProxy:
    """A loopback TCP proxy that can swallow the server's replies and then cut the line.

    It copies bytes both ways unchanged until :meth:`lose_replies`; from then on
    what the server sends is read and thrown away (the client's requests still
    get through). :meth:`cut` drops every connection without a closing
    handshake. Together: a request arrives and is acted on, its reply never
    comes back, and the connection dies — a lost ack, produced on purpose.
    """

    def __init__(self, host: str, port: int):
        self.host = host
        self.upstream_port = port
        self.port = 0
        self.replies_lost = 0  # bytes from the server thrown away
        self._dropping = False
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> LossyProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def lose_replies(self) -> None:
        self._dropping = True

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
                      ) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            client_w.transport.abort()
            return
        self._writers += [client_w, server_w]
        for task in (asyncio.ensure_future(self._pump(client_r, server_w, False)),
                     asyncio.ensure_future(self._pump(server_r, client_w, True))):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    reply: bool) -> None:
        try:
            while data := await reader.read(65536):
                if reply and self._dropping:
                    self.replies_lost += len(data)
                    continue
                writer.write(data)
                await writer.drain()
            writer.close()
        except (ConnectionError, OSError):
            writer.transport.abort()


# --- links: one client connection -------------------------------------------------


class Link:
    """One client's connection to a target's server (see the module docstring)."""

    def __init__(self, target: Target, name: str, server: int, credentials: str | None):
        self.target = target
        self.name = name
        self.server = server
        self.credentials = credentials
        self.timeout = target.timeout
        self.rooms: list[str] = []
        self.deliveries: list[Delivery] = []  # on this connection
        self.previous: Link | None = None  # the connection this one replaced
        self.closed = False
        self.close_code: int | None = None
        self.proxy: LossyProxy | None = None
        self._changed = asyncio.Event()

    # what arrived

    @property
    def seen(self) -> list[Delivery]:
        """Everything this client received, over this connection and the ones before it."""
        before = self.previous.seen if self.previous is not None else []
        return before + self.deliveries

    def numbers(self, room: str | None = None) -> list[int]:
        """The experiment numbers (``data["n"]``) received, in arrival order."""
        return [d.n for d in self.seen if d.n is not None and (room is None or d.room == room)]

    def members(self, room: str) -> list[str] | None:
        """Who the server says is in ``room`` — None where the server has no such notion."""
        return None

    def last_seq(self, room: str) -> int | None:
        return None

    async def wait_until(self, predicate: Callable[[], bool], what: str = "",
                         timeout: float | None = None) -> None:
        """Wait until ``predicate()`` holds, re-checked at every message; bounded."""
        async def watch() -> None:
            while not predicate():
                if self.closed:
                    raise ConnectionLost(f"{self.name}: connection closed while waiting for "
                                         f"{what or 'a message'}")
                self._changed.clear()
                await self._changed.wait()

        timeout = self.timeout if timeout is None else timeout
        try:
            await asyncio.wait_for(watch(), timeout)
        except TimeoutError:
            raise TimeoutError(f"{self.name}: {what or 'condition'} not within {timeout:g} s"
                               ) from None

    async def wait_for_id(self, msg_id: str, *, after: int = 0) -> Delivery:
        """The first delivery carrying ``msg_id`` among this connection's ``deliveries[after:]``."""
        def found() -> Delivery | None:
            return next((d for d in self.deliveries[after:] if d.id == msg_id), None)

        await self.wait_until(lambda: found() is not None, f"message {msg_id!r}")
        delivery = found()
        assert delivery is not None
        return delivery

    def _changed_now(self) -> None:
        self._changed.set()

    # what a client does (the protocol-specific subclasses fill these in)

    async def join(self, room: str) -> None:
        raise NotImplementedError

    async def leave(self, room: str) -> None:
        raise NotImplementedError

    async def publish(self, room: str, id: str, data: Any) -> dict[str, Any]:
        """Publish and wait for the server's confirmation (an ack, or the echo)."""
        raise NotImplementedError

    async def set(self, room: str, target: str, value: Any, id: str) -> dict[str, Any]:
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the TCP connection with no closing handshake, as a network failure would."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def lose_replies(self) -> None:
        """From now on, the server's replies to this client are lost on the way (lossy links)."""
        self._need_proxy().lose_replies()

    def cut(self) -> None:
        """Drop this (lossy) link's connection at the proxy, in both directions."""
        self._need_proxy().cut()

    def _need_proxy(self) -> LossyProxy:
        if self.proxy is None:
            raise RuntimeError(f"{self.name} is not a lossy link: connect(..., lossy=True)")
        return self.proxy

    async def reconnect(self, server: int | None = None, *, lossy: bool = False) -> Link:
        """A new connection for the same client, back in its rooms — resumed where the
        target can resume. ``server`` picks another server (default: the same one)."""
        link = await self.target._reconnect(self, self.server if server is None else server,
                                            lossy)
        link.previous = self
        return link

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} {self.name} server {self.server} {state}>"


def _abort_connection(conn: Any) -> None:
    stream = getattr(conn, "stream", None) or getattr(getattr(conn, "protocol", None),
                                                      "stream", None)
    if stream is not None:
        stream.close()


class BareLink(Link):
    """A client of the bare server. It wraps each message in the lab's own convention,
    ``{"room", "id", "from", "kind", "data"}`` — the server never looks inside."""

    _conn: tornado.websocket.WebSocketClientConnection

    async def _open(self, url: str) -> None:
        request = tornado.httpclient.HTTPRequest(url, connect_timeout=self.timeout,
                                                 request_timeout=self.timeout)
        try:
            self._conn = await asyncio.wait_for(tornado.websocket.websocket_connect(request),
                                                self.timeout)
        except tornado.httpclient.HTTPClientError as exc:
            raise Refused(exc.code, f"upgrade refused with HTTP {exc.code}") from None
        except (OSError, TimeoutError) as exc:
            raise Refused(None, f"cannot connect: {exc}") from None
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while (text := await self._conn.read_message()) is not None:
            try:
                msg = json.loads(text)
            except (TypeError, ValueError):
                continue  # not the lab's convention: somebody else's message
            if isinstance(msg, dict):
                self.deliveries.append(Delivery(msg.get("room"), msg.get("id"),
                                                msg.get("kind", "publish"), msg.get("data"),
                                                None))
                self._changed_now()
        self.closed = True
        self.close_code = self._conn.close_code
        self._changed_now()

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self._conn.write_message(json.dumps(message))
        except tornado.websocket.WebSocketClosedError:
            raise ConnectionLost(f"{self.name}: the connection is closed") from None

    async def join(self, room: str) -> None:
        # The bare server has no rooms: every client already gets every message.
        if room not in self.rooms:
            self.rooms.append(room)

    async def leave(self, room: str) -> None:
        if room in self.rooms:  # nothing to tell the server: it never knew
            self.rooms.remove(room)

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        # There is no ack: the only sign the server took a message is seeing it
        # come back, since the sender is one of the clients it rebroadcasts to.
        mark = len(self.deliveries)
        self._send(message)
        await self.wait_for_id(message["id"], after=mark)
        return {"echo": True, "id": message["id"], "seq": None, "duplicate": None}

    async def publish(self, room: str, id: str, data: Any) -> dict[str, Any]:
        return await self._request({"room": room, "id": id, "from": self.name,
                                    "kind": "publish", "data": data})

    async def set(self, room: str, target: str, value: Any, id: str) -> dict[str, Any]:
        return await self._request({"room": room, "id": id, "from": self.name, "kind": "set",
                                    "data": {"target": target, "value": value}})

    def abort(self) -> None:
        _abort_connection(self._conn)

    async def close(self) -> None:
        if not self._reader.done():
            self._conn.close(1000)
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), self.timeout)
        except TimeoutError:
            self._reader.cancel()


class ControlLink(Link):
    """A client of the control server (a :class:`~wsdemo.client.ControlClient` inside)."""

    async def _open(self, url: str, resume: dict[str, int] | None) -> None:
        from ..client.connection import ConnectError, ConnectionClosed, ControlClient, ServerError

        try:
            self.client = await ControlClient.connect(url, client=self.name,
                                                      token=self.credentials,
                                                      timeout=self.timeout, resume=resume)
        except ConnectError as exc:
            raise Refused(None, str(exc)) from None
        except ConnectionClosed as exc:
            raise Refused(exc.code, exc.reason or "closed at hello") from None
        except ServerError as exc:
            raise Refused(exc.code, str(exc)) from None
        self.user = self.client.welcome.get("user")
        self.recovered: list[dict[str, Any]] = []
        self._presence: dict[str, list[str]] = {}
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        from ..client.connection import ConnectionClosed

        while True:
            try:
                msg = await self.client.next_message(timeout=3600)
            except TimeoutError:
                continue
            except ConnectionClosed as closed:
                self.close_code = closed.code
                break
            kind = msg.get("type")
            if kind == "event":
                self.deliveries.append(Delivery(msg.get("room"), msg.get("id"),
                                                msg.get("kind", "publish"), msg.get("data"),
                                                msg.get("seq")))
            elif kind == "presence":
                self._presence[msg["room"]] = [m["user"] for m in msg.get("members", [])]
            elif kind == "recovered":
                self.recovered.append(msg)
            self._changed_now()
        self.closed = True
        self._changed_now()

    async def _call(self, request: Any) -> dict[str, Any]:
        from ..client.connection import ConnectionClosed, ServerError

        try:
            return await request
        except ServerError as exc:
            raise Refused(exc.code, str(exc)) from None
        except ConnectionClosed as exc:
            if exc.code in _REFUSAL_CODES:
                raise Refused(exc.code, exc.reason or "closed") from None
            raise ConnectionLost(f"{self.name}: {exc}") from None

    async def join(self, room: str) -> None:
        await self._call(self.client.join(room))
        if room not in self.rooms:
            self.rooms.append(room)

    async def leave(self, room: str) -> None:
        await self._call(self.client.leave(room))
        if room in self.rooms:
            self.rooms.remove(room)

    async def publish(self, room: str, id: str, data: Any) -> dict[str, Any]:
        return await self._call(self.client.publish(room, data, id=id))

    async def set(self, room: str, target: str, value: Any, id: str) -> dict[str, Any]:
        return await self._call(self.client.set(room, target, value, id=id))

    def members(self, room: str) -> list[str] | None:
        return list(self._presence.get(room, []))

    def last_seq(self, room: str) -> int | None:
        return self.client.last_seq.get(room)

    def abort(self) -> None:
        self.client.abort()

    async def close(self) -> None:
        await self.client.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), self.timeout)
        except TimeoutError:
            self._reader.cancel()


# --- targets ------------------------------------------------------------------------


class Target:
    """What every target offers (see the module docstring); subclasses fill it in."""

    name = "target"
    shares_rooms = False  # servers route a room's events between themselves
    has_presence = False  # the server can say who is in a room
    has_seq = False  # events carry a per-room sequence number

    def __init__(self, *, timeout: float = 5.0):
        self.timeout = timeout
        self.servers = 0
        self._links: list[Link] = []
        self._proxies: list[LossyProxy] = []

    # life cycle

    async def start(self, servers: int = 1) -> None:
        raise NotImplementedError

    async def restart(self) -> None:
        """Stop every server and start it again on the same port, keeping only what a
        new process would find (files; not memory). Open connections are closed."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Close every link and proxy this target made, then stop its servers."""
        links, self._links = self._links, []
        for link in links:
            with contextlib.suppress(Exception):
                await link.close()
        proxies, self._proxies = self._proxies, []
        for proxy in proxies:
            await proxy.close()
        await self._stop_servers()
        self.servers = 0

    async def _stop_servers(self) -> None:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def running(self, servers: int = 1) -> AsyncIterator[Target]:
        """``async with target.running(2):`` — fresh servers, always stopped at the end."""
        await self.start(servers)
        try:
            yield self
        finally:
            await self.stop()

    def port(self, server: int = 0) -> int:
        raise NotImplementedError

    def url(self, server: int = 0) -> str:
        return f"ws://127.0.0.1:{self.port(server)}/ws"

    # clients

    def credentials(self, user: str, grants: dict[str, list[str]]) -> str | None:
        """A credential for ``user`` with these grants (room -> actions); None: no scheme."""
        return None

    async def connect(self, name: str, *, server: int = 0, credentials: str | None = None,
                      lossy: bool = False, resume: dict[str, int] | None = None) -> Link:
        """Open a client connection. ``lossy`` puts a :class:`LossyProxy` in the path;
        ``resume`` ({room: last_seq}) is asked for where the protocol has it."""
        url = self.url(server)
        proxy = None
        if lossy:
            proxy = await LossyProxy("127.0.0.1", self.port(server)).start()
            self._proxies.append(proxy)
            url = f"ws://127.0.0.1:{proxy.port}/ws"
        link = await self._open(name, server, credentials, url, resume)
        link.proxy = proxy
        self._links.append(link)
        return link

    async def _open(self, name: str, server: int, credentials: str | None, url: str,
                    resume: dict[str, int] | None) -> Link:
        raise NotImplementedError

    async def _reconnect(self, old: Link, server: int, lossy: bool) -> Link:
        link = await self.connect(old.name, server=server, credentials=old.credentials,
                                  lossy=lossy)
        for room in old.rooms:
            await link.join(room)
        return link

    async def server_publish(self, room: str, id: str, data: Any, *, server: int = 0) -> None:
        """A message put into ``room`` by the server side (the experiments' end markers)."""
        raise NotImplementedError

    async def history(self, room: str, *, server: int = 0) -> list[Delivery]:
        """Every earlier message of ``room`` that a client arriving now can obtain."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name}>"


class BareTarget(Target):
    """:class:`~wsdemo.lab.bare.BareBroadcastServer`: in this process, or as processes.

    ``processes=None`` (the default) runs one server in this process and
    several as separate processes (``python -m wsdemo.lab bare``), like servers
    behind a load balancer; True or False forces one way.
    """

    name = "bare Tornado broadcast"

    def __init__(self, *, processes: bool | None = None, timeout: float = 5.0):
        super().__init__(timeout=timeout)
        self.processes = processes
        self._servers: list[BareBroadcastServer | asyncio.subprocess.Process] = []
        self._ports: list[int] = []

    def _use_processes(self, servers: int) -> bool:
        return servers > 1 if self.processes is None else self.processes

    async def start(self, servers: int = 1) -> None:
        if self._servers:
            raise RuntimeError("already started: stop() first")
        self._as_processes = self._use_processes(servers)
        try:
            for _ in range(servers):
                server, port = await self._start_one(0)
                self._servers.append(server)
                self._ports.append(port)
        except BaseException:
            await self._stop_servers()
            raise
        self.servers = servers

    async def _start_one(self, port: int) -> tuple[Any, int]:
        if not self._as_processes:
            server = BareBroadcastServer(port=port).start()
            return server, server.port
        # stdin is a pipe the server watches: if this process dies without
        # stopping it, the pipe closes and the server exits instead of lingering.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wsdemo.lab", "bare", "--port", str(port), "--stop-on-eof",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), self.timeout)
        except TimeoutError:
            line = b""
        found = re.search(rb"127\.0\.0\.1:(\d+)", line)
        if found is None:
            await self._end_process(proc)
            err = b""
            if proc.stderr is not None:
                with contextlib.suppress(TimeoutError):
                    err = await asyncio.wait_for(proc.stderr.read(), self.timeout)
            why = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the bare server process did not start: {why}")
        return proc, int(found.group(1))

    async def _end_process(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), self.timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()

    async def _stop_one(self, server: Any) -> None:
        if isinstance(server, BareBroadcastServer):
            await server.stop(self.timeout)
        else:
            await self._end_process(server)

    async def _stop_servers(self) -> None:
        servers, self._servers, self._ports = self._servers, [], []
        for server in servers:
            await self._stop_one(server)

    async def restart(self) -> None:
        for i, server in enumerate(self._servers):
            await self._stop_one(server)
            self._servers[i], self._ports[i] = await self._start_one(self._ports[i])

    def port(self, server: int = 0) -> int:
        return self._ports[server]

    async def _open(self, name: str, server: int, credentials: str | None, url: str,
                    resume: dict[str, int] | None) -> Link:
        link = BareLink(self, name, server, credentials)
        await link._open(url)
        return link

    async def server_publish(self, room: str, id: str, data: Any, *, server: int = 0) -> None:
        message = {"room": room, "id": id, "from": "server", "kind": "publish", "data": data}
        the_server = self._servers[server]
        if isinstance(the_server, BareBroadcastServer):
            the_server.broadcast(json.dumps(message))
            return
        # Another process: the only way in is as a client (to a bare server, the same thing).
        helper = await self.connect("server", server=server)
        try:
            await helper.publish(room, id, data)
        finally:
            await helper.close()
            self._links.remove(helper)

    async def history(self, room: str, *, server: int = 0) -> list[Delivery]:
        return []  # the bare protocol has no way to ask for the past, and nothing is kept


class ControlTarget(Target):
    """The course's :class:`~wsdemo.server.ControlServer`, in this process.

    * ``log``: ``"memory"`` (gone at a restart, as a process's memory is),
      ``"sqlite"`` (a fresh file per :meth:`start`, one per server, kept across
      :meth:`restart`), a Redis URL (one store shared by every server, under a
      fresh key prefix per :meth:`start`), or a function ``log(index)`` that
      returns the log for server ``index`` — called again at every restart, so
      it decides what survives one. A log with ``shared = True`` makes the
      servers route a room's events between them (:attr:`shares_rooms`);
    * ``access``: None for open mode, or an access object; if it has
      ``issue_token(user, grants)`` (:class:`wsdemo.auth.JWTAccess`), that is
      what :meth:`credentials` returns;
    * ``resume``: whether a reconnecting client asks to resume (``hello.resume``)
      or merely joins again.
    """

    has_presence = True
    has_seq = True

    def __init__(self, *, log: str | Callable[[int], Any] = "memory", access: Any = None,
                 resume: bool = True, timeout: float = 5.0):
        super().__init__(timeout=timeout)
        self.log = log
        self.access = access
        self.resume = resume
        self._redis = isinstance(log, str) and log.startswith(("redis://", "rediss://",
                                                               "unix://"))
        self.shares_rooms = self._redis
        self._servers: list[Any] = []
        self._dir: Path | None = None
        self._prefix = ""
        self.speed: list[Any] = []  # each server's "speed" widget, in room "ops"

    @property
    def name(self) -> str:  # type: ignore[override]
        if self._redis:
            log = "redis"
        elif isinstance(self.log, str):
            log = self.log
        else:
            log = getattr(self.log, "log_name", None) or "custom"
        if self.access is None or getattr(self.access, "open", False):
            access = "open mode"
        else:
            access = f"{type(self.access).__name__}"
        resume = "" if self.resume else ", no resume"
        return f"control server ({log} log, {access}{resume})"

    def _open_log(self, index: int) -> Any:
        if callable(self.log):
            return self.log(index)
        if self.log == "memory":
            from ..core.eventlog import MemoryEventLog

            return MemoryEventLog()
        if self.log == "sqlite":
            try:
                from ..stores.sqlite import SQLiteEventLog
            except ImportError:
                raise NotAvailable("the SQLite event log is not built yet (lesson 06)") from None
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="wsdemo-lab-"))
            return SQLiteEventLog(self._dir / f"server{index}.sqlite")
        if not self._prefix:
            # A fresh namespace per start: each experiment begins with empty rooms.
            self._prefix = f"wsdemo-lab-{uuid.uuid4().hex[:12]}"
        try:
            from ..stores import open_log

            return open_log(self.log, prefix=self._prefix)
        except (ImportError, ValueError) as exc:
            raise NotAvailable(f"event log {self.log.split('://')[0]}: {exc}") from None

    async def _start_one(self, index: int, port: int) -> Any:
        import ipywidgets

        from ..server.app import ControlServer

        log = self._open_log(index)
        if getattr(log, "shared", False):
            self.shares_rooms = True
        server = ControlServer(port=port, name=f"lab{index}", log=log, access=self.access,
                               hello_timeout=self.timeout)
        for room in LAB_ROOMS:
            server.add_room(room)
        speed = ipywidgets.IntSlider(value=5, min=0, max=10, description="speed")
        server.expose("speed", speed, room="ops")
        if index < len(self.speed):
            self.speed[index] = speed
        else:
            self.speed.append(speed)
        return server.start()

    async def start(self, servers: int = 1) -> None:
        if self._servers:
            raise RuntimeError("already started: stop() first")
        try:
            for i in range(servers):
                self._servers.append(await self._start_one(i, 0))
        except BaseException:
            await self._stop_servers()
            raise
        self.servers = servers

    async def _stop_servers(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            await server.stop(self.timeout)
        self.speed = []
        self._prefix = ""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def restart(self) -> None:
        for i, server in enumerate(self._servers):
            port = server.port
            await server.stop(self.timeout)
            self._servers[i] = await self._start_one(i, port)

    def port(self, server: int = 0) -> int:
        return self._servers[server].port

    def server(self, index: int = 0) -> Any:
        """The running :class:`~wsdemo.server.ControlServer` number ``index``."""
        return self._servers[index]

    def credentials(self, user: str, grants: dict[str, list[str]]) -> str | None:
        issue = getattr(self.access, "issue_token", None)
        return None if issue is None else issue(user, grants)

    async def _open(self, name: str, server: int, credentials: str | None, url: str,
                    resume: dict[str, int] | None) -> Link:
        link = ControlLink(self, name, server, credentials)
        await link._open(url, resume)
        if resume:
            link.rooms = list(resume)
            await link.wait_until(
                lambda: {r["room"] for r in link.recovered} >= set(resume), "the replay")
        return link

    async def _reconnect(self, old: Link, server: int, lossy: bool) -> Link:
        if not (self.resume and old.rooms):
            return await super()._reconnect(old, server, lossy)
        resume = {room: old.last_seq(room) or 0 for room in old.rooms}
        return await self.connect(old.name, server=server, credentials=old.credentials,
                                  lossy=lossy, resume=resume)

    async def server_publish(self, room: str, id: str, data: Any, *, server: int = 0) -> None:
        await self._servers[server].publish(room, data, sender="server", id=id)

    async def history(self, room: str, *, server: int = 0) -> list[Delivery]:
        # A newcomer that has seen nothing asks to resume from seq 0: "all you have".
        token = self.credentials("newcomer", {room: ["read"]})
        link = await self.connect("newcomer", server=server, credentials=token,
                                  resume={room: 0})
        try:
            return list(link.deliveries)
        finally:
            await link.close()
            self._links.remove(link)
