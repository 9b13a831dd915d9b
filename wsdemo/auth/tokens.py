"""Who you are and what you may do: JWT tokens (PyJWT) for the control server.

The server's access hook (:mod:`wsdemo.core.access`) asks two questions; this module
answers them from a signed token that the client sends in its first message::

    keys = KeyRing.generate("k1")
    access = JWTAccess(keys)
    access.add_user("ada", "correct horse", {"controls": ["read", "set"], "*": ["read"]})
    server = ControlServer(access=access, allowed_origins=["https://course.example"])
    token = access.issue_token("ada", {"controls": ["read", "set"]}, ttl=600)
    client = await ControlClient.connect(server.ws_url, token=token)

Tokens
======

A token is a standard JWT (RFC 7519), so any JWT tool can read it. The ones this
module issues are signed with HMAC-SHA256 (``HS256``, RFC 7518 §3.2) with a
secret from a :class:`KeyRing`::

    header   {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    payload  {"sub": "ada", "iat": 1700000000, "exp": 1700000600,
              "iss": "wsdemo", "aud": "wsdemo.v1",
              "perm": {"controls": ["read", "set"], "*": ["read"]}}

``perm`` maps a room (or ``"*"``, every room) to the actions allowed there:
``read`` (join the room and receive its events), ``publish`` and ``set``.
Grants add up; nothing is ever denied by a grant. Times are whole seconds.

A token is *signed, not encrypted*: anyone holding it can read every claim.

Tokens from an identity provider are accepted too: signed with ``RS256``,
``ES256`` (P-256) or ``EdDSA`` (Ed25519) by the provider's private key, and
verified with its public keys, from PEM files or a JWKS file
(:class:`~wsdemo.auth.public.PublicKeys`)::

    access = JWTAccess(public_keys=PublicKeys.from_jwks_file("jwks.json"),
                       issuer="https://idp.example", audience="wsdemo.v1")

Such an access object verifies only; issuing a token (and ``POST /token``)
needs an HS256 :class:`KeyRing`. Both may be given: ``JWTAccess(ring,
public_keys=keys)``. Whatever signed it, a token goes through the same checks.

What :meth:`JWTAccess.verify` refuses, and why:

* an ``alg`` other than the one its key pins — a key verifies exactly one
  algorithm, decided when the key was loaded (an HS256 secret: ``HS256``; a
  public key: by its type, RSA → ``RS256``, P-256 → ``ES256``, Ed25519 →
  ``EdDSA``), never read from the token (RFC 8725 §2.1, §3.1). ``none`` would
  let anyone write their own token; and a verifier that let the token choose
  would check an ``HS256`` token whose HMAC secret is the *public* key's bytes,
  which everyone has ("algorithm confusion"). Here that token names a kid whose
  key pins ``RS256`` (or another asymmetric algorithm), so it is refused;
* a ``kid`` that is in neither the :class:`KeyRing` nor the public keys — a key
  is removed to retire it, and every token it signed stops working (a kid in
  both is refused as ambiguous);
* a bad signature, a wrong issuer or audience, a missing ``sub``/``iat``/``exp``;
* an expired token (``exp`` in the past by more than ``leeway`` seconds, a small
  allowance for clocks that disagree) — and a connection whose token expires
  while it is open is closed with 4401 by the server;
* a ``perm`` claim that is not a map of rooms to known actions.

Every refusal is an :class:`InvalidToken` (an :class:`~wsdemo.core.access.AccessDenied`,
so the server closes with 4401) whose reason is a fixed phrase: nothing from the
token, and never the token itself, reaches a log or a close frame.

The token endpoint
==================

:meth:`JWTAccess.http_handlers` adds ``POST /token`` to the server, for the
control page. It takes ``{"user": ..., "password": ...}`` as a JSON body (never
the URL: URLs end up in access logs, browser history and ``Referer``) and
answers ``{"token", "token_type", "expires_in", "user"}`` with
``Cache-Control: no-store``. The page keeps the token in a variable and sends
it in ``hello``. Passwords are kept as scrypt hashes.

Layering: token logic imports no Tornado; the endpoint, :mod:`wsdemo.auth.endpoint`,
is imported only when a server asks for its routes. PyJWT itself imports ``socket``/``ssl`` for
its JWKS client, which is never used: a JWKS is read from a file, never fetched here.

Why one file of this length: each rule of verification sits next to the reason it
exists; HS256 key files live in :mod:`wsdemo.auth.keyfile`, public keys in
:mod:`wsdemo.auth.public`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from ..core.access import ACTIONS, AccessDenied, Principal
from ..core.protocol import CloseCode, ProtocolError, check_value
from .public import PUBLIC_ALGORITHMS, PublicKeys, Watchers

__all__ = [
    "ALGORITHM",
    "AUDIENCE",
    "ISSUER",
    "InvalidToken",
    "JWTAccess",
    "KeyRing",
    "issue_token",
    "normalize_permissions",
]

logger = logging.getLogger("wsdemo.auth")

ALGORITHM = "HS256"  # what this module signs with; public keys pin their own
ISSUER = "wsdemo"
AUDIENCE = "wsdemo.v1"
DEFAULT_TTL = 15 * 60
DEFAULT_LEEWAY = 5.0
MIN_KEY_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash
MAX_TOKEN_CHARS = 8192  # far above any token issued here; refuse before parsing
_KID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ROOM = re.compile(r"\*|[^\x00-\x1f]{1,64}")

Permissions = Mapping[str, Iterable[str]]


class InvalidToken(AccessDenied):
    """A token was refused: the server closes the connection with 4401.

    ``reason`` is one of a few fixed phrases ("no token", "bad signature",
    "token expired", ...) so it is safe to log and to send in a close frame.
    """

    def __init__(self, reason: str):
        super().__init__(reason, CloseCode.BAD_TOKEN)


# --- keys ----------------------------------------------------------------------


class KeyRing:
    """HS256 secrets by key id (``kid``): one is current for signing, all verify.

    To rotate: :meth:`rotate` adds a new current key; tokens signed with the old
    one keep working until you :meth:`remove` it (wait at least the longest
    token lifetime, or remove it at once to revoke every token it signed).
    The secrets never appear in a ``repr``.
    """

    def __init__(self, keys: Mapping[str, bytes] | None = None, current: str | None = None):
        self._keys: dict[str, bytes] = {}
        self._current: str | None = None
        self._removal_watchers = Watchers()
        for kid, secret in (keys or {}).items():
            self.add(kid, secret, current=False)
        if current is not None:
            self.use(current)
        elif self._keys:
            self.use(next(reversed(self._keys)))

    @classmethod
    def generate(cls, kid: str = "k1") -> KeyRing:
        """A ring with one fresh random key."""
        ring = cls()
        ring.add(kid)
        return ring

    def add(self, kid: str, secret: bytes | None = None, *, current: bool = True) -> str:
        """Add a key (random if ``secret`` is None); it signs from now on if ``current``."""
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise ValueError("a key id is 1-64 characters of A-Z a-z 0-9 . _ -")
        if kid in self._keys:
            raise ValueError(f"key id {kid!r} is already in the ring")
        if secret is None:
            secret = secrets.token_bytes(MIN_KEY_BYTES)
        if not isinstance(secret, bytes) or len(secret) < MIN_KEY_BYTES:
            raise ValueError(f"an HS256 key must be at least {MIN_KEY_BYTES} bytes")
        self._keys[kid] = secret
        if current or self._current is None:
            self._current = kid
        return kid

    def rotate(self, kid: str, secret: bytes | None = None) -> str:
        """Add a new key and sign with it; the old keys still verify until removed."""
        return self.add(kid, secret, current=True)

    def use(self, kid: str) -> None:
        """Sign new tokens with ``kid`` (already in the ring)."""
        if kid not in self._keys:
            raise KeyError(kid)
        self._current = kid

    def remove(self, kid: str) -> None:
        """Retire a key: every token it signed is refused from now on."""
        if kid == self._current:
            raise ValueError(f"{kid!r} signs new tokens: rotate to another key first")
        del self._keys[kid]
        self._removal_watchers.notify(kid)

    def watch_removals(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(kid)`` whenever a key is removed; returns the way to stop."""
        return self._removal_watchers.add(callback)

    @property
    def current(self) -> str:
        if self._current is None:
            raise LookupError("the key ring is empty")
        return self._current

    @property
    def kids(self) -> list[str]:
        return list(self._keys)

    def secret(self, kid: str) -> bytes | None:
        return self._keys.get(kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __repr__(self) -> str:
        return f"<KeyRing current={self._current!r} kids={self.kids}>"


# --- permissions -----------------------------------------------------------------


def normalize_permissions(perm: Any) -> dict[str, frozenset[str]]:
    """``{room: [actions]}`` → ``{room: frozenset(actions)}``, or ValueError.

    Used both when issuing (a caller's mistake) and when verifying (a token
    that is signed but malformed), so the two agree on what is valid.
    """
    if not isinstance(perm, Mapping):
        raise ValueError("permissions must map rooms to lists of actions")
    result: dict[str, frozenset[str]] = {}
    for room, actions in perm.items():
        if not isinstance(room, str) or not _ROOM.fullmatch(room):
            raise ValueError("a room is a name of 1-64 characters, or '*'")
        # A list (JSON's only sequence), or a set/tuple from Python; a dict or a
        # string would iterate as something else than what it looks like.
        if not isinstance(actions, list | tuple | set | frozenset):
            raise ValueError(f"the actions for {room!r} must be a list")
        actions = list(actions)
        if not all(isinstance(a, str) and a in ACTIONS for a in actions):
            raise ValueError(f"actions are {', '.join(ACTIONS)}")
        result[room] = frozenset(actions)
    return result


def _claim_permissions(perm: Mapping[str, frozenset[str]]) -> dict[str, list[str]]:
    # Sorted, so the same grant always gives the same token bytes.
    return {room: sorted(perm[room]) for room in sorted(perm)}


# --- issuing ---------------------------------------------------------------------


def issue_token(
    user: str,
    permissions: Permissions,
    *,
    keys: KeyRing,
    ttl: float = DEFAULT_TTL,
    now: float | None = None,
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
) -> str:
    """A signed JWT for ``user`` with ``permissions``, valid for ``ttl`` seconds.

    ``now`` (a Unix time) fixes ``iat`` for examples whose output must not
    change from run to run; leave it out otherwise.
    """
    if not isinstance(user, str) or not user:
        raise ValueError("user must be a non-empty string")
    if not (isinstance(ttl, int | float) and math.isfinite(ttl) and ttl > 0):
        raise ValueError("ttl must be a positive number of seconds")
    perm = normalize_permissions(permissions)
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": user,
        "iat": issued,
        "exp": issued + max(1, int(ttl)),
        "iss": issuer,
        "aud": audience,
        "perm": _claim_permissions(perm),
    }
    kid = keys.current
    secret = keys.secret(kid)
    assert secret is not None
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": kid})


