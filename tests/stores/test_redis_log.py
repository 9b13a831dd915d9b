"""The Redis event log keeps the event-log rules across several servers, and through a
Redis outage — against a real ``redis-server`` started by each test."""

from __future__ import annotations

import asyncio
import signal
import uuid

import pytest

from tests.support.redis import free_port
from wsdemo.core.eventlog import EVENT_OVERHEAD
from wsdemo.stores import open_log
from wsdemo.stores.redis import (
    EventLogError,
    EventLogUnavailable,
    EventsMissing,
    RedisEventLog,
)

pytestmark = pytest.mark.redis

WAIT = 15.0  # bound on every wait; a healthy run needs a fraction of it


@pytest.fixture
async def make_log(redis_proc):
    """``make_log(**options)`` → a RedisEventLog on the test's Redis; all closed at the end."""
    made: list[RedisEventLog] = []

    def make(**options) -> RedisEventLog:
        log = RedisEventLog(redis_proc.url, **options)
        made.append(log)
        return log

    yield make
    for log in made:
        await log.close()


async def collect(log: RedisEventLog, room: str, after: int, n: int) -> list:
    """The first ``n`` events ``follow`` yields (the caller bounds the wait)."""
    got = []
    async for event in log.follow(room, after):
        got.append(event)
        if len(got) == n:
            break
    return got


# --- the same contract as the memory and SQLite logs -----------------------------------

async def test_dedupe_record_is_bounded_but_outlives_the_events(make_log):
    log = make_log(max_events=2, max_ids=4)
    for i in range(1, 7):
        await log.append("r", f"m{i}", "s", "publish", i)
    assert (await log.append("r", "m3", "s", "publish", 3)).duplicate  # event gone, id kept
    fresh = await log.append("r", "m1", "s", "publish", 1)  # beyond max_ids: forgotten
    assert not fresh.duplicate and fresh.event.seq == 7


async def test_empty_room(make_log):
    log = make_log()
    assert await log.last_seq("nobody") == 0
    assert await log.first_seq("nobody") == 1
    assert await log.read_after("nobody", 0) == []


async def test_retention_by_age(make_log):
    now = [1000.0]
    log = make_log(max_age=60, clock=lambda: now[0])
    for i in range(5):
        await log.append("r", f"old{i}", "s", "publish", i)
    now[0] += 120
    assert await log.first_seq("r") == 6  # all five are too old, even before any trim
    assert await log.read_after("r", 0) == []
    await log.append("r", "new", "s", "publish", 5)
    assert [e.seq for e in await log.read_after("r", 0)] == [6]
    assert await log.first_seq("r") == 6
    assert (await log.append("r", "old0", "s", "publish", 0)).duplicate


async def test_events_keep_their_fields_and_redis_time(make_log):
    log = make_log()
    appended = await log.append("r", "m1", "alice", "set", {"target": "x", "value": [1, "é"]})
    [read] = await log.read_after("r", 0)
    assert read == appended.event
    assert read.time == appended.event.time > 0  # Redis's clock, the same for every server


async def test_data_layout(make_log, redis_proc):
    """The keys the module docstring describes, with the types it says."""
    import redis

    log = make_log(prefix="demo")
    await log.append("lobby", "m1", "s", "publish", "hi")
    with redis.Redis.from_url(redis_proc.url, decode_responses=True) as r:
        assert sorted(r.keys("demo:*")) == [
            "demo:{lobby}:bytes", "demo:{lobby}:events", "demo:{lobby}:ids", "demo:{lobby}:seq"]
        assert r.type("demo:{lobby}:events") == "stream"
        assert r.type("demo:{lobby}:ids") == "zset"
        assert r.get("demo:{lobby}:seq") == "1"
        [(entry_id, fields)] = r.xrange("demo:{lobby}:events")
        assert entry_id == "1-0"
        assert fields["data"] == '"hi"' and fields["id"] == "m1"
        size = len('"hi"') + len("m1") + len("s") + EVENT_OVERHEAD
        assert fields["size"] == str(size) and r.get("demo:{lobby}:bytes") == str(size)
        assert r.zscore("demo:{lobby}:ids", "m1") == 1


async def test_prefixes_keep_logs_apart(make_log):
    a, b = make_log(prefix="a"), make_log(prefix="b")
    await a.append("r", "m1", "s", "publish", 1)
    assert await b.last_seq("r") == 0
    assert not (await b.append("r", "m1", "s", "publish", 1)).duplicate


