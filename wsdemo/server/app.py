"""The control server: Tornado serving the ``wsdemo.v1`` channel and its page.

One class, :class:`ControlServer`, started three ways:

* in a notebook, on the kernel's own running loop —
  ``server = ControlServer.launch()``: handlers then run on the kernel's main
  thread, where widget traits may be changed, and launching again in the same
  kernel returns the server already running instead of a second one;
* from the command line — ``python -m wsdemo serve --port 8765``;
* by tests — ``ControlServer(port=0).start()`` on a random loopback port.

It serves the WebSocket at ``/ws`` (subprotocol ``wsdemo.v1``) and the control
page at ``/``. The message rules live in :mod:`wsdemo.core.protocol`; this module is
the glue that gets them on and off the network, and that never lets an
exception escape into Tornado (a bad message becomes an ``error`` reply or a
close code; the other clients keep being served).

Why one file of this length: the server is the one owner of rooms, the log, the
followers of a shared log and presence across servers; what splits out cleanly
(session, room, bridge, page, transport) already has.
"""

from __future__ import annotations

import asyncio
import functools
import html
import ipaddress
import itertools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

import tornado.httpserver
import tornado.netutil
import tornado.web

from ..core.access import AccessDenied, OpenAccess, Principal
from ..core.eventlog import Appended, Event, MemoryEventLog
from ..core.protocol import (
    MAX_MESSAGE_BYTES,
    SUBPROTOCOL,
    CloseCode,
    ErrorCode,
    ProtocolError,
    check_value,
    encode,
)
from .bridge import WidgetBridge
from .guard import AddressCounter, GuardedApplication, HostCheck, LoginLimiter
from .page import PageFrame, PageHandler
from .room import Room
from .session import Session
from .transport import text_frame

__all__ = ["ControlServer"]

logger = logging.getLogger("wsdemo.server")

class _StatusHandler(tornado.web.RequestHandler):
    def initialize(self, server: ControlServer) -> None:
        self.server = server

    def get(self) -> None:
        """Who is connected where: for loopback in open mode, else for an admin token.

        Sent as ``Authorization: Bearer TOKEN``; the answer lists only the rooms that
        token may read.
        """
        self.set_header("Cache-Control", "no-store")
        access = self.server.access
        principal = None
        if getattr(access, "open", False):
            if not _is_loopback(self.request.remote_ip):
                self.send_error(403, reason="status is for loopback in open mode")
                return
        else:
            scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
            try:
                if scheme.lower() != "bearer" or not token:
                    raise AccessDenied("no token", CloseCode.BAD_TOKEN)
                principal = access.authenticate(_Credentials(token.strip()), None)
            except AccessDenied:
                self.set_header("WWW-Authenticate", 'Bearer realm="wsdemo"')
                self.send_error(401, reason="a bearer token is needed")
                return
            if not access.authorize(principal, "admin", "*"):
                self.send_error(403, reason="the token has no admin grant")
                return
        self.write(self.server.status(principal))


class _Credentials:
    """What an access hook reads of a hello, for a token sent over plain HTTP."""

    def __init__(self, token: str):
        self.token = token
        self.client = None


def _is_loopback(ip: str | None) -> bool:
    try:
        return ipaddress.ip_address(ip or "").is_loopback
    except ValueError:
        return False


class _DeflateSession(Session):
    """A session that accepts permessage-deflate: Tornado's hook for it is this method."""

    def get_compression_options(self) -> dict[str, Any] | None:
        return self.server.compression  # type: ignore[attr-defined]


