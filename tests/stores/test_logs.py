"""Every event log keeps the same rules (memory, SQLite, Redis: one contract); the
SQLite log also keeps them across a restart. The Redis log's own behaviour (several
servers, outages, following) is in tests/stores/test_redis_log.py."""

import asyncio
import contextlib
import sqlite3

import pytest

from tests.support.redis import running_redis
from wsdemo.core.eventlog import MemoryEventLog
from wsdemo.stores import open_log
from wsdemo.stores.sqlite import EventLogError, SQLiteEventLog


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def log(request, tmp_path):
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "memory":
            made = MemoryEventLog(max_events=5)
        elif request.param == "sqlite":
            made = SQLiteEventLog(tmp_path / "events.sqlite", max_events=5)
        else:
            from wsdemo.stores.redis import RedisEventLog

            # conftest's redis_server_path: skips, or fails where required, without Redis.
            redis = await stack.enter_async_context(
                running_redis(request.getfixturevalue("redis_server_path"), tmp_path))
            made = RedisEventLog(redis.url, max_events=5)
        try:
            yield made
        finally:
            await made.close()


async def test_seq_per_room_gap_free_under_concurrency(log):
    results = await asyncio.gather(*(log.append(f"r{i % 2}", f"m{i}", "s", "publish", i)
                                     for i in range(20)))
    for room in ("r0", "r1"):
        seqs = sorted(a.event.seq for a in results if a.event.room == room)
        assert seqs == list(range(1, 11))
    assert await log.last_seq("r0") == 10


async def test_duplicate_id_answers_the_first_seq(log):
    first = await log.append("r", "m1", "s1", "set", {"target": "t", "value": 1})
    again = await log.append("r", "m1", "s2", "set", {"target": "t", "value": 2})
    assert not first.duplicate
    assert again.duplicate and again.event.seq == first.event.seq == 1
    assert again.event.data == {"target": "t", "value": 1}
    assert again.event.sender == "s1"
    assert await log.last_seq("r") == 1


async def test_retention_and_read_after(log):
    for i in range(1, 9):
        await log.append("r", f"m{i}", "s", "publish", {"n": i})
    held = await log.read_after("r", 0)
    assert [e.seq for e in held] == [4, 5, 6, 7, 8]
    assert [e.data["n"] for e in held] == [4, 5, 6, 7, 8]
    assert await log.first_seq("r") == 4
    assert [e.seq for e in await log.read_after("r", 5, limit=2)] == [6, 7]
    assert await log.read_after("r", 8) == []
    # An id whose event is past retention is still recognised.
    again = await log.append("r", "m1", "s", "publish", {"n": 1})
    assert again.duplicate and again.event.seq == 1
    assert await log.last_seq("r") == 8


async def test_sqlite_survives_reopen_with_dedupe(tmp_path):
    path = tmp_path / "events.sqlite"
    log = SQLiteEventLog(path)
    await log.append("r", "a", "s", "publish", [1])
    await log.append("r", "b", "s", "publish", [2])
    await log.close()
    log = SQLiteEventLog(path)
    try:
        assert await log.last_seq("r") == 2
        assert (await log.append("r", "b", "s", "publish", [2])).duplicate
        assert (await log.append("r", "c", "s", "publish", [3])).event.seq == 3
        assert [e.data for e in await log.read_after("r", 0)] == [[1], [2], [3]]
    finally:
        await log.close()


async def test_sqlite_append_returns_after_commit(tmp_path):
    path = tmp_path / "events.sqlite"
    log = SQLiteEventLog(path, synchronous="NORMAL")
    try:
        await log.append("r", "a", "s", "publish", "kept")
        # Another connection sees it at once: it was committed before append returned.
        other = sqlite3.connect(path)
        assert other.execute("SELECT data FROM events").fetchall() == [('"kept"',)]
        other.close()
    finally:
        await log.close()


async def test_sqlite_retention_by_age(tmp_path):
    now = [1000.0]
    log = SQLiteEventLog(tmp_path / "e.sqlite", max_age=60, clock=lambda: now[0])
    try:
        await log.append("r", "old", "s", "publish", 1)
        now[0] += 120
        await log.append("r", "new", "s", "publish", 2)
        assert [e.seq for e in await log.read_after("r", 0)] == [2]
        assert await log.first_seq("r") == 2
    finally:
        await log.close()


