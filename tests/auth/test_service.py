"""`serve` as a service on a network, attacked from outside: each row of the attack
matrix (issue: serve as a service) against `python -m wsdemo serve` started as a
user starts it, with independent clients (`websockets`, raw sockets).

The browser's side of the same attacks is in tests/e2e/test_service_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import stat
import statistics
import time
import urllib.request

import pytest
import websockets

from tests.support.serve import (
    cli,
    raw_exchange,
    serving,
    socket_from,
    upgrade_request,
)
from tests.support.tls import self_signed
from wsdemo.core.protocol import SUBPROTOCOL

ORIGIN = "https://course.example"


@pytest.fixture
def keys(tmp_path):
    path = tmp_path / "serve.keys"
    assert cli("keys", "new", str(path)).returncode == 0
    return path


def token(keys, *perms: str, sub: str = "ada", **options: str) -> str:
    args = ["token", "--secret-file", str(keys), "--sub", sub]
    for perm in perms or ("controls=read,set,publish",):
        args += ["--perm", perm]
    for name, value in options.items():
        args += [f"--{name}", value]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def hello(url, bearer=None, *, origin=None, sock=None, ssl_context=None):
    ws = await websockets.connect(url, subprotocols=[SUBPROTOCOL], origin=origin, sock=sock,
                                  ssl=ssl_context, open_timeout=10)
    message = {"type": "hello", "client": "t"}
    if bearer is not None:
        message["token"] = bearer
    await ws.send(json.dumps(message))
    return ws


async def welcomed(ws) -> dict:
    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert reply["type"] == "welcome", reply
    return reply


async def joined(ws, room: str) -> None:
    """Wait for the welcome, join ``room`` and wait for its snapshot."""
    await welcomed(ws)
    await ws.send(json.dumps({"type": "join", "room": room, "id": "j"}))
    while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "snapshot":
        pass


async def closed(ws) -> tuple[int, str]:
    with pytest.raises(websockets.ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    return info.value.rcvd.code, info.value.rcvd.reason


# --- host names: DNS rebinding -------------------------------------------------------


@pytest.mark.parametrize("request_line", ["GET /ws", "GET /", "GET /status",
                                          "POST /token"])
async def test_a_rebinding_page_is_refused_403_on_every_route(keys, request_line):
    """The rebinding page's Host and Origin are its own name: same-origin with itself,
    so Tornado's rule lets it in. The Host check does not."""
    async with serving("--secret-file", str(keys)) as served:
        host = f"evil.example:{served.port}"
        if request_line == "GET /ws":
            request = upgrade_request(host, origin=f"http://{host}")
        else:
            method, path = request_line.split()
            request = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n"
                       "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}").encode()
        answer = await raw_exchange(served.port, request)
        assert answer.startswith("HTTP/1.1 403 "), answer
        # The same request naming the server as it was started is answered.
        good = await raw_exchange(served.port, request.replace(
            b"evil.example", b"127.0.0.1"))
        assert not good.startswith("HTTP/1.1 403 "), good


async def test_public_name_is_answered_and_no_other(keys):
    async with serving("--secret-file", str(keys), "--public-name", "app.example",
                       "--origin", "https://app.example") as served:
        for host, status in [("app.example", "200"), ("APP.EXAMPLE.", "200"),
                             ("app.example.evil", "403"), ("localhost", "200"),
                             ("[::1]", "200"), ("", "400")]:  # HTTP/1.1 needs a Host: Tornado
            request = f"GET / HTTP/1.1\r\nHost: {host}:{served.port}\r\n\r\n".encode()
            if not host:
                request = b"GET / HTTP/1.1\r\n\r\n"
            answer = await raw_exchange(served.port, request)
            assert answer.split()[1] == status, (host, answer)
        upgraded = await raw_exchange(served.port, upgrade_request(
            f"app.example:{served.port}", origin="https://app.example"))
        assert upgraded.startswith("HTTP/1.1 101 "), upgraded


# --- origins --------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["http://localhost:1", "http://127.0.0.1:9",
                                    "https://evil.example", "null"])
