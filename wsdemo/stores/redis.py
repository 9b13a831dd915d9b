"""The shared event log: Redis Streams, so several server processes serve one room.

Same rules and interface as :class:`wsdemo.core.eventlog.MemoryEventLog` (read that
module's docstring first) — ``append``, ``read_after``, ``last_seq``,
``first_seq``, ``new_id``, ``close`` — plus what many servers need:

* the per-room ``seq`` is assigned **inside Redis**, by one Lua script that runs
  atomically: two servers appending to one room at once get 1, 2, 3, ... — the
  same integers on every server, no gap, no duplicate;
* ``follow(room, after_seq)`` yields every event of the room with a larger seq,
  in seq order, whichever server appended it: each server follows the rooms it
  has members in and broadcasts what the log yields, so every server sends the
  same events in the same order;
* ``shared = True`` tells the server to fan out through ``follow``, not from its
  own appends (the memory and SQLite logs have no such attribute).

Data layout (``prefix`` defaults to ``wsdemo``; ``{room}`` is a Redis Cluster
hash tag, so a room's keys live on one node and one script may touch them)::

    wsdemo:{room}:seq     string  the room's newest seq (never trimmed, never expires)
    wsdemo:{room}:events  stream  one entry per event; entry id "<seq>-0";
                                  fields: id sender kind data(JSON) time attempt size
    wsdemo:{room}:bytes   string  the sum of the held entries' ``size`` fields
    wsdemo:{room}:ids     zset    dedupe record: member = message id, score = its seq
    wsdemo:{room}:state   hash    each control's latest value (JSON) by target, from
                                  the room's ``set`` events; never trimmed

Because an entry's id is its seq, "the events after seq n" is simply
``XRANGE wsdemo:{room}:events (n-0 +`` (or ``XREAD ... STREAMS key n-0``),
and a follower that remembers the last seq it yielded knows where to resume.

The append script (``_APPEND`` below), atomic as a whole:

1. ``ZSCORE ids <id>`` — already accepted? answer the first seq (and the event,
   while the stream still holds it); change nothing;
2. an event whose size (:func:`wsdemo.core.eventlog.stored_size`, computed
   here from the same strings: Lua's ``#`` counts bytes) is over ``max_bytes``
   is refused (``too-large``), nothing written;
   ``seq = GET seq + 1``; ``XADD events <seq>-0 ... size <size>`` — the first
   write, and the only one that could fail (an id not above the stream's last),
   so a failure leaves nothing half-written; then ``SET seq``;
3. ``ZADD ids <seq> <id>`` and drop ids more than ``max_ids`` seqs old — the
   dedupe record outlives the events (``max_ids >= max_events``): a retry can come late;
   for a ``set``, ``HSET state <target> <value>`` — a restarted server puts its
   controls back from it, even when the set events are past retention;
4. retention: walk the oldest entries (``XRANGE``, a few at a time) while the
   room is over ``max_events``, over ``max_bytes`` (the ``bytes`` counter plus
   the new size) or, with ``max_age``, older than the first fresh seq (found by
   bisection over the stream: entry times never go backwards), never reaching
   the new entry; then ``XTRIM events MINID <first kept seq>-0`` and ``SET bytes``
   to what is left. The counter changes in the same script as the stream, so it
   is exact whatever runs concurrently; a room written before the counter
   existed gets it summed from its stream once, at its next append.

The script starts with ``#!lua``: Redis (7.0 and later) then refuses the whole
script up front when it is out of memory, instead of failing after a first write.
An event's ``time`` comes from Redis's own clock (``TIME``), one clock for every
server. ``attempt`` is a random token per ``append`` call: when a reply is lost
and the call retries, it recognises its own first try and does not report it
as a duplicate.

**Acknowledged means kept** only if Redis keeps what it acknowledged. Sources:
the Redis persistence documentation
(https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/,
"Append-only file", "How durable is the append only file?"), the comments of
``redis.conf`` ("APPEND ONLY MODE", ``appendfsync``, ``no-appendfsync-on-rewrite``)
and the article they point to (http://antirez.com/post/redis-persistence-demystified.html):

* ``appendonly yes`` + ``appendfsync always``: the AOF is written and fsynced
  before Redis sends the replies, so an event whose ``append`` returned survives
  ``kill -9`` of Redis and a crash or power cut of its machine (as far as the disk
  honours fsync). This is the setting that makes the server's ``ack`` mean "kept";
  it costs an fsync per batch of writes;
* ``appendfsync everysec`` (the default once AOF is on): "you may lose 1 second
  of data if there is a disaster" — up to about a second of acknowledged events
  when the machine crashes or loses power. A crash of the Redis process alone,
  the OS still running, loses at most the last write (what Redis wrote is in the
  OS's cache) — except when the disk is slow: Redis then postpones its writes by
  up to 2 s while still replying, and those can be lost too;
* ``appendfsync no``: the OS flushes when it likes (about 30 s on Linux); RDB
  snapshots only (``save ...``): minutes; no persistence: everything, and every
  room's seq starts again at 1;
* keep ``no-appendfsync-on-rewrite no``: with ``yes``, durability while the AOF
  is being rewritten is that of ``appendfsync no``;
* a replica does not change this: replication is asynchronous, and a failover
  to a replica can lose acknowledged writes.

Opening the log reads ``appendonly``/``appendfsync`` (``CONFIG GET``, where
allowed), keeps them in ``durability`` and logs a warning when they fall short.

Outages: every command has a bounded timeout. While Redis is unreachable,
``append`` raises :class:`EventLogUnavailable` promptly (refused, never silently
dropped, never hanging); ``follow`` keeps retrying with a capped backoff and
resumes after the last seq it yielded — no gap, no repeat. If Redis comes back
having lost events a follower already yielded (no persistence, or ``everysec``
after a crash), the follower raises :class:`EventsMissing` instead of waiting
forever for seqs that were handed out again.

Why one file of this length: the Lua scripts and the Python that calls them must
change together.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..core.eventlog import (
    DEFAULT_MAX_BYTES,
    EVENT_OVERHEAD,
    Appended,
    Event,
    EventTooLarge,
    check_limits,
    encode_data,
)
from .sqlite import EventLogError

__all__ = ["RedisEventLog", "EventLogError", "EventLogUnavailable", "EventsMissing"]

logger = logging.getLogger("wsdemo.redis_log")

MIN_REDIS = (7, 0)

# Errors that mean "Redis could not be reached or did not answer in time";
# BusyLoadingError (Redis still loading its AOF) is a ConnectionError.
_OUTAGE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class EventLogUnavailable(EventLogError):
    """Redis did not answer in time (down, unreachable, stuck): retry with the same id.

    When Redis could not be reached, nothing was kept. When it was reached but did
    not answer in time, the event may still be kept once Redis catches up — the
    retry then gets the first seq back with ``duplicate: true``; dedupe, not
    guessing, tells which."""


class EventsMissing(EventLogError):
    """A follower cannot go on without a gap: the log no longer holds, or has lost,
    the events after the last seq it yielded."""

    def __init__(self, room: str, after: int, message: str):
        super().__init__(message)
        self.room = room
        self.after = after


# --- the scripts -------------------------------------------------------------------

_HELPERS = """
local function field(entry, name)
  local f = entry[2]
  for i = 1, #f, 2 do
    if f[i] == name then return f[i + 1] end
  end
  return false
