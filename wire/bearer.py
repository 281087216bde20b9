"""Bearer tokens, for both services: who may do what, read from `Authorization: Bearer <token>` and
compared in constant time.

Management (deploy, delete, activate, rollback, load/unload, node control, the internal routes of the
inferrer and of every node) needs the management token; with none configured, management is refused.
Inference and model reads need the inference token when one is configured; the management token
serves both. A node knows only the management token: its one protected scope is management.

Each scope has its own bearer scheme in the OpenAPI document (`managementToken`, `inferenceToken`);
with no inference token configured, inference routes take any request, so they declare none.
"""

from __future__ import annotations

import hmac
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from wire.errors import ServiceError
from wire.openapi import Amendment

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


def token_file_var(var: str) -> str:
    """The variable naming a file that holds a token (a Docker or Kubernetes secret): `<VAR>_FILE`."""
    return f"{var}_FILE"


def token_from_file(token: str | None, path: Path | None) -> str | None:
    """`token` when set; else the content of `path` (a mounted secret), trimmed and checked."""
    if token or path is None:
        return token
    try:
        content = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not content:
        raise ValueError(f"the token file {path} is empty")
    return check_token(content)


def bearer_headers(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


class Scope(Enum):
    INFERENCE = "inference"
    MANAGEMENT = "management"


class Unauthorized(ServiceError):
    status_code = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class Forbidden(ServiceError):
    status_code = 403


class Tokens:
    def __init__(self, management: str | None, inference: str | None) -> None:
        self._management = management
        self._inference = inference

    @property
    def inference_required(self) -> bool:
        """Whether inference needs a token: only when an inference token is configured."""
        return self._inference is not None

    def authorize(self, authorization: str | None, scope: Scope) -> None:
        if scope is Scope.INFERENCE and self._inference is None:
            return
        token = presented_token(authorization)
        if token is None:
            raise Unauthorized(f"{scope.value} needs a token: send 'Authorization: Bearer <token>'")
        # Both comparisons always run, so timing does not tell which token was close.
        is_management = token_matches(token, self._management)
        is_inference = token_matches(token, self._inference)
        if is_management or (is_inference and scope is Scope.INFERENCE):
            return
        if is_inference:
            raise Forbidden("the inference token does not allow management: use the management token")
        if scope is Scope.MANAGEMENT and self._management is None:
            raise Unauthorized(f"management is disabled: no {MANAGEMENT_TOKEN_VAR} is configured")
        raise Unauthorized("invalid token")


def authorize(request: Request, scope: Scope) -> None:
    """Check a request against the app's tokens (`app.state.tokens`); the hot routes call it directly."""
    tokens: Tokens = request.app.state.tokens
    tokens.authorize(request.headers.get("authorization"), scope)


# Declare each scope's scheme in the OpenAPI document; `_require` checks the token itself.
_SCHEMES = {
    Scope.MANAGEMENT: HTTPBearer(
        auto_error=False,
        scheme_name="managementToken",
        description=f"The management token ({MANAGEMENT_TOKEN_VAR}); with none configured, refused.",
    ),
    Scope.INFERENCE: HTTPBearer(
        auto_error=False,
        scheme_name="inferenceToken",
        description=f"The inference token ({INFERENCE_TOKEN_VAR}) or the management token.",
    ),
}


def _require(scope: Scope) -> Any:
    # A default, not an Annotated hint: FastAPI resolves hints in the module's globals.
    declared: Any = Depends(_SCHEMES[scope])

    async def check(request: Request, _: HTTPAuthorizationCredentials | None = declared) -> None:
        authorize(request, scope)

    return Depends(check)


def document_tokens(tokens: Tokens) -> Amendment:
    """The document says what the configured tokens require: with no inference token configured,
    inference routes answer without one (an Authorization header is not even read), so they
    declare no security and the inference scheme goes."""
    inference = _SCHEMES[Scope.INFERENCE].scheme_name

    def amend(document: dict[str, Any]) -> None:
        if tokens.inference_required:
            return
        for path_item in document.get("paths", {}).values():
            for operation in path_item.values():
                security = [s for s in operation.get("security", []) if inference not in s]
                if security:
                    operation["security"] = security
                else:
                    operation.pop("security", None)
        schemes = document.get("components", {}).get("securitySchemes", {})
        schemes.pop(inference, None)

    return amend


MANAGEMENT = _require(Scope.MANAGEMENT)
INFERENCE = _require(Scope.INFERENCE)
