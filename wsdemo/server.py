"""The control server: Tornado serving the ``wsdemo.v1`` channel and its page.

One class, :class:`ControlServer`, started three ways:

* in a notebook, on the kernel's own running loop —
  ``server = ControlServer.launch()``: handlers then run on the kernel's main
  thread, where widget traits may be changed, and launching again in the same
  kernel returns the server already running instead of a second one;
* from the command line — ``python -m wsdemo serve --port 8765``;
* by tests — ``ControlServer(port=0).start()`` on a random loopback port.

It serves the WebSocket at ``/ws`` (subprotocol ``wsdemo.v1``) and the control
page at ``/``. The message rules live in :mod:`wsdemo.protocol`; this module is
the glue that gets them on and off the network, and that never lets an
exception escape into Tornado (a bad message becomes an ``error`` reply or a
close code; the other clients keep being served).
"""

from __future__ import annotations

import asyncio
import html
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

from .access import AccessDenied, OpenAccess, Principal
from .eventlog import Event, MemoryEventLog
from .protocol import (
    MAX_MESSAGE_BYTES,
    SUBPROTOCOL,
    CloseCode,
    ErrorCode,
    Hello,
    Join,
    Leave,
    ProtocolError,
    ProtocolViolation,
    Publish,
    Set,
    encode,
    parse_client_message,
)

if TYPE_CHECKING:
    from .bridge import WidgetBridge

__all__ = ["ControlServer", "Room", "Session"]

logger = logging.getLogger("wsdemo.server")

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
# Messages handed to the socket at once by a session's writer before it waits for a
# flush (see Session._write_queued).
WRITE_BATCH = 64