async def test_a_retried_append_recognises_its_own_first_try(make_log, monkeypatch):
    """A reply lost in transit: the retry finds the event its first try stored, and
    says it is new — not a duplicate of someone else's."""
    log = make_log()
    token = uuid.UUID(int=7)
    monkeypatch.setattr("wsdemo.stores.redis.uuid.uuid4", lambda: token)
    first = await log.append("r", "m1", "s", "publish", 1)
    retry = await log.append("r", "m1", "s", "publish", 1)
    assert not first.duplicate and not retry.duplicate
    assert retry.event.seq == 1 and await log.last_seq("r") == 1


# --- several servers -----------------------------------------------------------------

async def test_two_servers_appending_at_once_share_one_gap_free_seq(make_log):
    a, b = make_log(), make_log()  # two instances: two connection pools, as two servers
    followers = [asyncio.create_task(collect(log, "room", 0, 1000)) for log in (a, b)]
    appends = []
    for i in range(500):
        appends.append(a.append("room", f"a{i}", "server-a", "publish", i))
        appends.append(b.append("room", f"b{i}", "server-b", "publish", i))
    results = await asyncio.wait_for(asyncio.gather(*appends), WAIT)
    seqs = sorted(r.event.seq for r in results)
    assert seqs == list(range(1, 1001))
    assert not any(r.duplicate for r in results)
    seen_a, seen_b = await asyncio.wait_for(asyncio.gather(*followers), WAIT)
    assert [e.seq for e in seen_a] == list(range(1, 1001))
    assert seen_a == seen_b  # same events, same order, on both servers
    by_seq = {r.event.seq: r.event.id for r in results}
    assert [e.id for e in seen_a] == [by_seq[s] for s in range(1, 1001)]


async def test_follow_starts_after_the_given_seq_and_goes_live(make_log):
    log = make_log()
    for i in range(1, 4):
        await log.append("r", f"m{i}", "s", "publish", i)
    follower = asyncio.create_task(collect(log, "r", 1, 4))
    other = make_log()
    for i in range(4, 6):
        await other.append("r", f"m{i}", "s", "publish", i)
    got = await asyncio.wait_for(follower, WAIT)
    assert [e.seq for e in got] == [2, 3, 4, 5]


async def test_follow_refuses_a_gap_past_retention(make_log):
    log = make_log(max_events=3)
    for i in range(1, 7):
        await log.append("r", f"m{i}", "s", "publish", i)
    with pytest.raises(EventsMissing, match="past retention") as info:
        await asyncio.wait_for(collect(log, "r", 1, 5), WAIT)
    assert info.value.after == 1


async def test_cancelling_a_follower_is_clean(make_log, redis_proc):
    log = make_log(block=30.0)  # blocked in XREAD when cancelled
    follower = asyncio.create_task(collect(log, "r", 0, 1))
    await asyncio.wait_for(blocked_clients(redis_proc.url, 1), WAIT)
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower
    # The blocked connection is dropped, not handed back half-read.
    async def released() -> None:
        import redis.asyncio

        async with redis.asyncio.Redis.from_url(redis_proc.url) as r:
            while int((await r.info("clients"))["blocked_clients"]) > 0:
                await asyncio.sleep(0.01)
    await asyncio.wait_for(released(), WAIT)
    # The log still works, followers included.
    again = asyncio.create_task(collect(log, "r", 0, 1))
    await log.append("r", "m1", "s", "publish", 1)
    assert [e.seq for e in await asyncio.wait_for(again, WAIT)] == [1]


# --- outages ---------------------------------------------------------------------------

async def test_redis_restart_refuses_then_continues_without_a_gap(aof_redis):
    log = RedisEventLog(aof_redis.url, retry_max=0.2)
    try:
        assert log.durability == {"appendonly": "yes", "appendfsync": "always"}
        follower = asyncio.create_task(collect(log, "r", 0, 10))
        for i in range(1, 6):
            await log.append("r", f"m{i}", "s", "publish", i)

        await aof_redis.kill()  # kill -9: no chance to flush anything more
        with pytest.raises(EventLogUnavailable, match="unreachable"):
            await asyncio.wait_for(log.append("r", "m6", "s", "publish", 6), WAIT)
        assert not log.available

        await aof_redis.start(aof=True)  # same port, same folder
        assert (await log.append("r", "m6", "s", "publish", 6)).event.seq == 6
        assert (await log.append("r", "m3", "s", "publish", 3)).duplicate  # kept through it
        for i in range(7, 11):
            await log.append("r", f"m{i}", "s", "publish", i)
        got = await asyncio.wait_for(follower, WAIT)
        assert [e.seq for e in got] == list(range(1, 11))
        assert [e.data for e in got] == list(range(1, 11))
        assert log.available
    finally:
        await log.close()


