from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wire.addresses import check_http_url
from wire.bearer import MANAGEMENT_TOKEN_VAR, check_token, token_file_var, token_from_file
from wire.tls import TLS_CA_VAR


class ModelhostSettings(BaseSettings):
    """Node settings, from MODELHOST_* variables. Host, port and workers are uvicorn's flags."""

    model_config = SettingsConfigDict(env_prefix="MODELHOST_", populate_by_name=True)

    node_id: str = Field(default="modelhost-1", description="The node's stable id.")
    inferrer_url: str = Field(
        default="http://127.0.0.1:8000", description="Where the node gets desired models and artifacts."
    )
    # Defaults do not depend on the directory a process starts in; the launcher and the images set it.
    cache_dir: Path = Field(
        default=Path.home() / ".modelfleet" / "cache" / "modelhost-1",
        description="Local artifact cache (by sha256; `modelfleet up` sets it under `--data-dir`).",
    )
    data_dir: Path = Field(
        default=Path.home() / ".modelfleet" / "data",
        description="Batch jobs' and watches' files: locations are paths inside this directory, or `s3://` "
        "(`modelfleet up` sets it and `INFERRER_DATA_DIR` to `<data-dir>/data`; compose shares the "
        "`jobs` volume).",
    )
    sync_interval_s: float = Field(
        default=5.0, gt=0, description="How often a node converges to the desired models."
    )
    fetch_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Timeout of the node's calls to the inferrer (desired state, artifacts); connect 2 s.",
    )
    inline_predict_below_ms: float = Field(
        default=0.5,
        ge=0,
        description="A predict cheaper than this runs on the event loop instead of the predict thread.",
    )
    idle_unload_s: float | None = Field(
        default=None,
        gt=0,
        description="Scale to zero: unload a model idle for longer than this; it loads again on its next "
        "request. Unset keeps models loaded.",
    )
    cache_budget_mib: float = Field(
        default=10240,
        gt=0,
        description="The artifact cache on disk: what no stored version needs is deleted at each sync; "
        "beyond this many MiB, the least recently used artifacts but the active ones are deleted too.",
    )
    memory_budget_mib: float | None = Field(
        default=None,
        gt=0,
        description="Unload least-recently-used models rather than exceed this many MiB of artifacts "
        "(artifact sizes stand for memory use). Unset: no cap.",
    )

    management_token: str | None = Field(
        default=None,
        validation_alias=MANAGEMENT_TOKEN_VAR,
        repr=False,
        description="Required on the node's internal routes and sent to the inferrer's; from the `.env` "
        "via the launcher.",
    )

    management_token_file: Path | None = Field(
        default=None,
        validation_alias=token_file_var(MANAGEMENT_TOKEN_VAR),
        description="A file holding the management token (a Swarm or Kubernetes secret), read at start "
        "when the token itself is not set.",
    )

    tls_ca_file: Path | None = Field(
        default=None,
        validation_alias=TLS_CA_VAR,
        description="The fleet's CA certificate (`modelfleet certs`): with it, calls to the inferrer use "
        "https and trust that CA only. The launcher sets it from the `.env`'s `TLS_DIR`.",
    )

    _check_token = field_validator("management_token")(check_token)

    @model_validator(mode="after")
    def _token_from_file(self) -> ModelhostSettings:
        self.management_token = token_from_file(self.management_token, self.management_token_file)
        return self

    _check_url = field_validator("inferrer_url")(check_http_url)
