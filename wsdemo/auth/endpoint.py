"""``POST /token``: a user name and password in, a signed token out (Tornado).

Kept apart from :mod:`wsdemo.auth.tokens` so that token logic imports no Tornado;
the server adds this route when its access object offers it
(:meth:`~wsdemo.auth.tokens.JWTAccess.http_handlers`).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any
from urllib.parse import urlsplit

import tornado.web

__all__ = ["MAX_LOGIN_BYTES", "TokenHandler"]

MAX_LOGIN_BYTES = 4096


class TokenHandler(tornado.web.RequestHandler):
    """``POST /token`` with ``{"user", "password"}`` as JSON → ``{"token", ...}``."""

    def initialize(self, access: Any, server: Any) -> None:
        self.access = access
        self.server = server

    def set_default_headers(self) -> None:
        # A token must not be kept by a cache or a proxy.
        self.set_header("Cache-Control", "no-store")
        self.set_header("Pragma", "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")

    async def post(self) -> None:
        if self.request.query:
            # Refused even when the body is right: a URL with a password or
            # a token in it has already been written to some log.
            return self._refuse(400, "send credentials in the body, never in the URL")
        origin = self.request.headers.get("Origin")
        host = self.request.headers.get("Host", "")
        if origin is not None and not _same_origin(origin, host) and not (
            self.server.origin_allowed(origin, host)
        ):
            return self._refuse(403, "origin not allowed")
        # JSON only: a cross-site form cannot send it without a CORS
        # preflight, which this server never approves.
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            return self._refuse(415, "send JSON (Content-Type: application/json)")
        body = self.request.body
        if len(body) > MAX_LOGIN_BYTES:
            return self._refuse(413, "request too large")
        try:
            login = json.loads(body)
        except (ValueError, RecursionError):
            return self._refuse(400, "the body is not JSON")
        if not isinstance(login, dict) or not all(
            isinstance(login.get(k), str) and login.get(k) for k in ("user", "password")
        ):
            return self._refuse(400, "send {\"user\": ..., \"password\": ...}")
        # Counted before the password is looked at: guessing costs attempts.
        limiter = getattr(self.server, "logins", None)
        if limiter is not None:
            wait = limiter.attempt(self.request.remote_ip or "", time.monotonic())
            if wait:
                self.set_header("Retry-After", str(max(1, math.ceil(wait))))
                return self._refuse(429, "too many login attempts; try again later")
        # scrypt takes tens of milliseconds of CPU on purpose: on the event loop it
        # would hold up every client's messages, so it runs in a thread.
        answer = await asyncio.get_running_loop().run_in_executor(
            None, self.access.login, login["user"], login["password"])
        if answer is None:
            return self._refuse(401, "wrong user or password")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(answer))

    def _refuse(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": message}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Tornado's own refusals (405 for GET, 500) in the same JSON shape,
        # and without a traceback even in debug mode.
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": self._reason}))


def _same_origin(origin: str, host: str) -> bool:
    # The rule Tornado applies to WebSocket upgrades: the page came from here.
    return bool(host) and urlsplit(origin).netloc.lower() == host.lower()