async def test_a_stuck_redis_times_out_and_the_retry_tells_the_truth(redis_proc):
    log = RedisEventLog(redis_proc.url, timeout=0.3)
    try:
        redis_proc.proc.send_signal(signal.SIGSTOP)  # reachable, but answers nothing
        try:
            with pytest.raises(EventLogUnavailable, match="did not answer"):
                await asyncio.wait_for(log.append("r", "m1", "s", "publish", 1), WAIT)
        finally:
            redis_proc.proc.send_signal(signal.SIGCONT)
        # Whether Redis ran the timed-out script when it woke up or not, the retry
        # with the same id ends with exactly one event: seq 1.
        again = await log.append("r", "m1", "s", "publish", 1)
        assert again.event.seq == 1
        assert await log.last_seq("r") == 1
        assert [e.id for e in await log.read_after("r", 0)] == ["m1"]
    finally:
        await log.close()


async def test_a_follower_waits_through_an_outage(redis_proc):
    log = RedisEventLog(redis_proc.url, retry_max=0.2)
    try:
        await log.append("r", "m1", "s", "publish", 1)
        seen: list[int] = []
        first_seen = asyncio.Event()

        async def follow() -> None:
            async for event in log.follow("r", 0):
                seen.append(event.seq)
                first_seen.set()

        follower = asyncio.create_task(follow())
        await asyncio.wait_for(first_seen.wait(), WAIT)
        await redis_proc.kill(signal.SIGTERM)  # a clean stop: no AOF, so Redis forgets
        await redis_proc.start()
        # Redis came back empty: seq 1 was handed out before, so the follower must not
        # sit waiting for seq 2 while seqs 1, 2, ... are handed out again.
        with pytest.raises(EventsMissing, match="lost acknowledged events"):
            await asyncio.wait_for(follower, WAIT)
        assert seen == [1]
    finally:
        await log.close()


async def test_dedupe_survives_a_new_instance(make_log):
    first = make_log()
    await first.append("r", "a", "s", "publish", [1])
    await first.append("r", "b", "s", "publish", [2])
    await first.close()
    second = make_log()
    assert await second.last_seq("r") == 2
    again = await second.append("r", "b", "s", "publish", [2])
    assert again.duplicate and again.event.seq == 2
    assert (await second.append("r", "c", "s", "publish", [3])).event.seq == 3
    assert [e.data for e in await second.read_after("r", 0)] == [[1], [2], [3]]


async def blocked_clients(url: str, at_least: int) -> None:
    """Wait (the caller bounds it) until Redis has ``at_least`` clients blocked in XREAD."""
    import redis.asyncio

    async with redis.asyncio.Redis.from_url(url) as r:
        while int((await r.info("clients"))["blocked_clients"]) < at_least:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("when", ["blocked", "starting"])
async def test_a_closed_log_refuses_and_its_followers_end(make_log, redis_proc, when):
    log = make_log(block=30.0)  # closing must not wait for the block time to run out
    follower = asyncio.create_task(collect(log, "r", 0, 1))
    if when == "blocked":
        await asyncio.wait_for(blocked_clients(redis_proc.url, 1), WAIT)
    else:
        await asyncio.sleep(0)  # closed while the follower opens its connection
    await log.close()
    with pytest.raises(EventLogError, match="closed"):  # not a quiet end: see follow()
        await asyncio.wait_for(follower, WAIT)
    with pytest.raises(EventLogError, match="closed"):
        await log.append("r", "m", "s", "publish", 1)
    with pytest.raises(EventLogError, match="closed"):
        await collect(log, "r", 0, 1)


# --- opening ---------------------------------------------------------------------------

def test_unreachable_redis_is_refused_at_open():
    with pytest.raises(EventLogError, match="cannot reach Redis"):
        RedisEventLog(f"redis://127.0.0.1:{free_port()}/0")


def test_bad_url_is_refused_at_open_without_showing_the_password():
    with pytest.raises(EventLogError, match="not a usable Redis URL") as info:
        RedisEventLog("redis://user:s3cret@127.0.0.1:notaport/0")
    assert "s3cret" not in str(info.value)
    with pytest.raises(EventLogError) as info:
        RedisEventLog(f"redis://user:s3cret@127.0.0.1:{free_port()}/0")
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="prefix"):
        RedisEventLog("redis://127.0.0.1:1/0", prefix="a{b}")
    with pytest.raises(ValueError, match="max_events"):
        RedisEventLog("redis://127.0.0.1:1/0", max_events=0)


async def test_open_log_picks_redis_by_url(redis_proc):
    log = open_log(redis_proc.url, max_events=10)
    try:
        assert isinstance(log, RedisEventLog) and log.shared and log.max_events == 10
        assert (await log.append("r", "m", "s", "publish", None)).event.seq == 1
    finally:
        await log.close()