async def test_without_origin_only_the_pages_own_origin_may_connect(origin):
    async with serving() as served:  # open mode, loopback: the most trusting set-up
        with pytest.raises(websockets.InvalidStatus) as info:
            await hello(served.ws_url, origin=origin)
        assert info.value.response.status_code == 403
        ws = await hello(served.ws_url, origin=f"http://127.0.0.1:{served.port}")
        await welcomed(ws)
        await ws.close()


async def test_with_origin_the_servers_own_address_is_not_enough(keys):
    async with serving("--secret-file", str(keys), "--origin", ORIGIN) as served:
        with pytest.raises(websockets.InvalidStatus) as info:
            await hello(served.ws_url, origin=served.url.rstrip("/"))
        assert info.value.response.status_code == 403
        ws = await hello(served.ws_url, token(keys), origin=ORIGIN)
        await welcomed(ws)
        await ws.close()


# --- limits ---------------------------------------------------------------------------


async def test_connections_per_address_are_limited_and_a_bystander_is_not(keys):
    bearer = token(keys)
    async with serving("--secret-file", str(keys), "--max-connections", "3") as served:
        held = [await hello(served.ws_url, bearer) for _ in range(3)]
        for ws in held:
            await welcomed(ws)
        with pytest.raises(websockets.InvalidStatus) as info:
            await hello(served.ws_url, bearer)
        assert info.value.response.status_code == 429
        assert info.value.response.headers["Retry-After"]
        # Another address is another client: served.
        other = await hello(served.ws_url, bearer, sock=socket_from("127.0.0.2", served.port))
        await welcomed(other)
        # A connection that ends gives its place back.
        await held.pop().close()
        again = await hello(served.ws_url, bearer)
        await welcomed(again)
        for ws in [*held, other, again]:
            await ws.close()


async def test_a_half_sent_handshake_is_dropped_after_the_header_timeout(keys):
    bearer = token(keys)
    async with serving("--secret-file", str(keys), "--header-timeout", "1") as served:
        started = time.monotonic()
        streams = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(20)]
        for _, writer in streams:
            writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webs")
            await writer.drain()
        bystander = await hello(served.ws_url, bearer)
        await welcomed(bystander)
        for reader, writer in streams:
            assert await asyncio.wait_for(reader.read(), 10) == b"", "the server hung up"
            writer.close()
        waited = time.monotonic() - started
        assert waited >= 1.0, f"dropped after {waited:.2f} s, before the timeout"
        await bystander.send(json.dumps({"type": "join", "room": "controls", "id": "j"}))
        assert json.loads(await asyncio.wait_for(bystander.recv(), 10))["type"] == "snapshot"
        await bystander.close()


async def test_an_idle_client_is_closed_1001_after_its_last_message(keys):
    bearer = token(keys)
    async with serving("--secret-file", str(keys), "--idle-timeout", "1") as served:
        ws = await hello(served.ws_url, bearer)
        await welcomed(ws)
        await asyncio.sleep(0.6)  # a pause in the conversation, not a wait for an event
        await ws.send(json.dumps({"type": "join", "room": "controls", "id": "j"}))
        last = time.monotonic()
        code, reason = await closed(ws)
        quiet = time.monotonic() - last
        assert (code, reason) == (1001, "idle for 1 s: no message")
        assert quiet >= 0.9, f"closed {quiet:.2f} s after the last message"


