"""wsdemo.auth over real connections: the attack matrix, key rotation, expiry, the
token endpoint, logs that never hold a token, and property tests of the parser."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import subprocess
import sys
import time

import hypothesis.strategies as st
import jwt
import pytest
import tornado.httpclient
from hypothesis import HealthCheck, given, settings
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from wsdemo import ControlClient, ControlServer
from wsdemo.auth import InvalidToken, JWTAccess, KeyRing, issue_token, normalize_permissions

ALLOWED = "https://course.example"
EVIL = "https://evil.example"
ADA = {"controls": ["read", "set"], "chat": ["read", "publish"]}
READER = {"controls": ["read"], "chat": ["read"]}
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, payload: dict, hmac_key: bytes | None = None) -> str:
    """A JWT assembled by hand, as an attacker would: HMAC-SHA256 with ``hmac_key``
    whatever the header says, or no signature at all."""
    parts = [json.dumps(header).encode(), json.dumps(payload).encode()]
    signing_input = ".".join(b64url(p) for p in parts)
    signature = b"" if hmac_key is None else hmac.digest(hmac_key, signing_input.encode(),
                                                           "sha256")
    return f"{signing_input}.{b64url(signature)}"


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture
def keys():
    return KeyRing.generate("k1")


@pytest.fixture
def access(keys):
    access = JWTAccess(keys, leeway=1)
    access.add_user("ada", "correct horse battery", ADA)
    access.add_user("rita", "reader's password", READER)
    return access


@pytest.fixture
async def guarded(access, demo_widgets):
    srv = ControlServer(port=0, access=access, allowed_origins=[ALLOWED], hello_timeout=0.5)
    for name, widget in demo_widgets.items():
        srv.expose(name, widget)
    srv.add_room("chat")
    srv.add_room("secret")
    srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def legit(guarded, access):
    """Ada, connected before each attack and checked after it."""
    client = await ControlClient.connect(guarded.ws_url, token=access.issue_token("ada", ADA))
    await client.join("controls")
    yield client
    await client.close()


async def close_after_hello(server, hello: dict | None, path: str = "") -> tuple[int, str]:
    client = await ControlClient.connect(server.ws_url + path, hello=False)
    if hello is not None:
        client.send({"type": "hello", **hello})
    closed = await client.wait_closed(timeout=5)
    return closed.code, closed.reason


async def close_after(server, token: str, *messages: dict) -> tuple[int, str]:
    """Say hello with ``token``, send ``messages``, return how the server closed."""
    client = await ControlClient.connect(server.ws_url, token=token)
    for message in messages:
        client.send(message)
    closed = await client.wait_closed(timeout=5)
    return closed.code, closed.reason


# --- the attack matrix: each row over a real connection, Ada unaffected ------------


def _tampered(access):
    real = access.issue_token("rita", READER)
    header, _payload, signature = real.split(".")
    grown = dict(claims_of(real), perm={"*": ["read", "publish", "set"]})
    return ".".join([header, b64url(json.dumps(grown).encode()), signature])


def _other_key(access):
    stranger = KeyRing({"k1": b"an attacker's own secret, 32+ bytes long"})
    return issue_token("ada", {"*": ["set"]}, keys=stranger)


def _alg_none(access):
    claims = claims_of(access.issue_token("rita", READER))
    claims["perm"] = {"*": ["read", "publish", "set"]}
    return forge({"alg": "none", "typ": "JWT", "kid": "k1"}, claims)


def _alg_confusion(access):
    # An HMAC made with a key the attacker can know, labelled as RSA: a verifier
    # that takes the algorithm from the token would check it with the "public key".
    claims = claims_of(access.issue_token("rita", READER))
    return forge({"alg": "RS256", "typ": "JWT", "kid": "k1"}, claims,
                 b"-----BEGIN PUBLIC KEY----- (published for everyone) -----END PUBLIC KEY-----")


def _expired(access):
    return access.issue_token("ada", ADA, ttl=60, now=time.time() - 3600)


def _wrong_kid(access):
    return issue_token("ada", ADA, keys=KeyRing({"k9": b"k9" * 16}))


def _no_kid(access):
    claims = claims_of(access.issue_token("ada", ADA))
    return jwt.encode(claims, access.keys.secret("k1"), "HS256")


TOKEN_ATTACKS = {
    "forged signature (payload edited)": (_tampered, "bad signature"),
    "signed with another key": (_other_key, "bad signature"),
    "alg none": (_alg_none, "algorithm not allowed"),
    "algorithm confusion (RS256 label)": (_alg_confusion, "algorithm not allowed"),
    "expired token": (_expired, "token expired"),
    "wrong key id": (_wrong_kid, "unknown key id"),
    "no key id": (_no_kid, "unknown key id"),
    "garbage": (lambda access: "not-a-jwt", "malformed token"),
}


@pytest.mark.parametrize("attack", TOKEN_ATTACKS, ids=list(TOKEN_ATTACKS))
async def test_bad_tokens_close_4401(guarded, access, legit, demo_widgets, attack):
    make, reason = TOKEN_ATTACKS[attack]
    assert await close_after_hello(guarded, {"token": make(access)}) == (4401, reason)
    await assert_unaffected(legit, demo_widgets)


async def test_no_token_closes_4401(guarded, legit, demo_widgets):
    assert await close_after_hello(guarded, {"client": "anon"}) == (4401, "no token")
    await assert_unaffected(legit, demo_widgets)


async def test_token_only_in_the_url_is_not_accepted(guarded, access, legit, demo_widgets):
    token = access.issue_token("ada", ADA)
    assert await close_after_hello(guarded, {}, f"?token={token}") == (4401, "no token")
    await assert_unaffected(legit, demo_widgets)


async def test_no_hello_in_time_closes_4408(guarded, legit, demo_widgets):
    code, _ = await close_after_hello(guarded, None)
    assert code == 4408
    await assert_unaffected(legit, demo_widgets)


async def test_wrong_origin_is_refused_403_before_any_frame(guarded, access, legit,
                                                            demo_widgets):
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(guarded.ws_url, origin=EVIL, subprotocols=["wsdemo.v1"],
                                      open_timeout=5):
            pass  # pragma: no cover - the upgrade is refused
    assert refused.value.response.status_code == 403
    await assert_unaffected(legit, demo_widgets)


async def test_with_an_allowlist_only_the_listed_origins_connect(guarded, access):
    """The allowlist is checked before Tornado's own same-host shortcut: an origin that
    is not listed is refused even when it is the server's own address (a page that
    rebinds a name to this server would look the same)."""
    token = access.issue_token("ada", ADA)
    async with ws_connect(guarded.ws_url, origin=ALLOWED, subprotocols=["wsdemo.v1"],
                          open_timeout=5) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token}))
        welcome = json.loads(await ws.recv())
        assert (welcome["type"], welcome["user"]) == ("welcome", "ada")
    same = f"http://127.0.0.1:{guarded.port}"
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(guarded.ws_url, origin=same, subprotocols=["wsdemo.v1"],
                         open_timeout=5)
    assert refused.value.response.status_code == 403


async def test_reading_a_room_you_may_not_closes_4403(guarded, access, legit, demo_widgets):
    token = access.issue_token("rita", READER)
    code, reason = await close_after(guarded, token, {"type": "join", "room": "secret"})
    assert (code, reason) == (4403, "rita may not read in 'secret'")
    await assert_unaffected(legit, demo_widgets)


async def test_setting_a_control_you_may_only_read_closes_4403(guarded, access, legit,
                                                               demo_widgets):
    before = demo_widgets["speed"].value
    rita = await ControlClient.connect(guarded.ws_url, token=access.issue_token("rita", READER))
    assert (await rita.join("controls"))["state"]["speed"] == before  # reading is allowed
    rita.send({"type": "set", "room": "controls", "id": "x", "target": "speed", "value": 9})
    closed = await rita.wait_closed(timeout=5)
    assert (closed.code, closed.reason) == (4403, "rita may not set in 'controls'")
    assert demo_widgets["speed"].value == before
    assert await guarded.log.read_after("controls", 0) == []  # nothing was logged
    await assert_unaffected(legit, demo_widgets)


async def test_publishing_where_you_may_only_read_closes_4403(guarded, access, legit,
                                                              demo_widgets):
    rita = await ControlClient.connect(guarded.ws_url, token=access.issue_token("rita", READER))
    await rita.join("chat")
    rita.send({"type": "publish", "room": "chat", "id": "p", "data": "hi"})
    closed = await rita.wait_closed(timeout=5)
    assert (closed.code, closed.reason) == (4403, "rita may not publish in 'chat'")
    await assert_unaffected(legit, demo_widgets)


async def assert_unaffected(legit: ControlClient, demo_widgets) -> None:
    """Ada is still connected, and her set is applied and broadcast."""
    value = 1 if demo_widgets["speed"].value != 1 else 2
    ack = await legit.set("controls", "speed", value)
    event = await legit.next_event("controls", timeout=5)
    assert event["seq"] == ack["seq"] and event["data"] == {"target": "speed", "value": value}
    assert demo_widgets["speed"].value == value
    assert legit.closed is None


async def test_star_grants_every_room_and_grants_add_up(guarded, access):
    token = access.issue_token("eve", {"*": ["read"], "chat": ["publish"]})
    eve = await ControlClient.connect(guarded.ws_url, token=token)
    for room in ("controls", "chat", "secret"):
        await eve.join(room)
    assert (await eve.publish("chat", "hello"))["seq"] == 1
    await eve.close()


async def test_welcome_lists_only_the_rooms_the_user_may_read(guarded, access):
    rita = await ControlClient.connect(guarded.ws_url, token=access.issue_token("rita", READER))
    eve = await ControlClient.connect(guarded.ws_url,
                                      token=access.issue_token("eve", {"*": ["read"]}))
    assert rita.welcome["rooms"] == sorted(r for r in READER if r in guarded.rooms)
    assert "secret" not in rita.welcome["rooms"]
    assert eve.welcome["rooms"] == sorted(guarded.rooms)
    await rita.close()
    await eve.close()


# --- expiry and rotation ---------------------------------------------------------


async def test_token_expiring_while_connected_closes_4401(keys, demo_widgets):
    access = JWTAccess(keys, leeway=0)
    srv = ControlServer(port=0, access=access).start()
    srv.expose("speed", demo_widgets["speed"])
    try:
        # exp is a whole second, so 2 s leaves 1-2 s: long enough to act first.
        client = await ControlClient.connect(srv.ws_url, token=access.issue_token(
            "ada", ADA, ttl=2))
        await client.join("controls")
        assert (await client.set("controls", "speed", 4))["seq"] == 1
        closed = await client.wait_closed(timeout=5)
        assert (closed.code, closed.reason) == (4401, "token expired")
    finally:
        await srv.stop()


def test_principal_expires_when_the_token_stops_being_accepted(access):
    principal = access.verify(access.issue_token("ada", ADA, ttl=600))
    assert principal.expires == principal.claims["exp"] + access.leeway


async def test_key_rotation(guarded, access, keys):
    old = access.issue_token("ada", ADA)
    keys.rotate("k2")
    new = access.issue_token("ada", ADA)
    assert jwt.get_unverified_header(old)["kid"] == "k1"
    assert jwt.get_unverified_header(new)["kid"] == "k2"
    for token in (old, new):  # k1 is still in the ring: both work
        client = await ControlClient.connect(guarded.ws_url, token=token)
        assert client.welcome["user"] == "ada"
        await client.close()
    kept = await ControlClient.connect(guarded.ws_url, token=new)
    await kept.join("controls")
    revoked = await ControlClient.connect(guarded.ws_url, token=old)
    await revoked.join("controls")
    keys.remove("k1")
    # Removing the key refuses its tokens from now on, and ends the sessions they opened.
    closed = await revoked.wait_closed(timeout=5)
    assert (closed.code, closed.reason) == (4401, "token revoked: its signing key was removed")
    assert await close_after_hello(guarded, {"token": old}) == (4401, "unknown key id")
    assert (await kept.set("controls", "speed", 4))["type"] == "ack"  # k2's session goes on
    client = await ControlClient.connect(guarded.ws_url, token=new)
    assert client.welcome["user"] == "ada"
    await client.close()
    await kept.close()


async def test_a_stopped_server_stops_watching_the_key_ring(access, keys, demo_widgets):
    srv = ControlServer(port=0, access=access).start()
    watchers = len(keys._removal_watchers)
    await srv.stop()
    assert len(keys._removal_watchers) == watchers - 1


def test_key_ring_rules():
    ring = KeyRing.generate("k1")
    with pytest.raises(ValueError, match="rotate to another key first"):
        ring.remove("k1")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        ring.add("k2", b"short")
    with pytest.raises(ValueError, match="already in the ring"):
        ring.add("k1")
    with pytest.raises(ValueError, match="key id"):
        ring.add("bad kid!")
    secret = ring.secret("k1")
    assert secret.hex() not in repr(ring) and str(secret) not in repr(ring)
    assert repr(ring) == "<KeyRing current='k1' kids=['k1']>"


def test_issuing_checks_its_arguments(access):
    with pytest.raises(ValueError, match="actions are"):
        access.issue_token("ada", {"controls": ["fly"]})
    with pytest.raises(ValueError, match="must be a list"):
        access.issue_token("ada", {"controls": "read"})
    with pytest.raises(ValueError, match="ttl"):
        access.issue_token("ada", ADA, ttl=0)
    with pytest.raises(ValueError, match="user"):
        access.issue_token("", ADA)


def test_a_token_is_a_standard_jwt(access, keys):
    token = access.issue_token("ada", ADA, ttl=600, now=1_700_000_000)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    # Any JWT library reads it with the same key: nothing wsdemo-specific.
    claims = jwt.decode(token, keys.secret("k1"), algorithms=["HS256"], audience="wsdemo.v1",
                        options={"verify_exp": False})
    assert claims == {"sub": "ada", "iat": 1_700_000_000, "exp": 1_700_000_600, "iss": "wsdemo",
                      "aud": "wsdemo.v1", "perm": {"chat": ["publish", "read"],
                                                   "controls": ["read", "set"]}}


def test_wrong_audience_or_issuer_is_refused(keys):
    access = JWTAccess(keys)
    for other in ({"audience": "someone.else"}, {"issuer": "someone-else"}):
        token = issue_token("ada", ADA, keys=keys, **other)
        with pytest.raises(InvalidToken, match="wrong"):
            access.verify(token)


# --- the parser on arbitrary input -------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
segments = st.text(alphabet=B64URL, max_size=60)
claim_values = {
    "sub": st.one_of(st.text(), json_values),
    "iat": st.one_of(st.integers(), st.floats(), json_values),
    "exp": st.one_of(st.integers(), st.floats(), json_values),
    "iss": st.one_of(st.just("wsdemo"), json_values),
    "aud": st.one_of(st.just("wsdemo.v1"), json_values),
    "perm": st.one_of(st.dictionaries(st.text(), st.lists(st.sampled_from(
        ["read", "publish", "set", "x"]))), json_values),
}
claim_sets = st.fixed_dictionaries({}, optional=claim_values)


def refused_or_valid(access: JWTAccess, token) -> object:
    """Verify, allowing only InvalidToken; an accepted token must make sense."""
    try:
        principal = access.verify(token)
    except InvalidToken as refused:
        assert refused.close_code == 4401
        return refused
    assert isinstance(principal.user, str) and principal.user
    assert all(a in ("read", "publish", "set") for acts in principal.permissions.values()
               for a in acts)
    return principal


@FUZZ
@given(token=st.one_of(st.text(), st.binary(), json_values,
                       st.builds(lambda *s: ".".join(s), segments, segments, segments)))
def test_arbitrary_input_is_refused(access, token):
    assert isinstance(refused_or_valid(access, token), InvalidToken)


@FUZZ
@given(header=st.dictionaries(st.text(), json_values, max_size=4), payload=json_values,
       signature=st.binary(max_size=40), alg=st.sampled_from(["HS256", "none", "RS256", None]),
       kid=st.sampled_from(["k1", "k2", None]))
def test_hand_made_tokens_are_refused(access, header, payload, signature, alg, kid):
    header = {**header, "alg": alg, "kid": kid}
    token = ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()),
                      b64url(signature)])
    assert isinstance(refused_or_valid(access, token), InvalidToken)


@FUZZ
@given(secret=st.binary(min_size=32, max_size=64), kid=st.sampled_from(["k1", "k2", "k9"]),
       claims=claim_sets)
def test_tokens_signed_with_another_key_are_refused(access, secret, kid, claims):
    if secret == access.keys.secret("k1"):
        return
    token = forge({"alg": "HS256", "typ": "JWT", "kid": kid}, claims, secret)
    assert isinstance(refused_or_valid(access, token), InvalidToken)


@FUZZ
@given(data=st.data())
def test_tampered_tokens_are_refused(access, data):
    real = access.issue_token("rita", READER)
    original = access.verify(real)
    position = data.draw(st.integers(0, len(real) - 1))
    how = data.draw(st.sampled_from(["replace", "delete", "insert"]))
    char = data.draw(st.sampled_from(B64URL + "."))
    tampered = {
        "replace": real[:position] + char + real[position + 1:],
        "delete": real[:position] + real[position + 1:],
        "insert": real[:position] + char + real[position:],
    }[how]
    if tampered == real:
        return
    outcome = refused_or_valid(access, tampered)
    # Accepted only if it still says exactly what was signed.
    assert isinstance(outcome, InvalidToken) or outcome == original


@FUZZ
@given(claims=claim_sets)
def test_our_signature_on_odd_claims_never_crashes(access, claims):
    # A signed token with claims of the wrong types: refused or sane, never a crash.
    token = forge({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims, access.keys.secret("k1"))
    refused_or_valid(access, token)


def test_normalize_permissions():
    assert normalize_permissions({"a": ["read", "read"], "*": []}) == {
        "a": frozenset({"read"}), "*": frozenset()}
    for bad in ([], {"": ["read"]}, {"a": "read"}, {"a": {"read": 1}}, {1: ["read"]},
                {"a": [None]}):
        with pytest.raises(ValueError):
            normalize_permissions(bad)


# --- the token endpoint --------------------------------------------------------------


async def post_token(server, body, *, content_type="application/json", query="",
                     origin=None, method="POST"):
    headers = {"Content-Type": content_type}
    if origin is not None:
        headers["Origin"] = origin
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    request = tornado.httpclient.HTTPRequest(
        f"{server.url}token{query}", method=method, headers=headers,
        body=body if method == "POST" else None, request_timeout=5)
    response = await tornado.httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
    return response, json.loads(response.body) if response.body else None


async def test_endpoint_issues_a_token_for_good_credentials(guarded, access):
    response, answer = await post_token(
        guarded, {"user": "ada", "password": "correct horse battery"})
    assert response.code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert "Location" not in response.headers
    assert set(answer) == {"token", "token_type", "expires_in", "user"}
    assert (answer["user"], answer["token_type"], answer["expires_in"]) == ("ada", "Bearer", 900)
    assert access.verify(answer["token"]).permissions == normalize_permissions(ADA)
    client = await ControlClient.connect(guarded.ws_url, token=answer["token"])
    assert client.welcome["user"] == "ada"
    await client.close()


@pytest.mark.parametrize("login", [
    {"user": "ada", "password": "wrong"},
    {"user": "nobody", "password": "correct horse battery"},
], ids=["wrong password", "unknown user"])
async def test_endpoint_refuses_bad_credentials_alike(guarded, login):
    response, answer = await post_token(guarded, login)
    assert (response.code, answer) == (401, {"error": "wrong user or password"})


@pytest.mark.parametrize(("kwargs", "status"), [
    ({"query": "?user=ada&password=correct+horse+battery"}, 400),
    ({"content_type": "application/x-www-form-urlencoded"}, 415),
    ({"content_type": "text/plain"}, 415),
    ({"origin": EVIL}, 403),
    ({"method": "GET"}, 405),
], ids=["credentials in the URL", "form", "text/plain", "cross-site origin", "GET"])
async def test_endpoint_refuses_misuse(guarded, kwargs, status):
    response, _ = await post_token(
        guarded, {"user": "ada", "password": "correct horse battery"}, **kwargs)
    assert response.code == status


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"user": "ada"}',
                                  '{"user": 1, "password": 2}', "x" * 5000])
async def test_endpoint_refuses_bad_bodies(guarded, body):
    response, answer = await post_token(guarded, body)
    assert response.code in (400, 413) and "error" in answer


async def test_endpoint_accepts_the_allowed_and_the_same_origin(guarded):
    for origin in (ALLOWED, f"http://127.0.0.1:{guarded.port}"):
        response, _ = await post_token(
            guarded, {"user": "ada", "password": "correct horse battery"}, origin=origin)
        assert response.code == 200, origin


# --- nothing secret in the logs ---------------------------------------------------------


async def test_no_token_or_password_is_ever_logged(guarded, access, caplog):
    caplog.set_level(logging.DEBUG, logger="wsdemo")
    caplog.set_level(logging.DEBUG, logger="tornado")
    password = "correct horse battery"
    _, answer = await post_token(guarded, {"user": "ada", "password": password})
    await post_token(guarded, {"user": "ada", "password": "wrong " + password})
    token = answer["token"]
    ada = await ControlClient.connect(guarded.ws_url, token=token)
    await ada.join("controls")
    await ada.set("controls", "speed", 3)
    rita = access.issue_token("rita", READER)
    await close_after(guarded, rita, {"type": "join", "room": "controls"},
                      {"type": "set", "room": "controls", "id": "x", "target": "speed",
                       "value": 1})
    await close_after_hello(guarded, {"token": token[:-4] + "AAAA"})
    await close_after_hello(guarded, {"token": _expired(access)})
    await ada.close()
    await guarded.stop()  # its shutdown messages too
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "authenticated ada" in logged and "POST /token" in logged  # the capture works
    for secret in (token, token.split(".")[2], rita, rita.split(".")[2], password):
        assert secret not in logged


async def test_a_token_in_the_query_string_lands_in_the_access_log(guarded, access, caplog):
    # Why the endpoint refuses URLs and the server reads the token only from hello.
    caplog.set_level(logging.INFO, logger="tornado.access")
    token = access.issue_token("ada", ADA)
    await close_after_hello(guarded, {}, f"?token={token}")
    assert any(token in r.getMessage() for r in caplog.records if r.name == "tornado.access")


# --- layering and display -------------------------------------------------------------


def test_token_logic_imports_no_tornado_or_asyncio():
    code = ("import sys, wsdemo.auth; "
            "print(','.join(m for m in ('tornado', 'asyncio', 'ipywidgets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_reprs_show_no_secrets(access, keys):
    text = repr(access) + repr(keys) + repr(access._accounts)
    assert keys.secret("k1").hex() not in text and "correct horse" not in text
    assert repr(access) == "<JWTAccess HS256 keys=['k1'] current='k1' leeway=1s users: ada, rita>"


@pytest.mark.parametrize("claims", [{"exp": 10**400}, {"exp": -5}, {"sub": "\ud800"},
                                    {"sub": "a\udfffb"}])
def test_out_of_range_or_unsendable_claims_are_a_bad_token_not_a_fault(claims):
    """A validly signed token whose exp cannot be a time, or whose user name could not
    be sent back in presence, is refused like any bad token (4401), never a 1011."""
    keys = KeyRing.generate()
    now = 1_700_000_000
    payload = {"sub": "ada", "iat": now, "exp": now + 600, "iss": "wsdemo", "aud": "wsdemo.v1",
               **claims}
    header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    # Written by hand: PyJWT will not encode some of these, an attacker's tool will.
    signing = (b64(json.dumps(header).encode()) + "." +
               b64(json.dumps(payload, ensure_ascii=True).encode()))
    signature = hmac.new(keys.secret("k1"), signing.encode(), "sha256").digest()
    token = signing + "." + b64(signature)
    with pytest.raises(InvalidToken) as refused:
        JWTAccess(keys).verify(token)
    assert refused.value.close_code == 4401
