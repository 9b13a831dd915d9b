"""Retention by bytes, on every log (memory, SQLite, Redis): a room holds at most
``max_bytes`` of stored events (sizes as wsdemo.core.eventlog defines them), the
oldest go first, and everything retention must never forget — seq, the dedupe
record, the controls' latest values — survives a flood of large publishes. The
byte counter each store keeps is checked against sizes recomputed from what it
gives back, across a SQLite reopen and a Redis reconnect and restart."""

from __future__ import annotations

import asyncio
import random
import sqlite3

import pytest

from tests.support.logs import log_where
from wsdemo.core.eventlog import (
    EVENT_OVERHEAD,
    EventTooLarge,
    MemoryEventLog,
    encode_data,
    stored_size,
)
from wsdemo.stores import open_log
from wsdemo.stores.sqlite import SQLiteEventLog

KINDS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=KINDS)
async def make_log(request, tmp_path):
    """``make_log(**options)`` → a log of the parameter's kind (one file / one Redis
    per test, so a second log made here is the same log reopened); all closed at the end."""
    redis = request.getfixturevalue("redis_server_path") if request.param == "redis" else None
    async with log_where(request.param, tmp_path, redis) as where:
        made = []

        def make(**options):
            log = open_log(where, **options)
            made.append(log)
            return log

        make.kind = request.param
        try:
            yield make
        finally:
            for log in made:
                await log.close()


def size_of(event) -> int:
    """The stored size of an event as the log gave it back, recomputed here."""
    return stored_size(event.id, event.sender, encode_data(event.data))


async def held(log, room="r"):
    return await log.read_after(room, 0)


async def assert_counter_right(log, room="r"):
    events = await held(log, room)
    assert await log.held_bytes(room) == sum(size_of(e) for e in events)
    return events


def test_the_size_is_the_compact_json_the_id_and_the_sender_in_utf8():
    assert encode_data({"a": [1, "é"]}) == '{"a":[1,"\\u00e9"]}'
    assert stored_size("m1", "sé", '"x"') == 3 + 2 + 3 + EVENT_OVERHEAD


async def test_bound_holds_under_a_flood_and_the_oldest_go_first(make_log):
    """Events of random sizes (seeded): after every append the room holds at most
    max_bytes, a run of consecutive seqs ending at the newest, and no more was
    dropped than needed (the next older event would not have fitted)."""
    max_bytes = 40_000
    log = make_log(max_bytes=max_bytes, max_events=10_000)
    rng = random.Random(12)
    sizes = {}
    for n in range(1, 121):
        data = {"n": n, "blob": "x" * rng.randrange(0, 12_000)}
        appended = await log.append("r", f"m{n}", "flood", "publish", data)
        assert appended.event.seq == n and not appended.duplicate
        sizes[n] = stored_size(f"m{n}", "flood", encode_data(data))
        events = await assert_counter_right(log)
        seqs = [e.seq for e in events]
        assert seqs == list(range(seqs[0], n + 1)), "the newest events, no hole"
        total = sum(sizes[s] for s in seqs)
        assert total <= max_bytes
        if seqs[0] > 1:
            assert total + sizes[seqs[0] - 1] > max_bytes, "dropped one more than needed"
        assert await log.first_seq("r") == seqs[0]
        assert await log.last_seq("r") == n
    assert seqs[0] > 60, "the flood went far past the bound"


async def test_the_bytes_bound_drops_exactly_like_the_events_bound(make_log, tmp_path):
    """Equal events, max_bytes = k of them: the same held range, first_seq and answer
    to every resume point as a log bounded by max_events = k — so the server
    reports the gap the same way, whichever bound dropped the events."""
    data = {"blob": "y" * 3000}
    size = stored_size("m00", "s", encode_data(data))
    by_bytes = make_log(max_bytes=7 * size, max_events=1000)
    by_events = MemoryEventLog(max_events=7)
    for n in range(1, 31):
        for log in (by_bytes, by_events):
            await log.append("r", f"m{n:02d}", "s", "publish", data)
    assert await by_bytes.first_seq("r") == await by_events.first_seq("r") == 24
    for after in range(0, 32):
        got = [(e.seq, e.id) for e in await by_bytes.read_after("r", after)]
        want = [(e.seq, e.id) for e in await by_events.read_after("r", after)]
        assert got == want, after
    assert [e.seq for e in await by_bytes.read_after("r", 0, limit=2)] == [24, 25]
    assert await by_bytes.held_bytes("r") == 7 * size


