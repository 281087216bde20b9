from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wire.bearer import MANAGEMENT_TOKEN_VAR, check_token


class ModelhostSettings(BaseSettings):
    """Node settings, from MODELHOST_* variables. Host, port and workers are uvicorn's flags."""

    model_config = SettingsConfigDict(env_prefix="MODELHOST_", populate_by_name=True)

    node_id: str = "modelhost-1"
    inferrer_url: str = "http://127.0.0.1:8000"
    # Defaults do not depend on the directory a process starts in; the launcher and the images set it.
    cache_dir: Path = Path.home() / ".modelfleet" / "cache" / "modelhost-1"
    # Batch jobs' files: locations are paths inside this directory (or s3://, see datafiles.locations).
    data_dir: Path = Path.home() / ".modelfleet" / "data"
    sync_interval_s: float = Field(default=5.0, gt=0)
    fetch_timeout_s: float = Field(default=60.0, gt=0)
    # A predict cheaper than this runs on the event loop instead of the predict thread.
    inline_predict_below_ms: float = Field(default=0.5, ge=0)
    # Scale to zero: unload a model idle for longer than this; None keeps models loaded.
    idle_unload_s: float | None = Field(default=None, gt=0)
    # The artifact cache on disk: what no stored version needs is deleted at each sync; beyond this
    # many MiB, the least recently used artifacts but the active ones are deleted too.
    cache_budget_mib: float = Field(default=10240, gt=0)
    # Unload least-recently-used models rather than exceed this many MiB of artifacts; None: no cap.
    memory_budget_mib: float | None = Field(default=None, gt=0)

    # Required on the node's internal routes and sent to the inferrer's; from the .env via the launcher.
    management_token: str | None = Field(default=None, validation_alias=MANAGEMENT_TOKEN_VAR, repr=False)

    _check_token = field_validator("management_token")(check_token)

    @field_validator("inferrer_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("inferrer_url must be an http(s) URL")
        return value.rstrip("/")
