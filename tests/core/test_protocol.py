"""wsdemo.v1 parsing: every malformed message gets its precise error or close code."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsdemo.core.protocol import (
    MAX_MESSAGE_BYTES,
    CloseCode,
    ErrorCode,
    Hello,
    Join,
    ProtocolError,
    ProtocolViolation,
    Publish,
    Set,
    encode,
    parse_client_message,
)


def violation(text) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation) as info:
        parse_client_message(text)
    return info.value


def error(obj) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(json.dumps(obj))
    return info.value


def test_parses_each_client_message():
    assert parse_client_message('{"type":"hello","client":"cli","resume":{"a":3}}') == Hello(
        client="cli", resume={"a": 3}
    )
    assert parse_client_message('{"type":"join","room":"r"}') == Join(room="r")
    assert parse_client_message('{"type":"publish","room":"r","id":"m1","data":[1]}') == Publish(
        room="r", id="m1", data=[1]
    )
    assert parse_client_message(
        '{"type":"set","room":"r","id":"m2","target":"speed","value":5}'
    ) == Set(room="r", id="m2", target="speed", value=5)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (b"\x00\x01", CloseCode.UNSUPPORTED_DATA),
        ("not json", CloseCode.INVALID_PAYLOAD),
        ("[1, 2]", CloseCode.INVALID_PAYLOAD),
        ('"a string"', CloseCode.INVALID_PAYLOAD),
        ("null", CloseCode.INVALID_PAYLOAD),
        ('{"type": "set", "value": NaN}', CloseCode.INVALID_PAYLOAD),
        ("x" * (MAX_MESSAGE_BYTES + 1), CloseCode.MESSAGE_TOO_BIG),
        ("[" * 100_000, CloseCode.MESSAGE_TOO_BIG),
    ],
)
def test_abuse_closes_with_its_code(text, code):
    assert violation(text).close_code == code


def test_deep_nesting_is_invalid_payload_not_a_crash():
    assert violation("[" * 60_000).close_code == CloseCode.INVALID_PAYLOAD


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ({}, ErrorCode.BAD_MESSAGE),
        ({"type": 3}, ErrorCode.BAD_MESSAGE),
        ({"type": "dance"}, ErrorCode.UNKNOWN_TYPE),
        ({"type": "join"}, ErrorCode.BAD_MESSAGE),
        ({"type": "join", "room": ""}, ErrorCode.BAD_MESSAGE),
        ({"type": "join", "room": "x" * 65}, ErrorCode.BAD_MESSAGE),
        ({"type": "publish", "room": "r", "data": 1}, ErrorCode.BAD_MESSAGE),  # no id
        ({"type": "publish", "room": "r", "id": "m"}, ErrorCode.BAD_MESSAGE),  # no data
        ({"type": "set", "room": "r", "id": "m", "value": 1}, ErrorCode.BAD_MESSAGE),
        ({"type": "set", "room": "r", "id": "m", "target": "t"}, ErrorCode.BAD_MESSAGE),
        ({"type": "set", "room": "r", "id": 7, "target": "t", "value": 1}, ErrorCode.BAD_MESSAGE),
        ({"type": "hello", "resume": {"r": -1}}, ErrorCode.BAD_MESSAGE),
        ({"type": "hello", "resume": {"r": True}}, ErrorCode.BAD_MESSAGE),
        ({"type": "hello", "token": 5}, ErrorCode.BAD_MESSAGE),
    ],
)
def test_mistakes_get_an_error_reply(obj, code):
    assert error(obj).code == code


def test_error_reply_carries_the_request_id():
    reply = error({"type": "set", "room": "r", "id": "abc", "target": "t"}).to_message()
    assert reply == {"type": "error", "code": "bad-message", "message": "set needs 'value'",
                     "id": "abc"}


def test_close_reason_fits_a_control_frame():
    reason = ProtocolViolation(CloseCode.INVALID_PAYLOAD, "é" * 200).reason
    assert len(reason.encode()) <= 123


def test_encode_refuses_nan():
    with pytest.raises(ValueError):
        encode({"type": "event", "data": float("nan")})


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_arbitrary_input_raises_only_protocol_errors(text):
    try:
        parse_client_message(text)
    except (ProtocolError, ProtocolViolation):
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "room", "id", "target", "value", "data",
                                        "token", "resume", "client"]),
                       json_values | st.sampled_from(["hello", "join", "leave", "publish",
                                                      "set", "r"]),
                       max_size=7))
def test_arbitrary_objects_parse_or_get_an_error(obj):
    try:
        msg = parse_client_message(json.dumps(obj))
    except ProtocolError as exc:
        assert exc.to_message()["code"] in {c.value for c in ErrorCode}
    else:
        assert msg.type == obj["type"]


@pytest.mark.parametrize("text", [
    '{"type":"publish","room":"r","id":"a","data":"\\ud800"}',        # an escaped surrogate
    '{"type":"publish","room":"r","id":"a","data":"\ud800"}',  # raw: not from a socket
    '{"type":"publish","room":"r","id":"a","data":{"\\udc00":1}}',    # in a key
    '{"type":"publish","room":"r","id":"a","data":1e400}',
    '{"type":"publish","room":"r","id":"a","data":-1E999}',
    '{"type":"publish","room":"r","id":"a","data":9007199254740992}',
    '{"type":"publish","room":"r","id":"a","data":' + "[" * 33 + "]" * 33 + "}",
])
def test_what_cannot_be_sent_back_is_refused_at_the_door(text):
    with pytest.raises(ProtocolError) as refused:
        parse_client_message(text)
    assert refused.value.code == ErrorCode.BAD_DATA and refused.value.id == "a"


@pytest.mark.parametrize("data", ["9007199254740991", "-9007199254740991", "1.5e300",
                                  '"caf\\u00e9 \\ud83d\\ude00"', "[" * 31 + "]" * 31])
def test_the_limits_themselves_are_accepted(data):
    msg = parse_client_message('{"type":"publish","room":"r","id":"a","data":' + data + "}")
    assert msg.data is not None