class ControlServer:
    """The wsdemo control server. See the module docstring for the three ways to start it."""

    _launched: dict[str, ControlServer] = {}

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str = "default",
        log: Any = None,
        hello_timeout: float = 10.0,
        queue_limit: int = 1000,
        max_buffered_bytes: int = 4 * 1024 * 1024,
        ping_interval: float = 20.0,
        presence_grace: float = 5.0,
        presence_window: float = 0.05,
        rate_limit: float | None = None,
        rate_burst: int | None = None,
        allowed_origins: list[str] | None = None,
        access: Any = None,
        clock: Any = None,
        presence: Any = None,
        compression: dict[str, Any] | None = None,
        public_names: list[str] | None = None,
        max_connections_per_address: int | None = None,
        idle_timeout: float | None = None,
        header_timeout: float = 10.0,
        login_rate: float = 10.0,
        ssl_context: Any = None,
    ):
        self.host = host
        self.port = port
        self.name = name
        self.log = log if log is not None else MemoryEventLog()
        # The memory log appends at once (looked up once, not per message); a shared
        # log must also tell the other servers, so it is always awaited.
        self._append_now = (None if getattr(self.log, "shared", False)
                            else getattr(self.log, "append_now", None))
        self.hello_timeout = hello_timeout
        # A session may have this many messages, or bytes, not yet taken by its
        # socket; past either it is a slow consumer and closed with 1013.
        self.queue_limit = queue_limit
        self.max_buffered_bytes = max_buffered_bytes
        # Presence changes within this many seconds go out as one message per member.
        self.presence_window = presence_window
        # Publish/set a second per session (None: no limit), and the burst it may send
        # at once (default: twice the rate); see wsdemo.core.limits.
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst if rate_burst is not None else (
            None if rate_limit is None else max(1, int(2 * rate_limit)))
        self.presence_grace = presence_grace
        # Shared presence (wsdemo.stores.redis_presence.RedisPresence): members of every server.
        self.presence_store = presence
        self._presence_ops: asyncio.Queue | None = None
        self._presence_tasks: list[asyncio.Task] = []
        self.allowed_origins = None if allowed_origins is None else set(allowed_origins)
        # The names this server answers to, besides loopback ones and IP literals
        # (wsdemo.server.guard: a DNS-rebinding page is refused 403 before any handler).
        self.public_names = list(public_names or [])
        # WebSocket connections one client address may hold (None: no limit); past it
        # the upgrade is answered 429.
        self.connections = AddressCounter(max_connections_per_address)
        # Seconds without a message from a client (after its hello) before it is
        # closed 1001 (None: never). Pongs do not count: a browser answers pings by itself.
        self.idle_timeout = idle_timeout
        # Seconds a client has to send a whole request head: half-sent handshakes are
        # dropped after that (Tornado's idle_connection_timeout; its default is an hour).
        self.header_timeout = header_timeout
        # Password attempts a minute per address at POST /token (bursts of 5); past it 429.
        self.logins = LoginLimiter(login_rate)
        # An ssl.SSLContext with a certificate: https:// and wss:// instead of http/ws.
        self.ssl_context = ssl_context
        self.access = access if access is not None else OpenAccess()
        self.clock = clock if clock is not None else time.time
        # permessage-deflate (RFC 7692): None (the default) declines a client's offer; a
        # dict (even {}) accepts it, with Tornado's options (compression_level, mem_level).
        # It costs a zlib state per connection, and a broadcast is compressed per member.
        self.compression = compression
        self.rooms: dict[str, Room] = {}
        self.sessions: dict[Session, None] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        self._session_ids = itertools.count(1)
        self._followers: dict[str, asyncio.Task] = {}
        self._all_closed: asyncio.Event | None = None
        self._unwatch_revocations: Callable[[], None] | None = None
        # An access object may serve HTTP routes of its own (a token endpoint).
        extra = getattr(self.access, "http_handlers", None)
        self._app = GuardedApplication(
            [
                (r"/ws", Session if compression is None else _DeflateSession,
                 {"server": self}),
                (r"/status", _StatusHandler, {"server": self}),
                (r"/(?:index\.html)?", PageHandler),
                *(extra(self) if extra is not None else []),
            ],
            websocket_max_message_size=MAX_MESSAGE_BYTES,
            websocket_ping_interval=ping_interval,
            websocket_ping_timeout=ping_interval,
            host_check=HostCheck(host, self.public_names),
        )

    # --- life cycle ------------------------------------------------------------

    @classmethod
    def launch(cls, port: int = 0, host: str = "127.0.0.1", *, name: str = "default",
               **options: Any) -> ControlServer:
        """Start a server on the running loop, or return the one this process already runs.

        Made for notebooks: re-running the cell that launches the server gives
        back the same server, not a second one on another port.
        """
        running = cls._launched.get(name)
        if running is not None and running.running:
            if port not in (0, running.port) or host != running.host:
                raise RuntimeError(
                    f"server {name!r} already runs at {running.url}; "
                    "stop it (await server.stop()) before starting it elsewhere"
                )
            logger.info("server %r already running at %s", name, running.url)
            return running
        server = cls(host, port, name=name, **options).start()
        cls._launched[name] = server
        return server

    @classmethod
    def launched(cls, name: str = "default") -> ControlServer | None:
        server = cls._launched.get(name)
        return server if server is not None and server.running else None

    def start(self) -> ControlServer:
        """Listen on ``host:port`` on the running asyncio loop; returns ``self``."""
        if self._http is not None:
            return self
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "start() needs a running asyncio loop: call it from a notebook cell, "
                "an async function, or use `python -m wsdemo serve`"
            ) from None
        self._thread_id = threading.get_ident()
        sockets = tornado.netutil.bind_sockets(self.port, self.host)
        self.port = sockets[0].getsockname()[1]
        self._http = tornado.httpserver.HTTPServer(
            self._app, ssl_options=self.ssl_context,
            idle_connection_timeout=self.header_timeout, body_timeout=self.header_timeout)
        self._http.add_sockets(sockets)
        for room in self.rooms.values():
            self._start_follower(room)
            if room.bridge is not None:
                self._restore_controls(room, room.bridge.targets)
        if self.presence_store is not None:
            self._presence_ops = asyncio.Queue()
            self._presence_tasks = [asyncio.ensure_future(self._write_presence()),
                                    asyncio.ensure_future(self._watch_presence())]
        watch = getattr(self.access, "watch_revocations", None)
        if watch is not None:
            # A revoked credential ends the sessions it opened, not only new ones.
            self._unwatch_revocations = watch(
                lambda credential: self.call_soon(self._end_revoked, credential))
        logger.info("control server %r listening on %s", self.name, self.url)
        return self

    def _end_revoked(self, credential: str) -> None:
        for session in list(self.sessions):
            principal = session.principal
            if principal is not None and principal.credential == credential:
                session.close_with(CloseCode.BAD_TOKEN, "token revoked: its signing key was "
                                   "removed")

    @property
    def running(self) -> bool:
        return self._http is not None

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, close every client with 1001, and wait until they are gone."""
        if self._http is None:
            return
        self._http.stop()
        self._http = None
        if self._unwatch_revocations is not None:
            self._unwatch_revocations()
            self._unwatch_revocations = None
        if self.sessions:
            self._all_closed = asyncio.Event()
            for session in list(self.sessions):
                session.close_with(CloseCode.GOING_AWAY, "server stopping")
            try:
                await asyncio.wait_for(self._all_closed.wait(), timeout)
            except TimeoutError:
                logger.warning("%d client(s) did not close in time", len(self.sessions))
        try:
            # Bounded: a stop must end (a SIGTERM to `serve` must end the process)
            # even if a store that was restarted under us hangs in its close.
            await asyncio.wait_for(self._release_stores(), timeout)
        except TimeoutError:
            logger.warning("stop: presence and event log not released in %g s; "
                           "stopping anyway", timeout)
        for room in self.rooms.values():
            room.forget_lingering()
            if room.bridge is not None:
                room.bridge.close()
        if self._launched.get(self.name) is self:
            del self._launched[self.name]
        logger.info("control server %r stopped", self.name)

    async def _release_stores(self) -> None:
        """Stop the presence tasks and room followers, then close their stores."""
        if self._presence_tasks:
            await self._flush_presence()
            for task in self._presence_tasks:
                task.cancel()
            await asyncio.gather(*self._presence_tasks, return_exceptions=True)
            self._presence_tasks = []
            await self.presence_store.close()
        for task in self._followers.values():
            task.cancel()
        await asyncio.gather(*self._followers.values(), return_exceptions=True)
        self._followers.clear()
        await self.log.close()

    def _closed(self, session: Session) -> None:
        if self._all_closed is not None and not self.sessions:
            self._all_closed.set()

    def _new_session_id(self) -> str:
        return f"s{next(self._session_ids)}"

    # --- rooms and controls ------------------------------------------------------

    def add_room(self, name: str, *, publish: bool = True) -> Room:
        """A room clients may join; ``publish=False`` makes it server-to-client only."""
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(self, name, publish=publish)
            if self.running:
                self._start_follower(room)
        else:
            room.accepts_publish = publish
        return room

    # --- fan-out through a shared log (several servers) ----------------------------
    #
    # With a log that several servers share (Redis), the server that appends an
    # event is not the only one with members in the room. So no server broadcasts
    # what it appended; each follows the room's log and applies and broadcasts
    # every event, from any server, in seq order.

    # --- presence shared by several servers -------------------------------------------
    #
    # Each server writes its own sessions to the shared table, in order, from one
    # task; and when any server changes a room's members, re-reads that room and
    # tells its own members. Without a shared table, presence is this server's.

    def _presence_write(self, op: str, *args: Any) -> None:
        if self._presence_ops is not None:
            self._presence_ops.put_nowait((op, args))

    async def _write_presence(self) -> None:
        assert self._presence_ops is not None
        while True:
            op, args = await self._presence_ops.get()
            try:
                await getattr(self.presence_store, op)(*args)
                # Read the room back ourselves rather than wait for the notification:
                # it may have gone out before our subscription was made.
                await self._refresh_presence(args[0])
            except Exception as exc:  # remembered by the store; written again later
                logger.warning("presence %s %s not written now: %s", op, args[:2], exc)
            finally:
                self._presence_ops.task_done()

    async def _refresh_presence(self, name: str) -> None:
        room = self.rooms.get(name)
        if room is None or not room.members:
            return
        members = await self.presence_store.members(name)
        room.shared_counts = {m["user"]: m["connections"] for m in members}
        room.presence_changed()

    async def _flush_presence(self) -> None:
        if self._presence_ops is not None:
            try:
                await asyncio.wait_for(self._presence_ops.join(), 2.0)
            except TimeoutError:
                logger.warning("presence updates not flushed before stop")

    async def _watch_presence(self) -> None:
        store = self.presence_store
        while True:
            try:
                await store.start()
                async for name in store.changes():
                    await self._refresh_presence(name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("shared presence unavailable (%s); retrying", exc)
                await asyncio.sleep(1.0)

    @property
    def epoch(self) -> str | None:
        """The identity of the event log: seqs mean nothing across two of them."""
        return getattr(self.log, "epoch", None)

    @property
    def shared_log(self) -> bool:
        return bool(getattr(self.log, "shared", False))

    def _start_follower(self, room: Room) -> None:
        if self.shared_log and room.name not in self._followers:
            task = asyncio.ensure_future(self._follow(room))
            self._followers[room.name] = task

    async def _follow(self, room: Room) -> None:
        after: int | None = None
        while True:
            try:
                if after is None:  # inside the loop: the log may be down at start
                    after = await room.current_seq()
                async for event in self.log.follow(room.name, after):
                    self._apply_followed(room, event)
                    after = event.seq
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if type(exc).__name__ == "EventsMissing":
                    # The log cannot continue without a gap (past retention, or a
                    # store that lost events). Members must resume and get a
                    # snapshot; we start again from what the log has now.
                    logger.error("room %r: %s; members must resume", room.name, exc)
                    for session in list(room.members):
                        session.close_with(CloseCode.TRY_AGAIN_LATER, "events missing; resume")
                    room.applied_seq = None
                    after = None
                    continue
                # The log retries by itself; this is a last resort, paced.
                logger.exception("following %r failed; following again", room.name)
                await asyncio.sleep(1.0)

    def _apply_followed(self, room: Room, event: Event) -> None:
        if event.seq <= (room.applied_seq or 0):
            return
        if event.kind == "set" and room.bridge is not None and event.id not in room.local_ids:
            data = event.data if isinstance(event.data, dict) else {}
            try:
                value = room.bridge.check(data.get("target", ""), data.get("value"))
                room.bridge.apply(data["target"], value)
            except Exception as exc:  # another server's controls may differ from ours
                logger.warning("seq %d of %r not applied here: %s", event.seq, room.name, exc)
        room.local_ids.discard(event.id)
        room.applied_seq = event.seq
        self._broadcast(room, event.to_message(), event.seq)

    def expose(self, target: str, widget: Any, room: str = "controls") -> Any:
        """Make ``widget`` a control named ``target`` in ``room``; returns the widget."""
        the_room = self.rooms.get(room) or self.add_room(room, publish=False)
        if the_room.bridge is None:
            the_room.bridge = WidgetBridge(
                the_room.name, submit=functools.partial(self._kernel_set, the_room.name),
                call_soon=self.call_soon)
        the_room.bridge.expose(target, widget)
        if self.running:
            self._restore_controls(the_room, [target])
        return widget

    def _kernel_set(self, room: str, target: str, value: Any) -> Awaitable[Event] | None:
        """A change made in the kernel (a widget moved), to be logged and broadcast."""
        if not self.running:
            return None
        try:
            check_value(value)
        except ProtocolError as refused:
            logger.error("%s.%s: the notebook's value is not sent: %s", room, target,
                         refused.message)
            return None
        return self._accept(self.rooms[room], self.log.new_id("kernel"), "kernel", "set",
                            {"target": target, "value": value}, None)

    def _restore_controls(self, room: Room, targets: list[str]) -> None:
        """Put the log's latest values back into the controls (after a restart)."""
        if room.bridge is None or not hasattr(self.log, "state"):
            return
        task = asyncio.ensure_future(self._restore(room, targets))
        room.restoring.add(task)
        task.add_done_callback(room.restoring.discard)

    async def _restore(self, room: Room, targets: list[str]) -> None:
        try:
            state = await self.log.state(room.name)
        except Exception as exc:
            logger.warning("controls of %r not restored from the log: %s", room.name, exc)
            return
        assert room.bridge is not None
        for target in targets:
            if target not in state or target not in room.bridge.targets:
                continue
            try:
                room.bridge.apply(target, room.bridge.check(target, state[target]))
            except Exception as exc:  # the widget's limits changed since it was logged
                logger.warning("%s.%s: logged value %r does not fit any more (%s)",
                               room.name, target, state[target], exc)

    # --- events ------------------------------------------------------------------

    async def publish(self, room: str, data: Any, *, sender: str = "kernel",
                      id: str | None = None) -> Event:
        """Put one event into ``room`` from the server side and send it to every member.

        ``data`` is checked as a client's would be (:func:`~wsdemo.core.protocol.check_value`):
        what cannot be stored and sent back raises ``ProtocolError`` and is not logged.
        """
        check_value(data)
        the_room = self.rooms.get(room) or self.add_room(room, publish=False)
        return await self._accept(the_room, id or self.log.new_id(sender), sender, "publish",
                                  data, None)

    def _append(self, room: Room, msg_id: str, sender: str, kind: str, data: Any,
                origin: Session | None) -> Appended | Awaitable[Appended]:
        """Hand one event to the log: an ``Appended`` now (memory log), or an awaitable."""
        if self.shared_log and origin is None and kind == "set":
            # A change made in our own kernel is already applied: the follower must
            # not apply it again when it comes back from the shared log (it may come
            # back before append returns, so this is noted first).
            room.local_ids.add(msg_id)
        if self._append_now is not None:
            return self._append_now(room.name, msg_id, sender, kind, data)
        return self.log.append(room.name, msg_id, sender, kind, data)

    def _accepted(self, room: Room, appended: Appended, kind: str, data: Any,
                  origin: Session | None) -> Event:
        """Apply, acknowledge, broadcast an event the log holds — in that order."""
        event = appended.event
        if self.shared_log:
            # The room's follower applies and broadcasts it, in seq order with the
            # events of the other servers.
            if origin is not None:
                origin.send(appended.ack())
            return event
        if not appended.duplicate and kind == "set" and origin is not None and room.bridge:
            # A remote set changes the widget; a kernel change already has.
            try:
                room.bridge.apply(data["target"], data["value"])
            except Exception:  # checked before logging, so this is a fault of ours
                logger.exception("seq %d of %r is logged but could not be applied",
                                 event.seq, room.name)
        if origin is not None:
            origin.send(appended.ack())
        if not appended.duplicate:
            room.applied_seq = max(room.applied_seq or 0, event.seq)
            self._broadcast(room, event.to_message(), event.seq)
        return event

    async def _accept(self, room: Room, msg_id: str, sender: str, kind: str, data: Any,
                      origin: Session | None) -> Event:
        """Log, apply, acknowledge, broadcast — in that order (an ack means it is kept)."""
        try:
            appended = self._append(room, msg_id, sender, kind, data, origin)
            if not isinstance(appended, Appended):
                appended = await appended
        except ProtocolError as error:  # the client's mistake (too large): said as it is
            raise ProtocolError(error.code, error.message, msg_id) from None
        except Exception as exc:
            logger.error("event log refused an event for %r: %s", room.name, exc)
            raise ProtocolError(
                ErrorCode.UNAVAILABLE, "the event log could not keep it; retry", msg_id
            ) from None
        return self._accepted(room, appended, kind, data, origin)

    def _broadcast(self, room: Room, message: dict[str, Any], seq: int | None = None) -> None:
        # Encoded and framed once; the same bytes go to every member (server frames
        # are not masked), with no Task or coroutine per member.
        if seq is not None and room.presence_pending:
            # Presence first: no member sees an event from someone it has not been told
            # joined, and a lesson that waits for an event has the presence before it.
            room.flush_presence()
        frame = text_frame(encode(message).encode())
        name = room.name
        for session in list(room.members):
            session.deliver(name, seq, frame)

    def call_soon(self, callback: Any, *args: Any) -> None:
        """Run ``callback`` on the server's loop, from any thread."""
        assert self.loop is not None, "the server is not started"
        if threading.get_ident() == self._thread_id:
            self.loop.call_soon(callback, *args)
        else:
            self.loop.call_soon_threadsafe(callback, *args)

    # --- addresses and display ---------------------------------------------------

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self._netloc}/"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.ssl_context else 'ws'}://{self._netloc}/ws"

    @property
    def proxy_path(self) -> str | None:
        """The page's path through jupyter-server-proxy, when running under a Jupyter hub."""
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
        if not prefix:
            return None
        return f"{prefix.rstrip('/')}/proxy/{self.port}/"

    @property
    def page_url(self) -> str:
        return self.proxy_path or self.url

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        """The allowlist when there is one; else only the page's own origin.

        Not "any loopback origin": a page on another localhost port (a dev server,
        a compromised tool) is another site. The Host itself was checked first
        (:class:`~wsdemo.server.guard.HostCheck`), so "Origin = Host" cannot be a
        rebinding page's own name.
        """
        if self.allowed_origins is not None:
            return origin in self.allowed_origins
        return bool(host_header) and urlparse(origin).netloc.lower() == host_header.lower()

    def clients(self) -> list[Session]:
        return list(self.sessions)

    def status(self, principal: Principal | None = None) -> dict[str, Any]:
        """Rooms and clients; with ``principal``, only the rooms it may read."""
        def readable(room: str) -> bool:
            return principal is None or self.access.authorize(principal, "read", room)

        return {
            "name": self.name,
            "running": self.running,
            "log": getattr(self.log, "name", type(self.log).__name__),
            "rooms": {n: len(r.members) for n, r in self.rooms.items() if readable(n)},
            "clients": [s.describe(readable) for s in self.sessions],
        }

    def page(self, height: int = 360) -> Any:
        """The control page, embedded (an iframe) when shown in a notebook."""
        return PageFrame(self.page_url, height)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        if getattr(self.access, "open", False):
            state += ", OPEN MODE: no authentication"
        lines = [f"ControlServer {self.name!r} at {self.url} ({state})"]
        lines.append(f"  WebSocket: {self.ws_url} (subprotocol {SUBPROTOCOL})")
        lines.append(f"  page:      {self.page_url}")
        def described(room: Room) -> str:
            n = len(room.controls())
            return f"{room.name} ({n} control{'' if n == 1 else 's'})" if room.bridge else room.name

        rooms = ", ".join(described(r) for r in self.rooms.values())
        lines.append(f"  rooms:     {rooms or 'none yet'}")
        clients = [s.describe() for s in self.sessions]
        listed = " — " + "; ".join(clients) if clients else ""
        lines.append(f"  clients:   {len(clients)}{listed}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(
            f"<li><code>{esc(s.describe())}</code></li>" for s in self.sessions
        ) or "<li>none</li>"
        rooms = ", ".join(esc(r) for r in self.rooms) or "none yet"
        state = "running" if self.running else "stopped"
        return (
            f"<div><b>ControlServer {esc(self.name)!s}</b> ({state})<br>"
            f"WebSocket <code>{esc(self.ws_url)}</code> "
            f"(subprotocol <code>{SUBPROTOCOL}</code>)<br>"
            f"page <a href='{esc(self.page_url)}' target='_blank'>{esc(self.page_url)}</a><br>"
            f"rooms: {rooms}<br>clients:<ul>{rows}</ul></div>"
        )
