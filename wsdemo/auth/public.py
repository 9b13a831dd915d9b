"""Public keys by key id, for tokens signed by an identity provider (RS256, ES256, EdDSA).

An identity provider signs its tokens with a private key and publishes the public
half, either as a PEM file or as a JWK Set (JWKS, RFC 7517 §5). The server needs
only the public half, so it can verify tokens but never make one::

    keys = PublicKeys.from_pem_files(["idp.pem"])        # kid "idp"
    keys = PublicKeys.from_jwks_file("jwks.json")         # kids from the document
    keys = PublicKeys(pem_files=["idp.pem"], jwks_files=["jwks.json"])
    access = JWTAccess(public_keys=keys)

The algorithm is pinned by the key's type, once, when the key is loaded:

=====================  ==========  ==============================
key                    ``alg``     specification
=====================  ==========  ==============================
RSA, ≥ 2048 bits       ``RS256``   RFC 7518 §3.3 (RSASSA-PKCS1-v1_5)
EC on P-256            ``ES256``   RFC 7518 §3.4
Ed25519                ``EdDSA``   RFC 8037 §3.1
=====================  ==========  ==============================

Anything else (another curve, Ed448, DSA, a short RSA key, a private key, a
certificate) is refused with a :class:`ValueError` saying what is wrong. A token
must name the algorithm its key pins; the token's ``alg`` never chooses how it is
checked (RFC 8725 §2.1, §3.1).

PEM files: one public key each (``-----BEGIN PUBLIC KEY-----``, or ``RSA PUBLIC
KEY``); the key id is the file's stem (``idp.pem`` → ``idp``). They are read once.

A JWKS file is re-read when it changes: on the verify path, at most once per
``check_interval`` seconds, a ``stat`` compares its modification time, size and
inode with the last read. Replace it atomically (write a new file, rename it over
the old one) so a reader never sees half a document. A document that cannot be
read keeps the keys loaded before it, and logs one warning per version of the
file. Inside a document, a key is refused (and its tokens get "unknown key id"),
with a warning that names it, when:

* ``use`` is present and is not ``"sig"`` (RFC 7517 §4.2), or ``key_ops`` is
  present without ``"verify"`` (§4.3): the provider says it is not for this;
* ``alg`` is present and is not the algorithm the key type pins (§4.4);
* its type or curve is not one of the three above, it holds private members
  (``d``, ...), or it is not a valid key;
* it has no ``kid``, or the ``kid`` appears twice (§4.5: then it cannot tell the
  keys apart), or another source already has it.

A document with no usable key at all is refused like one that is not JSON.
Nothing here fetches a URL: a JWKS reaches the server as a file, kept fresh by
whatever the operator uses to download it.

Imports no network and no Tornado: the verify path stays a few dictionary
look-ups and, once a second, one ``stat``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

__all__ = [
    "CHECK_INTERVAL",
    "MIN_RSA_BITS",
    "PUBLIC_ALGORITHMS",
    "PublicKey",
    "PublicKeys",
    "load_pem_file",
    "parse_jwks",
    "pinned_algorithm",
]

logger = logging.getLogger("wsdemo.auth")

PUBLIC_ALGORITHMS = ("RS256", "ES256", "EdDSA")
MIN_RSA_BITS = 2048  # RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used"
CHECK_INTERVAL = 1.0  # seconds between two looks at a JWKS file
MAX_PEM_BYTES = 64 * 1024
MAX_JWKS_BYTES = 1024 * 1024
# A PEM file's stem: the same rule as an HS256 key id.
_FILE_KID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A provider's kid: printable ASCII (some use base64 with + / =).
_JWK_KID = re.compile(r"[\x21-\x7e]{1,128}")
# RFC 7518 §6.2.2, §6.3.2, §6.4 and RFC 8037 §2: members that only a private key has.
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_BY_TYPE = {("RSA", None): "RS256", ("EC", "P-256"): "ES256", ("OKP", "Ed25519"): "EdDSA"}


@dataclass(frozen=True)
class PublicKey:
    """One verification key: its id, the one algorithm it accepts, where it came from."""

    kid: str
    algorithm: str
    key: Any = field(compare=False)  # a cryptography public key object
    source: str = field(compare=False)
    # The key itself (DER SubjectPublicKeyInfo): two loads of one key compare equal.
    der: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not self.der:
            der = self.key.public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
            object.__setattr__(self, "der", der)

    def __repr__(self) -> str:
        return f"<PublicKey {self.kid!r} {self.algorithm} from {self.source}>"


def pinned_algorithm(key: Any) -> str:
    """The one JWS algorithm a public key verifies, or ValueError for a key refused here."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"an RSA key of {key.key_size} bits is too short: RS256 needs "
                             f"at least {MIN_RSA_BITS} (RFC 7518 §3.3)")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ES256"
        raise ValueError(f"an EC key on curve {key.curve.name} is not accepted: only P-256 "
                         "(ES256)")
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, ed448.Ed448PublicKey):
        raise ValueError("an Ed448 key is not accepted: only Ed25519 (EdDSA)")
    raise ValueError(f"a {type(key).__name__} is not accepted: use RSA (RS256), "
                     "EC P-256 (ES256) or Ed25519 (EdDSA)")