async def test_login_guessing_is_limited_per_address_and_a_bystander_is_served(
        keys, tmp_path):
    users = tmp_path / "users.json"
    done = cli("users", "add", str(users), "ada", "--perm", "controls=read,set",
               "--password-stdin", stdin="correct horse battery\n")
    assert done.returncode == 0, done.stderr
    bearer = token(keys)
    async with serving("--secret-file", str(keys), "--users", str(users),
                       "--login-rate", "6") as served:
        bystander = await hello(served.ws_url, bearer)
        await welcomed(bystander)
        await bystander.send(json.dumps({"type": "join", "room": "controls", "id": "j"}))
        assert json.loads(await bystander.recv())["type"] == "snapshot"
        wrong = json.dumps({"user": "ada", "password": "guess"}).encode()
        request = (f"POST /token HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(wrong)}\r\n"
                   "\r\n").encode() + wrong

        async def guess() -> str:
            return await raw_exchange(served.port, request, timeout=30)

        async def bystander_latencies() -> list[float]:
            took = []
            for value in range(1, 11):
                sent = time.monotonic()
                await bystander.send(json.dumps({"type": "set", "room": "controls",
                                                 "id": f"s{value}", "target": "speed",
                                                 "value": value}))
                while json.loads(await bystander.recv())["type"] != "ack":
                    pass
                took.append(time.monotonic() - sent)
            return took

        answers, latencies = await asyncio.gather(
            asyncio.gather(*(guess() for _ in range(4 * 5))), bystander_latencies())
        statuses = [a.split()[1] for a in answers]
        assert statuses.count("401") == 5, statuses  # the burst
        assert statuses.count("429") == 15, statuses
        assert all("Retry-After: " in a for a in answers if a.split()[1] == "429")
        print(f"bystander publish->ack under a login flood: median "
              f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
        assert max(latencies) < 2.0, latencies
        # Another address still logs in.
        good = json.dumps({"user": "ada", "password": "correct horse battery"}).encode()
        answer = await raw_exchange(
            served.port, request.replace(wrong, good).replace(
                f"Content-Length: {len(wrong)}".encode(), f"Content-Length: {len(good)}".encode()),
            source="127.0.0.2")
        assert answer.startswith("HTTP/1.1 200 "), answer
        await bystander.close()


# --- accounts, issuer, audience -------------------------------------------------------


def test_users_add_stores_a_hash_in_a_private_file(tmp_path):
    users = tmp_path / "users.json"
    done = cli("users", "add", str(users), "ada", "--perm", "controls=read",
               "--password-stdin", stdin="correct horse battery\n")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    text = users.read_text()
    assert "correct horse" not in text
    assert json.loads(text)["users"]["ada"]["perm"] == {"controls": ["read"]}
    again = cli("users", "add", str(users), "ada", "--perm", "*=read",
                "--password-stdin", stdin="another one\n")
    assert again.returncode == 0 and "replaced" in again.stdout
    bad = cli("users", "add", str(users), "bob", "--perm", "controls=fly",
              "--password-stdin", stdin="x\n")
    assert bad.returncode == 1 and bad.stderr.startswith("error: ")
    assert "bob" not in json.loads(users.read_text())["users"]


async def test_users_log_in_and_get_their_grants(keys, tmp_path):
    users = tmp_path / "users.json"
    assert cli("users", "add", str(users), "ada", "--perm", "chat=read",
               "--password-stdin", stdin="correct horse battery\n").returncode == 0
    body = json.dumps({"user": "ada", "password": "correct horse battery"}).encode()
    async with serving("--secret-file", str(keys), "--users", str(users)) as served:
        request = urllib.request.Request(f"{served.url}token", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        reply = await asyncio.to_thread(lambda: json.loads(urllib.request.urlopen(
            request, timeout=10).read()))
        ws = await hello(served.ws_url, reply["token"])
        assert (await welcomed(ws))["rooms"] == ["chat"]
        await ws.close()


def test_users_without_a_secret_file_refuse_to_start(tmp_path):
    done = cli("serve", "--port", "0", "--log", "memory", "--users", str(tmp_path / "u"))
    assert done.returncode == 1 and "--users needs --secret-file" in done.stderr


async def test_issuer_and_audience_are_checked(keys):
    async with serving("--secret-file", str(keys), "--issuer", "https://id.example",
                       "--audience", "controls") as served:
        good = token(keys, issuer="https://id.example", audience="controls")
        ws = await hello(served.ws_url, good)
        await welcomed(ws)
        await ws.close()
        for bad in (token(keys), token(keys, issuer="https://id.example"),
                    token(keys, audience="controls")):
            ws = await hello(served.ws_url, bad)
            assert (await closed(ws))[0] == 4401


# --- TLS --------------------------------------------------------------------------------


async def test_tls_serves_wss_to_websockets_and_to_the_cli_client(keys, tmp_path):
    certfile, keyfile = self_signed(tmp_path)
    bearer = token(keys)
    async with serving("--secret-file", str(keys), "--certfile", str(certfile),
                       "--keyfile", str(keyfile)) as served:
        assert served.scheme == "https"
        trusting = ssl.create_default_context(cafile=str(certfile))
        ws = await hello(served.ws_url, bearer, ssl_context=trusting)
        await welcomed(ws)
        await ws.close()
        # Without trusting the certificate, a client refuses the server.
        with pytest.raises(ssl.SSLCertVerificationError):
            await hello(served.ws_url, bearer, ssl_context=ssl.create_default_context())
        # Plain ws:// to a TLS port is not answered as WebSocket.
        with pytest.raises((websockets.InvalidMessage, websockets.InvalidHandshake, OSError,
                            EOFError)):
            await hello(served.ws_url.replace("wss://", "ws://"), bearer)
        token_file = tmp_path / "token"
        token_file.write_text(bearer)
        done = await asyncio.to_thread(
            cli, "client", served.url, "set", "speed", "7", "--cafile", str(certfile),
            "--token-file", str(token_file))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["type"] == "ack"
        refused = await asyncio.to_thread(
            cli, "client", served.url, "set", "speed", "7", "--token-file", str(token_file))
        assert refused.returncode == 1 and "certificate" in refused.stderr.lower()


def test_tls_needs_both_files(tmp_path):
    certfile, _ = self_signed(tmp_path)
    done = cli("serve", "--port", "0", "--log", "memory", "--certfile", str(certfile))
    assert done.returncode == 1 and "--keyfile" in done.stderr


@pytest.mark.parametrize("option", [["--max-connections", "-1"], ["--login-rate", "0"],
                                    ["--header-timeout", "0"], ["--idle-timeout", "-5"]])
def test_a_limit_out_of_range_is_refused_in_one_line(option):
    done = cli("serve", "--port", "0", "--log", "memory", *option)
    assert done.returncode == 1 and done.stderr.startswith("error: --")
    assert option[0] in done.stderr and "Traceback" not in done.stderr


# --- tokens from an identity provider ---------------------------------------------------


def _provider_key(kind: str):
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if kind == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _claims(**extra) -> dict:
    now = int(time.time())
    return {"sub": "ada", "iat": now, "exp": now + 600, "iss": "wsdemo", "aud": "wsdemo.v1",
            "perm": {"controls": ["read"]}, **extra}


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_serve_public_key_takes_the_providers_tokens_and_refuses_confusion(
        tmp_path, alg):
    import jwt
    from cryptography.hazmat.primitives import serialization

    private = _provider_key(alg)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "idp-1.pem").write_bytes(pem)
    async with serving("--public-key", str(tmp_path / "idp-1.pem")) as served:
        good = jwt.encode(_claims(), private, algorithm=alg, headers={"kid": "idp-1"})
        ws = await hello(served.ws_url, good)
        assert (await welcomed(ws))["user"] == "ada"
        await ws.close()
        # Algorithm confusion: an HMAC "signed" with the public key's own bytes.
        import hashlib
        import hmac as hmac_

        header = jwt.utils.base64url_encode(json.dumps(
            {"alg": "HS256", "typ": "JWT", "kid": "idp-1"}).encode())
        body = jwt.utils.base64url_encode(json.dumps(_claims()).encode())
        signature = jwt.utils.base64url_encode(
            hmac_.new(pem, header + b"." + body, hashlib.sha256).digest())
        forged = (header + b"." + body + b"." + signature).decode()
        none = jwt.utils.base64url_encode(json.dumps({"alg": "none", "kid": "idp-1"}).encode())
        unsigned = (none + b"." + body + b".").decode()
        for bad in (forged, unsigned, good[:-6] + "AAAAAA"):
            ws = await hello(served.ws_url, bad)
            assert (await closed(ws))[0] == 4401


async def test_serve_jwks_takes_a_key_set_and_keeps_to_it(tmp_path):
    import jwt
    from jwt.algorithms import RSAAlgorithm

    private = _provider_key("RS256")
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid="2026-12", use="sig", alg="RS256")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    async with serving("--jwks", str(tmp_path / "jwks.json")) as served:
        good = jwt.encode(_claims(), private, algorithm="RS256", headers={"kid": "2026-12"})
        ws = await hello(served.ws_url, good)
        await welcomed(ws)
        await ws.close()
        other = jwt.encode(_claims(), _provider_key("RS256"), algorithm="RS256",
                           headers={"kid": "2026-12"})
        stranger = jwt.encode(_claims(), private, algorithm="RS256", headers={"kid": "nope"})
        for bad in (other, stranger):
            ws = await hello(served.ws_url, bad)
            assert (await closed(ws))[0] == 4401


