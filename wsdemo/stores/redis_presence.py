"""Presence shared by several servers: who is in a room, whichever server they are on.

Each server process opens one ``RedisPresence(url, server_id)``, ``await
start()``, and tells it about its own sessions (``join``/``leave``);
``members(room)`` answers for every server, and ``changes()`` yields the rooms
whose members changed anywhere, so the server can send ``presence`` to its
own members of that room.

A server that dies (``kill -9``, a lost machine) cannot say its members left.
So every server renews a heartbeat; a server whose heartbeat is older than
``ttl`` seconds counts as gone: its members stop counting at once (``members``
ignores them) and the next heartbeat of any live server removes them and
announces the rooms. A server that was only paused past ``ttl`` finds itself
removed at its next heartbeat and registers its sessions again.

Data layout (``prefix`` defaults to ``wsdemo``; times are Redis's own clock)::

    wsdemo:servers                     zset  server id -> heartbeat expiry (seconds)
    wsdemo:server:<id>:rooms           set   the rooms where that server has sessions
    wsdemo:{room}:presence             hash  "<server id>|<session id>" -> {"user", "n"}
    wsdemo:presence                    pub/sub channel: a room name, when its members change

``n`` is the number of connections an entry stands for: 1 for a session, 0
for a user the server keeps in the room for a grace period after their last
connection dropped (so a quick reconnect causes no leave/join flicker).

The scripts build key names from ``prefix`` at run time, so presence suits a
single Redis (or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .redis import EventLogError, EventLogUnavailable, redact

__all__ = ["RedisPresence"]

logger = logging.getLogger("wsdemo.redis_presence")

_OUTAGE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

_NOW = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
"""

# KEYS: presence hash, servers zset, this server's rooms
# ARGV: field, entry JSON ('' = remove), room, channel, server id
_SET = _NOW + """
local changed
if ARGV[2] == '' then
  changed = redis.call('HDEL', KEYS[1], ARGV[1]) == 1
  local mine = false
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(f, 1, #ARGV[5] + 1) == ARGV[5] .. '|' then mine = true; break end
  end
  if not mine then redis.call('SREM', KEYS[3], ARGV[3]) end
else
  changed = redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2]
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('SADD', KEYS[3], ARGV[3])
end
if changed then redis.call('PUBLISH', ARGV[4], ARGV[3]) end
return changed and 1 or 0
"""

# KEYS: presence hash, servers zset   ARGV: -
# The entries of live servers only: a dead server's members stop counting at once.
_MEMBERS = _NOW + """
local t = now()
local all = redis.call('HGETALL', KEYS[1])
local live, out = {}, {}
for i = 1, #all, 2 do
  local server = string.match(all[i], '^(.-)|')
  if live[server] == nil then
    local expiry = redis.call('ZSCORE', KEYS[2], server)
    live[server] = expiry ~= false and tonumber(expiry) > t
  end
  if live[server] then table.insert(out, all[i + 1]) end
end
return out
"""

# Lua: remove every presence entry of ``server`` and its set of rooms; returns those
# rooms. Shared by the heartbeat (dead servers), a resync and a goodbye (this one).
_FORGET = """
local function forget(prefix, server)
  local rooms_key = prefix .. ':server:' .. server .. ':rooms'
  local rooms = redis.call('SMEMBERS', rooms_key)
  for _, room in ipairs(rooms) do
    local hash = prefix .. ':{' .. room .. '}:presence'
    for _, f in ipairs(redis.call('HKEYS', hash)) do
      if string.sub(f, 1, #server + 1) == server .. '|' then redis.call('HDEL', hash, f) end
    end
  end
  redis.call('DEL', rooms_key)
  return rooms
end
"""

# KEYS: servers zset   ARGV: prefix, server id, ttl, channel
# Renew this server's heartbeat and remove the servers whose heartbeat ran out.
# Returns {registered before?, rooms announced...}.
_HEARTBEAT = _NOW + _FORGET + """
local prefix, me, channel = ARGV[1], ARGV[2], ARGV[4]
local t = now()
local known = redis.call('ZSCORE', KEYS[1], me)
local was_live = known ~= false and tonumber(known) > t
redis.call('ZADD', KEYS[1], t + tonumber(ARGV[3]), me)
local announced = {}
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. t)) do
  for _, room in ipairs(forget(prefix, dead)) do
    redis.call('PUBLISH', channel, room)
    table.insert(announced, room)
  end
  redis.call('ZREM', KEYS[1], dead)
end
return {was_live and 1 or 0, unpack(announced)}
"""

