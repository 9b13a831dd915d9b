"""A room: its members, its controls' bridge, and its presence (who is here).

Imports nothing of the server around it: the server is passed in, and this module
names what it needs of it in :class:`RoomHost`. The room's members are the
server's sessions (:class:`wsdemo.server.session.Session`).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from .bridge import WidgetBridge

__all__ = ["Room", "RoomHost"]


class RoomHost(Protocol):
    """What a :class:`Room` needs of its server."""

    log: Any
    presence_grace: float
    presence_window: float

    def _broadcast(self, room: Room, message: dict[str, Any], seq: int | None = None) -> None: ...

    def _presence_write(self, op: str, *args: Any) -> None: ...


class Room:
    """A named room: its members, and the widget bridge if it exposes controls."""

    def __init__(self, server: RoomHost, name: str, *, publish: bool = True):
        self.server = server
        self.name = name
        self.accepts_publish = publish
        self.members: dict[Any, None] = {}  # sessions; a dict keeps join order
        self.bridge: WidgetBridge | None = None
        # The seq of the newest event this server has applied and broadcast: what
        # the room's in-memory state (the widgets) reflects.
        self.applied_seq: int | None = None
        self.local_ids: set[str] = set()  # kernel changes of ours, not yet followed back
        self.lingering: dict[str, asyncio.TimerHandle] = {}  # user -> end of grace
        self.shared_counts: dict[str, int] | None = None  # from the shared presence
        self.restoring: set[asyncio.Task] = set()
        self._announced: dict[str, int] = {}
        self._presence_due: asyncio.Handle | None = None

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
        """Say the members, and who joined and left, soon: changes are coalesced.

        Every change within ``presence_window`` seconds (0: within this turn of
        the loop) goes out as one message per member, and before the room's next
        event. Without that, N clients joining one room cost N² presence messages;
        with it, one per member per window.
        """
        if self._presence_due is not None:
            return
        loop = asyncio.get_running_loop()
        window = self.server.presence_window
        self._presence_due = (loop.call_later(window, self.flush_presence) if window > 0
                              else loop.call_soon(self.flush_presence))

    @property
    def presence_pending(self) -> bool:
        """A presence change is waiting for its window to end."""
        return self._presence_due is not None

    def flush_presence(self) -> None:
        """Broadcast the members now, if they changed since the last time."""
        if self._presence_due is not None:
            self._presence_due.cancel()
            self._presence_due = None
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
        if self._presence_due is not None:
            self._presence_due.cancel()
            self._presence_due = None

    def __repr__(self) -> str:
        n = len(self.controls())
        what = f"{n} control{'s' if n != 1 else ''}" if self.bridge else "publish"
        return f"<Room {self.name!r}: {what}, {len(self.members)} member(s)>"
