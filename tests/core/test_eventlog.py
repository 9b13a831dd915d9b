"""The in-memory event log: gap-free per-room seq, dedupe by id, retention."""

import pytest

from wsdemo.core.eventlog import MemoryEventLog


async def test_seq_is_per_room_and_gap_free():
    log = MemoryEventLog()
    seqs = [(await log.append(room, f"{room}{i}", "s1", "publish", i)).event.seq
            for i in range(5) for room in ("a", "b")]
    assert seqs == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert await log.last_seq("a") == 5
    assert await log.last_seq("nobody") == 0


async def test_a_repeated_id_is_a_duplicate_with_the_first_seq():
    log = MemoryEventLog()
    first = await log.append("r", "m1", "s1", "publish", "once")
    await log.append("r", "m2", "s1", "publish", "other")
    again = await log.append("r", "m1", "s2", "publish", "twice?")
    assert not first.duplicate and again.duplicate
    assert again.event == first.event and again.event.data == "once"
    assert again.ack() == {"type": "ack", "id": "m1", "room": "r", "seq": 1, "duplicate": True}
    assert [e.seq for e in await log.read_after("r", 0)] == [1, 2]


async def test_read_after_returns_what_is_held_in_order():
    log = MemoryEventLog(max_events=3)
    for i in range(1, 6):
        await log.append("r", f"m{i}", "s1", "publish", i)
    assert [e.seq for e in await log.read_after("r", 0)] == [3, 4, 5]
    assert [e.seq for e in await log.read_after("r", 3)] == [4, 5]
    assert [e.seq for e in await log.read_after("r", 3, limit=1)] == [4]
    assert await log.read_after("r", 5) == []
    assert await log.first_seq("r") == 3
    assert await log.first_seq("empty") == 1


async def test_event_message_form():
    log = MemoryEventLog()
    appended = await log.append("r", "m1", "s1", "set", {"target": "t", "value": 1})
    assert appended.event.to_message() == {
        "type": "event", "room": "r", "seq": 1, "id": "m1", "from": "s1", "kind": "set",
        "data": {"target": "t", "value": 1},
    }


def test_local_ids_do_not_repeat():
    log = MemoryEventLog()
    assert len({log.new_id() for _ in range(1000)}) == 1000


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        MemoryEventLog(max_events=0)


def test_max_bytes_must_be_a_positive_integer():
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="max_bytes"):
            MemoryEventLog(max_bytes=bad)


class Payload(dict):
    """A dict that a weak reference can watch (plain dicts cannot be)."""


async def test_a_dropped_events_data_is_freed_though_its_id_is_remembered():
    """The dedupe record keeps id → seq, not the event: once retention drops an
    event, its data is garbage (a flood cannot pin it through the ids)."""
    import gc
    import weakref

    log = MemoryEventLog(max_bytes=5_000, max_ids=1_000)
    first = Payload(blob="a" * 4_000)
    watch = weakref.ref(first)
    await log.append("r", "first", "s", "publish", first)
    del first
    for n in range(10):
        await log.append("r", f"m{n}", "s", "publish", {"blob": "b" * 4_000})
    gc.collect()
    assert watch() is None, "the dropped event's data is still referenced"
    again = await log.append("r", "first", "s", "publish", {"blob": "a" * 4_000})
    assert again.duplicate and again.event.seq == 1 and again.event.data is None
    held = await log.read_after("r", 0)
    assert [e.seq for e in held] == [11]
    kept = await log.append("r", "m9", "s", "publish", {})
    assert kept.duplicate and kept.event is held[0], "a held event is answered whole"
