"""WebSocket over HTTP/2 (RFC 8441), sans-I/O: a client and a server on h2, no socket.

The peers are driven by hand, and bad requests are crafted with a bare h2
connection, so each rule of RFC 8441 is seen accepted and refused.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from wsdemo.wire import BinaryMessage, Close, LocalProtocolError, State, TextMessage
from wsdemo.wire.frames import Frame, FrameParser, Opcode
from wsdemo.wire.http2 import (
    ENABLE_CONNECT_PROTOCOL,
    ConnectionEnded,
    H2Client,
    H2Server,
    Refused,
    RequestReceived,
    ResponseReceived,
    WebSocketEnded,
    WebSocketMessage,
    WebSocketOpened,
    WebSocketRequested,
)

MASK = bytes.fromhex("37fa213d")  # RFC 6455 §5.7's example mask: the same bytes every run


def pump(a, b, rounds: int = 6) -> None:
    """Carry bytes both ways until neither side has anything to send."""
    for _ in range(rounds):
        ab, ba = a.data_to_send(), b.data_to_send()
        if not ab and not ba:
            return
        if ab:
            b.receive_data(ab)
        if ba:
            a.receive_data(ba)


def connected(**server_options) -> tuple[H2Client, H2Server]:
    client = H2Client("wsdemo.test", mask_source=lambda: MASK)
    server = H2Server(subprotocols=["wsdemo.v1"], **server_options)
    pump(client, server)
    return client, server


def open_websocket(client: H2Client, server: H2Server) -> int:
    stream = client.open_websocket("/ws", subprotocols=["other", "wsdemo.v1"])
    pump(client, server)
    (request,) = server.events_received()
    assert isinstance(request, WebSocketRequested)
    server.accept(request.stream_id)
    pump(client, server)
    (opened,) = client.events_received()
    assert opened == WebSocketOpened(stream, "wsdemo.v1", opened.headers)
    return stream


def raw_client(**config) -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None, **config))
    conn.initiate_connection()
    return conn


def raw_events(raw: h2.connection.H2Connection, server: H2Server) -> list[h2.events.Event]:
    server.receive_data(raw.data_to_send())
    return raw.receive_data(server.data_to_send())


EXTENDED_CONNECT = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                    (":path", "/ws"), (":authority", "wsdemo.test"),
                    ("sec-websocket-version", "13")]


# ---------------------------------------------------------------- the setting


def test_the_server_advertises_enable_connect_protocol_and_the_client_sees_it():
    client = H2Client("wsdemo.test")
    assert not client.websocket_allowed  # nothing received yet
    server = H2Server()
    assert server.h2.local_settings[ENABLE_CONNECT_PROTOCOL] == 1
    pump(client, server)
    assert client.websocket_allowed and server.settings_acknowledged


def test_a_server_without_it_does_not_advertise_it():
    client, server = connected(enable_websocket=False)
    assert not client.websocket_allowed


def test_the_client_refuses_to_send_the_extended_connect_before_the_setting_arrives():
    client = H2Client("wsdemo.test")
    with pytest.raises(LocalProtocolError, match="SETTINGS_ENABLE_CONNECT_PROTOCOL"):
        client.open_websocket("/ws")
    client, server = connected(enable_websocket=False)
    with pytest.raises(LocalProtocolError, match="RFC 8441"):
        client.open_websocket("/ws")


def test_an_extended_connect_sent_before_the_servers_settings_is_reset():
    # A client that does not wait: preface, SETTINGS and the CONNECT in one write,
    # before it has read a byte of the server's SETTINGS.
    raw = raw_client()
    raw.send_headers(1, EXTENDED_CONNECT)
    server = H2Server()
    events = raw_events(raw, server)
    reset = [e for e in events if isinstance(e, h2.events.StreamReset)]
    protocol_error = h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert [(e.stream_id, e.error_code) for e in reset] == [(1, protocol_error)]
    (refused,) = server.events_received()
    assert refused.status is None and "acknowledged" in refused.reason
    assert 1 not in server.websockets
    # a stream error, not a connection error: the connection still serves HTTP
    raw.send_headers(3, [(":method", "GET"), (":scheme", "http"), (":path", "/"),
                         (":authority", "wsdemo.test")], end_stream=True)
    server.receive_data(raw.data_to_send())
    (request,) = server.events_received()
    assert isinstance(request, RequestReceived) and request.stream_id == 3


def test_an_extended_connect_to_a_server_that_did_not_allow_it_is_reset():
    raw = raw_client()
    server = H2Server(enable_websocket=False)
    raw_events(raw, server)  # settings both ways
    raw.send_headers(1, EXTENDED_CONNECT)
    events = raw_events(raw, server)
    assert any(isinstance(e, h2.events.StreamReset) and e.stream_id == 1 for e in events)
    (refused,) = server.events_received()
    assert refused == Refused(1, None, h2.errors.ErrorCodes.PROTOCOL_ERROR, refused.reason)
    assert "does not allow" in refused.reason


# ---------------------------------------------------------------- the handshake


def test_the_handshake_is_a_connect_answered_by_200_without_upgrade_or_101():
    client, server = connected()
    stream = client.open_websocket("/ws", subprotocols=["wsdemo.v1"], origin="http://a.test")
    pump(client, server)
    (request,) = server.events_received()
    sent = dict(request.headers)
    assert sent[":method"] == "CONNECT" and sent[":protocol"] == "websocket"
    assert sent[":scheme"] == "http" and sent[":path"] == "/ws"
    assert sent[":authority"] == "wsdemo.test" and sent["origin"] == "http://a.test"
    assert sent["sec-websocket-version"] == "13" and request.subprotocols == ("wsdemo.v1",)
    assert not {"upgrade", "connection", "sec-websocket-key"} & set(sent)
    server.accept(stream)
    pump(client, server)
    (opened,) = client.events_received()
    answer = dict(opened.headers)
    assert answer == {":status": "200", "sec-websocket-protocol": "wsdemo.v1"}
    assert client.websocket(stream).state is State.OPEN
    assert server.websocket(stream).state is State.OPEN


@pytest.mark.parametrize(("headers", "status", "why"), [
    ([("sec-websocket-version", "8")], 400, "must be 13"),
    ([], 400, "must be 13"),  # no version at all
])
def test_a_wrong_or_missing_version_is_refused_with_400_naming_13(headers, status, why):
    raw = raw_client()
    server = H2Server()
    raw_events(raw, server)
    raw.send_headers(1, [h for h in EXTENDED_CONNECT if h[0] != "sec-websocket-version"]
                     + headers)
    events = raw_events(raw, server)
    (response,) = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert dict(response.headers)[b":status"] == str(status).encode()
    assert dict(response.headers)[b"sec-websocket-version"] == b"13"
    (refused,) = server.events_received()
    assert refused.status == status and why in refused.reason
    assert 1 not in server.websockets


def test_an_unknown_protocol_is_refused_with_501():
    raw = raw_client()
    server = H2Server()
    raw_events(raw, server)
    raw.send_headers(1, [(":protocol", "webtransport") if h[0] == ":protocol" else h
                         for h in EXTENDED_CONNECT])
    events = raw_events(raw, server)
    (response,) = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert dict(response.headers)[b":status"] == b"501"


def test_a_connect_without_protocol_is_a_tunnel_request_and_refused_with_501():
    raw = raw_client()
    server = H2Server()
    raw_events(raw, server)
    raw.send_headers(1, [(":method", "CONNECT"), (":authority", "wsdemo.test:443")])
    events = raw_events(raw, server)
    (response,) = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert dict(response.headers)[b":status"] == b"501"
    (refused,) = server.events_received()
    assert "no proxy" in refused.reason


def test_a_connect_with_path_but_no_protocol_is_malformed_and_ends_the_connection():
    raw = raw_client(validate_outbound_headers=False)
    server = H2Server()
    raw_events(raw, server)
    raw.send_headers(1, [h for h in EXTENDED_CONNECT if h[0] != ":protocol"])
    events = raw_events(raw, server)
    (goaway,) = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    (ended,) = server.events_received()
    assert isinstance(ended, ConnectionEnded) and server.ended


def test_the_application_may_reject_with_a_status_and_the_client_sees_a_refusal():
    client, server = connected()
    stream = client.open_websocket("/nowhere")
    pump(client, server)
    (request,) = server.events_received()
    server.reject(request.stream_id, 404, "no such room")
    pump(client, server)
    events = client.events_received()
    assert events[0] == Refused(stream, 404, None, "status 404")
    assert events[1] == ResponseReceived(stream, 404, events[1].headers, b"no such room")
    assert stream not in client.websockets
    with pytest.raises(LocalProtocolError):
        server.accept(stream)


def test_a_subprotocol_the_client_did_not_offer_cancels_the_stream():
    client, server = connected()
    stream = client.open_websocket("/ws", subprotocols=["chat"])
    pump(client, server)
    server.events_received()
    server.accept(stream, subprotocol="wsdemo.v1")
    client.receive_data(server.data_to_send())
    (refused,) = client.events_received()
    assert refused.error_code == h2.errors.ErrorCodes.CANCEL and "not offered" in refused.reason
    server.receive_data(client.data_to_send())
    assert any(isinstance(e, WebSocketEnded) for e in server.events_received())


# ---------------------------------------------------------------- frames in DATA


def test_websocket_frames_travel_in_data_frames_and_the_client_still_masks():
    client, server = connected()
    stream = open_websocket(client, server)
    client.send_text(stream, "hello")
    wire = client.data_to_send()
    # one DATA frame (type 0x0) on the stream, holding one masked TEXT frame
    length, type_, flags = int.from_bytes(wire[:3], "big"), wire[3], wire[4]
    assert (type_, flags, int.from_bytes(wire[5:9], "big")) == (0x0, 0x0, stream)
    (frame,) = list(_frames(wire[9:9 + length]))
    assert frame == Frame(Opcode.TEXT, b"hello", mask=MASK)
    server.receive_data(wire)
    assert server.events_received() == [WebSocketMessage(stream, TextMessage("hello"))]
    server.send_binary(stream, b"\x00\x01")
    wire = server.data_to_send()
    (frame,) = list(_frames(wire[9:]))
    assert frame.mask is None  # RFC 6455 §5.1: a server never masks, over HTTP/2 too
    client.receive_data(wire)
    assert client.events_received() == [WebSocketMessage(stream, BinaryMessage(b"\x00\x01"))]


def _frames(data: bytes):
    parser = FrameParser()
    parser.feed(data)
    return parser.frames()


def test_an_unmasked_client_frame_fails_the_websocket_not_the_connection():
    client, server = connected()
    stream = open_websocket(client, server)
    client.h2.send_data(stream, Frame(Opcode.TEXT, b"bare").serialize())
    pump(client, server)
    failed = [e.event for e in server.events_received() if isinstance(e, WebSocketMessage)]
    assert failed and "masked" in failed[0].error.reason
    events = client.events_received()
    closes = [e.event for e in events if isinstance(e, WebSocketMessage)
              and isinstance(e.event, Close)]
    assert closes and closes[0].code == 1002
    assert WebSocketEnded(stream) in events
    # the HTTP/2 connection is unharmed
    get = client.request("GET", "/after")
    pump(client, server)
    assert [e.stream_id for e in server.events_received()] == [get]


def test_large_messages_are_cut_into_data_frames_and_flow_control_is_given_back():
    client, server = connected()
    stream = open_websocket(client, server)
    text = "x" * 200_000  # more than the 65,535-byte initial windows (RFC 9113 §6.9.2)
    client.send_text(stream, text)
    pump(client, server, rounds=40)
    messages = [e.event for e in server.events_received() if isinstance(e, WebSocketMessage)]
    assert messages == [TextMessage(text)]


# ---------------------------------------------------------------- other streams, close


def test_an_ordinary_get_is_served_on_another_stream_while_the_websocket_is_open():
    client, server = connected()
    stream = open_websocket(client, server)
    client.send_text(stream, "before")
    get = client.request("GET", "/status")
    client.send_text(stream, "after")
    server.receive_data(client.data_to_send())
    events = server.events_received()
    assert [type(e) for e in events] == [WebSocketMessage, RequestReceived, WebSocketMessage]
    assert events[1].stream_id == get != stream and events[1].path == "/status"
    assert server.websocket(stream).state is State.OPEN
    server.send_text(stream, "tick")
    server.respond(get, 200, b"ok")
    server.send_text(stream, "tock")
    client.receive_data(server.data_to_send())
    events = client.events_received()
    assert [getattr(e, "event", e) for e in events] == [
        TextMessage("tick"), ResponseReceived(get, 200, events[1].headers, b"ok"),
        TextMessage("tock")]
    assert client.websocket(stream).state is State.OPEN


def test_closing_the_websocket_ends_its_stream_and_the_connection_still_serves_http():
    client, server = connected()
    stream = open_websocket(client, server)
    client.close_websocket(stream, 1000, "bye")
    server.receive_data(client.data_to_send())
    assert server.events_received() == [WebSocketMessage(stream, Close(1000, "bye"))]
    echo = server.data_to_send()
    assert echo[4] & 0x1  # the server's Close travels with END_STREAM
    client.receive_data(echo)
    assert client.events_received() == [WebSocketMessage(stream, Close(1000, "")),
                                        WebSocketEnded(stream)]
    last = client.data_to_send()  # our END_STREAM: an empty DATA frame
    assert last[:9] == bytes([0, 0, 0, 0x0, 0x1, 0, 0, 0, stream])
    server.receive_data(last)
    assert server.events_received() == [WebSocketEnded(stream)]
    assert client.websocket(stream).state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        client.send_text(stream, "too late")
    get = client.request("GET", "/status")
    pump(client, server)
    (request,) = server.events_received()
    server.respond(request.stream_id, 200, b"still HTTP/2")
    pump(client, server)
    (response,) = client.events_received()
    assert response.stream_id == get and response.body == b"still HTTP/2"


def test_a_peer_that_ends_the_stream_without_a_close_frame_is_an_abnormal_closure():
    client, server = connected()
    stream = open_websocket(client, server)
    client.h2.end_stream(stream)
    server.receive_data(client.data_to_send())
    events = server.events_received()
    failed = events[0].event
    assert failed.error.close_code == 1006 and events[1] == WebSocketEnded(stream)


def test_a_request_body_over_max_size_resets_its_stream_and_keeps_the_connection():
    client = H2Client("wsdemo.test")
    server = H2Server(max_size=1000)
    pump(client, server)
    stream = client.h2.get_next_available_stream_id()
    client.h2.send_headers(stream, [(":method", "POST"), (":scheme", "http"), (":path", "/"),
                                    (":authority", "wsdemo.test")])
    client.h2.send_data(stream, b"x" * 1001, end_stream=True)
    pump(client, server)
    (refused,) = server.events_received()
    assert refused == Refused(stream, None, h2.errors.ErrorCodes.CANCEL, refused.reason)
    assert "1000" in refused.reason
    get = client.request("GET", "/")
    pump(client, server)
    assert [e.stream_id for e in server.events_received()] == [get]


def test_data_before_the_answer_waits_and_holds_its_flow_control_credit():
    client, server = connected()
    stream = client.open_websocket("/ws", subprotocols=["wsdemo.v1"])
    server.receive_data(client.data_to_send())
    (request,) = server.events_received()
    # an eager client: a 40,000-byte masked frame on the stream before the server's 200,
    # more than the half window after which h2 would give credit back
    early = Frame(Opcode.TEXT, b"e" * 40_000, mask=MASK).serialize()
    client.h2.send_data(stream, early[:16384])
    client.h2.send_data(stream, early[16384:32768])
    client.h2.send_data(stream, early[32768:])
    server.receive_data(client.data_to_send())
    assert server.events_received() == []  # not read as WebSocket yet: no 200 was sent
    assert server.h2.inbound_flow_control_window == 65535 - len(early)  # credit held
    server.accept(stream)
    assert server.events_received() == [WebSocketMessage(stream, TextMessage("e" * 40_000))]
    assert server.h2.inbound_flow_control_window == 65535  # given back once read