def test_an_open_server_elsewhere_than_loopback_still_refuses_without_public_keys():
    done = cli("serve", "--host", "0.0.0.0", "--port", "0", "--log", "memory", "--issuer", "x")
    assert done.returncode == 1 and "refusing to serve 0.0.0.0 open" in done.stderr


async def test_retention_in_bytes_holds_under_a_flood_and_a_bystander_sees_no_gap(keys):
    bearer = token(keys, "chat=read,publish")
    async with serving("--secret-file", str(keys), "--retain-bytes", "64K",
                       "--rate", "0") as served:
        flooder, bystander = await hello(served.ws_url, bearer), await hello(served.ws_url,
                                                                             bearer)
        for ws in (flooder, bystander):
            await joined(ws, "chat")
        big = "x" * 8000
        for n in range(40):  # 320 kB into a room that keeps 64 KiB
            await flooder.send(json.dumps({"type": "publish", "room": "chat", "id": f"p{n}",
                                           "data": big}))
        seqs = []
        while len(seqs) < 40:
            message = json.loads(await asyncio.wait_for(bystander.recv(), 10))
            if message["type"] == "event":
                seqs.append(message["seq"])
        assert seqs == list(range(seqs[0], seqs[0] + 40)), "every event, in order, no gap"
        # A late joiner resuming from the start is told what is gone.
        late = await websockets.connect(served.ws_url, subprotocols=[SUBPROTOCOL])
        await late.send(json.dumps({"type": "hello", "token": bearer, "resume": {"chat": 0}}))
        kinds = []
        while "recovered" not in kinds and "snapshot" not in kinds:
            message = json.loads(await asyncio.wait_for(late.recv(), 10))
            kinds.append(message["type"])
            if message["type"] == "recovered":
                assert message["complete"] is False, message
        assert kinds.count("event") * 8000 <= 64 * 1024, "no more than 64 KiB was kept"
        for ws in (flooder, bystander, late):
            await ws.close()