# --- verifying -------------------------------------------------------------------

# PyJWT's exceptions, in the words a client (and a log) may see.
_REASONS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.MissingRequiredClaimError, "missing claim"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
]


def _reason(error: Exception) -> str:
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    return "malformed token"


# --- passwords (for the token endpoint) ------------------------------------------

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


@dataclass(frozen=True)
class _Account:
    salt: bytes
    digest: bytes
    permissions: dict[str, frozenset[str]]

    def __repr__(self) -> str:  # the hash is not secret, but it is nobody's business
        return f"<account perm={_claim_permissions(self.permissions)}>"


def _hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)


SCRYPT_PARAMS = dict(_SCRYPT)  # what a stored hash was made with (RFC 7914)


def hash_password(password: str, salt: bytes | None = None) -> tuple[bytes, bytes]:
    """``(salt, scrypt digest)`` of ``password``, for a ``--users`` file."""
    if not isinstance(password, str) or not password:
        raise ValueError("password must be a non-empty string")
    salt = secrets.token_bytes(16) if salt is None else salt
    return salt, _hash_password(password, salt)


# --- the access object -----------------------------------------------------------


class JWTAccess:
    """The server's access hook, answered from JWTs (see the module docstring).

    ``keys`` (HS256 secrets, which also issue tokens) or ``public_keys`` (RS256,
    ES256, EdDSA from PEM or JWKS files, verify only), or both. ``leeway`` is the
    clock allowance in seconds; ``ttl`` the lifetime of the tokens the endpoint issues.
    """

    open = False

    def __init__(
        self,
        keys: KeyRing | None = None,
        *,
        public_keys: PublicKeys | None = None,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        leeway: float = DEFAULT_LEEWAY,
        ttl: float = DEFAULT_TTL,
    ):
        if keys is None and public_keys is None:
            raise ValueError("JWTAccess needs keys (an HS256 KeyRing), public_keys, or both")
        if keys is not None and not isinstance(keys, KeyRing):
            raise TypeError("keys must be a KeyRing")
        if public_keys is not None and not isinstance(public_keys, PublicKeys):
            raise TypeError("public_keys must be a PublicKeys")
        both = set(keys.kids if keys else ()) & set(public_keys.kids if public_keys else ())
        if both:
            raise ValueError(f"key ids {sorted(both)} are both an HS256 secret and a public "
                             "key: a kid must name one key")
        self.keys = keys
        self.public_keys = public_keys
        # The algorithms any key here could pin: a token naming another is refused at once.
        self._algorithms = ((ALGORITHM,) if keys is not None else ()) + (
            PUBLIC_ALGORITHMS if public_keys is not None else ())
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.ttl = ttl
        self._accounts: dict[str, _Account] = {}
        # Compared against when the user is unknown, so a wrong name costs as
        # long as a wrong password and the endpoint does not reveal who exists.
        salt = secrets.token_bytes(16)
        self._decoy = _Account(salt, _hash_password(secrets.token_hex(16), salt), {})

    # -- tokens

    def issue_token(self, user: str, permissions: Permissions, ttl: float | None = None, *,
                    now: float | None = None) -> str:
        """A token signed with the ring's current key (see :func:`issue_token`)."""
        if self.keys is None:
            raise LookupError("this JWTAccess only verifies (public keys): issuing a token "
                              "needs an HS256 KeyRing, JWTAccess(keys=...)")
        return issue_token(user, permissions, keys=self.keys,
                           ttl=self.ttl if ttl is None else ttl, now=now,
                           issuer=self.issuer, audience=self.audience)

    def verify(self, token: Any) -> Principal:
        """The principal a token names, or :class:`InvalidToken` — never another error.

        One path for every key: the key comes from the kid, the algorithm from
        the key, then the same claim checks whatever signed the token.
        """
        kid, algorithm, key = self._key_for(token)
        claims = self._claims(token, algorithm, key)
        return self._principal(claims, kid)

    def _key_for(self, token: Any) -> tuple[str, str, Any]:
        """The token's kid, the algorithm its key pins, and the key; or InvalidToken."""
        if token is None or token == "":
            raise InvalidToken("no token")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
            raise InvalidToken("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidToken("algorithm not allowed")  # none, HS512, PS256, ...
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("unknown key id")
        secret = self.keys.secret(kid) if self.keys is not None else None
        public = self.public_keys.get(kid) if self.public_keys is not None else None
        if secret is not None and public is not None:
            raise InvalidToken("ambiguous key id")  # a ring key added later under a taken kid
        if secret is not None:
            pinned, key = ALGORITHM, secret
        elif public is not None:
            pinned, key = public.algorithm, public.key
        else:
            raise InvalidToken("unknown key id")
        # Decided by the key, not by the token: an HS256 token naming a public key's
        # kid (an HMAC keyed with that public key) ends here.
        if alg != pinned:
            raise InvalidToken("algorithm not allowed")
        return kid, pinned, key

    def _claims(self, token: str, algorithm: str, key: Any) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["sub", "iat", "exp", "iss", "aud"],
                         "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(_reason(error)) from None
        except (ValueError, TypeError, OverflowError, RecursionError):
            raise InvalidToken("malformed token") from None

    def _principal(self, claims: dict[str, Any], kid: str) -> Principal:
        user, exp = claims.get("sub"), claims.get("exp")
        if not isinstance(user, str) or not user or len(user) > 64:
            raise InvalidToken("malformed token")
        if not isinstance(exp, int) or isinstance(exp, bool) or not 0 < exp < 2**53:
            raise InvalidToken("malformed token")  # exp = 10**400 is a bad token, not a fault
        try:
            check_value(user)  # the name goes into every member's presence: sendable
        except ProtocolError:
            raise InvalidToken("malformed token") from None
        try:
            permissions = normalize_permissions(claims.get("perm", {}))
        except ValueError:
            raise InvalidToken("malformed permissions") from None
        # The token is refused from exp + leeway on; the connection ends then too.
        return Principal(user=user, permissions=permissions, expires=exp + self.leeway,
                         claims=claims, credential=kid)

    # -- the server's questions

    def authenticate(self, hello: Any, origin: str | None) -> Principal:
        # The Origin was already checked at the upgrade (403); a token is bound
        # to a user, not to a page, so it is not consulted here.
        principal = self.verify(getattr(hello, "token", None))
        logger.info("authenticated %s", principal.user)
        return principal

    def watch_revocations(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """``callback(credential)`` when a signing key is removed (from the ring, or
        from a JWKS file): the server then ends the sessions whose token it signed.
        Returns the way to stop watching."""
        stops = [source.watch_removals(callback)
                 for source in (self.keys, self.public_keys) if source is not None]

        def stop() -> None:
            for each in stops:
                each()

        return stop

    def authorize(self, principal: Principal, action: str, room: str) -> bool:
        perm = principal.permissions
        return action in perm.get(room, ()) or action in perm.get("*", ())

    # -- accounts, for the token endpoint

    def add_user(self, user: str, password: str, permissions: Permissions) -> None:
        """Let ``user`` log in at ``POST /token`` with ``password``; tokens get ``permissions``."""
        if not isinstance(user, str) or not user or len(user) > 64:
            raise ValueError("user must be a string of 1-64 characters")
        if not isinstance(password, str) or not password:
            raise ValueError("password must be a non-empty string")
        salt = secrets.token_bytes(16)
        self._accounts[user] = _Account(salt, _hash_password(password, salt),
                                        normalize_permissions(permissions))

    def add_hashed_user(self, user: str, salt: bytes, digest: bytes,
                        permissions: Permissions) -> None:
        """:meth:`add_user` for a password already hashed (a ``--users`` file):
        ``digest`` is scrypt(password, ``salt``) with :data:`SCRYPT_PARAMS`."""
        if not isinstance(user, str) or not user or len(user) > 64:
            raise ValueError("user must be a string of 1-64 characters")
        if len(salt) < 16 or len(digest) != SCRYPT_PARAMS["dklen"]:
            raise ValueError("a password hash needs a salt of 16 bytes or more and a "
                             f"{SCRYPT_PARAMS['dklen']}-byte scrypt digest")
        self._accounts[user] = _Account(bytes(salt), bytes(digest),
                                        normalize_permissions(permissions))

    def check_password(self, user: str, password: str) -> dict[str, frozenset[str]] | None:
        """The user's permissions if the password is right, else None (same cost either way)."""
        account = self._accounts.get(user)
        candidate = _hash_password(password, (account or self._decoy).salt)
        if account is None:
            hmac.compare_digest(candidate, self._decoy.digest)
            return None
        return account.permissions if hmac.compare_digest(candidate, account.digest) else None

    def login(self, user: str, password: str) -> dict[str, Any] | None:
        """What ``POST /token`` answers for good credentials, or None."""
        permissions = self.check_password(user, password)
        if permissions is None:
            logger.info("token refused: bad credentials")
            return None
        token = self.issue_token(user, permissions)
        logger.info("token issued to %s for %g s", user, self.ttl)
        return {"token": token, "token_type": "Bearer", "expires_in": int(self.ttl),
                "user": user}

    def http_handlers(self, server: Any) -> list[tuple[str, Any, dict[str, Any]]]:
        """Routes the server adds to its application: ``POST /token`` (with HS256 keys)."""
        if self.keys is None:
            if self._accounts:
                raise LookupError("users log in at POST /token for an HS256 token: give "
                                  "JWTAccess an HS256 KeyRing (keys=...) too")
            return []  # verify only: tokens come from the identity provider
        from .endpoint import TokenHandler  # Tornado only when a server asks for routes

        return [(r"/token", TokenHandler, {"access": self, "server": server})]

    def __repr__(self) -> str:
        users = ", ".join(sorted(self._accounts)) or "none"
        parts = []
        if self.keys is not None:
            parts.append(f"{ALGORITHM} keys={self.keys.kids} current={self.keys.current!r}")
        if self.public_keys is not None:
            keys = self.public_keys
            parts.append(f"{','.join(keys.algorithms)} public keys={keys.kids}")
        return f"<JWTAccess {' '.join(parts)} leeway={self.leeway:g}s users: {users}>"
