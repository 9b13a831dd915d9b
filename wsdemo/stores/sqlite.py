"""The embedded default event log: one SQLite file that survives a restart or a kill.

Same rules and interface as :class:`wsdemo.core.eventlog.MemoryEventLog` (read that
module's docstring first), kept in a file:

* ``append`` returns only after the transaction is committed — so the server's
  ``ack``, sent after ``append`` returns, means the event is on disk;
* the journal is WAL; ``synchronous`` is ``FULL`` by default (a commit survives
  a power cut) and may be ``NORMAL`` (survives a crash or ``kill -9`` of the
  process, not a power cut, and commits several times faster);
* the dedupe record (room, id → seq) is stored with the events in the same
  transaction, so a retry after a restart is still recognised; it is kept longer
  than the events themselves (``max_ids``), because a retry can come late;
* retention: at most ``max_events`` events and ``max_bytes`` bytes per room
  (sizes as defined in :mod:`wsdemo.core.eventlog`), and none older than
  ``max_age`` seconds when given — the oldest go first, and ``first_seq`` says
  where the held history now starts. Each event's size is stored with it, and
  the room's total in ``rooms.held_bytes``, updated in the append's own
  transaction (and savepoint): no ``SUM()`` per append, and a rolled-back append
  leaves the total as it was.

Schema 2 added the sizes; a schema-1 file is upgraded when it is opened (sizes
computed from the stored columns, each room's total summed once).

All SQLite calls run on one worker thread, in order: the event loop never
blocks on a disk sync, and appends commit in the order they were made, so
events are broadcast in seq order.

Group commit: appends that arrive while the worker is busy are written together,
in one transaction (each in a savepoint of its own, so one that fails costs only
itself), and every one of them returns only once that transaction is committed.
Under load one commit — one WAL write, and with ``FULL`` one fsync — serves many
events; alone, an append commits at once, as before.

A file that is not a SQLite database, is corrupted, or cannot be written is
refused when the log is opened (:class:`EventLogError`), never discovered later
as a silent loss.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..core.eventlog import (
    DEFAULT_MAX_BYTES,
    EVENT_OVERHEAD,
    Appended,
    Event,
    EventTooLarge,
    check_limits,
    encode_data,
    stored_size,
)

__all__ = ["SQLiteEventLog", "EventLogError"]

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT PRIMARY KEY, last_seq INTEGER NOT NULL,
    held_bytes INTEGER NOT NULL DEFAULT 0  -- sum(events.size) of the room
);
CREATE TABLE IF NOT EXISTS events (
    room TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, sender TEXT NOT NULL,
    kind TEXT NOT NULL, data TEXT NOT NULL, time REAL NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,  -- stored_size(id, sender, data)
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ids (
    room TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ids_by_seq ON ids (room, seq);
CREATE TABLE IF NOT EXISTS state (
    room TEXT NOT NULL, target TEXT NOT NULL, value TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (room, target)
) WITHOUT ROWID;
"""

# Schema 1 → 2: the same size as stored_size(), computed by SQLite (CAST AS BLOB
# counts UTF-8 bytes), then each room's total once.
_UPGRADE_1 = f"""
ALTER TABLE events ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
UPDATE events SET size = length(CAST(data AS BLOB)) + length(CAST(id AS BLOB))
                         + length(CAST(sender AS BLOB)) + {EVENT_OVERHEAD};
ALTER TABLE rooms ADD COLUMN held_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE rooms SET held_bytes = (SELECT coalesce(sum(size), 0) FROM events
                               WHERE events.room = rooms.room);
"""


class EventLogError(Exception):
    """The event log cannot be used: the message says which file and why."""


