"""Accounts for ``POST /token`` in a file, for ``serve --users`` and ``users add``.

The file is JSON, written by ``python -m wsdemo users add PATH NAME`` (mode 0600)::

    {"scrypt": {"n": 16384, "r": 8, "p": 1, "dklen": 32},
     "users": {"ada": {"salt": "<base64url>", "hash": "<base64url>",
                       "perm": {"controls": ["read", "set"], "*": ["read"]}}}}

Only scrypt hashes are kept (RFC 7914; the parameters of
:data:`wsdemo.auth.tokens.SCRYPT_PARAMS`, stated in the file so that a file made
with others is refused instead of never matching). The hash is not a secret
the way a key is, but it lets anyone who reads it guess passwords offline at
their own pace: the file is private, like a key file.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from .tokens import SCRYPT_PARAMS, JWTAccess, Permissions, hash_password, normalize_permissions

__all__ = ["add_user_to_file", "load_users_file", "read_users_file"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def read_users_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{name: {"salt": bytes, "hash": bytes, "perm": {...}}}``; ValueError says what is wrong."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"users file {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ValueError(f"users file {path}: not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("users"), dict):
        raise ValueError(f"users file {path}: no \"users\" in it (make one with 'users add')")
    if document.get("scrypt") != SCRYPT_PARAMS:
        raise ValueError(f"users file {path}: hashes made with other scrypt parameters "
                         f"than {SCRYPT_PARAMS}")
    users = {}
    for name, entry in document["users"].items():
        try:
            users[name] = {"salt": _unb64(entry["salt"]), "hash": _unb64(entry["hash"]),
                           "perm": normalize_permissions(entry.get("perm", {}))}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"users file {path}: user {name!r}: {exc}") from None
    return users


def load_users_file(path: str | Path, access: JWTAccess) -> list[str]:
    """Let every user of the file log in at ``access``'s ``/token``; returns their names."""
    users = read_users_file(path)
    for name, entry in users.items():
        try:
            access.add_hashed_user(name, entry["salt"], entry["hash"], entry["perm"])
        except ValueError as exc:
            raise ValueError(f"users file {path}: user {name!r}: {exc}") from None
    return sorted(users)


def add_user_to_file(path: str | Path, name: str, password: str,
                     permissions: Permissions) -> bool:
    """Add (or replace) ``name`` in the file, made mode 0600 if new; True if it replaced one."""
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or any(
            ord(c) < 0x20 for c in name):
        raise ValueError("a user name is 1-64 characters, no control characters")
    perm = normalize_permissions(permissions)
    path = Path(path)
    if path.exists():
        read_users_file(path)  # refuse to rewrite a file that is not ours
        document = json.loads(path.read_text())
    else:
        document = {"scrypt": SCRYPT_PARAMS, "users": {}}
    salt, digest = hash_password(password)
    replaced = name in document["users"]
    document["users"][name] = {"salt": _b64(salt), "hash": _b64(digest),
                               "perm": {room: sorted(perm[room]) for room in sorted(perm)}}
    text = json.dumps(document, indent=1, sort_keys=True) + "\n"
    # Written next to it and renamed: a crash never leaves half a file, and the
    # new file is 0600 from its first byte.
    temporary = path.with_name(path.name + ".new")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except OSError as exc:
        raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from None
    return replaced