# --- PEM files --------------------------------------------------------------------


def load_pem_file(path: str | os.PathLike[str]) -> PublicKey:
    """The public key in a PEM file, its kid the file's stem; ValueError says what is wrong."""
    path = Path(path)
    kid = path.stem
    if not _FILE_KID.fullmatch(kid):
        raise ValueError(f"public key {path}: the file name is the key id, and {kid!r} is not "
                         "1-64 characters of A-Z a-z 0-9 . _ -")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"public key {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_PEM_BYTES:
        raise ValueError(f"public key {path}: larger than {MAX_PEM_BYTES} bytes")
    if b"PRIVATE KEY-----" in data:
        raise ValueError(f"public key {path}: this is a private key; give the server only "
                         "the public key (openssl pkey -in KEY -pubout)")
    if b"-----BEGIN CERTIFICATE" in data:
        raise ValueError(f"public key {path}: this is a certificate; extract its public key "
                         "(openssl x509 -in CERT -pubkey -noout)")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError(f"public key {path}: not a PEM public key") from None
    try:
        algorithm = pinned_algorithm(key)
    except ValueError as exc:
        raise ValueError(f"public key {path}: {exc}") from None
    return PublicKey(kid, algorithm, key, str(path))


# --- JWK Sets ---------------------------------------------------------------------


def _shown(value: Any) -> str:
    # A member's value in a log line: short strings only, the rest described.
    if isinstance(value, str) and len(value) <= 32 and value.isprintable():
        return repr(value)
    return "not a short string"


def _key_from_jwk(jwk: Mapping[str, Any], source: str) -> PublicKey:
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not _JWK_KID.fullmatch(kid):
        raise ValueError("no kid of 1-128 printable characters")
    if "use" in jwk and jwk["use"] != "sig":
        raise ValueError(f"use is {_shown(jwk['use'])}, not 'sig'")
    ops = jwk.get("key_ops")
    if "key_ops" in jwk and not (isinstance(ops, list) and "verify" in ops):
        raise ValueError("key_ops does not include 'verify'")
    if any(member in jwk for member in _PRIVATE_MEMBERS):
        raise ValueError("it holds private or secret key material; publish only public keys")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    algorithm = None
    if kty == "RSA":
        algorithm = _BY_TYPE[("RSA", None)]
    elif isinstance(kty, str) and isinstance(crv, str):
        algorithm = _BY_TYPE.get((kty, crv))
    if algorithm is None:
        raise ValueError("key type is not RSA, EC P-256 or OKP Ed25519")
    if "alg" in jwk and jwk["alg"] != algorithm:
        raise ValueError(f"alg {_shown(jwk['alg'])} contradicts its key type, which pins "
                         f"{algorithm}")
    try:
        # The algorithm is ours, not the document's: PyJWK then builds the key only.
        key = jwt.PyJWK(dict(jwk), algorithm=algorithm).key
    except (jwt.PyJWTError, ValueError, TypeError):
        raise ValueError(f"not a valid {kty} key") from None
    if pinned_algorithm(key) != algorithm:  # also refuses RSA keys under 2048 bits
        raise ValueError(f"not a valid {kty} key")  # pragma: no cover - PyJWK built another
    return PublicKey(kid, algorithm, key, source)


