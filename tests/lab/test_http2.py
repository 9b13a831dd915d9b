"""Lesson 09's loopback conversation: a real HTTP/2 server and client, the tap between.

Bounded in time (every wait has a timeout) and on 127.0.0.1 only.
"""

from __future__ import annotations

import json

from wsdemo.lab.http2 import Conversation
from wsdemo.tap.decode import Direction
from wsdemo.tap.http2 import H2Frame
from wsdemo.wire.connection import TextMessage
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
    from wsdemo.lab.http2 import refusals

    answers = dict(refusals())
    assert answers["our client, before the server's SETTINGS"].startswith("not sent")
    assert answers["CONNECT before the server's SETTINGS"] == "RST_STREAM PROTOCOL_ERROR"
    assert answers["CONNECT to a server without the setting"] == "RST_STREAM PROTOCOL_ERROR"
    assert answers["sec-websocket-version: 8"] == ":status 400, sec-websocket-version: 13"
    assert answers[":protocol chat"] == ":status 501"
    assert answers["CONNECT without :protocol (a tunnel)"] == ":status 501"
    assert answers["CONNECT with :path but no :protocol"].startswith("GOAWAY PROTOCOL_ERROR")