end

local function seq_of(entry)
  return tonumber(string.match(entry[1], '^(%d+)'))
end

-- An entry's stored size: its 'size' field, or for an entry written before
-- sizes were stored, the same sum computed from its fields.
local function size_of(entry, overhead)
  local size = field(entry, 'size')
  if size then return tonumber(size) end
  return #(field(entry, 'id') or '') + #(field(entry, 'sender') or '')
         + #(field(entry, 'data') or '') + overhead
end

-- The room's byte counter, summed from the stream when it does not exist yet.
local function held_bytes(bytes_key, events_key, overhead)
  local held = redis.call('GET', bytes_key)
  if held then return tonumber(held) end
  local total, start = 0, '-'
  while true do
    local batch = redis.call('XRANGE', events_key, start, '+', 'COUNT', 256)
    if #batch == 0 then return total end
    for _, entry in ipairs(batch) do total = total + size_of(entry, overhead) end
    start = '(' .. batch[#batch][1]
  end
end

local function redis_now()
  local t = redis.call('TIME')
  return t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end

-- The first seq whose event is not older than cutoff (newest seq + 1 when all
-- are older), or nil for an empty stream. Times never go backwards along the
-- stream, so bisection finds it in O(log n) lookups.
local function first_fresh(key, cutoff)
  local oldest = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
  if not oldest then return nil end
  local lo = seq_of(oldest)
  if tonumber(field(oldest, 'time')) >= cutoff then return lo end
  local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  local hi = seq_of(newest)
  if tonumber(field(newest, 'time')) < cutoff then return hi + 1 end
  -- time(lo) < cutoff <= time(hi)
  while hi - lo > 1 do
    local mid = math.floor((lo + hi) / 2)
    local at = redis.call('XRANGE', key, string.format('%d-0', mid), '+', 'COUNT', 1)[1]
    if tonumber(field(at, 'time')) >= cutoff then hi = mid else lo = mid end
  end
  return hi
end
"""

# KEYS: seq, events, ids, state, bytes
# ARGV: id, sender, kind, data, attempt, time ('' = Redis's clock), max_events,
#       max_ids, max_age ('' = none), target ('' = not a set), value, max_bytes,
#       overhead (EVENT_OVERHEAD)
# Returns {'new', seq, time}, {'duplicate', seq, fields-or-false} or {'too-large', size}.
_APPEND = "#!lua\n" + _HELPERS + """
local first = redis.call('ZSCORE', KEYS[3], ARGV[1])
if first then
  local at = string.format('%d-0', tonumber(first))
  local held = redis.call('XRANGE', KEYS[2], at, at)[1]
  return {'duplicate', tonumber(first), held and held[2] or false}
end

local overhead = tonumber(ARGV[13])
local max_bytes = tonumber(ARGV[12])
local size = #ARGV[1] + #ARGV[2] + #ARGV[4] + overhead
if size > max_bytes then return {'too-large', size} end
local held = held_bytes(KEYS[5], KEYS[2], overhead) + size

local now = ARGV[6]
if now == '' then now = redis_now() end
-- Never earlier than the newest event: retention by age bisects on time.
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
if newest and tonumber(field(newest, 'time')) > tonumber(now) then
  now = field(newest, 'time')
end

local seq = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
local seq_text = string.format('%d', seq)
redis.call('XADD', KEYS[2], seq_text .. '-0',
           'id', ARGV[1], 'sender', ARGV[2], 'kind', ARGV[3], 'data', ARGV[4],
           'time', now, 'attempt', ARGV[5], 'size', string.format('%d', size))
redis.call('SET', KEYS[1], seq_text)
redis.call('ZADD', KEYS[3], seq_text, ARGV[1])
if ARGV[10] ~= '' then redis.call('HSET', KEYS[4], ARGV[10], ARGV[11]) end
local max_ids = tonumber(ARGV[8])
if seq > max_ids then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%d', seq - max_ids))
end

-- Retention: the oldest entries go while the room is over a bound; the new
-- entry fits alone (checked above) and is never reached.
local fresh = nil
if ARGV[9] ~= '' then fresh = first_fresh(KEYS[2], tonumber(now) - tonumber(ARGV[9])) end
local count = redis.call('XLEN', KEYS[2])
local max_events = tonumber(ARGV[7])
local last_dropped = nil
if count > max_events or held > max_bytes or fresh then
  local start, batch_size = '-', math.max(1, count - max_events)
  local done = false
  while not done do
    local batch = redis.call('XRANGE', KEYS[2], start, '(' .. seq_text .. '-0',
                             'COUNT', batch_size)
    if #batch == 0 then break end
    for _, entry in ipairs(batch) do
      local old = seq_of(entry)
      if count <= max_events and held <= max_bytes and not (fresh and old < fresh) then
        done = true
        break
      end
      count = count - 1
      held = held - size_of(entry, overhead)
      last_dropped = old
    end
    start = '(' .. batch[#batch][1]
    batch_size = math.min(batch_size * 2, 256)
  end
end
if last_dropped then
  redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d-0', last_dropped + 1))
end
redis.call('SET', KEYS[5], string.format('%d', held))
return {'new', seq, now}
"""

# KEYS: seq, events   ARGV: time ('' = Redis's clock), max_age ('' = none)
# The oldest seq still held (newest + 1 when none is).
_FIRST_HELD = "#!lua flags=no-writes\n" + _HELPERS + """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local first
if ARGV[2] == '' then
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  if oldest then first = seq_of(oldest) end
else
  local now = ARGV[1]
  if now == '' then now = redis_now() end
  first = first_fresh(KEYS[2], tonumber(now) - tonumber(ARGV[2]))
end
if first == nil or first > last then return last + 1 end
return first
"""

# KEYS: bytes, events   ARGV: overhead
_HELD_BYTES = "#!lua flags=no-writes\n" + _HELPERS + """
return held_bytes(KEYS[1], KEYS[2], tonumber(ARGV[1]))
"""


def redact(url: str) -> str:
    """The URL with its password (if any) replaced by ``***`` — safe to log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def _entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """The entries of one stream in an XREAD reply (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return next(iter(reply.values()))[0] if reply else []
    return reply[0][1]


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class RedisEventLog:
    """Events in Redis Streams, shared by every server that opens the same URL.

    ``RedisEventLog("redis://127.0.0.1:6379/0")`` checks Redis now (an
    unreachable or unsuitable server raises :class:`EventLogError`); ``await
    close()`` at the end. ``timeout`` bounds every command (seconds);
    ``clock`` replaces Redis's clock for event times (tests of retention by age).
    """

    name = "redis"
    shared = True

    def __init__(
        self,
        url: str,
        *,
        max_events: int = 1_000_000,
        max_ids: int = 1_000_000,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: float | None = None,
        prefix: str = "wsdemo",
        timeout: float = 2.0,
        max_connections: int = 32,
        block: float = 1.0,
        retry_max: float = 2.0,
        clock: Callable[[], float] | None = None,
    ):
        check_limits(max_events, max_ids, max_bytes)
        if max_age is not None and max_age <= 0:
            raise ValueError("max_age must be positive")
        if not prefix or "{" in prefix or "}" in prefix:
            # A brace would move the hash tag: a room's keys could land on different nodes.
            raise ValueError("prefix must be non-empty and contain no '{' or '}'")
        self.url = url
        self.max_events = max_events
        self.max_ids = max(max_ids, max_events)
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.prefix = prefix
        self.timeout = timeout
        self.block = block
        self.retry_max = retry_max
        self.available = True
        self._clock = clock
        self._closed = False
        self._calls: set[asyncio.Future[Any]] = set()  # followers' commands in flight
        self.durability = self._check_server()
        common = {
            "decode_responses": True,
            "socket_connect_timeout": timeout,
            # Retries are ours (see _run): redis-py's default backs off for
            # seconds, and an append must fail promptly while Redis is down.
            "retry": AsyncRetry(NoBackoff(), 0),
            "health_check_interval": 0,
        }
        # Commands: a bounded pool; a burst of appends waits for a free connection.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout,
            socket_timeout=timeout, **common)
        self._redis = redis.asyncio.Redis.from_pool(pool)
        # Followers: one connection each while blocked in XREAD, whose reply may
        # take the whole block time; so a pool of its own, with a longer timeout.
        self._following = redis.asyncio.from_url(url, socket_timeout=block + timeout, **common)
        self._append_script = self._redis.register_script(_APPEND)
        self._first_script = self._redis.register_script(_FIRST_HELD)
        self._held_script = self._redis.register_script(_HELD_BYTES)

    # --- opening -----------------------------------------------------------------

    def _check_server(self) -> dict[str, str] | None:
        """Reach Redis now, so a wrong URL fails at open, not at the first publish."""
        where = f"event log {redact(self.url)}"
        try:
            client = redis.Redis.from_url(
                self.url, socket_connect_timeout=self.timeout, socket_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0), decode_responses=True)
        except ValueError as exc:
            raise EventLogError(f"{where}: not a usable Redis URL ({exc})") from None
        try:
            info = client.info("server")
            version = tuple(int(p) for p in str(info["redis_version"]).split(".")[:2])
            if version < MIN_REDIS:
                raise EventLogError(
                    f"{where}: Redis {info['redis_version']} is too old; "
                    f"this log needs {'.'.join(map(str, MIN_REDIS))} or later")
            try:
                config = client.config_get("append*")
            except redis.exceptions.ResponseError:  # CONFIG disabled or renamed
                durability = None
            else:
                durability = {k: config.get(k, "?") for k in ("appendonly", "appendfsync")}
        except _OUTAGE as exc:
            raise EventLogError(f"{where}: cannot reach Redis ({exc})") from None
        except redis.exceptions.RedisError as exc:  # authentication, ACL, ...
            raise EventLogError(f"{where}: Redis refused ({exc})") from None
        finally:
            client.close()
        if durability is None:
            logger.warning("%s: cannot read Redis's persistence settings (CONFIG GET refused)",
                           where)
        elif durability["appendonly"] != "yes" or durability["appendfsync"] != "always":
            logger.warning(
                "%s: appendonly=%s appendfsync=%s — acknowledged events can be lost if "
                "Redis stops; appendonly yes + appendfsync always keeps every one",
                where, durability["appendonly"], durability["appendfsync"])
        return durability

    # --- keys and entries ----------------------------------------------------------

    def _keys(self, room: str) -> tuple[str, str, str]:
        base = f"{self.prefix}:{{{room}}}"
        return f"{base}:seq", f"{base}:events", f"{base}:ids"

    def _state_key(self, room: str) -> str:
        return f"{self.prefix}:{{{room}}}:state"

    def _bytes_key(self, room: str) -> str:
        return f"{self.prefix}:{{{room}}}:bytes"

    @staticmethod
    def _event(room: str, entry_id: str, fields: dict[str, str]) -> Event:
        return Event(room, int(entry_id.split("-", 1)[0]), fields["id"], fields["sender"],
                     fields["kind"], json.loads(fields["data"]), float(fields["time"]))

    def _now_arg(self) -> str:
        return "" if self._clock is None else repr(float(self._clock()))

    # --- running commands ----------------------------------------------------------

    async def _run(self, what: str, make: Callable[[], Any]) -> Any:
        """Run one command; on a connection error try once more on a fresh connection.

        The second try covers a pooled connection that died with a Redis restart.
        A timeout is not retried: Redis is there but stuck, and the caller is waiting.
        """
        if self._closed:
            raise self._closed_error()
        for attempt in (1, 2):
            try:
                result = await make()
            except redis.exceptions.TimeoutError as exc:
                self.available = False
                raise EventLogUnavailable(
                    f"event log {redact(self.url)}: Redis did not answer {what} within "
                    f"{self.timeout:g} s ({exc})") from None
            except _OUTAGE as exc:
                self.available = False
                if attempt == 2:
                    raise EventLogUnavailable(
                        f"event log {redact(self.url)}: Redis is unreachable, {what} "
                        f"failed ({exc})") from None
                continue
            self.available = True
            return result
        raise AssertionError("unreachable")

    # --- the event-log interface ---------------------------------------------------

    async def append(self, room: str, id: str, sender: str, kind: str, data: Any) -> Appended:
        """Assign the room's next seq in Redis (or recognise ``id``); returns once Redis has it."""
        text = encode_data(data)
        attempt = uuid.uuid4().hex
        target, value = "", ""
        if kind == "set" and isinstance(data, dict) and isinstance(data.get("target"), str):
            target = data["target"]
            value = json.dumps(data.get("value"), separators=(",", ":"), allow_nan=False)
        args = [id, sender, kind, text, attempt, self._now_arg(), self.max_events,
                self.max_ids, "" if self.max_age is None else repr(float(self.max_age)),
                target, value, self.max_bytes, EVENT_OVERHEAD]
        keys = [*self._keys(room), self._state_key(room), self._bytes_key(room)]
        reply = await self._run("append", lambda: self._append_script(keys=keys, args=args))
        if reply[0] == "too-large":  # nothing was written
            raise EventTooLarge(id, int(reply[1]), self.max_bytes)
        status, seq, extra = reply
        seq = int(seq)
        if status == "new":
            return Appended(Event(room, seq, id, sender, kind, data, float(extra)), False)
        if not extra:  # the event is past retention; its id and seq are not
            return Appended(Event(room, seq, id, "", "", None), duplicate=True)
        fields = dict(zip(extra[::2], extra[1::2], strict=True))
        # Our own first try, whose reply was lost: new, not a duplicate.
        mine = fields.get("attempt") == attempt
        return Appended(self._event(room, f"{seq}-0", fields), duplicate=not mine)

    async def read_after(self, room: str, seq: int, limit: int | None = None) -> list[Event]:
        """The held events ``> seq``, oldest first (at most ``limit``)."""
        _, events, _ = self._keys(room)
        start = seq + 1
        if self.max_age is not None:
            start = max(start, await self.first_seq(room))
        reply = await self._run("read", lambda: self._redis.xrange(
            events, f"{start}-0", "+", count=limit))
        return [self._event(room, entry_id, fields) for entry_id, fields in reply]

    async def last_seq(self, room: str) -> int:
        seq_key, _, _ = self._keys(room)
        value = await self._run("last_seq", lambda: self._redis.get(seq_key))
        return int(value or 0)

    async def first_seq(self, room: str) -> int:
        """The oldest seq still held (``last_seq + 1`` when none is held)."""
        seq_key, events, _ = self._keys(room)
        args = [self._now_arg(), "" if self.max_age is None else repr(float(self.max_age))]
        return int(await self._run("first_seq", lambda: self._first_script(
            keys=[seq_key, events], args=args)))

    async def held_bytes(self, room: str) -> int:
        """The stored size of the events ``room`` holds (at most ``max_bytes``)."""
        keys = [self._bytes_key(room), self._keys(room)[1]]
        return int(await self._run("held_bytes", lambda: self._held_script(
            keys=keys, args=[EVENT_OVERHEAD])))

    async def state(self, room: str) -> dict[str, Any]:
        """Each control's latest value in ``room``, by target (from its ``set`` events)."""
        key = self._state_key(room)
        held = await self._run("state", lambda: self._redis.hgetall(key))
        return {target: json.loads(value) for target, value in held.items()}

    def new_id(self, prefix: str = "local") -> str:
        """An id for an event no client sent: random, so no server ever reuses one."""
        return f"{prefix}-{uuid.uuid4().hex[:16]}"

    # --- following -------------------------------------------------------------------

    async def follow(self, room: str, after_seq: int) -> AsyncIterator[Event]:
        """Every event of ``room`` with seq ``> after_seq``, in seq order, as it is appended.

        Runs until cancelled. Each seq is yielded exactly once: the next XREAD
        starts after the last seq yielded. While Redis is unreachable it retries
        with a capped backoff and resumes there. Raises :class:`EventsMissing`
        when it cannot continue without a gap (the events after ``after_seq`` are
        past retention, or Redis lost them), and :class:`EventLogError` when the
        log is closed — an error, not a quiet end, so that a caller that follows
        again in a loop cannot spin on a closed log.
        """
        seq_key, events, _ = self._keys(room)
        last = after_seq
        check = True  # compare with Redis's seq at the start and after every outage
        delay = 0.0
        while True:
            try:
                if check:
                    newest = int(await self._follower_call(
                        lambda: self._following.get(seq_key)) or 0)
                    if newest < last:
                        raise EventsMissing(room, last, (
                            f"room {room!r}: Redis's newest seq is {newest}, but seq {last} "
                            "was already handed out — Redis lost acknowledged events "
                            "(see the durability notes of wsdemo.stores.redis)"))
                    check = False
                reply = await self._follower_call(functools.partial(
                    self._following.xread, {events: f"{last}-0"}, count=1000,
                    block=max(1, int(self.block * 1000))))
            except _OUTAGE as exc:
                if self._closed:  # close() dropped the connection under us
                    raise self._closed_error() from None
                if delay == 0.0:
                    logger.warning("following %r: Redis unreachable (%s); retrying", room, exc)
                self.available = False
                delay = min(self.retry_max, max(0.05, delay * 2))
                check = True
                # Jitter: many followers must not all reconnect in the same instant.
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                continue
            if delay:
                logger.warning("following %r: Redis is back; resuming after seq %d", room, last)
                delay = 0.0
            self.available = True
            for entry_id, fields in _entries(reply):
                event = self._event(room, entry_id, fields)
                if event.seq != last + 1:
                    raise EventsMissing(room, last, (
                        f"room {room!r}: the log now starts at seq {event.seq}; the events "
                        f"after {last} are past retention"))
                last = event.seq
                yield event

    async def _follower_call(self, make: Callable[[], Any]) -> Any:
        """Run one of a follower's commands as a task that close() can cancel: a
        read blocked in XREAD, or a connection being opened while close() runs,
        would otherwise outlive the log. Raises EventLogError once the log is closed."""
        if self._closed:
            raise self._closed_error()
        call = asyncio.ensure_future(make())
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)
        try:
            # Shielded: when our caller is cancelled we stop waiting at once. After a
            # Redis restart a cancelled XREAD was seen to stay pending (redis-py 8.1),
            # and a follower waiting for it kept `serve` from stopping on SIGTERM.
            # The command, cancelled, stays in _calls until it ends; close() cancels
            # it again and waits for it.
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            if self._closed and call.cancelled() and not _being_cancelled():
                raise self._closed_error() from None  # close() cancelled it, not our caller
            call.cancel()
            raise

    # --- closing ---------------------------------------------------------------------

    def _closed_error(self) -> EventLogError:
        return EventLogError(f"event log {redact(self.url)}: closed")

    async def close(self) -> None:
        """Close the connections. Cancel the followers first; any still running
        raise :class:`EventLogError` ("closed")."""
        if self._closed:
            return
        self._closed = True
        calls = list(self._calls)
        for call in calls:
            call.cancel()  # redis-py drops a connection whose reply was cut short
        # Wait for them, so that no connection is opened after the pools are closed.
        await asyncio.gather(*calls, return_exceptions=True)
        await self._following.aclose()
        await self._redis.aclose()

    def __repr__(self) -> str:
        return f"<RedisEventLog {redact(self.url)} prefix={self.prefix!r}>"