class Room:
    """A named room: its members, and the widget bridge if it exposes controls."""

    def __init__(self, server: ControlServer, name: str, *, publish: bool = True):
        self.server = server
        self.name = name
        self.accepts_publish = publish
        self.members: dict[Session, None] = {}  # a dict keeps join order
        self.bridge: WidgetBridge | None = None
        # The seq of the newest event this server has applied and broadcast: what
        # the room's in-memory state (the widgets) reflects.
        self.applied_seq: int | None = None
        self.local_ids: set[str] = set()  # kernel changes of ours, not yet followed back
        self.lingering: dict[str, asyncio.TimerHandle] = {}  # user -> end of grace
        self.shared_counts: dict[str, int] | None = None  # from the shared presence
        self.restoring: set[asyncio.Task] = set()
        self._announced: dict[str, int] = {}

    async def current_seq(self) -> int:
        """The seq that the room's state reflects (read from the log the first time)."""
        if self.restoring:  # the controls are being put back from the log
            await asyncio.gather(*list(self.restoring), return_exceptions=True)
        if self.applied_seq is None:
            last = await self.server.log.last_seq(self.name)
            if self.applied_seq is None:  # nothing was broadcast while we waited
                self.applied_seq = last
        return self.applied_seq

    def controls(self) -> dict[str, Any]:
        return {} if self.bridge is None else self.bridge.controls()

    def state(self) -> dict[str, Any]:
        return {} if self.bridge is None else self.bridge.state()

    # --- presence ----------------------------------------------------------------
    #
    # A user whose last connection drops without a close (network loss, seen by
    # WebSocket pings) or closes is kept as a member, with 0 connections, for
    # ``presence_grace`` seconds: a quick reconnect then causes no leave/join
    # flicker. An explicit ``leave`` takes effect at once.

    def counts(self) -> dict[str, int]:
        if self.shared_counts is not None:  # every server's members (shared presence)
            return dict(self.shared_counts)
        counts = dict.fromkeys(self.lingering, 0)
        for session in self.members:
            counts[session.user] = counts.get(session.user, 0) + 1
        return counts

    def presence(self, joined: list[str] | None = None,
                 left: list[str] | None = None) -> dict[str, Any]:
        members = [{"user": u, "connections": n} for u, n in sorted(self.counts().items())]
        return {"type": "presence", "room": self.name, "members": members,
                "joined": joined or [], "left": left or []}

    def presence_changed(self) -> None:
        """Broadcast the members, and who joined and left, if anything changed."""
        counts = self.counts()
        if counts == self._announced:
            return
        joined = sorted(set(counts) - set(self._announced))
        left = sorted(set(self._announced) - set(counts))
        self._announced = counts
        self.server._broadcast(self, self.presence(joined, left))

    def linger(self, user: str) -> None:
        grace = self.server.presence_grace
        if grace <= 0 or any(s.user == user for s in self.members):
            return
        old = self.lingering.pop(user, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self.lingering[user] = loop.call_later(grace, self._gone, user)
        self.server._presence_write("join", self.name, f"linger:{user}", user, 0)

    def _gone(self, user: str) -> None:
        self.lingering.pop(user, None)
        self.server._presence_write("leave", self.name, f"linger:{user}")
        self.presence_changed()

    def welcome_back(self, user: str) -> None:
        timer = self.lingering.pop(user, None)
        if timer is not None:
            timer.cancel()
            self.server._presence_write("leave", self.name, f"linger:{user}")

    def forget_lingering(self) -> None:
        for timer in self.lingering.values():
            timer.cancel()
        self.lingering.clear()

    def __repr__(self) -> str:
        n = len(self.controls())
        what = f"{n} control{'s' if n != 1 else ''}" if self.bridge else "publish"
        return f"<Room {self.name!r}: {what}, {len(self.members)} member(s)>"


class Session(tornado.websocket.WebSocketHandler):
    """One client connection. Thin: parse, dispatch, reply — never raise."""

    server: ControlServer

    def initialize(self, server: ControlServer) -> None:
        self.server = server
        self.session_id = ""
        self.user = "anonymous"
        self.client_name = ""
        self.hello: Hello | None = None
        self.principal: Principal | None = None
        self._expiry_timer: asyncio.TimerHandle | None = None
        self.rooms: dict[str, Room] = {}
        self._held: dict[str, list[tuple[int | None, str]]] = {}
        self._sent_seq: dict[str, int] = {}  # per room: the newest seq sent to this client
        self._queue: asyncio.Queue[str | None] | None = None
        self._writer: asyncio.Task | None = None
        self._hello_timer: asyncio.TimerHandle | None = None
        self._closing = False

    # --- the upgrade -----------------------------------------------------------

    def check_origin(self, origin: str) -> bool:
        return self.server.origin_allowed(origin, self.request.headers.get("Host", ""))

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return SUBPROTOCOL if SUBPROTOCOL in subprotocols else None

    def open(self) -> None:
        # An ack and its event are two small writes: without TCP_NODELAY, Nagle's
        # algorithm and the peer's delayed ACK hold the second one ~40 ms.
        self.set_nodelay(True)
        self.session_id = self.server._new_session_id()
        self._queue = asyncio.Queue(self.server.queue_limit)
        self._taken = asyncio.Event()  # set each time the writer takes a message
        self._writer = asyncio.ensure_future(self._write_queued())
        self._hello_timer = asyncio.get_running_loop().call_later(
            self.server.hello_timeout, self._hello_expired
        )
        self.server.sessions[self] = None
        logger.info("session %s opened from %s", self.session_id, self.request.remote_ip)

    def _hello_expired(self) -> None:
        if self.hello is None:
            self.close_with(
                CloseCode.HELLO_TIMEOUT, f"no hello within {self.server.hello_timeout:g} s"
            )

    # --- receiving -------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        # Tornado awaits this coroutine before it reads the next message, so the
        # messages of one client are handled strictly in order.
        if self._closing:
            return
        msg_id = None
        try:
            msg = parse_client_message(message)
            msg_id = getattr(msg, "id", None)
            await self._dispatch(msg)
        except AccessDenied as denied:
            logger.info("refusing %s: %s", self.session_id, denied.reason)
            self.close_with(denied.close_code, denied.reason)
        except ProtocolViolation as violation:
            logger.info("closing %s: %s", self.session_id, violation.reason)
            self.close_with(violation.close_code, violation.reason)
        except ProtocolError as error:
            self.send(error.to_message())
        except Exception:  # the caller is Tornado: nothing may escape
            logger.exception("server fault on a message from %s (id %s)", self.session_id, msg_id)
            self.close_with(CloseCode.INTERNAL_ERROR, "server fault")

    async def _dispatch(self, msg: Any) -> None:
        if isinstance(msg, Hello):
            await self._on_hello(msg)
            return
        if self.hello is None:
            raise ProtocolError(
                ErrorCode.HELLO_REQUIRED, f"send hello before {msg.type}", getattr(msg, "id", None)
            )
        if isinstance(msg, Join):
            await self._on_join(msg)
        elif isinstance(msg, Leave):
            self._on_leave(msg)
        elif isinstance(msg, Publish):
            room = self._joined_room(msg.room, msg.id)
            self._authorize("publish", room.name)
            if not room.accepts_publish:
                raise ProtocolError(
                    ErrorCode.READ_ONLY, f"room {room.name!r} takes no publish", msg.id
                )
            await self.server._accept(room, msg.id, self.session_id, "publish", msg.data, self)
        elif isinstance(msg, Set):
            room = self._joined_room(msg.room, msg.id)
            self._authorize("set", room.name)
            if room.bridge is None:
                raise ProtocolError(
                    ErrorCode.UNKNOWN_TARGET, f"room {room.name!r} has no controls", msg.id
                )
            value = room.bridge.check(msg.target, msg.value, msg.id)
            await self.server._accept(
                room, msg.id, self.session_id, "set", {"target": msg.target, "value": value}, self
            )

    async def _on_hello(self, hello: Hello) -> None:
        if self.hello is not None:
            raise ProtocolError(ErrorCode.DUPLICATE_HELLO, "hello was already sent")
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        origin = self.request.headers.get("Origin")
        self.principal = self.server.access.authenticate(hello, origin)  # may raise AccessDenied
        self.hello = hello
        self.client_name = hello.client or ""
        self.user = self.principal.user
        if self.principal.expires is not None:
            loop = asyncio.get_running_loop()
            delay = self.principal.expires - self.server.clock()
            self._expiry_timer = loop.call_later(max(0.0, delay), self._token_expired)
        self.send(
            {
                "type": "welcome",
                "session": self.session_id,
                "user": self.user,
                # Only the rooms this user may read: the names of the others are
                # not theirs to learn either.
                "rooms": [r for r in sorted(self.server.rooms)
                          if self.server.access.authorize(self.principal, "read", r)],
                "protocol": SUBPROTOCOL,
                # Which log the seqs count in: a client resuming with another epoch
                # kept seqs of a log that is gone, and gets a snapshot.
                "epoch": self.server.epoch,
            }
        )
        for room_name, last_seq in hello.resume.items():
            await self._join(room_name, None, resume_from=last_seq)

    def _token_expired(self) -> None:
        self.close_with(CloseCode.BAD_TOKEN, "token expired")

    def _authorize(self, action: str, room: str) -> None:
        assert self.principal is not None
        if not self.server.access.authorize(self.principal, action, room):
            raise AccessDenied(f"{self.user} may not {action} in {room!r}", CloseCode.FORBIDDEN)

    async def _on_join(self, msg: Join) -> None:
        await self._join(msg.room, msg.id)

    async def _join(self, name: str, msg_id: str | None, resume_from: int | None = None) -> None:
        room = self.server.rooms.get(name)
        if room is None:
            raise ProtocolError(ErrorCode.UNKNOWN_ROOM, f"no room {name!r}", msg_id)
        self._authorize("read", name)
        if resume_from is None:
            seq = await room.current_seq()
            # No await between the snapshot and entering: every later event reaches us.
            self.send(self._snapshot(room, seq, msg_id))
            self._sent_seq[room.name] = seq
            self._enter(room)
        else:
            await self._resume(room, resume_from, msg_id)
        room.presence_changed()

    async def _resume(self, room: Room, after: int, msg_id: str | None) -> None:
        """Replay the events ``> after`` that the log holds, then go live — no gap, no duplicate.

        The session enters the room *first*, with its live events held back, and
        reads the log after: an event committed while the replay is read is then
        either in the replay or in the held-back list (or both — the seq tells).
        """
        log = self.server.log
        held: list[tuple[int | None, str]] = []
        self._held[room.name] = held
        self._enter(room)
        try:
            first = await log.first_seq(room.name)
            last = await log.last_seq(room.name)
            same_log = self.hello is None or self.hello.epoch in (None, self.server.epoch)
            complete = same_log and first <= after + 1 and after <= last
            sent = after
            if complete:
                while sent < last:
                    page = await log.read_after(room.name, sent, limit=1000)
                    if not page:
                        break
                    for event in page:
                        # Waits for room in the queue: a catch-up of 100,000 events
                        # must be paced by the client's reading, not refused.
                        await self.send_paced(encode(event.to_message()))
                    sent = page[-1].seq
                    self._sent_seq[room.name] = max(self._sent_seq.get(room.name, 0), sent)
                await self.send_paced(encode(self._recovered(room.name, after + 1, sent, True)))
            else:
                sent = await room.current_seq()
                self._sent_seq[room.name] = max(self._sent_seq.get(room.name, 0), sent)
                await self.send_paced(encode(self._snapshot(room, sent, msg_id)))
                await self.send_paced(encode(self._recovered(room.name, after + 1, sent, False)))
        except Exception as exc:
            room.members.pop(self, None)
            self.rooms.pop(room.name, None)
            logger.exception("replay of %r failed", room.name)
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"replay failed ({exc}); retry",
                                msg_id) from None
        finally:
            del self._held[room.name]
        for seq, text in held:
            if seq is None or seq > sent:
                await self.send_paced(text)

    @staticmethod
    def _recovered(room: str, first: int, last: int, complete: bool) -> dict[str, Any]:
        return {"type": "recovered", "room": room, "from": first, "to": last, "complete": complete}

    def _snapshot(self, room: Room, seq: int, msg_id: str | None) -> dict[str, Any]:
        snapshot: dict[str, Any] = {
            "type": "snapshot",
            "room": room.name,
            "seq": seq,
            "state": room.state(),
            "controls": room.controls(),
        }
        if msg_id is not None:
            snapshot["id"] = msg_id
        return snapshot

    def _enter(self, room: Room) -> None:
        room.welcome_back(self.user)
        self.server._presence_write("join", room.name, self.session_id, self.user, 1)
        room.members[self] = None
        self.rooms[room.name] = room

    def _on_leave(self, msg: Leave) -> None:
        room = self._joined_room(msg.room, msg.id)
        room.members.pop(self, None)
        self.server._presence_write("leave", room.name, self.session_id)
        del self.rooms[room.name]
        reply: dict[str, Any] = {"type": "left", "room": room.name}
        if msg.id is not None:
            reply["id"] = msg.id
        self.send(reply)
        room.presence_changed()

    def _joined_room(self, name: str, msg_id: str | None) -> Room:
        room = self.rooms.get(name)
        if room is not None:
            return room
        if name in self.server.rooms:
            raise ProtocolError(ErrorCode.NOT_JOINED, f"join {name!r} first", msg_id)
        raise ProtocolError(ErrorCode.UNKNOWN_ROOM, f"no room {name!r}", msg_id)

    # --- sending ---------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        self.send_text(encode(message))

    def deliver(self, room: str, seq: int | None, text: str) -> None:
        """A broadcast for ``room``: sent now, or held back while that room is replayed."""
        if seq is not None:
            if seq <= self._sent_seq.get(room, 0):
                return  # already sent by a replay: committed before it was broadcast
            self._sent_seq[room] = seq
        held = self._held.get(room)
        if held is None:
            self.send_text(text)
        elif len(held) < self.server.queue_limit:
            held.append((seq, text))
        else:
            self.close_with(CloseCode.TRY_AGAIN_LATER, "too many events during the replay")

    async def send_paced(self, text: str) -> None:
        """Queue one message, waiting while the queue is half full (used by the replay).

        Half, not full: live events keep arriving during a catch-up and must
        still find room, or a client that reads perfectly well would be cut off.
        """
        assert self._queue is not None
        while self._queue.qsize() >= max(1, self.server.queue_limit // 2):
            if self._closing:
                raise tornado.websocket.WebSocketClosedError()
            self._taken.clear()
            await self._taken.wait()
        if self._closing:
            raise tornado.websocket.WebSocketClosedError()
        self._queue.put_nowait(text)

    def send_text(self, text: str) -> None:
        """Queue one encoded message; a client too slow to keep up is closed, not buffered."""
        if self._closing or self._queue is None:
            return
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            logger.warning("closing slow consumer %s", self.session_id)
            self.close_with(
                CloseCode.TRY_AGAIN_LATER,
                f"slow consumer: {self.server.queue_limit} messages waiting",
            )

    async def _write_queued(self) -> None:
        """Hand what is queued to the socket, then wait until it is flushed.

        Everything waiting goes at once (up to a batch): one message per turn of
        the loop would fall behind a client that gets two messages (ack and
        event) per publish, and close it as slow although it reads everything.
        The wait for the flush is what keeps a reader that stops reading in this
        bounded queue rather than in Tornado's unbounded write buffer.
        """
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < WRITE_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._taken.set()
            writes = []
            for text in batch:
                if text is None:
                    break
                try:
                    writes.append(self.write_message(text))
                except tornado.websocket.WebSocketClosedError:
                    break
            # Every write awaited, so that each one's exception is retrieved.
            errors = [r for r in await asyncio.gather(*writes, return_exceptions=True)
                      if isinstance(r, BaseException)]
            if len(writes) < len(batch) or any(
                    isinstance(e, tornado.websocket.WebSocketClosedError) for e in errors):
                return
            if errors:
                raise errors[0]

    def close_with(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        if int(code) != CloseCode.GOING_AWAY and self.ws_connection is not None:
            # Said in-band too, just before the close frame: a proxy in between
            # (jupyter-server-proxy does) may not pass the close code on.
            try:
                self.write_message(encode({"type": "error", "code": "closing",
                                           "close": int(code), "message": reason}))
            except tornado.websocket.WebSocketClosedError:
                pass
        self.close(int(code), reason)

    def on_close(self) -> None:
        self._closing = True
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        if self._writer is not None:
            self._writer.cancel()
        self._taken.set()  # a paced replay waiting for room wakes up and stops
        self.server.sessions.pop(self, None)
        for room in list(self.rooms.values()):
            room.members.pop(self, None)
            self.server._presence_write("leave", room.name, self.session_id)
            if self.server.running:
                room.linger(self.user)  # gone for good only if not back within the grace
            room.presence_changed()
        self.rooms.clear()
        self.server._closed(self)
        logger.info(
            "session %s closed (%s %s)", self.session_id, self.close_code, self.close_reason or ""
        )

    def describe(self) -> str:
        rooms = ", ".join(self.rooms) or "no room"
        who = self.client_name or "?"
        return f"{self.session_id} {who} ({rooms})"


class _PageHandler(tornado.web.RequestHandler):
    def initialize(self, server: ControlServer) -> None:
        self.server = server

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.write(self.server._page_bytes())


class _StatusHandler(tornado.web.RequestHandler):
    def initialize(self, server: ControlServer) -> None:
        self.server = server

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.write(self.server.status())


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
        ping_interval: float = 20.0,
        presence_grace: float = 5.0,
        allowed_origins: list[str] | None = None,
        access: Any = None,
        clock: Any = None,
        presence: Any = None,
    ):
        self.host = host
        self.port = port
        self.name = name
        self.log = log if log is not None else MemoryEventLog()
        self.hello_timeout = hello_timeout
        self.queue_limit = queue_limit
        self.presence_grace = presence_grace
        # Shared presence (wsdemo.redis_presence.RedisPresence): members of every server.
        self.presence_store = presence
        self._presence_ops: asyncio.Queue | None = None
        self._presence_tasks: list[asyncio.Task] = []
        self.allowed_origins = None if allowed_origins is None else set(allowed_origins)
        self.access = access if access is not None else OpenAccess()
        self.clock = clock if clock is not None else time.time
        self.rooms: dict[str, Room] = {}
        self.sessions: dict[Session, None] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        self._session_ids = itertools.count(1)
        self._followers: dict[str, asyncio.Task] = {}
        self._all_closed: asyncio.Event | None = None
        self._unwatch_revocations: Callable[[], None] | None = None
        self._page: bytes | None = None
        # An access object may serve HTTP routes of its own (a token endpoint).
        extra = getattr(self.access, "http_handlers", None)
        self._app = tornado.web.Application(
            [
                (r"/ws", Session, {"server": self}),
                (r"/status", _StatusHandler, {"server": self}),
                (r"/(?:index\.html)?", _PageHandler, {"server": self}),
                *(extra(self) if extra is not None else []),
            ],
            websocket_max_message_size=MAX_MESSAGE_BYTES,
            websocket_ping_interval=ping_interval,
            websocket_ping_timeout=ping_interval,
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
        self._http = tornado.httpserver.HTTPServer(self._app)
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
        from .bridge import WidgetBridge

        the_room = self.rooms.get(room) or self.add_room(room, publish=False)
        if the_room.bridge is None:
            the_room.bridge = WidgetBridge(self, the_room.name)
        the_room.bridge.expose(target, widget)
        if self.running:
            self._restore_controls(the_room, [target])
        return widget

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
        """Put one event into ``room`` from the server side and send it to every member."""
        the_room = self.rooms.get(room) or self.add_room(room, publish=False)
        return await self._accept(the_room, id or self.log.new_id(sender), sender, "publish",
                                  data, None)

    async def _accept(self, room: Room, msg_id: str, sender: str, kind: str, data: Any,
                      origin: Session | None) -> Event:
        """Log, apply, acknowledge, broadcast — in that order (an ack means it is kept)."""
        if self.shared_log and origin is None and kind == "set":
            # A change made in our own kernel is already applied: the follower must
            # not apply it again when it comes back from the shared log (it may come
            # back before append returns, so this is noted first).
            room.local_ids.add(msg_id)
        try:
            appended = await self.log.append(room.name, msg_id, sender, kind, data)
        except Exception as exc:
            logger.exception("event log refused an event for %r", room.name)
            raise ProtocolError(
                ErrorCode.UNAVAILABLE, f"the event log could not keep it ({exc}); retry", msg_id
            ) from None
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

    def _broadcast(self, room: Room, message: dict[str, Any], seq: int | None = None) -> None:
        text = encode(message)  # once per broadcast, not once per client
        for session in list(room.members):
            session.deliver(room.name, seq, text)

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
        return f"http://{self._netloc}/"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._netloc}/ws"

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
        if self.allowed_origins is not None:
            return origin in self.allowed_origins
        parsed = urlparse(origin)
        if parsed.netloc.lower() == host_header.lower():
            return True  # same origin: Tornado's own default
        return (parsed.hostname or "") in _LOOPBACK

    def clients(self) -> list[Session]:
        return list(self.sessions)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "running": self.running,
            "log": getattr(self.log, "name", type(self.log).__name__),
            "rooms": {n: len(r.members) for n, r in self.rooms.items()},
            "clients": [s.describe() for s in self.sessions],
        }

    def page(self, height: int = 360) -> Any:
        """The control page, embedded (an iframe) when shown in a notebook."""
        from .display import PageFrame

        return PageFrame(self.page_url, height)

    def _page_bytes(self) -> bytes:
        if self._page is None:
            self._page = resources.files("wsdemo").joinpath("static/index.html").read_bytes()
        return self._page

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
