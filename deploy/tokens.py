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
from wire.bearer import INFERENCE_TOKEN_VAR, MANAGEMENT_TOKEN_VAR, bearer_headers


def ensure_management_token(env_file: Path) -> str | None:
    """Write a management token into the .env unless it has one; returns the new token, if any."""
    if dotenv_values(env_file).get(MANAGEMENT_TOKEN_VAR):
        return None
    token = secrets.token_urlsafe(32)
    text = env_file.read_text()
    separator = "" if not text or text.endswith("\n") else "\n"
    env_file.write_text(f"{text}{separator}\n# Bearer token for management calls (generated).\n"
                        f"{MANAGEMENT_TOKEN_VAR}={token}\n")  # fmt: skip
    os.chmod(env_file, 0o600)
    return token


def service_tokens(env_file: Path) -> dict[str, str]:
    """The tokens set in the .env, by variable name: what every service gets in its environment."""
    values = dotenv_values(env_file)
    return {var: value for var in (MANAGEMENT_TOKEN_VAR, INFERENCE_TOKEN_VAR) if (value := values.get(var))}


def storage_environment(env_file: Path) -> dict[str, str]:
    """The S3 store's endpoint, region and credentials set in the .env (AWS_* variables): what the
    inferrer and the nodes get in their environment, for jobs on s3:// locations."""
    values = dotenv_values(env_file)
    return {var: value for var in S3_VARIABLES if (value := values.get(var))}


def management_headers(env_file: Path) -> dict[str, str]:
    """For the command line's own calls to the inferrer (apply, the example model)."""
    return bearer_headers(dotenv_values(env_file).get(MANAGEMENT_TOKEN_VAR))
