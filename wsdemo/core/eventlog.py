"""The event log's rules, and the in-memory store that follows them.

Sans-I/O. Every room has its own sequence: the log gives each accepted event
the next integer ``seq`` of its room (1, 2, 3, ... — strictly increasing, no
gap) and remembers the client's message ``id``, so that a retried message is
recognised and answered with the ``seq`` it got the first time instead of being
applied again.

Every store (memory here; SQLite and Redis beside it) has the same
``async`` interface, so the server awaits it the same way whether the store
answers at once or after a commit:

* ``append(room, id, sender, kind, data) -> Appended`` — assign ``seq`` or
  recognise a duplicate ``id``;
* ``read_after(room, seq, limit) -> list[Event]`` — the held events ``> seq``;
* ``last_seq(room)`` and ``first_seq(room)`` — the newest seq, and the oldest
  one still held (retention drops the oldest);
* ``state(room) -> {target: value}`` — the latest value of every control set
  in the room, kept apart from the events so retention never forgets it: what
  a restarted server puts back into its controls;
* ``held_bytes(room)`` — the stored size of the events the room holds (below).

Retention. A room holds at most ``max_events`` events *and* at most
``max_bytes`` bytes of them: after each append the oldest events are dropped,
one by one, while the room is over either bound. Dropping an event forgets only
the event: its seq is never handed out again (``last_seq`` never goes back), its
id stays in the dedupe record (kept apart, for ``max_ids`` ids), and a control's
latest value stays in ``state``. A client that resumes from a seq older than
``first_seq - 1`` is told the log no longer holds what it missed, whichever
bound dropped it.

An event's stored size (:func:`stored_size`) is defined the same way by every
store, so a bound means the same thing in memory, in SQLite and in Redis::

    size = bytes(data as compact JSON)  +  bytes(id)  +  bytes(sender)  +  EVENT_OVERHEAD

with the data encoded by :func:`encode_data` (``json.dumps`` with
``separators=(",", ":")``: ASCII, so one byte per character), the id and the
sender counted in UTF-8, and ``EVENT_OVERHEAD`` (64) for the rest of the record
(seq, kind, time, keys). It is about what the SQLite and Redis stores write,
not the memory a Python object takes: the memory log's real footprint can be
several times more (data of many small values) or somewhat less (non-ASCII
text, which JSON escapes to six bytes a character). The bound is per room.

An event whose own size is over ``max_bytes`` could never be held: ``append``
refuses it with :class:`EventTooLarge` (an ``error`` reply with code
``bad-data`` to the client that sent it; it gets no seq, and nothing held is
dropped for it). A duplicate id is recognised first, so a retry of an event
that was accepted is acknowledged as before.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from .protocol import ErrorCode, ProtocolError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "EVENT_OVERHEAD",
    "Appended",
    "Event",
    "EventTooLarge",
    "MemoryEventLog",
    "check_limits",
    "encode_data",
    "stored_size",
]

EVENT_OVERHEAD = 64  # bytes counted per event besides its data, id and sender
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # per room: a thousand of the largest messages


def encode_data(data: Any) -> str:
    """An event's data as the stores keep it: compact JSON, ASCII only.

    Raises ``ValueError`` for a non-finite number (JSON has none, RFC 8259 §6)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def stored_size(id: str, sender: str, text: str) -> int:
    """The stored size of one event whose data encodes to ``text`` (see the module docstring)."""
    return len(text.encode()) + len(id.encode()) + len(sender.encode()) + EVENT_OVERHEAD


class EventTooLarge(ProtocolError):
    """An event larger than a room may hold (``max_bytes``): refused, given no seq."""

    def __init__(self, id: str, size: int, max_bytes: int):
        super().__init__(
            ErrorCode.BAD_DATA,
            f"event too large for the room's log: {size} bytes stored, at most {max_bytes}",
            id)
        self.size = size
        self.max_bytes = max_bytes


