"""The scope rules: which token opens what, and what each refusal says."""

from __future__ import annotations

import pytest

from wire.bearer import Forbidden, Scope, Tokens, Unauthorized

MANAGEMENT = "m" * 43
INFERENCE = "i" * 43


def _bearer(token: str) -> str:
    return f"Bearer {token}"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic " + MANAGEMENT, MANAGEMENT])
def test_a_missing_or_malformed_header_is_401(header: str | None) -> None:
    for scope in Scope:
        with pytest.raises(Unauthorized, match="needs a token"):
            Tokens(MANAGEMENT, INFERENCE).authorize(header, scope)


def test_wrong_tokens_are_401_and_scopes_are_403() -> None:
    tokens = Tokens(MANAGEMENT, INFERENCE)
    with pytest.raises(Unauthorized, match="invalid token"):
        tokens.authorize(_bearer(MANAGEMENT[:-1] + "x"), Scope.MANAGEMENT)
    with pytest.raises(Unauthorized, match="invalid token"):
        tokens.authorize(_bearer(INFERENCE + "x"), Scope.INFERENCE)
    with pytest.raises(Forbidden, match="does not allow management"):
        tokens.authorize(_bearer(INFERENCE), Scope.MANAGEMENT)
    tokens.authorize(_bearer(INFERENCE), Scope.INFERENCE)
    tokens.authorize(_bearer(MANAGEMENT), Scope.INFERENCE)  # management serves both
    tokens.authorize(f"bearer  {MANAGEMENT}", Scope.MANAGEMENT)  # the scheme is case-insensitive


def test_inference_is_open_without_an_inference_token_and_management_never_is() -> None:
    Tokens(MANAGEMENT, None).authorize(None, Scope.INFERENCE)
    with pytest.raises(Unauthorized, match="management is disabled"):
        Tokens(None, None).authorize(_bearer(MANAGEMENT), Scope.MANAGEMENT)
