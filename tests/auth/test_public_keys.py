"""Tokens from an identity provider: RS256, ES256 and EdDSA, keys from PEM files and
a JWKS file, the algorithm pinned by the key, JWKS rotation, and a real server.

Keys are made here with ``cryptography`` and tokens signed with PyJWT (or by hand,
as an attacker would), independently of the code under test."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import os
import time

import hypothesis.strategies as st
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from hypothesis import HealthCheck, given, settings
from jwt.algorithms import get_default_algorithms
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from wsdemo import ControlServer
from wsdemo.auth import InvalidToken, JWTAccess, KeyRing, PublicKeys
from wsdemo.auth import public as public_module
from wsdemo.core.protocol import SUBPROTOCOL

ADA = {"controls": ["read", "set"]}
ISS, AUD = "https://idp.example", "wsdemo.v1"
ALGORITHMS = ["RS256", "ES256", "EdDSA"]
KID = {"RS256": "rsa1", "ES256": "ec1", "EdDSA": "ed1"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def private():
    """One private key per algorithm (made once: RSA generation is slow), and a stranger."""
    return {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
        "stranger": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


def pem(key) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk_of(key, family: str, kid: str, /, **members) -> dict:
    """The JWK of a public key (PyJWT's encoder for ``family``), with ``members`` added."""
    jwk = get_default_algorithms()[family].to_jwk(key, as_dict=True)
    jwk.pop("key_ops", None)
    return {**jwk, "kid": kid, **members}


@pytest.fixture
def pem_files(private, tmp_path):
    paths = []
    for alg in ALGORITHMS:
        path = tmp_path / f"{KID[alg]}.pem"
        path.write_bytes(pem(private[alg].public_key()))
        paths.append(path)
    return paths


def write_jwks(path, *keys: dict) -> None:
    """Replace the file atomically, as an operator's download tool should."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"keys": list(keys)}))
    os.replace(temporary, path)


def touch_forward(path, seconds: float = 10) -> None:
    """Move the file's mtime on, so a change is seen whatever the file system's clock."""
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + int(seconds * 1e9)))


@pytest.fixture
def jwks_file(private, tmp_path):
    path = tmp_path / "jwks.json"
    write_jwks(path, *(jwk_of(private[alg].public_key(), alg, "j-" + KID[alg], use="sig",
                              alg=alg) for alg in ALGORITHMS))
    return path


def claims(**changes) -> dict:
    now = int(time.time())
    base = {"sub": "ada", "iat": now, "exp": now + 600, "iss": ISS, "aud": AUD, "perm": ADA}
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def sign(private, alg: str, kid: str | None, **changes) -> str:
    headers = {} if kid is None else {"kid": kid}
    return jwt.encode(claims(**changes), private[alg], algorithm=alg, headers=headers)


def hand_signed(key, header: dict, payload: dict) -> str:
    """A JWS made without PyJWT: any claim values, an RSA PKCS#1 v1.5 signature."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def hmac_token(secret: bytes, kid: str, payload: dict | None = None) -> str:
    """An HS256 token whose HMAC key is ``secret``: what an algorithm-confusion attacker
    sends with a public key's published bytes."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = (f"{b64url(json.dumps(header).encode())}."
                     f"{b64url(json.dumps(payload or claims()).encode())}")
    mac = hmac.digest(secret, signing_input.encode(), "sha256")
    return f"{signing_input}.{b64url(mac)}"


def refused(access: JWTAccess, token) -> str:
    with pytest.raises(InvalidToken) as caught:
        access.verify(token)
    assert caught.value.close_code == 4401
    return caught.value.reason


@pytest.fixture
def pem_access(pem_files):
    return JWTAccess(public_keys=PublicKeys.from_pem_files(pem_files), issuer=ISS, audience=AUD)


@pytest.fixture
def jwks_access(jwks_file):
    return JWTAccess(public_keys=PublicKeys.from_jwks_file(jwks_file), issuer=ISS, audience=AUD)


def with_a_ring(access: JWTAccess) -> JWTAccess:
    """The same public keys next to an HS256 ring: HS256 is then an algorithm the access
    accepts, so only the pin by kid stands between a confusion token and a session."""
    return JWTAccess(KeyRing.generate("hs1"), public_keys=access.public_keys, issuer=ISS,
                     audience=AUD)


# --- accepted ------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_each_algorithm_from_a_pem_file_is_accepted(pem_access, private, alg):
    principal = pem_access.verify(sign(private, alg, KID[alg]))
    assert (principal.user, principal.credential) == ("ada", KID[alg])
    assert principal.permissions == {"controls": frozenset({"read", "set"})}
    assert pem_access.public_keys.get(KID[alg]).algorithm == alg


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_each_algorithm_from_a_jwks_file_is_accepted(jwks_access, private, alg):
    principal = jwks_access.verify(sign(private, alg, "j-" + KID[alg]))
    assert (principal.user, principal.credential) == ("ada", "j-" + KID[alg])


def test_hs256_and_public_keys_together(private, pem_files):
    ring = KeyRing.generate("hs1")
    access = JWTAccess(ring, public_keys=PublicKeys.from_pem_files(pem_files), issuer=ISS,
                       audience=AUD)
    assert access.verify(access.issue_token("ada", ADA)).credential == "hs1"
    assert access.verify(sign(private, "EdDSA", "ed1")).credential == "ed1"
    # The HS256 secret is no key for an RS256 label, nor a public kid for HS256.
    assert refused(access, hmac_token(ring.secret("hs1"), "rsa1")) == "algorithm not allowed"
    rs_labelled = sign(private, "RS256", "hs1")
    assert refused(access, rs_labelled) == "algorithm not allowed"
    assert repr(access) == ("<JWTAccess HS256 keys=['hs1'] current='hs1' RS256,ES256,EdDSA "
                            "public keys=['rsa1', 'ec1', 'ed1'] leeway=5s users: none>")


# --- the algorithm is the key's -------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_algorithm_confusion_with_the_pem_bytes_is_refused(pem_access, pem_files, alg):
    published = pem_files[ALGORITHMS.index(alg)].read_bytes()
    token = hmac_token(published, KID[alg])
    # The forgery is sound: a verifier that let the header choose HS256 and used the
    # key file's bytes as the secret would accept this MAC.
    signing_input, _, mac = token.rpartition(".")
    assert hmac.compare_digest(b64url(hmac.digest(published, signing_input.encode(), "sha256")),
                               mac)
    for access in (pem_access, with_a_ring(pem_access)):
        assert refused(access, token) == "algorithm not allowed"


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_algorithm_confusion_with_the_jwk_json_is_refused(jwks_access, jwks_file, alg):
    document = jwks_file.read_text()
    (jwk,) = [k for k in json.loads(document)["keys"] if k["kid"] == "j-" + KID[alg]]
    for secret in (json.dumps(jwk).encode(), json.dumps(jwk, separators=(",", ":")).encode(),
                   document.encode()):
        for access in (jwks_access, with_a_ring(jwks_access)):
            assert refused(access, hmac_token(secret, "j-" + KID[alg])) == (
                "algorithm not allowed")


@pytest.mark.parametrize(("signed_as", "header_alg"), [
    ("RS256", "RS512"), ("RS256", "PS256"), ("ES256", "RS256"), ("EdDSA", "ES256"),
    ("RS256", "EdDSA"),
])
def test_a_header_alg_other_than_the_keys_is_refused(pem_access, private, signed_as,
                                                     header_alg):
    """Signed with the right key for its own header, and naming a loaded kid whose key
    pins another algorithm: refused before any signature is checked."""
    signer = {"RS256": private["RS256"], "PS256": private["RS256"], "RS512": private["RS256"],
              "ES256": private["ES256"], "EdDSA": private["EdDSA"]}[header_alg]
    token = jwt.encode(claims(), signer, algorithm=header_alg, headers={"kid": KID[signed_as]})
    assert refused(pem_access, token) == "algorithm not allowed"


def test_alg_none_is_refused(pem_access):
    header = b64url(json.dumps({"alg": "none", "kid": "rsa1"}).encode())
    token = f"{header}.{b64url(json.dumps(claims()).encode())}."
    assert refused(pem_access, token) == "algorithm not allowed"


def test_an_hs256_token_is_refused_without_an_hs_key(pem_access):
    assert refused(pem_access, hmac_token(b"x" * 32, "hs1")) == "algorithm not allowed"


def test_a_kid_unknown_to_both_sets_is_refused(private, pem_files, jwks_file):
    access = JWTAccess(public_keys=PublicKeys(pem_files=pem_files, jwks_files=[jwks_file]),
                       issuer=ISS, audience=AUD)
    assert access.verify(sign(private, "RS256", "rsa1")).user == "ada"  # PEM
    assert access.verify(sign(private, "RS256", "j-rsa1")).user == "ada"  # JWKS
    assert refused(access, jwt.encode(claims(), private["stranger"], algorithm="RS256",
                                      headers={"kid": "stranger"})) == "unknown key id"
    assert refused(access, sign(private, "RS256", None)) == "unknown key id"


def test_another_key_under_a_known_kid_is_a_bad_signature(pem_access, private):
    token = jwt.encode(claims(), private["stranger"], algorithm="RS256",
                       headers={"kid": "rsa1"})
    assert refused(pem_access, token) == "bad signature"


# --- the same claim checks as HS256 ----------------------------------------------------

CLAIM_CASES = {
    "wrong issuer": ({"iss": "https://other.example"}, "wrong issuer"),
    "wrong audience": ({"aud": "someone.else"}, "wrong audience"),
    "no exp": ({"exp": None}, "missing claim"),
    "no iat": ({"iat": None}, "missing claim"),
    "no sub": ({"sub": None}, "missing claim"),
    "expired": ({"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
                "token expired"),
    "exp = 10**400": ({"exp": 10**400}, "malformed token"),
    "exp a float": ({"exp": time.time() + 600}, "malformed token"),
    "sub not a string": ({"sub": 7}, "malformed token"),
    "bad perm": ({"perm": {"controls": ["fly"]}}, "malformed permissions"),
}


@pytest.mark.parametrize("case", CLAIM_CASES, ids=list(CLAIM_CASES))
def test_claims_are_checked_as_for_hs256(pem_access, private, case):
    changes, reason = CLAIM_CASES[case]
    token = hand_signed(private["RS256"], {"alg": "RS256", "typ": "JWT", "kid": "rsa1"},
                        claims(**changes))
    assert refused(pem_access, token) == reason
    # And an HS256 access says the same about the same claims: one code path.
    ring = KeyRing.generate("k1")
    hs = JWTAccess(ring, issuer=ISS, audience=AUD)
    assert refused(hs, hmac_token(ring.secret("k1"), "k1", claims(**changes))) == reason


def test_the_principal_expires_with_the_token(pem_access, private):
    principal = pem_access.verify(sign(private, "ES256", "ec1"))
    assert principal.expires == principal.claims["exp"] + pem_access.leeway


FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(alg=st.sampled_from(["RS256", "ES256", "EdDSA", "HS256", "none", "PS256", None, 5]),
       kid=st.sampled_from(["rsa1", "ec1", "ed1", "x", None]),
       signature=st.binary(max_size=300))
def test_hand_made_tokens_with_public_kids_are_refused(pem_access, alg, kid, signature):
    header = {"alg": alg, "kid": kid}
    token = ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims()).encode()),
                      b64url(signature)])
    refused(pem_access, token)


# --- loading: what is refused ----------------------------------------------------------


@pytest.mark.parametrize(("make", "message"), [
    (lambda: ec.generate_private_key(ec.SECP384R1()).public_key(), "only P-256"),
    (lambda: ec.generate_private_key(ec.SECP256K1()).public_key(), "only P-256"),
    (lambda: ed448.Ed448PrivateKey.generate().public_key(), "only Ed25519"),
    (lambda: rsa.generate_private_key(65537, 1024).public_key(), "1024 bits is too short"),
], ids=["P-384", "secp256k1", "Ed448", "RSA-1024"])
def test_other_key_types_are_refused_when_loading(tmp_path, make, message):
    path = tmp_path / "odd.pem"
    path.write_bytes(pem(make()))
    with pytest.raises(ValueError, match=message) as caught:
        PublicKeys.from_pem_files([path])
    assert str(path) in str(caught.value)


def test_pem_files_that_are_not_one_public_key_are_refused(private, tmp_path):
    cases = {
        "private.pem": (private["EdDSA"].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()), "this is a private key"),
        "junk.pem": (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                     "not a PEM public key"),
        "bad kid!.pem": (pem(private["EdDSA"].public_key()), "the file name is the key id"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=message):
            PublicKeys.from_pem_files([tmp_path / name])
    with pytest.raises(ValueError, match="No such file"):
        PublicKeys.from_pem_files([tmp_path / "missing.pem"])
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "same.pem").write_bytes(pem(private["EdDSA"].public_key()))
    (tmp_path / "same.pem").write_bytes(pem(private["ES256"].public_key()))
    with pytest.raises(ValueError, match="already taken"):
        PublicKeys.from_pem_files([tmp_path / "a" / "same.pem", tmp_path / "same.pem"])


def test_jwks_keys_that_say_they_are_not_for_this_are_refused(private, tmp_path, caplog):
    rsa_pub, ec_pub = private["RS256"].public_key(), private["ES256"].public_key()
    ed_pub = private["EdDSA"].public_key()
    path = tmp_path / "jwks.json"
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    bad = {
        "enc": (jwk_of(rsa_pub, "RS256", "enc", use="enc"), "use is 'enc', not 'sig'"),
        "rs512": (jwk_of(rsa_pub, "RS256", "rs512", alg="RS512"),
                  "alg 'RS512' contradicts its key type, which pins RS256"),
        "ps256": (jwk_of(rsa_pub, "RS256", "ps256", alg="PS256"), "pins RS256"),
        "ec-as-rs": (jwk_of(ec_pub, "ES256", "ec-as-rs", alg="RS256"), "pins ES256"),
        "ops": (jwk_of(ed_pub, "EdDSA", "ops", key_ops=["encrypt"]), "key_ops"),
        "p384": (jwk_of(p384, "ES384", "p384"), "not RSA, EC P-256 or OKP Ed25519"),
        "oct": ({"kty": "oct", "kid": "oct", "k": b64url(b"s" * 32)}, "secret key material"),
        "private": ({**jwk_of(ed_pub, "EdDSA", "private"), "d": b64url(b"\0" * 32)},
                    "private or secret key material"),
        "broken": ({"kty": "EC", "crv": "P-256", "kid": "broken", "x": "AAAA", "y": "AAAA"},
                   "not a valid EC key"),
        "twice": (jwk_of(ed_pub, "EdDSA", "twice"), "appears more than once"),
    }
    good = jwk_of(ed_pub, "EdDSA", "good", use="sig", alg="EdDSA")
    caplog.set_level(logging.WARNING, logger="wsdemo.auth")
    write_jwks(path, good, *(jwk for jwk, _ in bad.values()), jwk_of(ec_pub, "ES256", "twice"))
    keys = PublicKeys.from_jwks_file(path)
    assert keys.kids == ["good"]
    assert set(keys.refused) == {f"{path}#{kid}" for kid in bad}
    for kid, (_, message) in bad.items():
        assert message in keys.refused[f"{path}#{kid}"], kid
        assert sum(f"{path}#{kid} refused" in r.getMessage() for r in caplog.records) == 1
    access = JWTAccess(public_keys=keys, issuer=ISS, audience=AUD)
    assert refused(access, sign(private, "RS256", "enc")) == "unknown key id"
    assert refused(access, jwt.encode(claims(), private["RS256"], algorithm="RS512",
                                      headers={"kid": "rs512"})) == "algorithm not allowed"
    assert refused(access, sign(private, "ES256", "twice")) == "unknown key id"
    assert access.verify(sign(private, "EdDSA", "good")).user == "ada"


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not JSON"),
    ('[{"kty": "RSA"}]', "not a JWK Set"),
    ('{"keys": []}', "no usable key"),
    ('{"keys": [{"kty": "oct", "kid": "a", "k": "c2VjcmV0"}]}', "a: it holds private"),
], ids=["not JSON", "a list", "no keys", "no usable key"])
def test_a_jwks_that_gives_no_key_is_refused_at_start(tmp_path, text, message):
    path = tmp_path / "jwks.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        PublicKeys.from_jwks_file(path)
    assert str(caught.value).startswith(f"JWKS {path}: ")


def test_construction_rules(private, pem_files, jwks_file, tmp_path):
    with pytest.raises(ValueError, match="needs keys"):
        JWTAccess()
    with pytest.raises(ValueError, match="no public key"):
        PublicKeys()
    with pytest.raises(ValueError, match="cannot read it"):
        PublicKeys.from_jwks_file(tmp_path / "absent.json")
    other = tmp_path / "other.json"
    write_jwks(other, jwk_of(private["EdDSA"].public_key(), "EdDSA", "ed1"))
    with pytest.raises(ValueError, match="'ed1' is already taken"):
        PublicKeys(pem_files=pem_files, jwks_files=[other])
    with pytest.raises(ValueError, match=r"key ids \['ed1'\] are both"):
        JWTAccess(KeyRing.generate("ed1"), public_keys=PublicKeys.from_pem_files(pem_files))


def test_verifying_only_means_no_token_is_issued_and_no_endpoint(pem_access):
    with pytest.raises(LookupError, match="needs an HS256 KeyRing"):
        pem_access.issue_token("ada", ADA)
    assert pem_access.http_handlers(server=None) == []
    pem_access.add_user("ada", "correct horse battery", ADA)
    with pytest.raises(LookupError, match="give JWTAccess an HS256 KeyRing"):
        pem_access.http_handlers(server=None)
    assert repr(pem_access) == ("<JWTAccess RS256,ES256,EdDSA public keys=['rsa1', 'ec1', "
                                "'ed1'] leeway=5s users: ada>")


# --- a JWKS file changes ----------------------------------------------------------------


class Clock:
    """A monotonic clock the test moves on."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rotating(private, tmp_path, monkeypatch):
    """A JWKS file with kid "a" (Ed25519), its keys on a clock the test holds, and a
    count of the times the file is looked at."""
    path = tmp_path / "jwks.json"
    write_jwks(path, jwk_of(private["EdDSA"].public_key(), "EdDSA", "a"))
    clock = Clock()
    keys = PublicKeys.from_jwks_file(path, clock=clock)
    looks = []
    real_stat = public_module._JWKSFile._stat

    def counted(self):
        looks.append(clock.now)
        return real_stat(self)

    monkeypatch.setattr(public_module._JWKSFile, "_stat", counted)
    access = JWTAccess(public_keys=keys, issuer=ISS, audience=AUD)
    return path, clock, keys, access, looks


def test_a_rotated_jwks_is_picked_up_on_the_verify_path(rotating, private):
    path, clock, keys, access, looks = rotating
    removed = []
    keys.watch_removals(removed.append)
    token_a = sign(private, "EdDSA", "a")
    token_b = sign(private, "ES256", "b")
    assert access.verify(token_a).credential == "a"
    write_jwks(path, jwk_of(private["ES256"].public_key(), "ES256", "b"))
    touch_forward(path)
    for _ in range(3):  # verifies within the interval never look at the file
        clock.now += 0.25  # exact in binary: 0.75 s after three steps
        for _ in range(20):
            assert refused(access, token_b) == "unknown key id"
    assert looks == []
    clock.now += 0.25  # 1 s since the last look
    assert access.verify(token_b).credential == "b"
    assert looks == [clock.now]
    assert refused(access, token_a) == "unknown key id"
    assert removed == ["a"]
    assert keys.kids == ["b"]


def test_a_jwks_rewritten_in_place_is_picked_up(rotating, private):
    path, clock, keys, access, _ = rotating
    path.write_text(json.dumps({"keys": [jwk_of(private["RS256"].public_key(), "RS256", "c")]}))
    touch_forward(path)
    clock.now += 1
    assert access.verify(sign(private, "RS256", "c")).credential == "c"


def test_a_broken_jwks_keeps_the_last_good_set_and_warns_once(rotating, private, caplog):
    path, clock, keys, access, looks = rotating
    caplog.set_level(logging.WARNING, logger="wsdemo.auth")
    token_a = sign(private, "EdDSA", "a")
    for broken in ("{half a docu", '{"keys": [{"kty": "RSA", "kid": "x", "use": "enc"}]}'):
        path.write_text(broken)
        touch_forward(path)
        caplog.clear()
        for _ in range(3):  # three looks at the same broken version
            clock.now += 1
            assert access.verify(token_a).credential == "a"
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1, warnings
        assert warnings[0].startswith(f"JWKS {path}: ")
        assert warnings[0].endswith("keeping the 1 keys loaded before")
    assert len(looks) == 6
    path.unlink()
    caplog.clear()
    for _ in range(2):
        clock.now += 1
        assert access.verify(token_a).credential == "a"
    assert [r.getMessage() for r in caplog.records] == [
        f"JWKS {path}: cannot read it; keeping the 1 keys loaded before"]
    write_jwks(path, jwk_of(private["ES256"].public_key(), "ES256", "b"))
    clock.now += 1
    assert access.verify(sign(private, "ES256", "b")).credential == "b"


def test_a_new_key_under_the_same_kid_ends_what_the_old_one_signed(rotating, private):
    path, clock, keys, access, _ = rotating
    removed = []
    keys.watch_removals(removed.append)
    old = sign(private, "EdDSA", "a")
    newer = ed25519.Ed25519PrivateKey.generate()
    write_jwks(path, jwk_of(newer.public_key(), "EdDSA", "a"))
    touch_forward(path)
    clock.now += 1
    assert refused(access, old) == "bad signature"
    assert removed == ["a"]
    fresh = jwt.encode(claims(), newer, algorithm="EdDSA", headers={"kid": "a"})
    assert access.verify(fresh).credential == "a"
    # The same document again (a new mtime, the same keys): nobody is told anything.
    write_jwks(path, jwk_of(newer.public_key(), "EdDSA", "a"))
    touch_forward(path, 20)
    clock.now += 1
    assert access.verify(fresh).credential == "a" and removed == ["a"]


async def test_rotation_with_the_real_clock(private, tmp_path):
    """Default interval, real time: poll the verify (bounded) until the new kid works."""
    path = tmp_path / "jwks.json"
    write_jwks(path, jwk_of(private["EdDSA"].public_key(), "EdDSA", "a"))
    access = JWTAccess(public_keys=PublicKeys.from_jwks_file(path), issuer=ISS, audience=AUD)
    write_jwks(path, jwk_of(private["ES256"].public_key(), "ES256", "b"))
    touch_forward(path)
    token_b = sign(private, "ES256", "b")
    start = time.monotonic()
    deadline = start + 10
    while True:
        try:
            principal = access.verify(token_b)
            break
        except InvalidToken as refusal:
            assert refusal.reason == "unknown key id"
            assert time.monotonic() < deadline, "the new JWKS was never picked up"
            await asyncio.sleep(0.05)
    assert principal.credential == "b"
    assert time.monotonic() - start < 5


# --- over a real connection ----------------------------------------------------------------


async def hello(server, token: str) -> tuple[dict | None, tuple[int, str] | None, object]:
    """Connect with the websockets client, say hello; the welcome, or how it closed."""
    ws = await ws_connect(server.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=5)
    await ws.send(json.dumps({"type": "hello", "token": token}))
    try:
        while True:  # a refusal may say "error ... closing" before the close frame
            answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if answer["type"] == "welcome":
                return answer, None, ws
    except ConnectionClosed:
        return None, (ws.close_code, ws.close_reason), ws


async def test_a_server_with_public_keys_only(private, pem_files, tmp_path, demo_widgets):
    jwks = tmp_path / "jwks.json"
    write_jwks(jwks, jwk_of(private["EdDSA"].public_key(), "EdDSA", "j1"))
    clock = Clock()
    keys = PublicKeys(pem_files=pem_files, jwks_files=[jwks], clock=clock)
    srv = ControlServer(port=0, access=JWTAccess(public_keys=keys, issuer=ISS, audience=AUD),
                        hello_timeout=2)
    srv.expose("speed", demo_widgets["speed"])
    srv.start()
    opened = []
    try:
        welcome, closed, ws = await hello(srv, sign(private, "RS256", "rsa1"))
        opened.append(ws)
        assert closed is None and (welcome["type"], welcome["user"]) == ("welcome", "ada")
        await ws.send(json.dumps({"type": "join", "room": "controls", "id": "j"}))
        joined = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert joined["type"] == "snapshot" and "speed" in joined["state"]

        confusion = hmac_token(pem_files[0].read_bytes(), "rsa1")
        welcome, closed, ws = await hello(srv, confusion)
        opened.append(ws)
        assert (welcome, closed) == (None, (4401, "algorithm not allowed"))
        first = opened[0]  # the RS256 session is unaffected: its set is applied
        await first.send(json.dumps({"type": "set", "room": "controls", "id": "s1",
                                     "target": "speed", "value": 3}))
        while (reply := json.loads(await asyncio.wait_for(first.recv(), 5)))["type"] != "ack":
            assert reply["type"] in ("presence", "event"), reply
        assert demo_widgets["speed"].value == 3

        # A kid that leaves the JWKS ends the session it opened, once the file is read.
        welcome, closed, from_jwks = await hello(srv, sign(private, "EdDSA", "j1"))
        opened.append(from_jwks)
        assert welcome["user"] == "ada"
        write_jwks(jwks, jwk_of(private["ES256"].public_key(), "ES256", "j2"))
        touch_forward(jwks)
        clock.now += 1
        welcome, closed, ws = await hello(srv, sign(private, "ES256", "j2"))
        opened.append(ws)
        assert welcome["user"] == "ada"
        await asyncio.wait_for(from_jwks.wait_closed(), 5)
        assert (from_jwks.close_code, from_jwks.close_reason) == (
            4401, "token revoked: its signing key was removed")
    finally:
        for ws in opened:
            await ws.close()
        await srv.stop()
