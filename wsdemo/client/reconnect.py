"""A client that survives a dropped connection without losing or repeating anything.

    client = ReconnectingClient(url, rooms=["controls"], client="robot")
    await client.start()                       # connects; retries with backoff
    ack = await client.set("controls", "speed", 7)   # the effect happens once
    event = await client.next_event("controls")      # each seq exactly once, in order
    await client.close()

What it adds to :class:`wsdemo.client.ControlClient`:

* **backoff**: after a failure it waits ``min(cap, initial · factor^attempt)``
  scaled by a random factor in ``[1 - jitter, 1]`` (so a thousand clients cut
  off at once do not all come back in the same millisecond), and gives up
  after ``max_attempts`` failures in a row (never, by default) or at once after
  a close code that says retrying cannot help (4401, 4403, 1008);
* **resume**: it remembers the last seq of every room and sends it in
  ``hello``; the server replays what was missed;
* **outbox**: every ``publish``/``set`` keeps its ``id`` until acknowledged,
  and is sent again, with the same ``id``, after a reconnect — the server
  recognises the retry, so the effect happens once;
* **exactly-once delivery to you**: an event whose seq was already delivered
  is dropped (and counted in ``duplicates_dropped``); a seq that skips ahead
  is counted in ``gaps`` (it should stay 0);
* **status**: ``connecting``, ``live``, ``resuming``, ``waiting``, ``gave up``
  or ``closed`` — and every change is kept in ``status_history``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .connection import ConnectError, ConnectionClosed, ControlClient

__all__ = ["Backoff", "ReconnectingClient", "GaveUp"]

logger = logging.getLogger("wsdemo.reconnect")

NO_RETRY = {4401, 4403, 1008}


class GaveUp(Exception):
    """The client stopped trying; ``reason`` says why."""


@dataclass
class Backoff:
    initial: float = 0.1
    factor: float = 2.0
    cap: float = 10.0
    jitter: float = 0.5
    max_attempts: int | None = None

    def delay(self, attempt: int, rng: random.Random = random._inst) -> float:  # type: ignore[attr-defined]
        base = min(self.cap, self.initial * self.factor ** attempt)
        return base * (1 - self.jitter * rng.random())


class ReconnectingClient:
    def __init__(self, url: str | list[str], *, rooms: list[str] | tuple[str, ...] = (),
                 client: str = "python", token: str | None = None,
                 backoff: Backoff | None = None, timeout: float = 5.0,
                 rng: random.Random | None = None):
        # Several URLs: servers sharing one log (Redis). A failed attempt moves on to
        # the next one, and the resume works there as well.
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("at least one URL")
        self._next_url = 0
        self.rooms = list(rooms)
        self.client_name = client
        self.token = token
        self.backoff = backoff or Backoff()
        self.timeout = timeout
        self._rng = rng or random.Random()
        self.status = "new"
        self.status_history: list[str] = []
        self.last_seq: dict[str, int] = {}
        self.state: dict[str, dict[str, Any]] = {}  # per room: the latest value per target
        self.connections = 0
        self.duplicates_dropped = 0
        self.gaps = 0
        self.outbox: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._acks: dict[str, asyncio.Future] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._live = asyncio.Event()
        self._conn: ControlClient | None = None
        self._runner: asyncio.Task | None = None
        self._closing = False
        self.gave_up: GaveUp | None = None
        self.epoch: str | None = None  # of the log our seqs count in

    # --- life cycle -------------------------------------------------------------

    async def start(self, wait_live: bool = True) -> ReconnectingClient:
        self._runner = asyncio.ensure_future(self._run())
        if wait_live:
            await self.wait_live()
        return self

    async def wait_live(self, timeout: float | None = None) -> None:
        waiter = asyncio.ensure_future(self._live.wait())
        done, _ = await asyncio.wait({waiter, self._runner}, timeout=timeout or self.timeout * 4,
                                     return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self.gave_up is not None:
            raise self.gave_up
        if not self._live.is_set():
            raise TimeoutError(f"not live within {timeout or self.timeout * 4:g} s ({self.status})")

    async def close(self) -> None:
        self._closing = True
        if self._conn is not None:
            await self._conn.close()
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except (asyncio.CancelledError, GaveUp):
                pass
        self._set_status("closed")

    @property
    def url(self) -> str:
        """The server this client connects (or is connected) to."""
        return self.urls[self._next_url]

    def drop(self) -> None:
        """Cut the connection abruptly (no close handshake), as a network failure would."""
        if self._conn is not None:
            self._conn.abort()

    def _set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self.status_history.append(status)
            logger.info("%s: %s", self.client_name, status)

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            self._set_status("connecting")
            try:
                conn = await ControlClient.connect(
                    self.url, client=self.client_name, token=self.token, timeout=self.timeout,
                    resume={r: s for r, s in self.last_seq.items() if r in self.rooms},
                    epoch=self.epoch,
                )
            except (ConnectError, ConnectionClosed, TimeoutError, OSError) as exc:
                code = getattr(exc, "code", None)
                failures += 1
                self._next_url = (self._next_url + 1) % len(self.urls)
                if code in NO_RETRY:
                    return self._give_up(f"refused with {code}: {exc}")
                await self._wait_before_retry(failures, exc)
                continue
            self._conn = conn
            self.epoch = conn.welcome.get("epoch")
            self.connections += 1
            failures = 0
            try:
                await self._session(conn)
            except ConnectionClosed as closed:
                if closed.code in NO_RETRY:
                    return self._give_up(f"closed with {closed.code}: {closed.reason}")
                logger.info("%s: connection lost (%s)", self.client_name, closed)
            except Exception:  # whatever broke this connection, the next one may work
                logger.exception("%s: connection failed", self.client_name)
                conn.abort()
            finally:
                self._live.clear()
                self._conn = None
            if not self._closing:
                await self._wait_before_retry(1, "connection lost")

    def _give_up(self, reason: str) -> None:
        self.gave_up = GaveUp(reason)
        self._set_status("gave up")
        for future in self._acks.values():
            if not future.done():
                future.set_exception(self.gave_up)

    async def _wait_before_retry(self, failures: int, why: Any) -> None:
        limit = self.backoff.max_attempts
        if limit is not None and failures >= limit:
            self._give_up(f"{failures} attempts failed; last: {why}")
            raise self.gave_up  # type: ignore[misc]
        self._set_status("waiting")
        await asyncio.sleep(self.backoff.delay(failures - 1, self._rng))  # the backoff itself

    async def _session(self, conn: ControlClient) -> None:
        resumed = [r for r in self.rooms if r in self.last_seq]
        if resumed:
            self._set_status("resuming")
        # The server replays resumed rooms right after welcome; join the others.
        for room in self.rooms:
            if room not in self.last_seq:
                conn.send({"type": "join", "room": room, "id": f"join-{uuid.uuid4().hex[:8]}"})
        waiting: set[str] | None = set(self.rooms)
        if not waiting:
            self._went_live(conn)
            waiting = None
        while True:  # ends with ConnectionClosed from next_message
            try:
                message = await conn.next_message(timeout=3600)
            except TimeoutError:
                continue
            self._handle(message, waiting)
            if waiting is not None and not waiting:
                self._went_live(conn)
                waiting = None

    def _went_live(self, conn: ControlClient) -> None:
        self._set_status("live")
        for message in self.outbox.values():  # the same ids: the server dedupes
            conn.send(message)
        self._live.set()

    def _handle(self, message: dict[str, Any], waiting: set[str] | None) -> None:
        kind = message.get("type")
        room = message.get("room")
        if kind == "event":
            last = self.last_seq.get(room, 0)
            seq = message["seq"]
            if seq <= last:
                self.duplicates_dropped += 1
                return
            if seq != last + 1 and room in self.last_seq:
                self.gaps += 1
                logger.warning("%s: gap in %s: %d after %d", self.client_name, room, seq, last)
            self.last_seq[room] = seq
            data = message.get("data")
            if message.get("kind") == "set" and isinstance(data, dict):
                self.state.setdefault(room, {})[data.get("target")] = data.get("value")
            self._events.put_nowait(message)
        elif kind == "snapshot":
            self.last_seq[room] = message["seq"]
            self.state[room] = dict(message.get("state", {}))
            if waiting is not None:
                waiting.discard(room)
        elif kind == "recovered":
            if waiting is not None:
                waiting.discard(room)
        elif kind == "ack":
            self.outbox.pop(message["id"], None)
            future = self._acks.pop(message["id"], None)
            if future is not None and not future.done():
                future.set_result(message)
        elif kind == "error" and message.get("id") in self._acks:
            from .connection import ServerError

            self.outbox.pop(message["id"], None)
            future = self._acks.pop(message["id"])
            if not future.done():
                future.set_exception(ServerError(message))

    # --- requests ----------------------------------------------------------------

    async def _request(self, message: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        if self.gave_up is not None:
            raise self.gave_up
        msg_id = message.setdefault("id", uuid.uuid4().hex)
        future = self._acks.get(msg_id)
        if future is None:
            future = self._acks[msg_id] = asyncio.get_running_loop().create_future()
        self.outbox[msg_id] = message
        if self._conn is not None and self._live.is_set() and self._conn.closed is None:
            try:
                self._conn.send(message)
            except ConnectionClosed:
                pass  # it stays in the outbox and goes out after the reconnect
        limit = self.timeout * 6 if timeout is None else timeout
        try:
            return await asyncio.wait_for(asyncio.shield(future), limit)
        except TimeoutError:
            raise TimeoutError(f"no ack for {msg_id} within {limit:g} s ({self.status}); "
                               "it stays in the outbox") from None

    async def publish(self, room: str, data: Any, *, id: str | None = None,
                      timeout: float | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "publish", "room": room, "data": data}
        if id is not None:
            message["id"] = id
        return await self._request(message, timeout)

    async def set(self, room: str, target: str, value: Any, *, id: str | None = None,
                  timeout: float | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "set", "room": room, "target": target, "value": value}
        if id is not None:
            message["id"] = id
        return await self._request(message, timeout)

    async def next_event(self, room: str | None = None, *, timeout: float | None = None
                         ) -> dict[str, Any]:
        limit = self.timeout if timeout is None else timeout
        while True:
            try:
                event = await asyncio.wait_for(self._events.get(), limit)
            except TimeoutError:
                raise TimeoutError(f"no event within {limit:g} s ({self.status})") from None
            if room is None or event.get("room") == room:
                return event

    def __repr__(self) -> str:
        return (f"<ReconnectingClient {self.client_name} {self.status} "
                f"connections={self.connections} last_seq={self.last_seq}>")
