"""The control protocol ``wsdemo.v1`` — messages, validation and close codes.

Sans-I/O: this module turns the text of one WebSocket message into a checked
message object (or a precise error), and a message object back into text. It
imports no sockets, no asyncio networking and no Tornado.

Wire format
===========

Negotiated as the subprotocol ``wsdemo.v1``. Every message is one JSON object
in one *text* frame, at most ``MAX_MESSAGE_BYTES`` (64 KiB) long, with a
``type`` field. Requests that change something carry an ``id`` chosen by the
client (a string of 1-64 characters; use a UUID): it is the idempotency key,
and the reply that answers a request carries the same ``id``.

Client → server::

    hello   {token?, client?, resume?: {room: last_seq}, epoch?}   must be the first message;
                                         epoch: the log the resumed seqs came from
    join    {room, id?}                  → snapshot (then presence)
    leave   {room, id?}                  → left
    publish {room, id, data}             → ack, and an event to every member
    set     {room, id, target, value}    → ack, and an event to every member

Server → client::

    welcome  {session, user, rooms, protocol, epoch}  answers hello; rooms = the ones this user
                                                    may read (join); epoch = the log's identity
    snapshot {room, seq, state, controls, id?}      answers join; state = {target: value},
                                                    controls = {target: {kind, limits...}}
    left     {room, id?}                            answers leave
    ack      {id, room, seq, duplicate}             a publish/set is in the log
    event    {room, seq, id, from, kind, data}      kind "publish": data as sent;
                                                    kind "set": data = {target, value}
    presence {room, members: [{user, connections}], joined, left}
                                                    the changes of a short window
                                                    (presence_window) as one message,
                                                    always before the room's next event
    error    {id?, code, message}                   a recoverable mistake: the
                                                    connection stays open

Rules
=====

* ``seq`` is per room: an integer, strictly increasing and gap-free. ``from``
  is the session that caused the event (``"kernel"`` for a change made in the
  notebook itself).
* A ``publish``/``set`` whose ``id`` the room has already accepted is answered
  with the original ``seq`` and ``duplicate: true``, and is not applied or
  broadcast again.
* Recoverable mistakes get an ``error`` (codes in :class:`ErrorCode`); abuse of
  the protocol closes the connection with a code from :class:`CloseCode`.

Checked at the door
===================

Whatever the server accepts it must be able to store, replay and send again,
to any client. So every value of a client message — ``data`` and ``value``
included, object keys too — is checked before anything gets a seq, and a
message that breaks one of these limits is answered ``error`` with code
``bad-data`` (the connection stays open, nothing is stored):

* no lone surrogate (``"\\ud800"`` is valid JSON text, but no UTF-8 encoder can
  send it back; RFC 8259 §8.2, RFC 7493 §2.1);
* numbers finite (``1e400`` parses as infinity, which JSON cannot carry), and
  integers within ±(2**53 − 1), the range every JSON reader keeps exact
  (RFC 7493 §2.2): ``MAX_SAFE_INTEGER``;
* arrays and objects nested at most ``MAX_DEPTH`` (32) deep, counting the
  message itself;
* the message at most ``MAX_MESSAGE_BYTES`` (64 KiB, else close 1009), ids at
  most ``MAX_ID_LENGTH`` (64) characters, room, target and client names at most
  ``MAX_NAME_LENGTH`` (64).

:func:`check_value` is the same check, for values that come from the server's
own side (a notebook's ``server.publish``).
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "MAX_MESSAGE_BYTES",
    "SUBPROTOCOL",
    "ClientMessage",
    "CloseCode",
    "ErrorCode",
    "Hello",
    "Join",
    "Leave",
    "ProtocolError",
    "ProtocolViolation",
    "Publish",
    "Set",
    "check_value",
    "encode",
    "parse_client_message",
]

SUBPROTOCOL = "wsdemo.v1"
MAX_MESSAGE_BYTES = 64 * 1024
MAX_ID_LENGTH = 64
MAX_NAME_LENGTH = 64
MAX_DEPTH = 32
MAX_SAFE_INTEGER = 2**53 - 1


class CloseCode(enum.IntEnum):
    """Close codes the server uses (RFC 6455 §7.4.1; application codes §7.4.2)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the server is stopping
    UNSUPPORTED_DATA = 1003  # a binary frame where text is expected
    # not JSON, or not a JSON object: wsdemo.v1 makes every text message one JSON object,
    # so such text is "not consistent with the type of the message" (RFC 6455 §7.4.1)
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008  # origin not allowed
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011  # a fault in the server, not the client
    TRY_AGAIN_LATER = 1013  # overloaded, or a slow consumer
    BAD_TOKEN = 4401  # missing, bad, expired or revoked token
    FORBIDDEN = 4403
    HELLO_TIMEOUT = 4408  # no hello in time
    RATE_LIMITED = 4429


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` reply; the connection stays open."""

    BAD_MESSAGE = "bad-message"  # a field is missing or of the wrong type
    UNKNOWN_TYPE = "unknown-type"
    HELLO_REQUIRED = "hello-required"  # a request before hello
    DUPLICATE_HELLO = "duplicate-hello"
    UNKNOWN_ROOM = "unknown-room"
    NOT_JOINED = "not-joined"  # publish/set in a room the client has not joined
    UNKNOWN_TARGET = "unknown-target"  # set on a control the room does not have
    BAD_VALUE = "bad-value"  # wrong type for the control
    OUT_OF_RANGE = "out-of-range"  # right type, outside min/max/step/options
    READ_ONLY = "read-only"  # the room takes no publish/set of this kind
    UNAVAILABLE = "unavailable"  # the log could not take the event: not kept, retry
    BAD_DATA = "bad-data"  # a value that could not be stored and sent back (see "at the door")
    RATE_LIMITED = "rate-limited"  # more publish/set a second than the server allows


class ProtocolError(Exception):
    """The peer sent something recoverable: answer with an ``error`` message."""

    def __init__(self, code: ErrorCode, message: str, id: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id

    def to_message(self) -> dict[str, Any]:
        reply: dict[str, Any] = {"type": "error", "code": str(self.code), "message": self.message}
        if self.id is not None:
            reply["id"] = self.id
        return reply


class ProtocolViolation(Exception):
    """The peer abused the protocol: close the connection with ``close_code``."""

    def __init__(self, close_code: CloseCode, reason: str):
        super().__init__(reason)
        self.close_code = close_code
        # A close reason must fit in a control frame (125 bytes, 2 for the code).
        self.reason = reason.encode()[:123].decode(errors="ignore")


# --- messages --------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    type: ClassVar[str] = "hello"
    token: str | None = field(default=None, repr=False)  # a repr must never leak it
    client: str | None = None
    resume: dict[str, int] = field(default_factory=dict)
    epoch: str | None = None


@dataclass(frozen=True)
class Join:
    type: ClassVar[str] = "join"
    room: str
    id: str | None = None


@dataclass(frozen=True)
class Leave:
    type: ClassVar[str] = "leave"
    room: str
    id: str | None = None


@dataclass(frozen=True)
class Publish:
    type: ClassVar[str] = "publish"
    room: str
    id: str
    data: Any


@dataclass(frozen=True)
class Set:
    type: ClassVar[str] = "set"
    room: str
    id: str
    target: str
    value: Any


ClientMessage = Hello | Join | Leave | Publish | Set


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Parse and check one client message.

    Raises :class:`ProtocolViolation` for what closes the connection (binary
    frame, too big, not JSON, not an object) and :class:`ProtocolError` for what
    gets an ``error`` reply (unknown type, a missing or mistyped field).
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        raise ProtocolViolation(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
    # Characters first: a cheap bound before counting the UTF-8 bytes.
    size = len(text)
    raw_surrogate = False  # only a caller that is not a WebSocket can pass one
    if size <= MAX_MESSAGE_BYTES:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raw_surrogate = True
            size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolViolation(
            CloseCode.MESSAGE_TOO_BIG, f"message over {MAX_MESSAGE_BYTES} bytes"
        )
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:  # deeper than Python's parser goes: far past MAX_DEPTH
        if not text.lstrip().startswith("{"):
            raise ProtocolViolation(CloseCode.INVALID_PAYLOAD, "not a JSON object") from None
        raise ProtocolError(ErrorCode.BAD_DATA, _TOO_DEEP) from None
    except ValueError:  # the parser's own text stays out of the reply
        raise ProtocolViolation(CloseCode.INVALID_PAYLOAD, "not JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolViolation(
            CloseCode.INVALID_PAYLOAD, f"a message must be a JSON object, not {_json_kind(obj)}"
        )
    problem = _unstorable(obj) if raw_surrogate or _may_be_unstorable(text) else None
    if problem is not None:
        raw_id = obj.get("id")
        msg_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= MAX_ID_LENGTH and \
            _unstorable(raw_id) is None else None
        raise ProtocolError(ErrorCode.BAD_DATA, problem, msg_id)
    return _from_object(obj)


_TOO_DEEP = f"arrays and objects nested deeper than {MAX_DEPTH}"
# A number that parses as infinity, or an integer past 2**53, has an exponent or
# at least 16 digits in a row.
_RISKY_NUMBER = re.compile(r"[0-9][eE]|[0-9]{16}")


def _may_be_unstorable(text: str) -> bool:
    """False when the text alone shows every value is storable (most messages).

    A lone surrogate can only come from a ``\\u`` escape (the frame's UTF-8 was
    valid), nesting needs brackets, a risky number has the shape above. So the
    walk of every value runs only for a message that might need it.
    """
    return ("\\u" in text or text.count("[") + text.count("{") > MAX_DEPTH
            or _RISKY_NUMBER.search(text) is not None)


def _unstorable(value: Any) -> str | None:
    """Why ``value`` could not be stored and sent back as JSON, or None (see "at the door")."""
    stack = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return "a string holds a lone surrogate (not encodable as UTF-8)"
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                return f"an integer outside ±{MAX_SAFE_INTEGER} (2**53 - 1)"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "a number that is not finite"
        elif isinstance(item, list):
            if depth >= MAX_DEPTH:
                return _TOO_DEEP
            for element in item:
                push((element, depth + 1))
        elif isinstance(item, dict):
            if depth >= MAX_DEPTH:
                return _TOO_DEEP
            for key, element in item.items():
                push((key, depth + 1))
                push((element, depth + 1))
        else:  # not a JSON value at all (only server-side values can be)
            return f"a {type(item).__name__} is not a JSON value"
    return None


def check_value(value: Any) -> None:
    """Refuse (``ProtocolError`` ``bad-data``) a value the log could not store and send back."""
    problem = _unstorable(value)
    if problem is not None:
        raise ProtocolError(ErrorCode.BAD_DATA, problem)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _from_object(obj: dict[str, Any]) -> ClientMessage:
    raw_id = obj.get("id")
    msg_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= MAX_ID_LENGTH else None
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "a message needs a string 'type'", msg_id)
    if kind not in _PARSERS:
        known = ", ".join(sorted(_PARSERS))
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown type {kind[:40]!r}; known: {known}", msg_id
        )
    if raw_id is not None and msg_id is None:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"'id' must be a string of 1-{MAX_ID_LENGTH} characters"
        )
    return _PARSERS[kind](obj, msg_id)


def _name(obj: dict[str, Any], key: str, msg_id: str | None) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_LENGTH:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f"{obj['type']!s} needs '{key}': a string of 1-{MAX_NAME_LENGTH} characters",
            msg_id,
        )
    return value


def _required_id(obj: dict[str, Any], msg_id: str | None) -> str:
    if msg_id is None:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE,
            f"{obj['type']} needs an 'id' (1-{MAX_ID_LENGTH} characters): "
            "it is the idempotency key",
        )
    return msg_id


def _parse_hello(obj: dict[str, Any], msg_id: str | None) -> Hello:
    token = obj.get("token")
    if token is not None and not isinstance(token, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'token' must be a string", msg_id)
    client = obj.get("client")
    if client is not None and not isinstance(client, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'client' must be a string", msg_id)
    resume = obj.get("resume", {})
    if resume is None:
        resume = {}
    if not isinstance(resume, dict) or not all(
        isinstance(room, str)
        and isinstance(seq, int)
        and not isinstance(seq, bool)
        and seq >= 0
        for room, seq in resume.items()
    ):
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, "'resume' must map room names to last seen seq (>= 0)", msg_id
        )
    epoch = obj.get("epoch")
    if epoch is not None and (not isinstance(epoch, str) or len(epoch) > MAX_ID_LENGTH):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'epoch' must be a short string", msg_id)
    return Hello(token=token, client=client[:MAX_NAME_LENGTH] if client else None,
                 resume=resume, epoch=epoch)


def _parse_join(obj: dict[str, Any], msg_id: str | None) -> Join:
    return Join(room=_name(obj, "room", msg_id), id=msg_id)


def _parse_leave(obj: dict[str, Any], msg_id: str | None) -> Leave:
    return Leave(room=_name(obj, "room", msg_id), id=msg_id)


def _parse_publish(obj: dict[str, Any], msg_id: str | None) -> Publish:
    room = _name(obj, "room", msg_id)
    if "data" not in obj:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "publish needs 'data'", msg_id)
    return Publish(room=room, id=_required_id(obj, msg_id), data=obj["data"])


def _parse_set(obj: dict[str, Any], msg_id: str | None) -> Set:
    room = _name(obj, "room", msg_id)
    target = _name(obj, "target", msg_id)
    if "value" not in obj:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "set needs 'value'", msg_id)
    return Set(room=room, id=_required_id(obj, msg_id), target=target, value=obj["value"])


_PARSERS = {
    "hello": _parse_hello,
    "join": _parse_join,
    "leave": _parse_leave,
    "publish": _parse_publish,
    "set": _parse_set,
}


def encode(message: dict[str, Any]) -> str:
    """The text of one server message: compact JSON, non-finite numbers refused."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def is_finite_number(value: Any) -> bool:
    """True for an int or float that is not a bool, NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)
