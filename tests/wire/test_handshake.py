"""The opening handshake (RFC 6455 §4): key/accept, incremental parsing, refusals."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from wsdemo.wire import (
    HandshakeError,
    HandshakeRequest,
    HandshakeResponse,
    LocalProtocolError,
    RequestParser,
    ResponseParser,
    WireError,
    accept_key,
    build_refusal,
    build_request,
    build_response,
    check_request,
    check_response,
    generate_key,
    select_subprotocol,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's sample key
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rfc_request(**changes: object) -> HandshakeRequest:
    return build_request("server.example.com", "/chat", key=KEY,
                         subprotocols=["chat", "superchat"], origin="http://example.com",
                         **changes)  # type: ignore[arg-type]


def with_headers(request: HandshakeRequest, **replacements: str | None) -> HandshakeRequest:
    """The request with some headers replaced (None: removed); names use _ for -."""
    names = {name.replace("_", "-").lower(): value for name, value in replacements.items()}
    headers = [(k, names.get(k.lower(), v)) for k, v in request.headers]
    return HandshakeRequest(request.target, tuple((k, v) for k, v in headers if v is not None),
                            request.method, request.version)


# ---------------------------------------------------------------- RFC 6455 §1.3


def test_rfc_1_3_accept_key() -> None:
    assert accept_key(KEY) == ACCEPT


def test_rfc_sample_nonce_gives_the_sample_key() -> None:
    assert generate_key(b"the sample nonce") == KEY
    assert len(generate_key()) == 24 and generate_key() != generate_key()
    with pytest.raises(LocalProtocolError):
        generate_key(b"short")


def test_request_bytes_follow_rfc_1_2() -> None:
    assert rfc_request().serialize() == (
        b"GET /chat HTTP/1.1\r\n"
        b"Host: server.example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Origin: http://example.com\r\n"
        b"\r\n"
    )


def test_response_bytes_follow_rfc_1_2() -> None:
    response = build_response(rfc_request(), "chat")
    assert response.serialize() == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: chat\r\n"
        b"\r\n"
    )
    assert check_response(rfc_request(), response) == "chat"


# ---------------------------------------------------------------- incremental parsing


FIRST_FRAME = bytes.fromhex("81 85 37 fa 21 3d 7f 9f 4d 51 58")


@pytest.mark.parametrize("chunk", [1, 2, 7, 1000])
def test_request_parser_hands_over_trailing_data(chunk: int) -> None:
    request = rfc_request()
    wire = request.serialize() + FIRST_FRAME
    parser = RequestParser()
    results = [parser.feed(wire[i:i + chunk]) for i in range(0, len(wire), chunk)]
    assert [r for r in results if r is not None] == [request]
    assert parser.head == request
    assert parser.head_size == len(request.serialize())
    assert parser.trailing_data == FIRST_FRAME
    assert parser.take_trailing_data() == FIRST_FRAME
    assert parser.trailing_data == b""
    parser.feed(b"more")
    assert parser.trailing_data == b"more"


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_response_parser_hands_over_trailing_data(chunk: int) -> None:
    response = build_response(rfc_request())
    wire = response.serialize() + bytes.fromhex("81 05 48 65 6c 6c 6f")
    parser = ResponseParser()
    results = [parser.feed(wire[i:i + chunk]) for i in range(0, len(wire), chunk)]
    assert [r for r in results if r is not None] == [response]
    assert parser.trailing_data == bytes.fromhex("81 05 48 65 6c 6c 6f")


def test_head_parser_before_completion() -> None:
    parser = RequestParser()
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n") is None
    assert parser.head is None and parser.head_size is None and parser.trailing_data == b""
    with pytest.raises(HandshakeError) as info:
        parser.feed_eof()
    assert info.value.status == 400


def test_cr_and_lf_split_across_chunks() -> None:
    parser = RequestParser()
    for piece in (b"GET / HTTP/1.1\r", b"\nHost: a\r", b"\n\r", b"\n"):
        result = parser.feed(piece)
    assert result == HandshakeRequest("/", (("Host", "a"),))


MALFORMED_REQUESTS = [
    (b"GET /\r\n\r\n", "request line"),
    (b"GET / HTTP/1.1 extra\r\n\r\n", "request line"),
    (b"GET / HTTX/1.1\r\n\r\n", "HTTP version"),
    (b"G(T / HTTP/1.1\r\n\r\n", "method"),
    (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", "header line"),
    (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", "header line"),
    (b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", "folding"),
    (b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n", "control character"),
    (b"GET / HTTP/1.1\r\nA: b\nc\r\n\r\n", "control character"),
    (b"GET /\xff HTTP/1.1\r\n\r\n", "target"),
    (b"\r\n", "empty request line"),
    (b"GET / HTTP/1.1\r\nA: " + b"x" * 9000 + b"\r\n\r\n", "longer than"),
    (b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 200 + b"\r\n", "header lines"),
]


@pytest.mark.parametrize(("wire", "why"), MALFORMED_REQUESTS)
def test_malformed_requests_are_400(wire: bytes, why: str) -> None:
    with pytest.raises(HandshakeError) as info:
        RequestParser().feed(wire)
    assert why in info.value.reason
    assert info.value.status in (400, 431)


def test_parser_stays_failed() -> None:
    parser = RequestParser()
    with pytest.raises(HandshakeError):
        parser.feed(b"\r\n")
    with pytest.raises(HandshakeError):
        parser.feed(b"GET / HTTP/1.1\r\n\r\n")


@pytest.mark.parametrize("wire", [b"HTTP/1.1 1O1 Switching\r\n\r\n", b"HTTP/1.1\r\n\r\n",
                                  b"http/1.1 101 x\r\n\r\n", b"HTTP/1.1 101 x\r\nA\r\n\r\n"])
def test_malformed_responses_fail_without_a_status(wire: bytes) -> None:
    with pytest.raises(HandshakeError) as info:
        ResponseParser().feed(wire)
    assert info.value.status is None


def test_status_line_without_reason_phrase() -> None:
    response = ResponseParser().feed(b"HTTP/1.1 101\r\n\r\n")
    assert response is not None and response.status == 101 and response.reason == ""


# ---------------------------------------------------------------- server-side checks


def test_valid_request_passes() -> None:
    check_request(rfc_request())
    check_request(rfc_request(), allowed_origins={"http://example.com"})
    # Header names are case-insensitive, tokens are comma lists (Firefox sends this).
    check_request(with_headers(rfc_request(), connection="keep-alive, Upgrade",
                               upgrade="WebSocket"))
    check_request(with_headers(rfc_request(), origin=None), allowed_origins={"http://x"})


REFUSALS = [
    ("method", dict(method="POST"), 405, ("Allow", "GET")),
    ("http/1.0", dict(version="HTTP/1.0"), 400, None),
    ("no host", dict(host=None), 400, None),
    ("no upgrade", dict(upgrade=None), 426, ("Upgrade", "websocket")),
    ("upgrade to h2c", dict(upgrade="h2c"), 426, ("Upgrade", "websocket")),
    ("no connection upgrade", dict(connection="keep-alive"), 426, ("Upgrade", "websocket")),
    ("no key", dict(sec_websocket_key=None), 400, None),
    ("short key", dict(sec_websocket_key="c2hvcnQ="), 400, None),
    ("key not base64", dict(sec_websocket_key="not base64 at all!!!!!!="), 400, None),
    ("no version", dict(sec_websocket_version=None), 400, None),
    ("version 8", dict(sec_websocket_version="8"), 426, ("Sec-WebSocket-Version", "13")),
]


@pytest.mark.parametrize(("name", "change", "status", "header"), REFUSALS,
                         ids=[r[0] for r in REFUSALS])
def test_bad_requests_are_refused_with_a_status(
    name: str, change: dict, status: int, header: tuple[str, str] | None
) -> None:
    request = rfc_request()
    if "method" in change or "version" in change:
        request = HandshakeRequest(request.target, request.headers,
                                   change.get("method", "GET"), change.get("version", "HTTP/1.1"))
    else:
        request = with_headers(request, **change)
    with pytest.raises(HandshakeError) as info:
        check_request(request)
    assert info.value.status == status
    if header:
        assert header in info.value.headers
    refusal = build_refusal(info.value.status, info.value.reason, info.value.headers)
    assert refusal.serialize().startswith(f"HTTP/1.1 {status} ".encode())


def test_duplicate_key_is_400() -> None:
    request = rfc_request(extra_headers=[("Sec-WebSocket-Key", KEY)])
    with pytest.raises(HandshakeError) as info:
        check_request(request)
    assert info.value.status == 400


def test_foreign_origin_is_403() -> None:
    with pytest.raises(HandshakeError) as info:
        check_request(rfc_request(), allowed_origins={"http://trusted.example"})
    assert info.value.status == 403


def test_subprotocol_selection_follows_the_clients_order() -> None:
    assert select_subprotocol(["chat", "superchat"], ["superchat", "chat"]) == "chat"
    assert select_subprotocol(["chat"], ["wsdemo.v1"]) is None
    assert rfc_request(extra_headers=[("Sec-WebSocket-Protocol", "x")]).subprotocols == [
        "chat", "superchat", "x"]
    with pytest.raises(LocalProtocolError):
        build_response(rfc_request(), "not-offered")


def test_refusal_has_a_plain_text_body() -> None:
    refusal = build_refusal(426, "use version 13", [("Sec-WebSocket-Version", "13")])
    wire = refusal.serialize()
    assert wire.endswith(b"\r\n\r\nuse version 13\n")
    assert b"Content-Length: 15\r\n" in wire and b"Sec-WebSocket-Version: 13\r\n" in wire
    with pytest.raises(LocalProtocolError):
        build_refusal(200)


def test_request_building_refuses_header_injection() -> None:
    with pytest.raises(LocalProtocolError):
        build_request("host\r\nEvil: 1")
    with pytest.raises(LocalProtocolError):
        build_request("host", extra_headers=[("X", "caf\u00e9\u2603")])


# ---------------------------------------------------------------- client-side checks


def response_with(**replacements: str | None) -> HandshakeResponse:
    response = build_response(rfc_request())
    names = {n.replace("_", "-").lower(): v for n, v in replacements.items()}
    headers = [(k, names.pop(k.lower(), v)) for k, v in response.headers]
    headers += list(names.items())
    return HandshakeResponse(101, "Switching Protocols",
                             tuple((k, v) for k, v in headers if v is not None))


BAD_RESPONSES = [
    ("refused", HandshakeResponse(403, "Forbidden"), "refused"),
    ("no upgrade", response_with(upgrade=None), "Upgrade"),
    ("no connection", response_with(connection=None), "Connection"),
    ("wrong accept", response_with(sec_websocket_accept="x" * 28), "Accept"),
    ("two accepts", HandshakeResponse(101, "", build_response(rfc_request()).headers * 2),
     "Accept"),
    ("extension", response_with(sec_websocket_extensions="permessage-deflate"), "extension"),
    ("unoffered subprotocol", response_with(sec_websocket_protocol="other"), "did not offer"),
    ("two subprotocols", response_with(sec_websocket_protocol="chat, superchat"),
     "more than one"),
]


@pytest.mark.parametrize(("name", "response", "why"), BAD_RESPONSES,
                         ids=[r[0] for r in BAD_RESPONSES])
def test_client_fails_on_a_bad_101(name: str, response: HandshakeResponse, why: str) -> None:
    with pytest.raises(HandshakeError) as info:
        check_response(rfc_request(), response)
    assert why in info.value.reason
    assert info.value.status is None


# ---------------------------------------------------------------- annotation


def test_explain_request_and_response() -> None:
    text = rfc_request().explain()
    assert text.splitlines()[0] == "WebSocket opening handshake: request"
    assert "Sec-WebSocket-Key" in text and "§4.1 item 7" in text and "(empty line)" in text
    text = build_response(rfc_request()).explain()
    assert ACCEPT in text and "next byte is a WebSocket frame" in text
    assert "refused" in build_refusal(403, "no").explain()
    html = rfc_request()._repr_html_()
    assert "<th>line</th>" in html and "Sec-WebSocket-Key" in html


# ---------------------------------------------------------------- an independent implementation


def test_websockets_client_handshake_is_accepted_and_accepts_ours() -> None:
    theirs = ClientProtocol(parse_uri("ws://localhost:8000/chat"), subprotocols=["a", "b"])
    theirs.send_request(theirs.connect())
    request = RequestParser().feed(b"".join(theirs.data_to_send()))
    assert request is not None
    check_request(request)
    theirs.receive_data(build_response(request, "b").serialize())
    [response] = theirs.events_received()
    assert theirs.handshake_exc is None and response.status_code == 101
    assert theirs.subprotocol == "b"


def test_websockets_server_accepts_our_request_and_we_accept_its_101() -> None:
    theirs = ServerProtocol(subprotocols=["b"])
    request = build_request("localhost", subprotocols=["a", "b"])
    theirs.receive_data(request.serialize())
    [their_request] = theirs.events_received()
    theirs.send_response(theirs.accept(their_request))
    response = ResponseParser().feed(b"".join(theirs.data_to_send()))
    assert response is not None and check_response(request, response) == "b"


# ---------------------------------------------------------------- properties


@given(st.binary(max_size=400), st.booleans())
@FAST
def test_arbitrary_bytes_raise_only_codec_errors(data: bytes, bytewise: bool) -> None:
    for parser in (RequestParser(), ResponseParser()):
        try:
            chunks = [data[i:i + 1] for i in range(len(data))] if bytewise else [data]
            for chunk in chunks:
                head = parser.feed(chunk)
                if head is not None and isinstance(head, HandshakeRequest):
                    check_request(head)
            parser.feed_eof()
        except WireError:
            pass


header_names = st.text("abcdefghijklmnopqrstuvwxyz-ABCXYZ0123", min_size=1, max_size=20)
header_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF,
                                            exclude_characters="\x7f"), max_size=40)


@given(st.lists(st.tuples(header_names, header_values), max_size=10),
       st.text("abcdefghijklmnop/?=&", min_size=1, max_size=30), st.data())
@FAST
def test_requests_round_trip_in_any_chunking(
    headers: list[tuple[str, str]], target: str, data: st.DataObject
) -> None:
    request = HandshakeRequest("/" + target, tuple(headers))
    wire = request.serialize() + b"\x81\x00"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    parser = RequestParser()
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        parser.feed(wire[start:end])
    assert parser.head == request
    assert parser.trailing_data == b"\x81\x00"
