"""Presence shared by several servers through a real ``redis-server``: members from
every server, change notifications, a dead server's members leaving by themselves."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.support.redis import WAIT
from wsdemo.stores.redis_presence import RedisPresence

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_url(redis_proc):
    return redis_proc.url


@pytest.fixture
async def make_presence(redis_url):
    """``await make_presence(server_id, **options)`` → a started RedisPresence; closed after."""
    made: list[RedisPresence] = []

    async def make(server_id: str, **options) -> RedisPresence:
        presence = RedisPresence(redis_url, server_id, **options)
        made.append(presence)
        await presence.start()
        return presence

    yield make
    for presence in made:
        await presence.close()


async def next_change(changes, room: str) -> None:
    """Wait (the caller bounds it) for a notification about ``room``."""
    async for changed in changes:
        if changed == room:
            return


async def test_members_from_every_server(make_presence):
    a, b = await make_presence("a"), await make_presence("b")
    await a.join("lobby", "s1", "alice")
    await a.join("lobby", "s2", "alice")  # a second tab
    await b.join("lobby", "s1", "bob")  # same session id, other server: another member
    await b.join("lobby", "s2", "alice")
    expected = [{"user": "alice", "connections": 3}, {"user": "bob", "connections": 1}]
    assert await a.members("lobby") == await b.members("lobby") == expected
    await a.leave("lobby", "s1")
    await b.leave("lobby", "s1")
    assert await b.members("lobby") == [{"user": "alice", "connections": 2}]
    assert await a.members("elsewhere") == []


async def test_a_user_kept_without_connections_during_a_grace(make_presence):
    a, b = await make_presence("a"), await make_presence("b")
    await a.join("lobby", "s1", "alice")
    await a.join("lobby", "s1", "alice", connections=0)  # dropped; back soon?
    assert await b.members("lobby") == [{"user": "alice", "connections": 0}]
    await a.leave("lobby", "s1")
    assert await b.members("lobby") == []


async def subscribed(presence: RedisPresence) -> None:
    """Wait (the caller bounds it) until someone listens on the presence channel."""
    while (await presence._redis.pubsub_numsub(presence.channel))[0][1] < 1:
        await asyncio.sleep(0.01)


async def test_changes_are_announced_to_every_server(make_presence):
    a, b = await make_presence("a"), await make_presence("b")
    changes = b.changes()
    seen = asyncio.create_task(next_change(changes, "lobby"))
    await asyncio.wait_for(subscribed(b), WAIT)
    await a.join("lobby", "s1", "alice")
    await asyncio.wait_for(seen, WAIT)
    seen = asyncio.create_task(next_change(changes, "lobby"))
    await a.leave("lobby", "s1")
    await asyncio.wait_for(seen, WAIT)
    await changes.aclose()


async def test_a_dead_servers_members_leave_by_themselves(make_presence, redis_url):
    survivor = await make_presence("b", ttl=0.3)
    dead = RedisPresence(redis_url, "a", ttl=0.3)
    await dead.start()
    await dead.join("lobby", "s1", "alice")
    await survivor.join("lobby", "s1", "bob")
    assert len(await survivor.members("lobby")) == 2
    dead._beating.cancel()  # as if killed: no more heartbeats, no goodbye
    await asyncio.gather(dead._beating, return_exceptions=True)

    async def alice_gone() -> None:
        while await survivor.members("lobby") != [{"user": "bob", "connections": 1}]:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(alice_gone(), WAIT)
    # A heartbeat (the survivor's own task, or this one) removes the dead entries.
    await survivor.heartbeat()
    assert await survivor._redis.hkeys(survivor._hash("lobby")) == ["b|s1"]
    await dead._redis.aclose()


async def test_a_server_taken_for_dead_registers_again(make_presence):
    a, b = await make_presence("a", ttl=30), await make_presence("b", ttl=30)
    await a.join("lobby", "s1", "alice")
    # As if a's heartbeat had run out: b reaps it.
    await b._redis.zadd(b._servers, {"a": 0})
    assert "lobby" in await b.heartbeat()
    assert await b.members("lobby") == []
    await a.heartbeat()  # a is alive after all, and says so
    assert await b.members("lobby") == [{"user": "alice", "connections": 1}]


async def test_a_clean_stop_removes_its_members_at_once(make_presence, redis_url):
    a, b = await make_presence("a"), await make_presence("b")
    await a.join("lobby", "s1", "alice")
    await b.join("lobby", "s1", "bob")
    await a.close()
    assert await b.members("lobby") == [{"user": "bob", "connections": 1}]


async def test_presence_comes_back_after_a_redis_restart(make_presence, redis_proc):
    from wsdemo.stores.redis import EventLogUnavailable

    a = await make_presence("a", ttl=30, retry_max=0.1)
    await a.join("lobby", "s1", "alice")
    changes = a.changes()
    first = asyncio.create_task(changes.__anext__())
    await asyncio.wait_for(subscribed(a), WAIT)
    await redis_proc.kill(signal.SIGTERM)  # no persistence: Redis forgets everything
    # Refused while Redis is down, but remembered: they are what is true on this server.
    with pytest.raises(EventLogUnavailable):
        await asyncio.wait_for(a.join("lobby", "s2", "bob"), WAIT)
    with pytest.raises(EventLogUnavailable):
        await asyncio.wait_for(a.leave("lobby", "s1"), WAIT)
    await redis_proc.start()
    # Notifications may have been missed: every room of ours is announced again.
    assert await asyncio.wait_for(first, WAIT) == "lobby"
    await a.heartbeat()  # finds itself unknown, and writes its sessions again
    assert await a.members("lobby") == [{"user": "bob", "connections": 1}]
    await changes.aclose()


def test_bad_server_id_is_refused():
    with pytest.raises(ValueError, match="server_id"):
        RedisPresence("redis://127.0.0.1:1/0", "a|b")