async def test_a_dropped_events_id_is_still_a_duplicate(make_log):
    log = make_log(max_bytes=10_000)
    first = await log.append("r", "early", "s", "publish", "a" * 5000)
    for n in range(5):
        await log.append("r", f"m{n}", "s", "publish", "b" * 5000)
    assert await log.first_seq("r") > first.event.seq, "the first event was dropped"
    before = await log.held_bytes("r")
    again = await log.append("r", "early", "s", "publish", "a" * 5000)
    assert again.duplicate and again.event.seq == 1
    assert await log.last_seq("r") == 6
    assert await log.held_bytes("r") == before, "a duplicate adds nothing"
    await assert_counter_right(log)


async def test_the_controls_latest_values_survive_a_flood(make_log):
    log = make_log(max_bytes=20_000)
    for value in (1, 2, 3):
        await log.append("r", f"s{value}", "s", "set", {"target": "speed", "value": value})
    await log.append("r", "label", "s", "set", {"target": "label", "value": "é" * 100})
    for n in range(20):
        await log.append("r", f"p{n}", "s", "publish", "z" * 6000)
    assert await log.first_seq("r") > 4, "the set events are past retention"
    assert await log.state("r") == {"label": "é" * 100, "speed": 3}


async def test_an_event_larger_than_the_room_may_hold_is_refused(make_log):
    log = make_log(max_bytes=2000)
    await log.append("r", "small", "s", "publish", "ok")
    before = await log.held_bytes("r")
    too_big = "q" * 2000
    with pytest.raises(EventTooLarge) as refused:
        await log.append("r", "big", "s", "publish", too_big)
    error = refused.value
    assert error.to_message() == {
        "type": "error", "code": "bad-data", "id": "big",
        "message": f"event too large for the room's log: "
                   f"{stored_size('big', 's', encode_data(too_big))} bytes stored, at most 2000"}
    # Nothing changed: no seq used, nothing dropped for it, the id not remembered.
    assert await log.last_seq("r") == 1
    assert [e.id for e in await held(log)] == ["small"]
    assert await log.held_bytes("r") == before
    fitting = "f" * (2000 - stored_size("big", "s", '""'))  # exactly max_bytes with quotes
    assert stored_size("big", "s", encode_data(fitting)) == 2000
    appended = await log.append("r", "big", "s", "publish", fitting)
    assert not appended.duplicate and appended.event.seq == 2, "no gap in seq"
    assert [e.id for e in await held(log)] == ["big"], "alone it fills the room"
    assert await log.held_bytes("r") == 2000
    # A retry of an accepted id is recognised before its size is looked at.
    retry = await log.append("r", "big", "s", "publish", too_big)
    assert retry.duplicate and retry.event.seq == 2


@pytest.mark.parametrize("make_log", KINDS[1:], indirect=True)  # memory dies with its process
async def test_the_counter_is_right_after_reopening(make_log):
    log = make_log(max_bytes=30_000)
    for n in range(12):
        await log.append("r", f"m{n}", "s", "publish", {"n": n, "blob": "é" * (n * 300)})
    kept = await assert_counter_right(log)
    await log.close()
    log = make_log(max_bytes=30_000)  # the same file, or a new connection to the same Redis
    assert await held(log) == kept
    await assert_counter_right(log)
    for n in range(12, 30):
        await log.append("r", f"m{n}", "s", "publish", {"n": n, "blob": "é" * 2000})
        events = await assert_counter_right(log)
        assert await log.held_bytes("r") <= 30_000
    assert events[-1].seq == 30


async def test_concurrent_appends_keep_the_counter_exact(make_log):
    """Two logs on one store (two servers on one Redis; one file for SQLite: two
    logs, one after the other, since a file has one writer) or one log (memory),
    appending at once."""
    log = make_log(max_bytes=50_000)
    logs = [log, make_log(max_bytes=50_000)] if make_log.kind == "redis" else [log]
    await asyncio.gather(*(
        logs[n % len(logs)].append("r", f"m{n}", f"s{n % 3}", "publish", "w" * (n * 37 % 4000))
        for n in range(200)))
    events = await assert_counter_right(log)
    assert await log.held_bytes("r") <= 50_000
    assert [e.seq for e in events] == list(range(events[0].seq, 201))


async def test_limits_are_checked(make_log):
    for bad in (0, -1, 1.5, None):
        with pytest.raises(ValueError, match="max_bytes"):
            make_log(max_bytes=bad)


# --- SQLite: the counter in the append's transaction ------------------------------------