class SQLiteEventLog:
    """Events in one SQLite file: ``SQLiteEventLog(path)``, and ``await close()`` at the end."""

    name = "sqlite"
    # Concurrent appends get their seqs, and return, in the order they were made
    # (one worker, one queue): a server may hand it a client's appends together.
    ordered_appends = True

    def __init__(
        self,
        path: str | Path,
        *,
        max_events: int = 1_000_000,
        max_ids: int = 1_000_000,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: float | None = None,
        synchronous: str = "FULL",
        clock: Any = time.time,
    ):
        check_limits(max_events, max_ids, max_bytes)
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be 'FULL' or 'NORMAL'")
        self.path = Path(path)
        self.max_events = max_events
        self.max_ids = max(max_ids, max_events)
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.synchronous = synchronous
        self._clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="wsdemo-sqlite")
        self._db: sqlite3.Connection | None = None
        # Appends waiting for the worker, and whether a drain job is queued or running.
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future, asyncio.AbstractEventLoop]] = []
        self._draining = False
        self._pending_lock = threading.Lock()
        self.transactions = 0  # appends' transactions committed: fewer than appends under load
        # Opening runs on the worker thread too (a connection stays on its thread);
        # waiting here makes a bad file fail now, in the constructor.
        try:
            self._executor.submit(self._open).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    # --- on the worker thread ------------------------------------------------------

    def _open(self) -> None:
        where = str(self.path)
        if self.path.is_dir():
            raise EventLogError(f"event log {where}: is a folder, not a file")
        try:
            db = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise EventLogError(f"event log {where}: cannot open ({exc})") from None
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise EventLogError(f"event log {where}: cannot use WAL (journal is {mode})")
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise EventLogError(f"event log {where}: the database is damaged ({check})")
            db.executescript(_SCHEMA)
            db.execute("BEGIN IMMEDIATE")  # proves the file is writable, now
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] == "1":
                for statement in _UPGRADE_1.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'",
                           (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                db.execute("ROLLBACK")
                raise EventLogError(
                    f"event log {where}: schema {row[0]}, this wsdemo reads {SCHEMA_VERSION}")
            # The file's identity, made once: resumed seqs from another file mean nothing.
            db.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (uuid.uuid4().hex[:16],))
            self.epoch = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
            db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise EventLogError(
                f"event log {where}: not a usable SQLite database ({exc})") from None
        except EventLogError:
            db.close()
            raise
        self._db = db

    def _drain(self) -> None:
        """Write every waiting append in one transaction, then settle their futures."""
        while True:
            with self._pending_lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._draining = False
                    return
            results = self._append_batch([args for args, _, _ in batch])
            for (_, future, loop), result in zip(batch, results, strict=True):
                loop.call_soon_threadsafe(_settle, future, result)

    def _append_batch(self, batch: list[tuple[Any, ...]]) -> list[Appended | BaseException]:
        db = self._db
        if db is None:
            return [EventLogError("the event log is closed")] * len(batch)
        results: list[Appended | BaseException] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for args in batch:
                db.execute("SAVEPOINT one")
                try:
                    results.append(self._append(db, *args))
                    db.execute("RELEASE one")
                except Exception as exc:  # this append only: the others go on
                    db.execute("ROLLBACK TO one")
                    db.execute("RELEASE one")
                    results.append(exc)
            db.execute("COMMIT")
            self.transactions += 1
        except BaseException as exc:  # nothing of the batch is kept: nothing is acked
            if db.in_transaction:
                db.execute("ROLLBACK")
            return [exc] * len(batch)
        return results

    def _append(self, db: sqlite3.Connection, room: str, id: str, sender: str, kind: str,
                data: Any) -> Appended:
        text = encode_data(data)
        now = self._clock()
        # Inside the batch's transaction and this append's savepoint (see _append_batch):
        # an exception here undoes this append's writes, the room's total included.
        row = db.execute("SELECT seq FROM ids WHERE room = ? AND id = ?", (room, id)).fetchone()
        if row is not None:
            return Appended(self._event_or_stub(room, row[0], id), duplicate=True)
        size = stored_size(id, sender, text)
        if size > self.max_bytes:
            raise EventTooLarge(id, size, self.max_bytes)
        row = db.execute("SELECT last_seq, held_bytes FROM rooms WHERE room = ?",
                         (room,)).fetchone()
        seq = (row[0] if row else 0) + 1
        held = (row[1] if row else 0) + size
        db.execute("INSERT INTO events (room, seq, id, sender, kind, data, time, size) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (room, seq, id, sender, kind, text, now, size))
        db.execute("INSERT INTO ids VALUES (?, ?, ?)", (room, id, seq))
        if kind == "set" and isinstance(data, dict) and "target" in data:
            # The control's latest value, in the same transaction: retention
            # may drop the event, never the state it left.
            db.execute("INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)",
                       (room, str(data["target"]),
                        json.dumps(data.get("value"), allow_nan=False), seq))
        held = self._retain(db, room, seq, now, held)
        db.execute("INSERT OR REPLACE INTO rooms (room, last_seq, held_bytes) VALUES (?, ?, ?)",
                   (room, seq, held))
        return Appended(Event(room, seq, id, sender, kind, data, now), duplicate=False)

    def _retain(self, db: sqlite3.Connection, room: str, seq: int, now: float,
                held: int) -> int:
        """Drop what is past retention in ``room`` (never ``seq``, the event just
        added); returns the bytes the room still holds."""
        if seq > self.max_events:
            held -= _drop(db, room, "seq <= ?", seq - self.max_events)
        if seq > self.max_ids:
            db.execute("DELETE FROM ids WHERE room = ? AND seq <= ?", (room, seq - self.max_ids))
        if self.max_age is not None and seq % 64 == 0:  # by age: now and then is enough
            held -= _drop(db, room, "time < ?", now - self.max_age)
        if held > self.max_bytes:
            # The oldest first, until what is left fits; usually one or two rows read.
            excess, last = held - self.max_bytes, None
            oldest = db.execute("SELECT seq, size FROM events WHERE room = ? AND seq < ? "
                                "ORDER BY seq", (room, seq))
            try:
                for old_seq, old_size in oldest:
                    excess -= old_size
                    last = old_seq
                    if excess <= 0:
                        break
            finally:
                oldest.close()
            if last is not None:
                held -= _drop(db, room, "seq <= ?", last)
        return held

    def _event_or_stub(self, room: str, seq: int, id: str) -> Event:
        assert self._db is not None
        row = self._db.execute(
            "SELECT sender, kind, data, time FROM events WHERE room = ? AND seq = ?", (room, seq)
        ).fetchone()
        if row is None:  # the event itself is past retention; its id and seq are not
            return Event(room, seq, id, "", "", None)
        return Event(room, seq, id, row[0], row[1], json.loads(row[2]), row[3])

    def _read_after(self, room: str, seq: int, limit: int | None) -> list[Event]:
        assert self._db is not None
        if self.max_age is not None:
            cutoff = self._clock() - self.max_age
            where, args = "room = ? AND seq > ? AND time >= ?", (room, seq, cutoff)
        else:
            where, args = "room = ? AND seq > ?", (room, seq)
        rows = self._db.execute(
            f"SELECT seq, id, sender, kind, data, time FROM events WHERE {where} "
            "ORDER BY seq LIMIT ?", (*args, -1 if limit is None else limit)
        ).fetchall()
        return [Event(room, s, i, snd, k, json.loads(d), t) for s, i, snd, k, d, t in rows]

    def _last_seq(self, room: str) -> int:
        assert self._db is not None
        row = self._db.execute("SELECT last_seq FROM rooms WHERE room = ?", (room,)).fetchone()
        return row[0] if row else 0

    def _held_bytes(self, room: str) -> int:
        assert self._db is not None
        row = self._db.execute("SELECT held_bytes FROM rooms WHERE room = ?", (room,)).fetchone()
        return row[0] if row else 0

    def _first_seq(self, room: str) -> int:
        assert self._db is not None
        if self.max_age is not None:
            cutoff = self._clock() - self.max_age
            row = self._db.execute(
                "SELECT min(seq) FROM events WHERE room = ? AND time >= ?", (room, cutoff)
            ).fetchone()
        else:
            row = self._db.execute("SELECT min(seq) FROM events WHERE room = ?",
                                   (room,)).fetchone()
        return row[0] if row and row[0] is not None else self._last_seq(room) + 1

    def _state(self, room: str) -> dict[str, Any]:
        assert self._db is not None
        rows = self._db.execute("SELECT target, value FROM state WHERE room = ? ORDER BY target",
                                (room,)).fetchall()
        return {target: json.loads(value) for target, value in rows}

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- the async interface -------------------------------------------------------

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def append(self, room: str, id: str, sender: str, kind: str, data: Any) -> Appended:
        """Log one event; returns once the transaction holding it is committed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._pending_lock:
            self._pending.append(((room, id, sender, kind, data), future, loop))
            start = not self._draining
            self._draining = True
        if start:
            self._executor.submit(self._drain)
        return await future

    async def read_after(self, room: str, seq: int, limit: int | None = None) -> list[Event]:
        return await self._run(self._read_after, room, seq, limit)

    async def last_seq(self, room: str) -> int:
        return await self._run(self._last_seq, room)

    async def first_seq(self, room: str) -> int:
        return await self._run(self._first_seq, room)

    async def state(self, room: str) -> dict[str, Any]:
        return await self._run(self._state, room)

    async def held_bytes(self, room: str) -> int:
        """The stored size of the events ``room`` holds (at most ``max_bytes``)."""
        return await self._run(self._held_bytes, room)

    def new_id(self, prefix: str = "local") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:16]}"

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._close)
        self._executor.shutdown(wait=False)

    def __repr__(self) -> str:
        return f"<SQLiteEventLog {str(self.path)!r} synchronous={self.synchronous}>"


def _drop(db: sqlite3.Connection, room: str, where: str, bound: Any) -> int:
    """Delete the room's events matching ``where``; returns the bytes they held."""
    return sum(size for (size,) in db.execute(
        f"DELETE FROM events WHERE room = ? AND {where} RETURNING size", (room, bound)))


def _settle(future: asyncio.Future, result: Any) -> None:
    if future.done():  # the caller gave up waiting (cancelled)
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