def test_corrupted_file_is_refused_at_open(tmp_path):
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(EventLogError, match="not a usable SQLite database"):
        SQLiteEventLog(path)


async def test_damaged_database_is_refused_at_open(tmp_path):
    path = tmp_path / "damaged.sqlite"
    log = SQLiteEventLog(path, max_events=100_000)
    for i in range(300):
        await log.append("r", f"m{i}", "s", "publish", "x" * 200)
    await log.close()
    data = bytearray(path.read_bytes())
    data[4096 * 2 : 4096 * 2 + 512] = b"\xff" * 512  # scribble over a b-tree page
    path.write_bytes(bytes(data))
    with pytest.raises(EventLogError):
        SQLiteEventLog(path)


def test_unwritable_place_is_refused_at_open(tmp_path):
    with pytest.raises(EventLogError, match="cannot open"):
        SQLiteEventLog(tmp_path / "no-such-folder" / "events.sqlite")
    with pytest.raises(EventLogError, match="is a folder"):
        SQLiteEventLog(tmp_path)


def test_open_log_picks_by_name(tmp_path):
    assert isinstance(open_log("memory"), MemoryEventLog)
    assert isinstance(open_log(None), MemoryEventLog)
    log = open_log(f"sqlite:{tmp_path / 'x.sqlite'}")
    assert isinstance(log, SQLiteEventLog)
    asyncio.run(log.close())


async def test_state_keeps_each_controls_latest_value_past_retention(log):
    for value in (1, 2, 3):
        await log.append("r", f"s{value}", "s", "set", {"target": "speed", "value": value})
    await log.append("r", "m", "s", "set", {"target": "mode", "value": "hold"})
    for i in range(6):
        await log.append("r", f"p{i}", "s", "publish", {"n": i})  # pushes the sets out
    assert await log.first_seq("r") > 4, "the set events are past retention"
    assert await log.state("r") == {"mode": "hold", "speed": 3}
    assert await log.state("other") == {}


async def test_sqlite_appends_that_arrive_together_share_one_commit(tmp_path):
    """Group commit: 200 appends at once take far fewer transactions than 200, and
    each one returns only once its transaction is committed (read back by a second
    connection to the file, which sees only what is committed)."""
    import sqlite3

    from wsdemo.stores.sqlite import SQLiteEventLog

    log = SQLiteEventLog(tmp_path / "g.sqlite", synchronous="NORMAL")
    try:
        other = sqlite3.connect(tmp_path / "g.sqlite")

        async def append_and_check(n):
            appended = await log.append("r", f"id{n}", "s", "publish", {"n": n})
            row = other.execute("SELECT id FROM events WHERE room = 'r' AND seq = ?",
                                (appended.event.seq,)).fetchone()
            assert row == (f"id{n}",), "returned before its commit"
            return appended.event.seq

        seqs = await asyncio.gather(*(append_and_check(n) for n in range(200)))
        assert sorted(seqs) == list(range(1, 201))
        assert seqs == list(range(1, 201)), "in the order the appends were made"
        assert 1 <= log.transactions < 50, log.transactions
        again = await log.append("r", "id7", "s", "publish", {"n": 7})
        assert again.duplicate and again.event.seq == 8, "dedupe sees the batch's ids"
        other.close()
    finally:
        await log.close()


async def test_sqlite_one_bad_append_in_a_batch_costs_only_itself(tmp_path):
    from wsdemo.stores.sqlite import SQLiteEventLog

    log = SQLiteEventLog(tmp_path / "b.sqlite", synchronous="NORMAL")
    try:
        results = await asyncio.gather(
            log.append("r", "a", "s", "publish", 1),
            log.append("r", "b", "s", "publish", float("nan")),  # json refuses it
            log.append("r", "c", "s", "publish", 3),
            return_exceptions=True)
        assert isinstance(results[1], ValueError)
        assert [r.event.seq for r in (results[0], results[2])] == [1, 2]
        assert [e.id for e in await log.read_after("r", 0)] == ["a", "c"]
    finally:
        await log.close()
