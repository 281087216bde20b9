"""The scope rules: which token opens what, and what each refusal says."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from inferrer.settings import InferrerSettings
from modelhost.settings import ModelhostSettings
from wire.bearer import (
    INFERENCE_TOKEN_VAR,
    MANAGEMENT_TOKEN_VAR,
    Forbidden,
    Scope,
    Tokens,
    Unauthorized,
    token_file_var,
)

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


def test_tokens_come_from_secret_files_when_not_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Swarm and Kubernetes mount secrets as files: `<VAR>_FILE` names one (never an env value)."""
    for var in (MANAGEMENT_TOKEN_VAR, INFERENCE_TOKEN_VAR):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "management").write_text(MANAGEMENT + "\n")
    (tmp_path / "inference").write_text(INFERENCE)
    monkeypatch.setenv(token_file_var(MANAGEMENT_TOKEN_VAR), str(tmp_path / "management"))
    monkeypatch.setenv(token_file_var(INFERENCE_TOKEN_VAR), str(tmp_path / "inference"))
    gateway = InferrerSettings()
    assert (gateway.management_token, gateway.inference_token) == (MANAGEMENT, INFERENCE)
    assert ModelhostSettings().management_token == MANAGEMENT
    monkeypatch.setenv(MANAGEMENT_TOKEN_VAR, "s" * 20)  # a token set itself wins over its file
    assert ModelhostSettings().management_token == "s" * 20


@pytest.mark.parametrize(("content", "why"), [(None, "cannot read"), ("\n", "is empty"), ("short", "16")])
def test_a_missing_empty_or_weak_token_file_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, why: str
) -> None:
    monkeypatch.delenv(MANAGEMENT_TOKEN_VAR, raising=False)
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv(token_file_var(MANAGEMENT_TOKEN_VAR), str(path))
    with pytest.raises(ValidationError, match=why):
        ModelhostSettings()
