"""Lesson 09's loopback conversation: a real HTTP/2 server and client, the tap between.

Bounded in time (every wait has a timeout) and on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import hypercorn.asyncio
from hypercorn.config import Config

from wsdemo.lab.http2 import Client, Conversation, EchoServer, refusals
from wsdemo.tap.decode import Direction
from wsdemo.tap.http2 import H2Frame
from wsdemo.wire.connection import Close, TextMessage
from wsdemo.wire.http2 import ResponseReceived, WebSocketEnded, WebSocketMessage, WebSocketOpened

MASK = bytes.fromhex("37fa213d")


def response_to(stream):
    return lambda e: isinstance(e, ResponseReceived) and e.stream_id == stream


async def test_a_get_is_answered_on_the_same_tcp_connection_while_the_websocket_flows():
    conv = await Conversation.start(mask_source=lambda: MASK)
    try:
        client = conv.client
        await conv.settle()
        assert client.h2.websocket_allowed
        ws = client.h2.open_websocket("/ws", subprotocols=["wsdemo.v1"])
        client.flush()
        opened = await client.wait_for(lambda e: isinstance(e, WebSocketOpened))
        assert opened.subprotocol == "wsdemo.v1"
        where = client.sockname
        await conv.settle()
        conv.new_frames()  # the opening, already seen

        client.h2.send_text(ws, "before")
        get = client.h2.request("GET", "/status")
        client.h2.send_text(ws, "after")
        client.flush()
        answer = await client.wait_for(response_to(get))
        await client.wait_for(lambda e: isinstance(e, WebSocketMessage)
                              and e.event == TextMessage("after"))
        assert json.loads(answer.body) == {"websocket_streams_open": 1}
        await conv.settle()
        frames = [i for i in conv.new_frames() if isinstance(i, H2Frame)]
        down = [(f.type_name, f.stream_id) for f in frames if f.direction is Direction.S2C]
        # the GET's answer sits between the two echoes on the wire
        assert down == [("DATA", 1), ("HEADERS", 3), ("DATA", 3), ("DATA", 1)]

        client.h2.close_websocket(ws)
        client.flush()
        await client.wait_for(lambda e: isinstance(e, WebSocketEnded))
        get = client.h2.request("GET", "/status")
        client.flush()
        answer = await client.wait_for(response_to(get))
        assert json.loads(answer.body) == {"websocket_streams_open": 0}
        await conv.settle()
        assert client.sockname == where
        assert len(conv.tap.capture.connections) == 1  # one TCP connection for everything
        conv.new_frames()
        ends = [f for f in conv.decoder.items if isinstance(f, H2Frame) and f.stream_id == ws
                and f.end_stream]
        assert {f.direction for f in ends} == {Direction.C2S, Direction.S2C}
    finally:
        await conv.close()


async def test_the_step_view_is_the_same_on_every_run():
    texts = []
    for _ in range(2):
        conv = await Conversation.start(mask_source=lambda: MASK)
        try:
            first = await conv.step()
            client = conv.client
            client.h2.open_websocket("/ws", subprotocols=["wsdemo.v1"])
            client.flush()
            await client.wait_for(lambda e: isinstance(e, WebSocketOpened))
            texts.append(first + await conv.step())
        finally:
            await conv.close()
    assert texts[0] == texts[1]
    assert "ENABLE_CONNECT_PROTOCOL (0x8) = 1" in texts[0] and ":status = 200" in texts[0]


async def test_a_server_without_rfc_8441_never_lets_the_client_try():
    conv = await Conversation.start(enable_websocket=False)
    try:
        await conv.settle()
        assert not conv.client.h2.websocket_allowed
        text = "\n".join(conv.decoder.table().splitlines())
        assert "= 1" not in "\n".join(line for line in text.splitlines()
                                      if "ENABLE_CONNECT_PROTOCOL" in line)
    finally:
        await conv.close()


def test_each_bad_extended_connect_gets_its_own_refusal():
    answers = dict(refusals())
    assert answers["our client, before the server's SETTINGS"].startswith("not sent")
    assert answers["CONNECT before the server's SETTINGS"] == "RST_STREAM PROTOCOL_ERROR"
    assert answers["CONNECT to a server without the setting"] == "RST_STREAM PROTOCOL_ERROR"
    assert answers["sec-websocket-version: 8"] == ":status 400, sec-websocket-version: 13"
    assert answers[":protocol chat"] == ":status 501"
    assert answers["CONNECT without :protocol (a tunnel)"] == ":status 501"
    assert answers["CONNECT with :path but no :protocol"].startswith("GOAWAY PROTOCOL_ERROR")


# ---------------------------------------------------------------- an independent server

async def _echo_app(scope, receive, send):
    """A tiny ASGI app: a WebSocket echo (wsdemo.v1) and a GET that says its HTTP version."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept", "subprotocol": "wsdemo.v1"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": f"{scope['http_version']}: "
                                                          f"{message['text']}"})
        return
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": f"http/{scope['http_version']}".encode()})


