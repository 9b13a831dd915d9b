"""Authentication for the control server: signed tokens (JWT) and the ``/token`` endpoint.

The access *hook* the server calls is sans-I/O (:mod:`wsdemo.core.access`); this
folder answers it from credentials: HS256 secrets (:mod:`~wsdemo.auth.tokens`) and an
identity provider's public keys (:mod:`~wsdemo.auth.public`).
"""

from .public import PUBLIC_ALGORITHMS, PublicKey, PublicKeys
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

__all__ = ["ALGORITHM", "AUDIENCE", "ISSUER", "PUBLIC_ALGORITHMS", "InvalidToken", "JWTAccess",
           "KeyRing", "PublicKey", "PublicKeys", "issue_token", "normalize_permissions"]