def check_limits(max_events: int, max_ids: int, max_bytes: int) -> None:
    """Every store's bounds must be integers of at least 1."""
    for name, value in (("max_events", max_events), ("max_ids", max_ids),
                        ("max_bytes", max_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer of at least 1, not {value!r}")


@dataclass(frozen=True)
class Event:
    """One accepted event of one room."""

    room: str
    seq: int
    id: str
    sender: str
    kind: str  # "publish" or "set"
    data: Any
    time: float = field(default=0.0, compare=False)

    def to_message(self) -> dict[str, Any]:
        """The ``event`` message sent to every member of the room."""
        return {
            "type": "event",
            "room": self.room,
            "seq": self.seq,
            "id": self.id,
            "from": self.sender,
            "kind": self.kind,
            "data": self.data,
        }


@dataclass(frozen=True)
class Appended:
    """What ``append`` did: the event (new, or the one first accepted with this id)."""

    event: Event
    duplicate: bool

    def ack(self) -> dict[str, Any]:
        return {
            "type": "ack",
            "id": self.event.id,
            "room": self.event.room,
            "seq": self.event.seq,
            "duplicate": self.duplicate,
        }


class _Room:
    __slots__ = ("events", "held_bytes", "ids", "last_seq", "sizes", "state")

    def __init__(self) -> None:
        self.events: deque[Event] = deque()  # consecutive seqs, oldest first
        self.sizes: deque[int] = deque()  # the stored size of each, in the same order
        self.held_bytes = 0  # sum(sizes)
        self.last_seq = 0
        self.ids: OrderedDict[str, int] = OrderedDict()  # id -> seq: no data, so the
        # dedupe record never keeps alive an event that retention dropped
        self.state: dict[str, Any] = {}


class MemoryEventLog:
    """Events kept in this process's memory: gone when the process ends.

    ``max_events`` and ``max_bytes`` bound the events held per room (the oldest
    go first, see the module docstring), and ``max_ids`` the message ids
    remembered for dedupe per room.
    """

    name = "memory"

    def __init__(self, max_events: int = 10_000, max_ids: int = 100_000,
                 clock=time.time, *, max_bytes: int = DEFAULT_MAX_BYTES):
        check_limits(max_events, max_ids, max_bytes)
        self.max_events = max_events
        self.max_ids = max_ids
        self.max_bytes = max_bytes
        self._clock = clock
        self._rooms: dict[str, _Room] = {}
        self.epoch = uuid.uuid4().hex[:16]  # a new log: its seqs start again at 1

    def _room(self, room: str) -> _Room:
        state = self._rooms.get(room)
        if state is None:
            state = self._rooms[room] = _Room()
        return state

    async def append(self, room: str, id: str, sender: str, kind: str, data: Any) -> Appended:
        return self.append_now(room, id, sender, kind, data)

    def append_now(self, room: str, id: str, sender: str, kind: str, data: Any) -> Appended:
        """The synchronous core of :meth:`append` (what a lesson steps through)."""
        state = self._room(room)
        first = state.ids.get(id)
        if first is not None:
            return Appended(self._held_or_stub(state, room, first, id), duplicate=True)
        size = stored_size(id, sender, encode_data(data))
        if size > self.max_bytes:
            raise EventTooLarge(id, size, self.max_bytes)
        state.last_seq += 1
        event = Event(room, state.last_seq, id, sender, kind, data, self._clock())
        events, sizes = state.events, state.sizes
        events.append(event)
        sizes.append(size)
        state.held_bytes += size
        # The new event alone fits (checked above), so this never drops it.
        while len(events) > self.max_events or state.held_bytes > self.max_bytes:
            events.popleft()
            state.held_bytes -= sizes.popleft()
        state.ids[id] = event.seq
        if kind == "set" and isinstance(data, dict) and "target" in data:
            state.state[data["target"]] = data.get("value")
        if len(state.ids) > self.max_ids:
            state.ids.popitem(last=False)
        return Appended(event, duplicate=False)

    @staticmethod
    def _held_or_stub(state: _Room, room: str, seq: int, id: str) -> Event:
        events = state.events
        if events and seq >= events[0].seq:
            return events[seq - events[0].seq]
        return Event(room, seq, id, "", "", None)  # past retention; its id and seq are not

    async def read_after(self, room: str, seq: int, limit: int | None = None) -> list[Event]:
        state = self._rooms.get(room)
        if state is None or seq >= state.last_seq:
            return []
        events = state.events
        start = 0 if not events else max(0, seq + 1 - events[0].seq)
        out = list(itertools.islice(events, start, None if limit is None else start + limit))
        return out

    async def last_seq(self, room: str) -> int:
        state = self._rooms.get(room)
        return 0 if state is None else state.last_seq

    def last_seq_now(self, room: str) -> int:
        state = self._rooms.get(room)
        return 0 if state is None else state.last_seq

    async def state(self, room: str) -> dict[str, Any]:
        state = self._rooms.get(room)
        return {} if state is None else dict(state.state)

    async def held_bytes(self, room: str) -> int:
        """The stored size of the events ``room`` holds (at most ``max_bytes``)."""
        state = self._rooms.get(room)
        return 0 if state is None else state.held_bytes

    async def first_seq(self, room: str) -> int:
        """The oldest seq still held (``last_seq + 1`` when none is held)."""
        state = self._rooms.get(room)
        if state is None or not state.events:
            return (0 if state is None else state.last_seq) + 1
        return state.events[0].seq

    def new_id(self, prefix: str = "local") -> str:
        """An id for an event that no client sent (a change made in the kernel).

        Random, not a counter: a durable log must never mistake a new local
        change for one it stored before a restart.
        """
        return f"{prefix}-{uuid.uuid4().hex[:16]}"

    async def close(self) -> None:
        return None