async def test_sqlite_counter_in_a_group_commit_with_a_failing_append(tmp_path):
    """Appends committed together (savepoints): the refused ones — one too large,
    one unencodable — leave the total as if they had never been tried."""
    path = tmp_path / "g.sqlite"
    log = SQLiteEventLog(path, synchronous="NORMAL", max_bytes=5_000)
    try:
        calls = []
        for n in range(60):
            data = float("nan") if n == 17 else ("v" * 6000 if n == 31 else "u" * (n * 50))
            calls.append(log.append("r", f"m{n}", "s", "publish", data))
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(results[17], ValueError) and isinstance(results[31], EventTooLarge)
        ok = [r for r in results if not isinstance(r, BaseException)]
        assert [r.event.seq for r in ok] == list(range(1, 59))
        assert log.transactions < 60, "some appends shared a commit"
        events = await assert_counter_right(log)
        other = sqlite3.connect(path)  # what is committed, read independently
        assert other.execute("SELECT held_bytes FROM rooms WHERE room = 'r'").fetchone() == (
            sum(size_of(e) for e in events),)
        assert other.execute("SELECT sum(size) FROM events WHERE room = 'r'").fetchone() == (
            sum(size_of(e) for e in events),)
        other.close()
    finally:
        await log.close()


_SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rooms (room TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE events (
    room TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, sender TEXT NOT NULL,
    kind TEXT NOT NULL, data TEXT NOT NULL, time REAL NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE TABLE ids (
    room TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
CREATE INDEX ids_by_seq ON ids (room, seq);
CREATE TABLE state (
    room TEXT NOT NULL, target TEXT NOT NULL, value TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (room, target)
) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema', '1'), ('epoch', 'e1');
"""


async def test_sqlite_a_schema_1_file_is_upgraded_with_its_totals(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA_1)
    rows = [("a", 1, "x1", "sé", "publish", '"hello"', 1.0),
            ("a", 2, "x2", "s", "publish", '{"k":"\\u00e9"}', 2.0),
            ("b", 1, "y1", "s", "publish", "[1,2,3]", 3.0)]
    db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.executemany("INSERT INTO rooms VALUES (?, ?)", [("a", 2), ("b", 1)])
    db.commit()
    db.close()
    log = SQLiteEventLog(path, max_bytes=1000)
    try:
        assert log.epoch == "e1"
        for room in ("a", "b"):
            events = await assert_counter_right(log, room)
            assert len(events) == {"a": 2, "b": 1}[room]
        assert await log.held_bytes("a") == (
            stored_size("x1", "sé", '"hello"') + stored_size("x2", "s", '{"k":"\\u00e9"}'))
        await log.append("a", "x3", "s", "publish", "more")
        assert [e.seq for e in await assert_counter_right(log, "a")] == [1, 2, 3]
    finally:
        await log.close()
    check = sqlite3.connect(path)
    assert check.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("2",)
    check.close()


# --- Redis: the counter inside the append script ---------------------------------------

@pytest.mark.redis
async def test_redis_counter_survives_a_restart(aof_redis):
    """Redis with AOF killed (-9) and started again: the counter came back with the
    stream it describes (one script wrote both), and the bound still holds."""
    from wsdemo.stores.redis import RedisEventLog

    log = RedisEventLog(aof_redis.url, max_bytes=20_000)
    try:
        for n in range(15):
            await log.append("r", f"m{n}", "s", "publish", "r" * (n * 250))
        kept = await assert_counter_right(log)
        await aof_redis.kill()
        await aof_redis.start(aof=True)
        assert await held(log) == kept
        await assert_counter_right(log)
        for n in range(15, 30):
            await log.append("r", f"m{n}", "s", "publish", "r" * 3000)
            await assert_counter_right(log)
        assert await log.held_bytes("r") <= 20_000
    finally:
        await log.close()


@pytest.mark.redis
async def test_redis_room_written_before_the_counter_is_summed_once(redis_proc):
    """Entries without a ``size`` field and no ``bytes`` key (an older wsdemo wrote
    them): the first read or append sums the stream, and retention goes on from there."""
    import redis

    from wsdemo.stores.redis import RedisEventLog

    with redis.Redis.from_url(redis_proc.url, decode_responses=True) as r:
        for n in range(1, 6):
            r.xadd("wsdemo:{r}:events", {"id": f"m{n}", "sender": "s", "kind": "publish",
                                         "data": encode_data("o" * 1000), "time": "1.0",
                                         "attempt": "x"}, id=f"{n}-0")
        r.set("wsdemo:{r}:seq", "5")
    log = RedisEventLog(redis_proc.url, max_bytes=4000)
    try:
        await assert_counter_right(log)
        assert await log.held_bytes("r") == 5 * stored_size("m1", "s", encode_data("o" * 1000))
        await log.append("r", "m6", "s", "publish", "o" * 1000)
        events = await assert_counter_right(log)
        assert [e.seq for e in events] == [4, 5, 6]
        with redis.Redis.from_url(redis_proc.url, decode_responses=True) as r:
            assert int(r.get("wsdemo:{r}:bytes")) == await log.held_bytes("r")
    finally:
        await log.close()
