"""Bearer tokens on the wire: read `Authorization: Bearer <token>`, compare in constant time."""

from __future__ import annotations

import hmac

# The one name every service and the launcher use for each token (in the .env and the environment).
MANAGEMENT_TOKEN_VAR = "MODELFLEET_MANAGEMENT_TOKEN"
INFERENCE_TOKEN_VAR = "MODELFLEET_INFERENCE_TOKEN"


def presented_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header; None when absent or another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def token_matches(presented: str, expected: str | None) -> bool:
    """Constant-time in the token's content: a timing attack learns nothing about `expected`."""
    if expected is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def check_token(value: str | None) -> str | None:
    """A settings validator: unset or empty means no token; a set one must be hard to guess."""
    if not value:
        return None
    if len(value) < 16:
        raise ValueError("a token needs at least 16 characters (modelfleet up generates 43)")
    return value


def bearer_headers(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}