def parse_jwks(text: str | bytes, source: str = "JWKS") -> tuple[dict[str, PublicKey],
                                                                  dict[str, str]]:
    """The usable keys of a JWKS document by kid, and the refused ones with the reason.

    ValueError if the document is not a JWK Set or has no usable key at all.
    """
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not a JWK Set: an object with a 'keys' list (RFC 7517 §5)")
    def name(number: int, entry: Any) -> str:
        kid = entry.get("kid") if isinstance(entry, dict) else None
        return kid if isinstance(kid, str) and _JWK_KID.fullmatch(kid) else f"#{number}"

    names = [name(number, entry) for number, entry in enumerate(entries)]
    counts = Counter(names)
    keys: dict[str, PublicKey] = {}
    refused: dict[str, str] = {}
    for kid, entry in zip(names, entries, strict=True):
        if counts[kid] > 1:
            refused[kid] = "this kid appears more than once (RFC 7517 §4.5)"
        elif not isinstance(entry, dict):
            refused[kid] = "not a JSON object"
        else:
            try:
                keys[kid] = _key_from_jwk(entry, f"{source}#{kid}")
            except ValueError as exc:
                refused[kid] = str(exc)
    if not keys:
        reasons = "; ".join(f"{kid}: {why}" for kid, why in refused.items()) or "empty"
        raise ValueError(f"no usable key ({reasons})")
    return keys, refused


class _JWKSFile:
    """One JWKS file and the keys of its last good version."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.keys: dict[str, PublicKey] = {}
        self.refused: dict[str, str] = {}
        self._stamp: tuple[int, ...] | None = None
        stamp = self._stat()
        if stamp is None:
            raise ValueError(f"JWKS {self.path}: cannot read it")
        self._read(stamp)  # ValueError at start: there is no last good set to keep

    def _stat(self) -> tuple[int, ...] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)

    def _read(self, stamp: tuple[int, ...]) -> None:
        # The stamp is recorded first: a version that fails is reported once, and
        # a write after this point changes the stamp, so it is read next time.
        self._stamp = stamp
        try:
            with self.path.open("rb") as file:
                data = file.read(MAX_JWKS_BYTES + 1)
        except OSError as exc:
            raise ValueError(f"JWKS {self.path}: {exc.strerror or exc}") from None
        if len(data) > MAX_JWKS_BYTES:
            raise ValueError(f"JWKS {self.path}: larger than {MAX_JWKS_BYTES} bytes")
        try:
            self.keys, self.refused = parse_jwks(data, str(self.path))
        except ValueError as exc:
            raise ValueError(f"JWKS {self.path}: {exc}") from None

    def check(self) -> bool:
        """Re-read the file if it changed; True if its keys changed."""
        stamp = self._stat()
        if stamp is None:
            if self._stamp is not None:
                logger.warning("JWKS %s: cannot read it; keeping the %d keys loaded before",
                               self.path, len(self.keys))
            self._stamp = None
            return False
        if stamp == self._stamp:
            return False
        before = self.keys
        try:
            self._read(stamp)
        except ValueError as exc:
            logger.warning("%s; keeping the %d keys loaded before", exc, len(self.keys))
            return False
        return self.keys != before


class Watchers:
    """Callbacks told when a key id leaves a set of keys; ``add`` returns the way to stop."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[str], None]] = []

    def add(self, callback: Callable[[str], None]) -> Callable[[], None]:
        self._callbacks.append(callback)

        def stop() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return stop

    def notify(self, kid: str) -> None:
        for callback in list(self._callbacks):
            callback(kid)

    def __len__(self) -> int:
        return len(self._callbacks)


