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
  a restarted server puts back into its controls.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Appended", "Event", "MemoryEventLog"]


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
    __slots__ = ("events", "ids", "last_seq", "state")

    def __init__(self) -> None:
        self.events: deque[Event] = deque()
        self.last_seq = 0
        self.ids: OrderedDict[str, Event] = OrderedDict()
        self.state: dict[str, Any] = {}


class MemoryEventLog:
    """Events kept in this process's memory: gone when the process ends.

    ``max_events`` bounds the events held per room (the oldest go first), and
    ``max_ids`` the message ids remembered for dedupe per room.
    """

    name = "memory"

    def __init__(self, max_events: int = 10_000, max_ids: int = 100_000, clock=time.time):
        if max_events < 1 or max_ids < 1:
            raise ValueError("max_events and max_ids must be at least 1")
        self.max_events = max_events
        self.max_ids = max_ids
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
            return Appended(first, duplicate=True)
        state.last_seq += 1
        event = Event(room, state.last_seq, id, sender, kind, data, self._clock())
        state.events.append(event)
        if len(state.events) > self.max_events:
            state.events.popleft()
        state.ids[id] = event
        if kind == "set" and isinstance(data, dict) and "target" in data:
            state.state[data["target"]] = data.get("value")
        if len(state.ids) > self.max_ids:
            state.ids.popitem(last=False)
        return Appended(event, duplicate=False)

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
