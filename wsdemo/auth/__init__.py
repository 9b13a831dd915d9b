"""Authentication for the control server: signed tokens (JWT) and the ``/token`` endpoint.

The access *hook* the server calls is sans-I/O (:mod:`wsdemo.core.access`); this
folder answers it from credentials (:mod:`~wsdemo.auth.tokens`).
"""

from .tokens import (
    ALGORITHM,
    AUDIENCE,
    ISSUER,
    InvalidToken,
    JWTAccess,
    KeyRing,
    issue_token,
    normalize_permissions,
)

__all__ = ["ALGORITHM", "AUDIENCE", "ISSUER", "InvalidToken", "JWTAccess", "KeyRing",
           "issue_token", "normalize_permissions"]