class PublicKeys:
    """Verification keys by kid from PEM files and JWKS files (see the module docstring).

    ``check_interval`` is how often, at most, a JWKS file is looked at; ``clock``
    (monotonic seconds) is there so a test can move time on.
    """

    def __init__(
        self,
        *,
        pem_files: Iterable[str | os.PathLike[str]] = (),
        jwks_files: Iterable[str | os.PathLike[str]] = (),
        check_interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not (isinstance(check_interval, int | float) and math.isfinite(check_interval)
                and check_interval >= 0):
            raise ValueError("check_interval must be a number of seconds, 0 or more")
        self._fixed: dict[str, PublicKey] = {}
        for path in pem_files:
            key = load_pem_file(path)
            if key.kid in self._fixed:
                raise ValueError(f"public key {path}: key id {key.kid!r} is already taken by "
                                 f"{self._fixed[key.kid].source}")
            self._fixed[key.kid] = key
        self._files = [_JWKSFile(path) for path in jwks_files]
        self._interval = check_interval
        self._clock = clock
        self._checked = clock()
        self._removal_watchers = Watchers()
        self._keys: dict[str, PublicKey] = {}
        self.refused: dict[str, str] = {}
        self._merge(strict=True)
        if not self._keys:
            raise ValueError("no public key: give PEM files, JWKS files or both")

    @classmethod
    def from_pem_files(cls, paths: Iterable[str | os.PathLike[str]], **options: Any
                       ) -> PublicKeys:
        """Keys from PEM files, each file's stem its kid."""
        return cls(pem_files=paths, **options)

    @classmethod
    def from_jwks_file(cls, path: str | os.PathLike[str], **options: Any) -> PublicKeys:
        """Keys from a JWKS file, re-read when it changes."""
        return cls(jwks_files=[path], **options)

    def _merge(self, strict: bool = False) -> None:
        keys = dict(self._fixed)
        refused: dict[str, str] = {}
        for source in self._files:
            for kid, why in source.refused.items():
                refused[f"{source.path}#{kid}"] = why
            for kid, key in source.keys.items():
                if kid in keys:
                    if strict:
                        raise ValueError(f"JWKS {source.path}: key id {kid!r} is already "
                                         f"taken by {keys[kid].source}")
                    refused[f"{source.path}#{kid}"] = f"key id taken by {keys[kid].source}"
                    continue
                keys[kid] = key
        for where, why in refused.items():
            if why != self.refused.get(where):
                logger.warning("JWKS key %s refused: %s", where, why)
        # A kid whose key changed counts as removed too: what it signed no longer verifies.
        removed = [kid for kid in self._keys if keys.get(kid) != self._keys[kid]]
        added = [kid for kid in keys if self._keys.get(kid) != keys[kid]]
        if self._keys and (added or removed):
            logger.info("public keys: %s added, %s removed", added or "none", removed or "none")
        self._keys, self.refused = keys, refused
        for kid in removed:
            self._removal_watchers.notify(kid)

    def refresh(self, *, force: bool = False) -> None:
        """Look at the JWKS files if ``check_interval`` has passed (or ``force``)."""
        if not self._files:
            return
        now = self._clock()
        if not force and now - self._checked < self._interval:
            return
        self._checked = now
        if any([source.check() for source in self._files]):  # every file, not the first
            self._merge()

    def get(self, kid: str) -> PublicKey | None:
        """The key with this id, after a look at the JWKS files if one is due."""
        self.refresh()
        return self._keys.get(kid)

    def watch_removals(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """``callback(kid)`` when a kid leaves (a JWKS without it); returns the way to stop."""
        return self._removal_watchers.add(callback)

    @property
    def kids(self) -> list[str]:
        return list(self._keys)

    @property
    def algorithms(self) -> list[str]:
        """The algorithms the loaded keys pin, in the order of :data:`PUBLIC_ALGORITHMS`."""
        used = {key.algorithm for key in self._keys.values()}
        return [alg for alg in PUBLIC_ALGORITHMS if alg in used]

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __repr__(self) -> str:
        keys = ", ".join(f"{kid}={key.algorithm}" for kid, key in self._keys.items())
        files = "".join(f" jwks={str(source.path)!r}" for source in self._files)
        return f"<PublicKeys {keys}{files}>"
