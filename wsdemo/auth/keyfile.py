"""HS256 keys in a file, for ``serve --secret-file``, ``keys new`` and ``token``.

The format is one key a line, ``kid:secret`` with the secret in base64url
(RFC 4648 §5, padding optional); a file holding one bare secret is the key
``k1``. Blank lines and ``#`` comments are skipped. The first key is current:
it signs new tokens, and every key in the file verifies. To rotate, put a new
line first; to revoke every token a key signed, delete its line (and restart).

A key file is a password: :func:`write_new_key_file` creates it with mode 0600
and refuses to overwrite one.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from .tokens import MIN_KEY_BYTES, KeyRing

__all__ = ["read_key_file", "write_new_key_file"]


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def read_key_file(path: str | Path) -> KeyRing:
    """The keys of a key file, the first one current; ``ValueError`` says what is wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"key file {path}: {exc.strerror or exc}") from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise ValueError(f"key file {path}: no key in it")
    ring = KeyRing()
    first = None
    for number, line in enumerate(lines, 1):
        kid, sep, secret = line.partition(":")
        if not sep:
            if len(lines) > 1:
                raise ValueError(f"key file {path}: line {number} has no 'kid:' in front")
            kid, secret = "k1", line
        try:
            key = _b64url(secret.strip())
        except ValueError:
            raise ValueError(f"key file {path}: key {kid!r} is not base64url") from None
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"key file {path}: key {kid!r} has {len(key)} bytes; an HS256 "
                             f"key needs at least {MIN_KEY_BYTES}")
        try:
            ring.add(kid.strip(), key, current=first is None)
        except ValueError as exc:
            raise ValueError(f"key file {path}: {exc}") from None
        first = first or kid
    return ring


def write_new_key_file(path: str | Path, kid: str = "k1") -> str:
    """Write a fresh 32-byte key as ``kid:secret``, mode 0600; returns the kid."""
    path = Path(path)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(MIN_KEY_BYTES)).rstrip(b"=").decode()
    KeyRing().add(kid, _b64url(secret))  # the kid is valid
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ValueError(f"{path} exists: a key file is never overwritten") from None
    except OSError as exc:
        raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w") as out:
        out.write(f"# wsdemo HS256 keys: kid:base64url-secret; the first signs\n{kid}:{secret}\n")
    return kid
