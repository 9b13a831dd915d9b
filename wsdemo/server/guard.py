"""What the server checks before any handler runs: the Host it was asked for, how
many connections one address holds, how often one address may try a password.

**Host** (DNS rebinding). A page on ``http://evil.example:8765`` whose name the
attacker re-points at ``127.0.0.1`` after it loads is, to the browser, same-origin
with itself: its WebSocket carries ``Origin: http://evil.example:8765`` *and*
``Host: evil.example:8765``, so Tornado's same-host rule ("Origin matches Host")
lets it in. What gives it away is the Host: a name this server was never given.
So every request — the upgrade, the page, ``/status``, ``/token`` — must name a
host the server answers to, or gets 403 before its handler runs:

* a loopback name (``localhost``, ``*.localhost`` — RFC 6761 §6.3 keeps those on
  the machine) or any IP literal (an address cannot be re-pointed; a page served
  from an address is the server's own page);
* the name it listens on (``--host``), and every ``--public-name``.

Behind jupyter-server-proxy (``JUPYTERHUB_SERVICE_PREFIX`` set) on a loopback
address, the Host is the Jupyter server's, which it checks itself
(``ServerApp.allow_remote_access`` / ``local_hostnames``) before proxying; then
the server accepts it.

**Connections per address** and **logins per address** are counters kept here;
the session and the token endpoint consult them.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from typing import Any

import tornado.web

from ..core.limits import TokenBucket

__all__ = ["AddressCounter", "GuardedApplication", "HostCheck", "LoginLimiter", "host_name"]


def host_name(host_header: str) -> str | None:
    """The name part of a ``Host`` header, lower-cased, or None if it is not one.

    ``example.org:8765`` → ``example.org``; ``[::1]:8765`` → ``::1``; a trailing dot
    (``localhost.``, the same name to DNS) is dropped.
    """
    host = host_header.strip().lower()
    if not host or any(c.isspace() for c in host) or "@" in host or "/" in host:
        return None
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name or None
    name, sep, port = host.partition(":")
    if sep and not port.isdigit():
        return None
    name = name.rstrip(".")
    return name or None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


class HostCheck:
    """Which ``Host`` headers the server answers (see the module docstring)."""

    def __init__(self, bound_host: str, public_names: Iterable[str] = (),
                 behind_jupyter_proxy: bool | None = None):
        names = {n.lower().rstrip(".") for n in public_names}
        if not _wildcard(bound_host):
            names.add(bound_host.lower().strip("[]"))
        self.names = frozenset(names)
        if behind_jupyter_proxy is None:
            behind_jupyter_proxy = bool(os.environ.get("JUPYTERHUB_SERVICE_PREFIX"))
        loopback_only = bound_host == "localhost" or (
            _is_ip(bound_host) and ipaddress.ip_address(bound_host).is_loopback)
        # Only the Jupyter server can reach a loopback server on a hub; it has
        # checked the Host already.
        self.any_host = behind_jupyter_proxy and loopback_only

    def allows(self, host_header: str | None) -> bool:
        if self.any_host:
            return True
        name = host_name(host_header or "")
        if name is None:
            return False
        return (name in self.names or name == "localhost" or name.endswith(".localhost")
                or _is_ip(name))


class _WrongHost(tornado.web.RequestHandler):
    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish("this server does not answer to that host name (see serve --public-name)\n")


class GuardedApplication(tornado.web.Application):
    """A Tornado application that refuses an unknown Host before routing (403)."""

    def __init__(self, handlers: list[Any], *, host_check: HostCheck, **settings: Any):
        super().__init__(handlers, **settings)
        self.host_check = host_check

    def find_handler(self, request: Any, **kwargs: Any) -> Any:
        if not self.host_check.allows(request.headers.get("Host")):
            return self.get_handler_delegate(request, _WrongHost)
        return super().find_handler(request, **kwargs)


class AddressCounter:
    """Connections held per client address, against a limit (None: no limit)."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self._held: dict[str, int] = {}

    def take(self, address: str) -> bool:
        """Count one more connection from ``address``; False (and nothing counted) if full."""
        held = self._held.get(address, 0)
        if self.limit is not None and held >= self.limit:
            return False
        self._held[address] = held + 1
        return True

    def give_back(self, address: str) -> None:
        held = self._held.get(address, 0) - 1
        if held > 0:
            self._held[address] = held
        else:
            self._held.pop(address, None)

    def held(self, address: str) -> int:
        return self._held.get(address, 0)


class LoginLimiter:
    """Password attempts per client address: a token bucket each (``per_minute``,
    bursts of ``burst``). Buckets that are full again are forgotten, so a flood of
    addresses costs memory only while it lasts."""

    def __init__(self, per_minute: float, burst: int = 5, max_addresses: int = 100_000):
        if per_minute <= 0 or burst < 1:
            raise ValueError("a login limit needs a positive rate and a burst of at least 1")
        self.rate = per_minute / 60.0
        self.burst = burst
        self.max_addresses = max_addresses
        self._buckets: dict[str, TokenBucket] = {}

    def attempt(self, address: str, now: float) -> float:
        """0.0 if ``address`` may try now (the try is counted), else seconds to wait."""
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.max_addresses:
                self._forget_full(now)
            if len(self._buckets) >= self.max_addresses:
                return 60.0  # under a flood of addresses: nobody new for a while
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst, now)
        if bucket.take(now):
            return 0.0
        return bucket.wait(now)

    def _forget_full(self, now: float) -> None:
        for address, bucket in list(self._buckets.items()):
            if bucket.full(now):
                del self._buckets[address]
