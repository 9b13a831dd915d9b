"""Who may do what: the server's access hook, and open mode.

Sans-I/O. The server asks its ``access`` object two questions:

* ``authenticate(hello, origin) -> Principal`` when ``hello`` arrives — raise
  :class:`AccessDenied` (close code 4401) to refuse the connection;
* ``authorize(principal, action, room) -> bool`` on every ``join`` (action
  ``"read"``), ``publish`` and ``set`` — False closes the connection with 4403.

An access object may also have ``http_handlers(server) -> list`` of Tornado
routes, added to the server's application (a token endpoint, for example).

A principal with ``expires`` (a Unix time) is disconnected with 4401 when
that time passes, even in the middle of a session.

:class:`OpenAccess` is the default for the first lessons: nobody is
authenticated and everybody may do everything. It says so loudly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from .protocol import CloseCode

__all__ = ["ACTIONS", "AccessDenied", "Access", "OpenAccess", "Principal"]

logger = logging.getLogger("wsdemo.access")

# admin: may read the server's /status (granted on "*"; it still lists only the rooms
# the same principal may read).
ACTIONS = ("read", "publish", "set", "admin")


@dataclass(frozen=True)
class Principal:
    """An authenticated (or, in open mode, merely claimed) user."""

    user: str
    permissions: dict[str, frozenset[str]] = field(default_factory=dict)  # room -> actions
    expires: float | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False)
    # What vouched for it (a JWT's signing key id): revoking that ends its sessions.
    credential: str | None = field(default=None, compare=False)


class AccessDenied(Exception):
    """Refuse the connection: closed with ``close_code`` (4401 by default)."""

    def __init__(self, reason: str, close_code: CloseCode = CloseCode.BAD_TOKEN):
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code


class Access(Protocol):
    open: bool

    def authenticate(self, hello: Any, origin: str | None) -> Principal: ...

    def authorize(self, principal: Principal, action: str, room: str) -> bool: ...


class OpenAccess:
    """No authentication, no authorization: anyone who connects may do anything."""

    open = True
    _warned = False

    def authenticate(self, hello: Any, origin: str | None) -> Principal:
        if not OpenAccess._warned:
            logger.warning("OPEN MODE: no authentication — anyone who can connect may act")
            OpenAccess._warned = True
        # The name is only the client's claim: nothing checks it.
        return Principal(user=getattr(hello, "client", None) or "anonymous")

    def authorize(self, principal: Principal, action: str, room: str) -> bool:
        return True
