"""The fleet's bearer tokens, kept in the same .env as the topology (which git ignores).

Secure by default: the first `modelfleet up` (or `render`) writes a fresh management token there.
An inference token is optional: set MODELFLEET_INFERENCE_TOKEN in the .env to require one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from dotenv import dotenv_values

from datafiles.locations import S3_VARIABLES
from deploy.serve_command import env_name
from inferrer.settings import InferrerSettings
from wire.bearer import INFERENCE_TOKEN_VAR, MANAGEMENT_TOKEN_VAR, bearer_headers
from wire.tracing_settings import TRACING_VARIABLES

# Past one gateway: where every gateway keeps the repository's index, its model files, and the jobs.
SHARED_STORE_VARIABLES = tuple(
    env_name(InferrerSettings, field)
    for field in ("repository_db_url", "repository_artifacts_url", "jobs_db_url")
)


def ensure_management_token(env_file: Path) -> str | None:
    """Write a management token into the .env unless it has one; returns the new token, if any."""
    if dotenv_values(env_file).get(MANAGEMENT_TOKEN_VAR):
        return None
    return ensure_secret(env_file, MANAGEMENT_TOKEN_VAR, "Bearer token for management calls")


def ensure_secret(env_file: Path, variable: str, what: str) -> str:
    """The .env's value of `variable`, or a fresh secret written there (the file made owner-only)."""
    if value := dotenv_values(env_file).get(variable):
        return value
    secret = secrets.token_urlsafe(32)
    text = env_file.read_text()
    separator = "" if not text or text.endswith("\n") else "\n"
    env_file.write_text(f"{text}{separator}\n# {what} (generated).\n{variable}={secret}\n")
    os.chmod(env_file, 0o600)
    return secret


def service_tokens(env_file: Path) -> dict[str, str]:
    """The tokens set in the .env, by variable name: what every service gets in its environment."""
    values = dotenv_values(env_file)
    return {var: value for var in (MANAGEMENT_TOKEN_VAR, INFERENCE_TOKEN_VAR) if (value := values.get(var))}


def storage_environment(env_file: Path) -> dict[str, str]:
    """The stores set in the .env: the S3 store's endpoint, region and credentials (AWS_* variables,
    for s3:// locations) and the shared stores' URLs: what the inferrer and the nodes get in their
    environment."""
    values = dotenv_values(env_file)
    return {var: value for var in (*S3_VARIABLES, *SHARED_STORE_VARIABLES) if (value := values.get(var))}


def tracing_environment(env_file: Path) -> dict[str, str]:
    """Where traces go and how many (MODELFLEET_TRACING_*), as the .env sets them: for every gateway
    and node."""
    values = dotenv_values(env_file)
    return {var: value for var in TRACING_VARIABLES if (value := values.get(var))}


def management_headers(env_file: Path) -> dict[str, str]:
    """For the command line's own calls to the inferrer (apply, the example model)."""
    return bearer_headers(dotenv_values(env_file).get(MANAGEMENT_TOKEN_VAR))
