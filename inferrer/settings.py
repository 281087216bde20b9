from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wire.bearer import INFERENCE_TOKEN_VAR, MANAGEMENT_TOKEN_VAR, check_token


class InferrerSettings(BaseSettings):
    """Gateway settings, from INFERRER_* variables. Host, port and workers are uvicorn's flags."""

    model_config = SettingsConfigDict(env_prefix="INFERRER_", populate_by_name=True)

    # Defaults do not depend on the directory a process starts in; the launcher and the images set it.
    repository_dir: Path = Path.home() / ".modelfleet" / "repository"
    nginx_url: str = "http://127.0.0.1:8080"
    # The model of SageMaker-style calls (/invocations) that name none, and of /ping's check.
    default_model: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    # Batch jobs' files: locations are paths inside this directory, or s3:// (datafiles.locations).
    data_dir: Path = Path.home() / ".modelfleet" / "data"
    # The job store: SQLite in the data directory by default; postgresql+psycopg://... to share one.
    jobs_db_url: str | None = None
    # Partitions running at once across the fleet (every gateway counted): online traffic keeps the rest.
    jobs_max_in_flight: int = Field(default=8, gt=0)
    jobs_partition_timeout_s: float = Field(default=600.0, gt=0)
    # A partition's claim lapses this long after its gateway last renewed it (a gateway that died).
    jobs_lease_s: float = Field(default=30.0, gt=0)
    # A job not finished this long after its submission fails.
    jobs_deadline_s: float = Field(default=86400.0, gt=0)
    # Watches: a watched folder or prefix is listed at this interval (a local folder also at once
    # when inotify reports a change); a file is taken once unchanged for WATCH_SETTLE_S; at most
    # WATCH_MAX_RUNNING files have a job under way (every gateway counted), the rest wait pending.
    watch_interval_s: float = Field(default=10.0, gt=0)
    watch_settle_s: float = Field(default=2.0, ge=0)
    watch_max_running: int = Field(default=16, gt=0)
    # JSON {"modelhost-1": "http://127.0.0.1:8101", ...}, rendered from the topology; re-read on change.
    nodes_file: Path | None = None
    status_timeout_s: float = Field(default=1.0, gt=0)
    # How long a deploy, switch or delete waits for each node's sync (loading the model included).
    node_sync_timeout_s: float = Field(default=30.0, gt=0)
    # Connection pools: through nginx (predictions), and to each node directly (sync, status, drain).
    balancer_max_connections: int = Field(default=256, gt=0)
    node_max_connections: int = Field(default=64, gt=0)
    connect_timeout_s: float = Field(default=2.0, gt=0)
    # A prediction's deadline: the client's X-Request-Timeout, at most this (also the default).
    max_request_timeout_s: float = Field(default=30.0, gt=0)
    # Predictions in flight per inferrer process; beyond it, 503 with Retry-After at once.
    max_in_flight: int = Field(default=512, gt=0)
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    # Largest body of any other request (predict JSON or CSV); larger ones answer 413.
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # Per predict request: rows, and values (rows x features); larger requests answer 413.
    max_rows: int = Field(default=10_000, gt=0)
    max_values: int = Field(default=1_000_000, gt=0)
    max_selftest_items: int = Field(default=1_000, gt=0)
    # Gateway batching: rows per upstream call, longest wait, upstream calls per lane before queueing.
    batch_max_rows: int = Field(default=64, gt=0)
    batch_max_wait_s: float = Field(default=0.005, gt=0)
    batch_max_in_flight: int = Field(default=2, gt=0)
    # After a batch, gather the next requests when a node's predict call of the model takes this long.
    batch_gather_above_s: float = Field(default=0.001, ge=0)
    # Version retention: a model keeps its newest N versions (and its active one, and any pinned by a
    # deploy under way or a job); older ones are removed. 0 keeps every version.
    keep_versions: int = Field(default=10, ge=0)
    # Entries in the prediction cache (model, version, input) -> outputs; 0 turns it off.
    prediction_cache_size: int = Field(default=0, ge=0)

    # Bearer tokens (wire.bearer), shared with the nodes: the launcher passes them from the .env.
    management_token: str | None = Field(default=None, validation_alias=MANAGEMENT_TOKEN_VAR, repr=False)
    inference_token: str | None = Field(default=None, validation_alias=INFERENCE_TOKEN_VAR, repr=False)

    _check_tokens = field_validator("management_token", "inference_token")(check_token)

    def rows_allowed(self, n_features: int) -> int:
        """The most rows one request may send to a model with `n_features` features."""
        return max(1, min(self.max_rows, self.max_values // max(n_features, 1)))

    @field_validator("nginx_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("nginx_url must be an http(s) URL")
        return value.rstrip("/")