def test_retain_bytes_takes_sizes_and_refuses_nonsense():
    done = cli("serve", "--port", "0", "--log", "memory", "--retain-bytes", "lots")
    assert done.returncode == 2 and "not a size: 'lots'" in done.stderr


async def test_serve_rate_limits_a_flooder_and_not_a_bystander(keys):
    bearer = token(keys, "chat=read,publish")
    async with serving("--secret-file", str(keys), "--rate", "2") as served:  # bursts of 4
        flooder, bystander = await hello(served.ws_url, bearer), await hello(served.ws_url,
                                                                             bearer)
        for ws in (flooder, bystander):
            await joined(ws, "chat")
        for n in range(12):
            await flooder.send(json.dumps({"type": "publish", "room": "chat", "id": f"f{n}",
                                           "data": n}))
        answers = []
        with pytest.raises(websockets.ConnectionClosed) as info:
            while True:
                message = json.loads(await asyncio.wait_for(flooder.recv(), 10))
                if message["type"] in ("ack", "error"):
                    answers.append(message.get("code", message["type"]))
        assert info.value.rcvd.code == 4429
        assert answers[:4] == ["ack"] * 4, answers  # the burst
        assert "rate-limited" in answers[4:], answers
        await bystander.send(json.dumps({"type": "publish", "room": "chat", "id": "b",
                                         "data": "still served"}))
        seqs = []
        while True:
            message = json.loads(await asyncio.wait_for(bystander.recv(), 10))
            if message["type"] == "event":
                seqs.append(message["seq"])
            if message["type"] == "ack":
                break
        assert seqs == [1, 2, 3, 4] and message["seq"] == 5, (seqs, message)
        await bystander.close()
