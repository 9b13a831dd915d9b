"""One connection's rules (RFC 6455 §5-§7), in memory, and agreement with wsproto."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto import events as wsevents

from tests.wire import autobahn
from wsdemo.wire import (
    TRANSITIONS,
    BinaryMessage,
    ClientConnection,
    Close,
    ConnectionFailed,
    Frame,
    FrameParser,
    HandshakeError,
    HandshakeRequest,
    HandshakeResponse,
    LocalProtocolError,
    Opcode,
    Ping,
    Pong,
    ServerConnection,
    State,
    TextMessage,
    build_request,
    parse_close,
    serialize_close,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = bytes.fromhex("37 fa 21 3d")
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def open_pair(**server_options: object) -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection("localhost", key=KEY, mask_source=lambda: MASK)
    server = ServerConnection(**server_options)  # type: ignore[arg-type]
    server.receive_data(client.data_to_send())
    [request] = server.events_received()
    assert isinstance(request, HandshakeRequest)
    server.accept()
    client.receive_data(server.data_to_send())
    [response] = client.events_received()
    assert isinstance(response, HandshakeResponse)
    return client, server


def masked(opcode: int, payload: bytes = b"", **options: object) -> bytes:
    return Frame(opcode, payload, mask=MASK, **options).serialize()  # type: ignore[arg-type]


def sent_frames(data: bytes, from_client: bool = False) -> list[Frame]:
    return FrameParser(expect_masked=from_client, strict=False).parse(data)


# ---------------------------------------------------------------- the happy path


def test_rfc_example_bytes_on_both_sides() -> None:
    client, server = open_pair()
    client.send_text("Hello")
    wire = client.data_to_send()
    assert wire == bytes.fromhex("81 85 37 fa 21 3d 7f 9f 4d 51 58")  # RFC 6455 §5.7
    server.receive_data(wire)
    assert server.events_received() == [TextMessage("Hello")]
    server.send_text("Hello")
    assert server.data_to_send() == bytes.fromhex("81 05 48 65 6c 6c 6f")


def test_fragmented_messages_both_ways() -> None:
    client, server = open_pair()
    client.send_text("κόσμε", fragment_size=3)  # fragments cut characters in two
    client.send_binary(b"\x00" * 10, fragment_size=4)
    server.receive_data(client.data_to_send())
    events = server.events_received()
    assert events == [TextMessage("κόσμε"), BinaryMessage(b"\x00" * 10)]
    assert len(events[0].frames) == 4 and [f.fin for f in events[1].frames] == [False, False, True]
    server.send_text("", fragment_size=1)
    client.receive_data(server.data_to_send())
    assert client.events_received() == [TextMessage("")]


def test_byte_at_a_time_gives_the_same_events() -> None:
    client, server = open_pair()
    client.send_text("héllo", fragment_size=2)
    client.ping(b"p")
    client.send_binary(bytes(300))
    wire = client.data_to_send()
    for i in range(len(wire)):
        server.receive_data(wire[i:i + 1])
    assert server.events_received() == [TextMessage("héllo"), Ping(b"p"), BinaryMessage(bytes(300))]


def test_ping_between_fragments_is_answered_with_an_identical_pong() -> None:
    client, server = open_pair()
    server.receive_data(masked(Opcode.TEXT, b"Hel", fin=False) + masked(Opcode.PING, b"are you?")
                        + masked(Opcode.CONT, b"lo"))
    assert server.events_received() == [Ping(b"are you?"), TextMessage("Hello")]
    assert sent_frames(server.data_to_send()) == [Frame(Opcode.PONG, b"are you?")]
    assert Ping(b"x").response() == Pong(b"x")


def test_pong_is_reported_and_not_answered() -> None:
    client, server = open_pair()
    server.receive_data(masked(Opcode.PONG, b"beat"))
    assert server.events_received() == [Pong(b"beat")]
    assert server.data_to_send() == b""


def test_subprotocol_is_chosen_in_the_clients_order() -> None:
    client = ClientConnection("h", subprotocols=["wsdemo.v2", "wsdemo.v1"])
    server = ServerConnection(subprotocols=["wsdemo.v1", "wsdemo.v2"])
    server.receive_data(client.data_to_send())
    server.events_received()
    server.accept()
    client.receive_data(server.data_to_send())
    assert server.subprotocol == client.subprotocol == "wsdemo.v2"


def test_101_and_first_frames_in_one_segment() -> None:
    client = ClientConnection("h", key=KEY)
    server = ServerConnection()
    server.receive_data(client.data_to_send())
    server.events_received()
    server.accept()
    server.send_text("welcome")
    wire = server.data_to_send()
    for i in range(len(wire)):  # also byte by byte across the protocol switch
        client.receive_data(wire[i:i + 1])
    events = client.events_received()
    assert isinstance(events[0], HandshakeResponse)
    assert events[1:] == [TextMessage("welcome")]


def test_frames_sent_before_the_101_wait_for_accept() -> None:
    request = build_request("h", key=KEY)
    server = ServerConnection()
    server.receive_data(request.serialize() + masked(Opcode.TEXT, b"early"))
    assert [type(e) for e in server.events_received()] == [HandshakeRequest]
    server.receive_data(masked(Opcode.TEXT, b"earlier still"))
    assert server.events_received() == []
    server.accept()
    assert server.events_received() == [TextMessage("early"), TextMessage("earlier still")]


# ---------------------------------------------------------------- the closing handshake


def test_closing_handshake_started_by_the_client() -> None:
    client, server = open_pair()
    client.close(1000, "bye")
    assert client.state is State.CLOSING
    server.receive_data(client.data_to_send())
    assert server.events_received() == [Close(1000, "bye")]
    assert server.state is State.CLOSED
    echo = server.data_to_send()
    assert parse_close(sent_frames(echo)[0].payload) == (1000, "")
    client.receive_data(echo)
    assert client.events_received() == [Close(1000, "")]
    assert client.state is State.CLOSED and client.failure is None


def test_close_without_a_code_is_reported_as_1005_and_echoed_empty() -> None:
    client, server = open_pair()
    server.receive_data(masked(Opcode.CLOSE))
    assert server.events_received() == [Close(1005, "")]
    assert sent_frames(server.data_to_send()) == [Frame(Opcode.CLOSE, b"")]


def test_data_after_close_is_ignored() -> None:
    client, server = open_pair()
    server.receive_data(masked(Opcode.CLOSE, serialize_close(1001)) + masked(Opcode.TEXT, b"late"))
    assert server.events_received() == [Close(1001, "")]
    server.receive_data(masked(Opcode.TEXT, b"later"))
    assert server.events_received() == []


def test_while_closing_messages_still_arrive_but_pings_are_not_answered() -> None:
    client, server = open_pair()
    server.close(4000, "done")
    server.data_to_send()
    server.receive_data(masked(Opcode.TEXT, b"in flight") + masked(Opcode.PING, b"x"))
    assert server.events_received() == [TextMessage("in flight"), Ping(b"x")]
    assert server.data_to_send() == b""
    server.receive_data(masked(Opcode.CLOSE, serialize_close(4000)))
    assert server.state is State.CLOSED


def test_tcp_closed_without_closing_handshake_is_1006() -> None:
    client, server = open_pair()
    server.receive_eof()
    [event] = server.events_received()
    assert isinstance(event, ConnectionFailed) and event.error.close_code == 1006
    assert server.data_to_send() == b"" and server.state is State.CLOSED
    server.receive_eof()
    assert server.events_received() == []


def test_local_misuse_raises_local_protocol_error() -> None:
    client = ClientConnection("h")
    with pytest.raises(LocalProtocolError):
        client.send_text("too early: no 101 yet")
    client, server = open_pair()
    with pytest.raises(LocalProtocolError):
        client.ping(bytes(126))
    with pytest.raises(LocalProtocolError):
        client.close(1005)
    with pytest.raises(LocalProtocolError):
        client.send_text("x", fragment_size=0)
    with pytest.raises(LocalProtocolError):
        server.accept()
    client.close()
    with pytest.raises(LocalProtocolError):
        client.send_text("after close")
    with pytest.raises(LocalProtocolError):
        client.close()


# ---------------------------------------------------------------- failing the connection


FAILURES = [
    ("unmasked client frame", Frame(Opcode.TEXT, b"x").serialize(), 1002),
    ("rsv1 without extension", masked(Opcode.TEXT, b"x", rsv1=True), 1002),
    ("rsv3 without extension", masked(Opcode.BINARY, b"x", rsv3=True), 1002),
    ("reserved data opcode", masked(0x3), 1002),
    ("reserved control opcode", masked(0xB), 1002),
    ("fragmented ping", masked(Opcode.PING, b"x", fin=False), 1002),
    ("126-byte ping", masked(Opcode.PING, bytes(126)), 1002),
    ("126-byte close", masked(Opcode.CLOSE, serialize_close(1000) + bytes(124)), 1002),
    ("close code 1005", masked(Opcode.CLOSE, struct.pack("!H", 1005)), 1002),
    ("close code 1004", masked(Opcode.CLOSE, struct.pack("!H", 1004)), 1002),
    ("close code 999", masked(Opcode.CLOSE, struct.pack("!H", 999)), 1002),
    ("close code 5000", masked(Opcode.CLOSE, struct.pack("!H", 5000)), 1002),
    ("1-byte close payload", masked(Opcode.CLOSE, b"\x03"), 1002),
    ("invalid UTF-8 text", masked(Opcode.TEXT, b"\xff"), 1007),
    ("UTF-16 surrogate in text", masked(Opcode.TEXT, b"\xed\xa0\x80"), 1007),
    ("invalid UTF-8 across fragments",
     masked(Opcode.TEXT, b"\xce", fin=False) + masked(Opcode.CONT, b"("), 1007),
    ("text ends inside a character",
     masked(Opcode.TEXT, b"ok\xce", fin=False) + masked(Opcode.CONT, b""), 1007),
    ("invalid UTF-8 close reason", masked(Opcode.CLOSE, serialize_close(1000) + b"\xc3\x28"), 1007),
    ("continuation without a start", masked(Opcode.CONT, b"x"), 1002),
    ("new message inside a fragmented one",
     masked(Opcode.TEXT, b"a", fin=False) + masked(Opcode.BINARY, b"b"), 1002),
    ("non-minimal 16-bit length",
     bytes.fromhex("82 fe 00 05") + MASK + b"Hello", 1002),
    ("message above max_size", masked(Opcode.BINARY, bytes(101)), 1009),
    ("fragments above max_size",
     masked(Opcode.BINARY, bytes(60), fin=False) + masked(Opcode.CONT, bytes(60)), 1009),
]


@pytest.mark.parametrize(("name", "wire", "code"), FAILURES, ids=[f[0] for f in FAILURES])
def test_server_fails_the_connection_with_the_right_code(name: str, wire: bytes, code: int) -> None:
    client, server = open_pair(max_size=100)
    server.receive_data(wire)
    events = server.events_received()
    assert isinstance(events[-1], ConnectionFailed)
    assert events[-1].error.close_code == code
    assert server.state is State.CLOSED and server.failure is events[-1].error
    [close] = sent_frames(server.data_to_send())
    assert close.opcode == Opcode.CLOSE and close.mask is None
    assert parse_close(close.payload)[0] == code
    server.receive_data(masked(Opcode.TEXT, b"ignored now"))
    assert server.events_received() == [] and server.data_to_send() == b""


def test_invalid_utf8_fails_fast_before_the_last_fragment() -> None:
    client, server = open_pair()
    server.receive_data(masked(Opcode.TEXT, b"\xff", fin=False))
    [event] = server.events_received()
    assert isinstance(event, ConnectionFailed) and event.error.close_code == 1007


def test_valid_utf8_across_fragments_is_accepted() -> None:
    client, server = open_pair()
    server.receive_data(masked(Opcode.TEXT, b"\xce", fin=False) + masked(Opcode.CONT, b"\xba"))
    assert server.events_received() == [TextMessage("κ")]


@pytest.mark.parametrize(("name", "wire"), [
    ("masked server frame", Frame(Opcode.TEXT, b"x", mask=MASK).serialize()),
    ("reserved opcode", Frame(0xC).serialize()),
    ("invalid UTF-8", Frame(Opcode.TEXT, b"\x80").serialize()),
])
def test_client_fails_the_connection_too(name: str, wire: bytes) -> None:
    client, server = open_pair()
    client.receive_data(wire)
    [event] = client.events_received()
    assert isinstance(event, ConnectionFailed)
    [close] = sent_frames(client.data_to_send(), from_client=True)
    assert close.mask == MASK  # even the client's failure Close is masked (§5.3)
    assert parse_close(close.payload)[0] == event.error.close_code


# ---------------------------------------------------------------- the handshake on a connection


def test_bad_request_is_refused_over_http() -> None:
    request = build_request("h", key=KEY,
                            extra_headers=[]).serialize().replace(b"Version: 13", b"Version: 8")
    server = ServerConnection()
    server.receive_data(request)
    [event] = server.events_received()
    assert isinstance(event, ConnectionFailed) and isinstance(event.error, HandshakeError)
    assert event.error.status == 426
    answer = server.data_to_send()
    assert answer.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"Sec-WebSocket-Version: 13\r\n" in answer
    assert server.state is State.CLOSED


def test_malformed_http_is_400_and_foreign_origin_is_403() -> None:
    server = ServerConnection()
    server.receive_data(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
    assert server.data_to_send().startswith(b"HTTP/1.1 400 Bad Request\r\n")
    server = ServerConnection(allowed_origins={"http://good.example"})
    server.receive_data(build_request("h", origin="http://evil.example").serialize())
    assert server.data_to_send().startswith(b"HTTP/1.1 403 Forbidden\r\n")


def test_server_may_reject_a_valid_request() -> None:
    server = ServerConnection()
    server.receive_data(build_request("h").serialize())
    server.events_received()
    response = server.reject(403, "not logged in")
    assert response.status == 403 and server.state is State.CLOSED
    assert server.data_to_send().endswith(b"\r\n\r\nnot logged in\n")


def test_client_fails_on_refusal_and_on_bad_accept() -> None:
    client = ClientConnection("h", key=KEY)
    client.receive_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    [event] = client.events_received()
    assert isinstance(event, ConnectionFailed) and "403" in event.error.reason
    assert client.response is not None and client.response.status == 403
    client = ClientConnection("h", key=KEY)
    client.receive_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n")
    [event] = client.events_received()
    assert isinstance(event, ConnectionFailed) and "Accept" in event.error.reason
    assert client.data_to_send().startswith(b"GET / HTTP/1.1")  # nothing after the request


def test_transitions_table_covers_every_state() -> None:
    reached = {State.CONNECTING} | set(TRANSITIONS.values())
    assert reached == set(State)
    assert all(TRANSITIONS[(s, "transport closed")] is State.CLOSED
               for s in (State.CONNECTING, State.OPEN, State.CLOSING))


@FAST
@given(st.binary(max_size=300), st.booleans())
def test_arbitrary_bytes_never_raise_from_a_connection(data: bytes, handshake_done: bool) -> None:
    if handshake_done:
        _, server = open_pair()
    else:
        server = ServerConnection()
    server.receive_data(data)
    server.receive_eof()
    server.events_received()
    assert server.state is State.CLOSED  # after EOF, whatever came before


# ---------------------------------------------------------------- agreement with wsproto


messages = st.lists(
    st.tuples(st.one_of(st.text(max_size=300), st.binary(max_size=3000)), st.integers(1, 400)),
    min_size=1, max_size=5,
)


def wsproto_received(ws: WSConnection, data: bytes, collected: list,
                     parts: list) -> list[wsevents.Event]:
    """Feed wsproto, reassemble its (possibly partial) messages into ``collected``."""
    ws.receive_data(data)
    others = []
    for event in ws.events():
        if isinstance(event, wsevents.Message):
            parts.append(event.data)
            if event.message_finished:
                collected.append(parts[0][:0].join(parts))
                parts.clear()
        else:
            others.append(event)
    return others


@FAST
@given(messages, messages, st.binary(max_size=125))
def test_our_client_and_a_wsproto_server_agree(
    upstream: list, downstream: list, ping: bytes
) -> None:
    theirs = WSConnection(ConnectionType.SERVER)
    ours = ClientConnection("localhost", subprotocols=["wsdemo.v1"])
    theirs.receive_data(ours.data_to_send())
    [request] = theirs.events()
    assert isinstance(request, wsevents.Request) and request.subprotocols == ["wsdemo.v1"]
    ours.receive_data(theirs.send(wsevents.AcceptConnection(subprotocol="wsdemo.v1")))
    assert [type(e) for e in ours.events_received()] == [HandshakeResponse]
    assert ours.subprotocol == "wsdemo.v1"

    for data, fragment in upstream:
        (ours.send_text if isinstance(data, str) else ours.send_binary)(data, fragment)
    ours.ping(ping)
    received: list = []
    others = wsproto_received(theirs, ours.data_to_send(), received, [])
    assert received == [data for data, _ in upstream]
    assert others == [wsevents.Ping(payload=ping)]

    wire = theirs.send(wsevents.Ping(payload=ping))
    for data, fragment in downstream:
        chunks = [data[i:i + fragment] for i in range(0, len(data), fragment)] or [data]
        for i, chunk in enumerate(chunks):
            wire += theirs.send(wsevents.Message(data=chunk, message_finished=i == len(chunks) - 1))
    ours.receive_data(wire)
    events = ours.events_received()
    assert events[0] == Ping(ping)
    assert [e.data for e in events[1:]] == [data for data, _ in downstream]
    assert wsproto_received(theirs, ours.data_to_send(), [], []) == [wsevents.Pong(payload=ping)]

    ours.close(1000, "bye")
    [close] = wsproto_received(theirs, ours.data_to_send(), [], [])
    assert (close.code, close.reason) == (1000, "bye")
    ours.receive_data(theirs.send(close.response()))
    assert ours.events_received() == [Close(1000, "bye")] and ours.state is State.CLOSED


@FAST
@given(messages, messages)
def test_a_wsproto_client_and_our_server_agree(upstream: list, downstream: list) -> None:
    theirs = WSConnection(ConnectionType.CLIENT)
    ours = ServerConnection(subprotocols=["wsdemo.v1"])
    ours.receive_data(theirs.send(wsevents.Request(host="localhost", target="/x?y=1",
                                                   subprotocols=["chat", "wsdemo.v1"])))
    [request] = ours.events_received()
    assert isinstance(request, HandshakeRequest) and request.target == "/x?y=1"
    ours.accept()
    [accepted] = wsproto_received(theirs, ours.data_to_send(), [], [])
    assert isinstance(accepted, wsevents.AcceptConnection)
    assert accepted.subprotocol == "wsdemo.v1"

    wire = b""
    for data, fragment in upstream:
        chunks = [data[i:i + fragment] for i in range(0, len(data), fragment)] or [data]
        for i, chunk in enumerate(chunks):
            wire += theirs.send(wsevents.Message(data=chunk, message_finished=i == len(chunks) - 1))
    ours.receive_data(wire)
    assert [e.data for e in ours.events_received()] == [data for data, _ in upstream]

    for data, fragment in downstream:
        (ours.send_text if isinstance(data, str) else ours.send_binary)(data, fragment)
    received: list = []
    wsproto_received(theirs, ours.data_to_send(), received, [])
    assert received == [data for data, _ in downstream]

    ours.receive_data(theirs.send(wsevents.CloseConnection(code=4001, reason="done")))
    assert ours.events_received() == [Close(4001, "done")]
    [reply] = wsproto_received(theirs, ours.data_to_send(), [], [])
    assert isinstance(reply, wsevents.CloseConnection) and reply.code == 4001


# ---------------------------------------------------------------- Autobahn's strict cases

def echo_until_quiet(connection: ClientConnection | ServerConnection) -> list[object]:
    """What an echo application does after each read: answer every message, and
    keep asking for events until there are none (a pending failure comes then)."""
    seen: list[object] = []
    while events := connection.events_received():
        seen += events
        for event in events:
            if isinstance(event, TextMessage):
                connection.send_text(event.data)
    return seen


@pytest.mark.parametrize("side", ["server", "client"])
@pytest.mark.parametrize("index", range(len(autobahn.NAMES)), ids=autobahn.NAMES)
def test_autobahn_strict_cases(index: int, side: str) -> None:
    client, server = open_pair()
    connection = server if side == "server" else client
    # a client sends masked frames, a server unmasked ones (§5.1)
    case = autobahn.cases(MASK if side == "server" else None)[index]
    failed_at, seen = None, []
    for i, chop in enumerate(case.chops):
        connection.receive_data(chop)
        seen += echo_until_quiet(connection)
        if failed_at is None and connection.state is State.CLOSED:
            failed_at = i
    assert failed_at == case.fails_at  # not later: fail fast
    messages = [e.data for e in seen if isinstance(e, TextMessage)]
    assert messages == list(case.echoed)
    assert isinstance(seen[-1], ConnectionFailed) and seen[-1].error.close_code == case.code
    # On the wire: the echoes first, then the Close with the code; no Pong for the
    # Ping that followed the error.
    sent = sent_frames(connection.data_to_send(), from_client=side == "client")
    assert [(f.opcode, f.payload) for f in sent] == [
        *((Opcode.TEXT, m.encode()) for m in case.echoed),
        (Opcode.CLOSE, sent[-1].payload)]
    assert parse_close(sent[-1].payload)[0] == case.code


def test_the_failure_waits_until_the_messages_before_it_were_taken() -> None:
    client, server = open_pair()
    server.receive_data(masked(Opcode.TEXT, b"first") + masked(5))
    assert server.events_received() == [TextMessage("first")]
    assert server.state is State.OPEN and server.failure_pending
    server.send_text("answer")  # still allowed: the error is not reported yet
    [failed] = server.events_received()
    assert isinstance(failed, ConnectionFailed) and failed.error.close_code == 1002
    assert not server.failure_pending and server.state is State.CLOSED
    assert [f.opcode for f in sent_frames(server.data_to_send())] == [Opcode.TEXT, Opcode.CLOSE]


def test_closing_with_a_failure_pending_sends_the_failure_code() -> None:
    client, server = open_pair()
    server.receive_data(masked(Opcode.TEXT, b"first") + masked(Opcode.TEXT, b"x", rsv1=True))
    assert server.events_received() == [TextMessage("first")]
    server.close(1000)
    [close] = sent_frames(server.data_to_send())
    assert parse_close(close.payload)[0] == 1002 and server.state is State.CLOSED


@pytest.mark.parametrize("prefix", [b"\xed\xa0", b"\xf4\x90", b"\xe0\x80", b"\xc0", b"\xff"])
def test_an_impossible_utf8_prefix_fails_before_the_frame_is_complete(prefix: bytes) -> None:
    client, server = open_pair()
    wire = masked(Opcode.TEXT, b"ok" + prefix + b"\x80" * 40)
    server.receive_data(wire[: 6 + 2 + len(prefix)])  # header, mask, "ok", the prefix
    [event] = server.events_received()
    assert isinstance(event, ConnectionFailed) and event.error.close_code == 1007


def test_a_valid_character_cut_by_a_partial_read_waits() -> None:
    client, server = open_pair()
    wire = masked(Opcode.TEXT, "κόσμε".encode())
    for i in range(len(wire)):  # one byte per read: cut inside every character
        server.receive_data(wire[i:i + 1])
        events = server.events_received()
        assert events == ([] if i < len(wire) - 1 else [TextMessage("κόσμε")])
