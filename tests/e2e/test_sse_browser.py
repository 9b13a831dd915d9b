"""Chromium's own EventSource against the lab's SSE endpoint: the server drops the
connection, the browser reconnects by itself with ``Last-Event-ID``, and the server
resumes after it — no event lost, none repeated (WHATWG HTML §9.2.3, §9.2.4).

The browser reaches the server through the tap, so the reconnect's header is
checked on the wire, not only in the server's log.
"""

from __future__ import annotations

import pytest

from tests.conftest import opened_page
from wsdemo.lab.keepalive import UpdateServer
from wsdemo.lab.sse import read_event_stream
from wsdemo.tap import Tap

pytestmark = pytest.mark.browser

WAIT_MS = 5_000

LISTEN = """() => {
    window.got = [];
    window.opens = 0;
    window.source = new EventSource("/events");
    source.onopen = () => { window.opens += 1; };
    source.onmessage = (e) => { window.got.push([e.lastEventId, JSON.parse(e.data).seq]); };
}"""


async def test_event_source_reconnects_with_last_event_id_and_resumes(browser):
    # retry: 100 ms, so that the browser comes back quickly (its default is seconds)
    server = await UpdateServer.start(sse_retry=100)
    tap = await Tap(("127.0.0.1", server.port)).start()
    try:
        async with opened_page(browser) as page:
            # any page of the server's origin will do: EventSource stays same-origin
            await page.goto(f"http://127.0.0.1:{tap.port}/poll")
            await page.evaluate(LISTEN)
            await page.wait_for_function("window.opens === 1", timeout=WAIT_MS)
            for _ in range(3):
                server.feed.publish()
            await page.wait_for_function("window.got.length === 3", timeout=WAIT_MS)

            assert server.drop_streams() == 1
            # published after the drop and before the browser can be back (it waits
            # the 100 ms retry first, and nothing here yields to the loop until then)
            server.feed.publish()
            server.feed.publish()
            await page.wait_for_function("window.opens === 2 && window.got.length === 5",
                                         timeout=WAIT_MS)
            server.feed.publish()
            await page.wait_for_function("window.got.length === 6", timeout=WAIT_MS)
            got = await page.evaluate("window.got")
            await page.evaluate("window.source.close()")
    finally:
        await tap.close()
        await server.close()

    assert got == [[str(n), n] for n in range(1, 7)]  # every event once, in order
    assert server.resumes == [None, "3"]
    streams = [m for m in tap.capture.http
               if m.http.is_request and (m.http.target or "").startswith("/events")]
    assert [m.http.header("last-event-id") for m in streams] == [None, "3"]
    assert all(m.http.header("accept") == "text/event-stream" for m in streams)
    first = read_event_stream(tap.capture, streams[0].conn)
    second = read_event_stream(tap.capture, streams[1].conn)
    assert [e.event.last_event_id for e in first.events if e.event] == ["1", "2", "3"]
    assert [e.event.last_event_id for e in second.events if e.event] == ["4", "5", "6"]