# KEYS: servers zset   ARGV: prefix, server id, channel, then room, field, entry...
# Replace everything Redis holds of this server's sessions with what it says now.
_RESYNC = _FORGET + """
local prefix, me, channel = ARGV[1], ARGV[2], ARGV[3]
local rooms_key = prefix .. ':server:' .. me .. ':rooms'
local touched = {}
for _, room in ipairs(forget(prefix, me)) do touched[room] = true end
for i = 4, #ARGV, 3 do
  local room = ARGV[i]
  redis.call('HSET', prefix .. ':{' .. room .. '}:presence', ARGV[i + 1], ARGV[i + 2])
  redis.call('SADD', rooms_key, room)
  touched[room] = true
end
for room in pairs(touched) do redis.call('PUBLISH', channel, room) end
return 1
"""

# KEYS: servers zset   ARGV: prefix, server id, channel — a clean goodbye.
_GOODBYE = _FORGET + """
local prefix, me, channel = ARGV[1], ARGV[2], ARGV[3]
for _, room in ipairs(forget(prefix, me)) do redis.call('PUBLISH', channel, room) end
redis.call('ZREM', KEYS[1], me)
return 1
"""


class RedisPresence:
    """This server's view of a presence that every server shares.

    ``ttl``: seconds after its last heartbeat before a silent server's members
    stop counting (heartbeats go out every ``ttl / 3``). ``timeout`` bounds
    every command.
    """

    def __init__(self, url: str, server_id: str, *, prefix: str = "wsdemo",
                 ttl: float = 15.0, timeout: float = 2.0, retry_max: float = 2.0):
        if not server_id or "|" in server_id:
            raise ValueError("server_id must be non-empty and contain no '|'")
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError("prefix must be non-empty and contain no '{' or '}'")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.url = url
        self.server_id = server_id
        self.prefix = prefix
        self.ttl = ttl
        self.retry_max = retry_max
        self.channel = f"{prefix}:presence"
        try:
            self._redis = redis.asyncio.from_url(
                url, decode_responses=True, socket_timeout=timeout,
                # No retries inside redis-py: a pub/sub connection that silently
                # reconnected would hide the notifications lost meanwhile.
                socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0),
                health_check_interval=0)
        except ValueError as exc:
            raise EventLogError(f"presence {redact(url)}: not a usable Redis URL ({exc})") from None
        self._servers = f"{prefix}:servers"
        self._set = self._redis.register_script(_SET)
        self._members = self._redis.register_script(_MEMBERS)
        self._heartbeat = self._redis.register_script(_HEARTBEAT)
        self._goodbye = self._redis.register_script(_GOODBYE)
        self._resync = self._redis.register_script(_RESYNC)
        # This server's sessions as the server told us, written or not: sent again
        # whole when Redis forgot them or an update of ours failed.
        self._mine: dict[tuple[str, str], str] = {}
        self._stale = False
        self._beating: asyncio.Task[None] | None = None
        self._closed = False

    # --- keys --------------------------------------------------------------------

    def _hash(self, room: str) -> str:
        return f"{self.prefix}:{{{room}}}:presence"

    def _rooms(self) -> str:
        return f"{self.prefix}:server:{self.server_id}:rooms"

    async def _run(self, what: str, make: Any) -> Any:
        # Every update is idempotent (HSET/HDEL of one field), so one more try on a
        # fresh connection is safe: it covers a pooled connection killed by a restart.
        for attempt in (1, 2):
            try:
                return await make()
            except redis.exceptions.ConnectionError as exc:
                if attempt == 2:
                    raise EventLogUnavailable(
                        f"presence {redact(self.url)}: Redis is unreachable, {what} failed "
                        f"({exc})") from None
            except _OUTAGE as exc:
                raise EventLogUnavailable(
                    f"presence {redact(self.url)}: Redis did not answer {what} "
                    f"({exc})") from None

    # --- life cycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Register this server (a first heartbeat) and keep it alive until ``close``."""
        await self.heartbeat()
        if self._beating is None:
            self._beating = asyncio.create_task(self._beat(), name="presence heartbeat")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.heartbeat()
            except EventLogUnavailable as exc:
                logger.warning("presence heartbeat of %r failed: %s", self.server_id, exc)

    async def heartbeat(self) -> list[str]:
        """Renew this server; remove servers whose heartbeat ran out. Returns their rooms."""
        reply = await self._run("heartbeat", lambda: self._heartbeat(
            keys=[self._servers],
            args=[self.prefix, self.server_id, repr(self.ttl), self.channel]))
        was_live, announced = int(reply[0]), list(reply[1:])
        if not was_live or self._stale:
            if not was_live and self._mine:
                logger.warning("presence: Redis did not know server %r (taken for gone, or "
                               "Redis restarted); registering its %d session(s) again",
                               self.server_id, len(self._mine))
            args = [self.prefix, self.server_id, self.channel]
            for (room, session_id), entry in self._mine.items():
                args += [room, f"{self.server_id}|{session_id}", entry]
            await self._run("resync", lambda: self._resync(keys=[self._servers], args=args))
            self._stale = False
        return announced

    async def close(self) -> None:
        """Stop the heartbeat and remove this server's members at once (a clean stop).

        Cancel the task iterating ``changes()`` first."""
        if self._closed:
            return
        self._closed = True
        if self._beating is not None:
            self._beating.cancel()
            await asyncio.gather(self._beating, return_exceptions=True)
        try:
            await self._goodbye(keys=[self._servers],
                                args=[self.prefix, self.server_id, self.channel])
        except _OUTAGE as exc:  # they will expire with the heartbeat
            logger.warning("presence: goodbye of %r failed (%s)", self.server_id, exc)
        self._mine.clear()
        await self._redis.aclose()

    # --- members -------------------------------------------------------------------

    async def _write(self, room: str, session_id: str, entry: str) -> bool:
        field = f"{self.server_id}|{session_id}"
        try:
            changed = await self._run("presence update", lambda: self._set(
                keys=[self._hash(room), self._servers, self._rooms()],
                args=[field, entry, room, self.channel, self.server_id]))
        except EventLogUnavailable:
            self._stale = True  # the next heartbeat that reaches Redis sets it right
            raise
        return bool(changed)

    async def join(self, room: str, session_id: str, user: str, connections: int = 1) -> None:
        """``session_id`` of this server is in ``room`` as ``user``.

        Raises :class:`EventLogUnavailable` while Redis is unreachable, but is
        remembered either way (so is ``leave``): the next heartbeat that reaches
        Redis writes this server's sessions again, exactly as they are then.

        ``connections=0`` keeps ``user`` listed without a connection (a grace
        period after a drop); join again with 1, or leave, to end it.
        """
        entry = json.dumps({"user": user, "n": connections}, separators=(",", ":"))
        self._mine[(room, session_id)] = entry
        await self._write(room, session_id, entry)

    async def leave(self, room: str, session_id: str) -> None:
        """``session_id`` of this server left ``room``."""
        self._mine.pop((room, session_id), None)
        await self._write(room, session_id, "")

    async def members(self, room: str) -> list[dict[str, Any]]:
        """``[{"user", "connections"}]`` over every live server, sorted by user."""
        entries = await self._run("members", lambda: self._members(
            keys=[self._hash(room), self._servers]))
        counts: dict[str, int] = {}
        for text in entries:
            entry = json.loads(text)
            counts[entry["user"]] = counts.get(entry["user"], 0) + int(entry["n"])
        return [{"user": u, "connections": n} for u, n in sorted(counts.items())]

    # --- notifications -------------------------------------------------------------

    async def changes(self) -> AsyncIterator[str]:
        """The rooms whose members changed, on any server, as they change.

        Runs until cancelled. Notifications sent while Redis was unreachable are
        lost, so after reconnecting it yields every room where this server has
        sessions: the server then re-reads ``members`` for each.
        """
        delay = 0.0
        while not self._closed:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if delay:
                    logger.warning("presence: Redis is back; re-reading every room")
                    delay = 0.0
                    for room in sorted({room for room, _ in self._mine}):
                        yield room
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        yield message["data"]
            except _OUTAGE as exc:
                if self._closed:
                    return
                if delay == 0.0:
                    logger.warning("presence notifications: Redis unreachable (%s)", exc)
                delay = min(self.retry_max, max(0.05, delay * 2))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
            finally:
                await pubsub.aclose()

    def __repr__(self) -> str:
        return f"<RedisPresence {redact(self.url)} server={self.server_id!r}>"
