"""The lessons' helpers (wsdemo.lab.lesson): logs kept, bounded waits, real processes."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest

from wsdemo import ControlClient
from wsdemo.lab import lesson


@pytest.fixture
def loggers():
    """Put the loggers a test captures back as they were."""
    names = ["wsdemo.test-lesson", "wsdemo.test-lesson-2"]
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in names}
    yield names
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def test_capture_logs_keeps_records_and_a_second_call_replaces_the_first(loggers):
    logging.getLogger(loggers[0]).setLevel(logging.INFO)
    first = lesson.capture_logs(*loggers)
    logging.getLogger(loggers[0]).info("one %s", "record")
    logging.getLogger(loggers[1]).debug("below the level")
    assert first.messages() == ["one record"]
    assert first.messages(loggers[1]) == []
    assert logging.getLogger(loggers[0]).propagate is False
    assert logging.getLogger(loggers[1]).level == logging.NOTSET  # left as it was

    second = lesson.capture_logs(*loggers, level=logging.DEBUG, logger_level=logging.DEBUG)
    logging.getLogger(loggers[1]).debug("now kept")
    assert second.messages(loggers[1]) == ["now kept"]
    assert first.messages() == ["one record"]  # the old list gets nothing more
    handlers = logging.getLogger(loggers[0]).handlers
    assert [h for h in handlers if isinstance(h, lesson.LogRecords)] == [second]


def test_a_captured_child_logger_reaches_neither_its_parents_nor_their_handlers(loggers):
    parent = logging.getLogger(loggers[0])
    printed = lesson.LogRecords(logging.DEBUG)  # stands for the kernel's stderr handler
    parent.addHandler(printed)
    child = f"{loggers[0]}.child"
    kept = lesson.capture_logs(child)
    try:
        logging.getLogger(child).warning("426 GET /ws")
        assert kept.messages(child) == ["426 GET /ws"] and printed.records == []
    finally:
        logging.getLogger(child).handlers.clear()
        logging.getLogger(child).propagate = True


def test_the_default_loggers_are_tornados_three_and_wsdemo():
    assert set(lesson.SERVER_LOGGERS) == {"wsdemo", "tornado.access", "tornado.application",
                                          "tornado.general"}


def test_show_prints_one_line_of_json_in_field_order(capsys):
    lesson.show({"type": "event", "seq": 3, "data": "é"}, "← ")
    assert capsys.readouterr().out == '← {"type": "event", "seq": 3, "data": "é"}\n'


async def test_until_returns_once_the_condition_holds_and_names_what_timed_out():
    box = []
    asyncio.get_running_loop().call_later(0.05, box.append, 1)
    await lesson.until(lambda: box, "the box filled", timeout=5)
    assert box == [1]
    with pytest.raises(TimeoutError, match=r"never: not within 0.05 s"):
        await lesson.until(lambda: False, "never", timeout=0.05)


def test_free_port_can_be_bound():
    import socket

    port = lesson.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        assert s.getsockname()[1] == port


def test_need_says_in_one_line_what_is_missing_and_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(lesson.Missing) as caught:
        lesson.need("redis-server", "section 3 starts one")
    lines = caught.value._render_traceback_()
    assert len(lines) == 1
    assert "redis-server is not installed here — section 3 starts one" in lines[0]
    assert "apt-get install redis-server" in lines[0]
    python = Path(sys.executable)
    monkeypatch.setenv("PATH", str(python.parent))
    assert lesson.need(python.name) == str(python)


async def test_start_redis_without_redis_server_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(lesson.Missing, match="redis-server is not installed"):
        await lesson.start_redis(tmp_path)


async def test_start_serve_listens_serves_and_stops(tmp_path):
    served = await lesson.start_serve("--port", "0", "--no-demo", "--room", "chat",
                                      "--log", str(tmp_path / "events.sqlite"),
                                      env={"WSDEMO_LESSON_TEST": "yes"})
    try:
        assert served.url.startswith("ws://127.0.0.1:") and served.page.startswith("http://")
        assert served in lesson.running()
        environ = Path(f"/proc/{served.pid}/environ").read_bytes().split(b"\0")
        assert b"WSDEMO_LESSON_TEST=yes" in environ
        assert any(e.startswith(b"PATH=") for e in environ)  # added to, not replaced
        client = await ControlClient.connect(served.url, client="t")
        await client.join("chat")
        ack = await client.publish("chat", {"n": 1}, id="m1")
        assert ack["seq"] == 1
        await client.close()
    finally:
        status = await served.stop()
    assert status == 0 and not served.running and served not in lesson.running()


async def test_a_killed_serve_exits_9_and_a_restart_keeps_its_log(tmp_path):
    args = ["--port", "0", "--no-demo", "--room", "chat", "--log", str(tmp_path / "e.sqlite")]
    first = await lesson.start_serve(*args)
    client = await ControlClient.connect(first.url, client="t")
    await client.join("chat")
    await client.publish("chat", {"n": 1}, id="m1")
    assert await first.kill() == -9
    await client.wait_closed(10)
    again = await lesson.start_serve(*args)
    try:
        client = await ControlClient.connect(again.url, client="t")
        await client.join("chat")
        ack = await client.publish("chat", {"n": 1}, id="m1")
        assert (ack["seq"], ack["duplicate"]) == (1, True)
        await client.close()
    finally:
        await again.stop()


async def test_a_serve_that_cannot_start_fails_with_its_own_last_line(tmp_path):
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"not a database " * 100)
    with pytest.raises(lesson.ServeFailed) as caught:
        await lesson.start_serve("--port", "0", "--no-demo", "--log", str(broken))
    assert "broken.sqlite" in str(caught.value)
    assert "Traceback" not in str(caught.value)


async def test_redis_started_killed_and_started_again_keeps_what_it_acknowledged(
        redis_server_path, tmp_path):
    import redis

    server = await lesson.start_redis(tmp_path)
    try:
        r = redis.Redis.from_url(server.url, socket_timeout=5)
        assert r.ping() is True
        r.set("kept", "1")
        r.close()
        assert await server.kill() == -9
        assert not server.running
        await server.start()
        r = redis.Redis.from_url(server.url, socket_timeout=5)
        assert r.get("kept") == b"1"  # appendfsync always: the AOF had it before the reply
        r.close()
        with pytest.raises(RuntimeError, match="already running"):
            await server.start()
    finally:
        await server.stop()
    assert server.returncode == 0


async def test_stop_all_stops_what_is_still_running(tmp_path):
    one = await lesson.start_serve("--port", "0", "--no-demo", "--log", "memory")
    two = await lesson.start_serve("--port", "0", "--no-demo", "--log", "memory")
    await two.kill()
    assert await lesson.stop_all() == 1
    assert not one.running and lesson.running() == []
    assert one.returncode == 0 and two.returncode == -9
