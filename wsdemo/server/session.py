"""One client connection: Tornado's ``WebSocketHandler`` speaking ``wsdemo.v1``.

Thin: parse (:mod:`wsdemo.core.protocol`), dispatch, reply — and never let an
exception escape into Tornado. Everything shared between sessions (rooms, the
log, access, presence) belongs to the server, which is passed in; what a session
needs of it is named in :class:`SessionHost`, so this module does not import it.

Why one file of this length: a session is one object, and receiving, the ordered
append pipeline, the replay and sending share its state; the bytes themselves are
written by :mod:`wsdemo.server.transport`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import tornado.websocket

from ..core.access import AccessDenied, Principal
from ..core.eventlog import Appended
from ..core.limits import TokenBucket
from ..core.protocol import (
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
from ..wire.errors import HandshakeError
from ..wire.handshake import HandshakeRequest, check_request
from .room import Room
from .transport import Outlet, text_frame

__all__ = ["REPLAY_PAGE", "Session", "SessionHost"]

logger = logging.getLogger("wsdemo.server")

# Events read from the log and written as one block by a catch-up (one page in flight).
REPLAY_PAGE = 500
# Appends of one session under way at once; past it the session stops reading.
MAX_APPENDING = 64


def _done(result: Any) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_result(result)
    return future


class SessionHost(Protocol):
    """What a :class:`Session` needs of the server that accepted it."""

    rooms: dict[str, Room]
    sessions: dict[Any, None]
    access: Any
    log: Any
    clock: Callable[[], float]
    hello_timeout: float
    queue_limit: int
    max_buffered_bytes: int
    rate_limit: float | None
    rate_burst: int | None
    idle_timeout: float | None
    connections: Any  # wsdemo.server.guard.AddressCounter

    @property
    def epoch(self) -> str | None: ...

    @property
    def running(self) -> bool: ...

    def origin_allowed(self, origin: str, host_header: str) -> bool: ...

    def _new_session_id(self) -> str: ...

    def _append(self, room: Room, msg_id: str, sender: str, kind: str, data: Any,
                origin: Any) -> Any: ...

    def _accepted(self, room: Room, appended: Any, kind: str, data: Any, origin: Any) -> Any: ...

    def _closed(self, session: Any) -> None: ...

    def _presence_write(self, op: str, *args: Any) -> None: ...



class Session(tornado.websocket.WebSocketHandler):
    """One client connection. Thin: parse, dispatch, reply — never raise."""

    server: SessionHost

    def initialize(self, server: SessionHost) -> None:
        self.server = server
        self.session_id = ""
        self.user = "anonymous"
        self.client_name = ""
        self.hello: Hello | None = None
        self.principal: Principal | None = None
        self._expiry_timer: asyncio.TimerHandle | None = None
        self.rooms: dict[str, Room] = {}
        self._held: dict[str, list[tuple[int | None, bytes]]] = {}
        self._sent_seq: dict[str, int] = {}  # per room: the newest seq sent to this client
        self._outlet: Outlet | None = None
        self._ordered_log = False
        self._bucket: TokenBucket | None = None
        # Appends handed to the log, not yet acknowledged: (future, room, kind, data, id).
        self._appending: collections.deque[tuple[asyncio.Future, Room, str, Any, str]] = \
            collections.deque()
        self._idle: asyncio.Future | None = None  # set when _appending empties
        self._hello_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_heard = 0.0  # time.monotonic() of the newest message
        self._address: str | None = None  # counted in server.connections while held
        self._closing = False

    # --- the upgrade -----------------------------------------------------------

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """The upgrade, checked first by the course's own codec (RFC 6455 §4.2.1).

        Tornado accepts a ``Sec-WebSocket-Key`` that is not 16 bytes of base64, and
        upgrades a client that offers no subprotocol, or another one, only to speak
        ``wsdemo.v1`` to it anyway. Both are refused here with 400 and a one-line
        reason in the body, before any frame (a browser reports 1006).
        """
        request = HandshakeRequest(target=self.request.uri or "/",
                                   headers=tuple(self.request.headers.get_all()),
                                   method=self.request.method or "GET",
                                   version=self.request.version)
        try:
            check_request(request)
        except HandshakeError as refused:
            self._refuse(refused.status or 400, str(refused), refused.headers)
            return
        origin = request.origin
        if origin is not None and not self.check_origin(origin):
            # Tornado would say the same, after ours: a foreign page is told 403 first,
            # whatever else its request lacks.
            self._refuse(403, "cross origin websockets not allowed")
            return
        if SUBPROTOCOL not in request.subprotocols:
            self._refuse(400, f"offer the subprotocol {SUBPROTOCOL} "
                         "(Sec-WebSocket-Protocol): it is the only one spoken here")
            return
        address = self.request.remote_ip or ""
        if not self.server.connections.take(address):
            self._refuse(429, "too many connections from this address",
                         [("Retry-After", "10")])
            return
        self._address = address
        try:
            await super().get(*args, **kwargs)
        finally:
            if self._outlet is None:  # never opened: the upgrade failed
                self._release_address()

    def _release_address(self) -> None:
        if self._address is not None:
            self.server.connections.give_back(self._address)
            self._address = None

    def _refuse(self, status: int, reason: str, headers: Any = ()) -> None:
        logger.info("upgrade refused (%d) from %s: %s", status, self.request.remote_ip, reason)
        self.set_status(status)
        for name, value in headers or ():
            self.set_header(name, value)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(reason + "\n")

    def check_origin(self, origin: str) -> bool:
        return self.server.origin_allowed(origin, self.request.headers.get("Host", ""))

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return SUBPROTOCOL if SUBPROTOCOL in subprotocols else None

    def open(self) -> None:
        # An ack and its event are two small writes: without TCP_NODELAY, Nagle's
        # algorithm and the peer's delayed ACK hold the second one ~40 ms.
        self.set_nodelay(True)
        self.session_id = self.server._new_session_id()
        self._ordered_log = bool(getattr(self.server.log, "ordered_appends", False))
        rate = self.server.rate_limit
        self._bucket = None if rate is None else TokenBucket(
            rate, self.server.rate_burst or 1, asyncio.get_running_loop().time())
        self._outlet = Outlet(self, max_bytes=self.server.max_buffered_bytes,
                              max_messages=self.server.queue_limit)
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

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """Handle one message; what Tornado gets back it awaits before the next one.

        A ``publish`` or ``set`` is checked and handed to the log at once, and the
        next message is read without waiting for the log: up to ``MAX_APPENDING``
        appends of one client are under way together (so a SQLite log can commit
        them in one transaction), and their acks and events go out in the order
        the messages came (on a log that keeps the order of concurrent appends,
        ``ordered_appends``; on any other, one at a time). Any other message first
        waits for those appends, so
        every reply still follows the order of the requests. With the memory log
        an append is done at once and no Task or coroutine is made for it.
        """
        if self._closing:
            return None
        self._last_heard = time.monotonic()
        msg_id = None
        try:
            msg = parse_client_message(message)
            msg_id = getattr(msg, "id", None)
            if self.hello is not None and isinstance(msg, (Publish, Set)):
                return self._submit(msg)
            return self._handle(msg)
        except Exception as exc:  # the caller is Tornado: nothing may escape
            self._failed(exc, msg_id)
            return None

    async def _handle(self, msg: Any) -> None:
        try:
            if self._appending:
                await self._appends_done()
            await self._dispatch(msg)
        except Exception as exc:
            self._failed(exc, getattr(msg, "id", None))

    def _failed(self, exc: Exception, msg_id: str | None) -> None:
        if isinstance(exc, AccessDenied):
            logger.info("refusing %s: %s", self.session_id, exc.reason)
            self.close_with(exc.close_code, exc.reason)
        elif isinstance(exc, ProtocolViolation):
            logger.info("closing %s: %s", self.session_id, exc.reason)
            self.close_with(exc.close_code, exc.reason)
        elif isinstance(exc, ProtocolError):
            self.send(exc.to_message())
        else:
            logger.error("server fault on a message from %s (id %s)", self.session_id, msg_id,
                         exc_info=exc)
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

    # --- publish and set: checked, appended, acknowledged in order ----------------

    def _submit(self, msg: Publish | Set) -> Awaitable[None] | None:
        bucket = self._bucket
        if bucket is not None and not bucket.take(asyncio.get_running_loop().time()):
            if bucket.exhausted:
                self.close_with(CloseCode.RATE_LIMITED, "rate limit: still too many messages")
                return None
            raise ProtocolError(ErrorCode.RATE_LIMITED,
                                f"more than {bucket.rate:g} publish/set a second; slow down",
                                msg.id)
        room = self._joined_room(msg.room, msg.id)
        if isinstance(msg, Publish):
            self._authorize("publish", room.name)
            if not room.accepts_publish:
                raise ProtocolError(
                    ErrorCode.READ_ONLY, f"room {room.name!r} takes no publish", msg.id
                )
            kind, data = "publish", msg.data
        else:
            self._authorize("set", room.name)
            if room.bridge is None:
                raise ProtocolError(
                    ErrorCode.UNKNOWN_TARGET, f"room {room.name!r} has no controls", msg.id
                )
            kind = "set"
            data = {"target": msg.target, "value": room.bridge.check(msg.target, msg.value,
                                                                     msg.id)}
        pending = self.server._append(room, msg.id, self.session_id, kind, data, self)
        if not isinstance(pending, Appended) or self._appending:
            future = (asyncio.ensure_future(pending) if not isinstance(pending, Appended)
                      else _done(pending))
            self._appending.append((future, room, kind, data, msg.id))
            future.add_done_callback(self._appended)
            if len(self._appending) >= MAX_APPENDING or not self._ordered_log:
                # Tornado waits before it reads on: the client's TCP window fills. A log
                # that may commit concurrent appends out of order (Redis: several
                # connections) gets one append of this client at a time.
                return self._appends_done()
            return None
        self.server._accepted(room, pending, kind, data, self)
        return None

    def _appended(self, _: asyncio.Future) -> None:
        """Acknowledge and broadcast the appends that are done, oldest first, in order."""
        queue = self._appending
        while queue and queue[0][0].done():
            future, room, kind, data, msg_id = queue.popleft()
            if future.cancelled():
                continue
            error = future.exception()
            if isinstance(error, ProtocolError):  # the client's mistake (too large): say so
                self.send(ProtocolError(error.code, error.message, msg_id).to_message())
                continue
            if error is not None:
                logger.error("event log refused an event for %r: %s", room.name, error)
                self.send(ProtocolError(ErrorCode.UNAVAILABLE,
                                        "the event log could not keep it; retry",
                                        msg_id).to_message())
                continue
            try:
                self.server._accepted(room, future.result(), kind, data, self)
            except Exception:
                logger.exception("seq of %r not acknowledged", room.name)
                self.close_with(CloseCode.INTERNAL_ERROR, "server fault")
        if not queue and self._idle is not None:
            if not self._idle.done():
                self._idle.set_result(None)
            self._idle = None

    async def _appends_done(self) -> None:
        """Wait until every append of this session is acknowledged."""
        if self._appending:
            if self._idle is None:
                self._idle = asyncio.get_running_loop().create_future()
            await self._idle

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
        if self.server.idle_timeout:
            self._idle_timer = asyncio.get_running_loop().call_later(
                self.server.idle_timeout, self._check_idle)
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
            # Each room on its own: an unknown one gets its error, the others resume.
            try:
                await self._join(room_name, None, resume_from=last_seq)
            except ProtocolError as error:
                self.send(error.to_message())

    def _token_expired(self) -> None:
        self.close_with(CloseCode.BAD_TOKEN, "token expired")

    def _check_idle(self) -> None:
        idle = self.server.idle_timeout or 0.0
        quiet = time.monotonic() - self._last_heard
        if quiet >= idle:
            self.close_with(CloseCode.GOING_AWAY, f"idle for {idle:g} s: no message")
        else:
            self._idle_timer = asyncio.get_running_loop().call_later(idle - quiet,
                                                                     self._check_idle)

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
        held: list[tuple[int | None, bytes]] = []
        self._held[room.name] = held
        self._enter(room)
        try:
            first = await log.first_seq(room.name)
            last = await log.last_seq(room.name)
            same_log = self.hello is None or self.hello.epoch in (None, self.server.epoch)
            complete = same_log and first <= after + 1 and after <= last
            sent = after
            if complete:
                while sent < last and not self._closing:
                    page = await log.read_after(room.name, sent, limit=REPLAY_PAGE)
                    if not page:
                        break
                    # One block per page, paced by the socket: the previous page must
                    # be taken before the next is written, so a catch-up of 100,000
                    # events never sits whole in the server's memory.
                    await self._outlet_flushed()
                    self._write_block(b"".join(
                        text_frame(encode(event.to_message()).encode()) for event in page))
                    sent = page[-1].seq
                    self._sent_seq[room.name] = max(self._sent_seq.get(room.name, 0), sent)
                self.send(self._recovered(room.name, after + 1, sent, True))
            else:
                sent = await room.current_seq()
                self._sent_seq[room.name] = max(self._sent_seq.get(room.name, 0), sent)
                self.send(self._snapshot(room, sent, msg_id))
                self.send(self._recovered(room.name, after + 1, sent, False))
        except Exception:
            room.members.pop(self, None)
            self.rooms.pop(room.name, None)
            logger.exception("replay of %r failed", room.name)
            raise ProtocolError(ErrorCode.UNAVAILABLE, "replay failed; retry", msg_id) from None
        finally:
            del self._held[room.name]
        for seq, frame in held:
            if seq is None or seq > sent:
                self.send_frame(frame)

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
        self.send_frame(text_frame(encode(message).encode()))

    def deliver(self, room: str, seq: int | None, frame: bytes) -> None:
        """A broadcast for ``room``: sent now, or held back while that room is replayed."""
        if seq is not None:
            if seq <= self._sent_seq.get(room, 0):
                return  # already sent by a replay: committed before it was broadcast
            self._sent_seq[room] = seq
        held = self._held.get(room)
        if held is None:
            self.send_frame(frame)
        elif len(held) < self.server.queue_limit:
            held.append((seq, frame))
        else:
            self.close_with(CloseCode.TRY_AGAIN_LATER, "too many events during the replay")

    def send_frame(self, frame: bytes) -> None:
        """Write one frame; a client too slow to keep up is closed, not buffered."""
        if self._closing or self._outlet is None:
            return
        try:
            kept_up = self._outlet.write(frame)
        except Exception:  # a fault here must cost this session only, never the room
            logger.exception("closing %s: writing to it failed", self.session_id)
            self.close_with(CloseCode.INTERNAL_ERROR, "server fault")
            return
        if kept_up is False:
            outlet = self._outlet
            logger.warning("closing slow consumer %s (%d bytes waiting)",
                           self.session_id, outlet.buffered)
            self.close_with(CloseCode.TRY_AGAIN_LATER,
                            f"slow consumer: over {outlet.max_messages} messages or "
                            f"{outlet.max_bytes} bytes waiting")

    def _write_block(self, block: bytes) -> None:
        """A replay page: written whole, paced by :meth:`_outlet_flushed`, not by the limits."""
        if self._closing or self._outlet is None:
            raise tornado.websocket.WebSocketClosedError()
        if self._outlet.write(block) is None:
            raise tornado.websocket.WebSocketClosedError()

    async def _outlet_flushed(self) -> None:
        if self._outlet is not None:
            await self._outlet.flushed()
        if self._closing:
            raise tornado.websocket.WebSocketClosedError()

    @property
    def buffered_bytes(self) -> int:
        """Bytes written to this client that its socket has not taken yet."""
        return 0 if self._outlet is None or self.ws_connection is None else self._outlet.buffered

    def close_with(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        if (int(code) != CloseCode.GOING_AWAY and self.ws_connection is not None
                and self._outlet is not None):
            # Said in-band too, just before the close frame: a proxy in between
            # (jupyter-server-proxy does) may not pass the close code on.
            try:
                self._outlet.write(text_frame(encode({"type": "error", "code": "closing",
                                                      "close": int(code),
                                                      "message": reason}).encode()))
            except Exception:  # the close below still goes out, or the stream is gone
                pass
        self.close(int(code), reason)

    def on_close(self) -> None:
        self._closing = True
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._release_address()
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

    def describe(self, shown: Callable[[str], bool] = lambda room: True) -> str:
        rooms = ", ".join(r for r in self.rooms if shown(r)) or "no room"
        who = self.client_name or "?"
        return f"{self.session_id} {who} ({rooms})"