async def test_our_client_against_hypercorn_an_independent_rfc_8441_server():
    # Hypercorn (python-hyper's h2 for HTTP/2, wsproto for the frames) advertises
    # SETTINGS_ENABLE_CONNECT_PROTOCOL and serves WebSocket on a CONNECT stream
    # (hypercorn/protocol/h2.py, ws_stream.py): our frames are read by wsproto, its by us.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]  # hypercorn owns (and closes) it
    config.accesslog = config.errorlog = None
    stop = asyncio.Event()
    served = asyncio.ensure_future(hypercorn.asyncio.serve(_echo_app, config,
                                                          shutdown_trigger=stop.wait))
    client = None
    try:
        client = await Client.connect(port, authority=f"127.0.0.1:{port}",
                                      mask_source=lambda: MASK)
        # the server's SETTINGS come first; wait until they allow the extended CONNECT
        await client.wait_until(lambda: client.h2.websocket_allowed)
        ws = client.h2.open_websocket("/echo", subprotocols=["wsdemo.v1"])
        client.flush()
        opened = await client.wait_for(lambda e: isinstance(e, WebSocketOpened))
        assert (opened.stream_id, opened.subprotocol) == (ws, "wsdemo.v1")
        assert dict(opened.headers)[":status"] == "200"
        client.h2.send_text(ws, "hello")
        get = client.h2.request("GET", "/plain")
        client.flush()
        echo = await client.wait_for(lambda e: isinstance(e, WebSocketMessage)
                                     and isinstance(e.event, TextMessage))
        assert echo.event.data == "2: hello"
        answer = await client.wait_for(response_to(get))
        assert (answer.status, answer.body) == (200, b"http/2")
        client.h2.close_websocket(ws, 1000)
        client.flush()
        echo = await client.wait_for(lambda e: isinstance(e, WebSocketMessage)
                                     and isinstance(e.event, Close))
        assert echo.event.code == 1000
        assert client.h2.websocket(ws).state.value == "CLOSED"
        # Hypercorn 0.18 echoes the Close but never sends END_STREAM on a close the
        # client started (its ws_stream.py sends StreamClosed, and h2.py forgets the
        # stream). Our client waits for the server's END_STREAM (RFC 6455 §7.1.1: the
        # server closes first), so it sends none either; the connection goes on.
        assert WebSocketEnded(ws) not in client.events
        get = client.h2.request("GET", "/after")
        client.flush()
        answer = await client.wait_for(response_to(get))
        assert (answer.stream_id, answer.body) == (5, b"http/2")
    finally:
        if client is not None:
            await client.close()
        stop.set()
        await asyncio.wait_for(served, 10)


async def test_closing_the_server_with_a_connection_open_logs_no_error(caplog):
    """Its handler task is cut on close; Python 3.11 would log that as an error."""
    server = await EchoServer().start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    await asyncio.wait_for(reader.read(9), 5)  # the server's SETTINGS frame header
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        await server.close()
    writer.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
