"""One client connection: Tornado's ``WebSocketHandler`` speaking ``wsdemo.v1``.

Thin: parse (:mod:`wsdemo.core.protocol`), dispatch, reply — and never let an
exception escape into Tornado. Everything shared between sessions (rooms, the
log, access, presence) belongs to the server, which is passed in; what a session
needs of it is named in :class:`SessionHost`, so this module does not import it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import tornado.websocket

from ..core.access import AccessDenied, Principal
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
from .room import Room

__all__ = ["Session", "SessionHost", "WRITE_BATCH"]

logger = logging.getLogger("wsdemo.server")

# Messages handed to the socket at once by a session's writer before it waits for a
# flush (see Session._write_queued).
WRITE_BATCH = 64


class SessionHost(Protocol):
    """What a :class:`Session` needs of the server that accepted it."""

    rooms: dict[str, Room]
    sessions: dict[Any, None]
    access: Any
    log: Any
    clock: Callable[[], float]
    hello_timeout: float
    queue_limit: int

    @property
    def epoch(self) -> str | None: ...

    @property
    def running(self) -> bool: ...

    def origin_allowed(self, origin: str, host_header: str) -> bool: ...

    def _new_session_id(self) -> str: ...

    def _closed(self, session: Any) -> None: ...

    def _presence_write(self, op: str, *args: Any) -> None: ...

    async def _accept(self, room: Room, msg_id: str, sender: str, kind: str, data: Any,
                      origin: Any) -> Any: ...


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
