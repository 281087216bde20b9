"""Who may do what: a management token for changes to the fleet, an optional inference token.

Management (deploy, delete, activate, rollback, load/unload, node control, the nodes' internal
routes) needs the management token; with none configured, management is refused. Inference and
model reads need the inference token when one is configured; the management token serves both.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, ClassVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from inferrer.errors import InferrerError
from wire.bearer import MANAGEMENT_TOKEN_VAR, presented_token, token_matches


class Scope(Enum):
    INFERENCE = "inference"
    MANAGEMENT = "management"


class Unauthorized(InferrerError):
    status_code = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class Forbidden(InferrerError):
    status_code = 403


class Tokens:
    def __init__(self, management: str | None, inference: str | None) -> None:
        self._management = management
        self._inference = inference

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


def tokens(request: Request) -> Tokens:
    value: Tokens = request.app.state.tokens
    return value


_bearer = HTTPBearer(auto_error=False)  # declares the scheme in the OpenAPI document


def _require(scope: Scope) -> Any:
    async def check(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        tokens(request).authorize(request.headers.get("authorization"), scope)

    return Depends(check)


MANAGEMENT = _require(Scope.MANAGEMENT)
INFERENCE = _require(Scope.INFERENCE)
