from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from artifacts.names import Segment
from wire.addresses import check_http_url, check_name_and_port
from wire.bearer import (
    INFERENCE_TOKEN_VAR,
    MANAGEMENT_TOKEN_VAR,
    check_token,
    token_file_var,
    token_from_file,
)
from wire.tls import TLS_CA_VAR


class InferrerSettings(BaseSettings):
    """Gateway settings, from INFERRER_* variables. Host, port and workers are uvicorn's flags."""

    model_config = SettingsConfigDict(env_prefix="INFERRER_", populate_by_name=True)

    # Defaults do not depend on the directory a process starts in; the launcher and the images set it.
    repository_dir: Path = Field(
        default=Path.home() / ".modelfleet" / "repository",
        description="The model repository (`modelfleet up` sets it under `--data-dir`).",
    )
    repository_db_url: str | None = Field(
        default=None,
        description="The repository's index (versions, active pointers, manifests, pins) in SQL, shared by "
        "every gateway that names it: `postgresql+psycopg://...` past one machine. Unset: the folder "
        "`INFERRER_REPOSITORY_DIR`, this machine's gateway processes only.",
    )
    repository_artifacts_url: str | None = Field(
        default=None,
        description="Where a shared repository keeps model files: `s3://bucket/prefix` (the S3 store of "
        "the `AWS_*` variables), or a folder in the data directory for one machine. Needed with "
        "`INFERRER_REPOSITORY_DB_URL`.",
    )
    repository_poll_s: float = Field(
        default=0.5,
        gt=0,
        description="How often a gateway process reads a shared repository's generation (one row), and "
        "its whole index when it changed. A write answers once every live gateway process has read it.",
    )
    graphs_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="How often a gateway process reads which inference graph versions are active (one "
        "query): a graph deployed through another gateway serves here within this interval.",
    )
    repository_lease_s: float = Field(
        default=10.0,
        gt=0,
        description="A gateway process that cannot read a shared repository for half this answers 503 "
        "rather than from what it read before; writers stop waiting for one silent for this long. "
        "Hosts' clocks must agree within half of it.",
    )
    gateway_id: str = Field(
        default="gateway-1",
        description="This gateway's name, in every prediction's `X-Modelfleet-Gateway` header (the launcher "
        "sets `gateway-<n>` from the topology's gateway entries).",
    )
    nginx_url: str = Field(default="http://127.0.0.1:8080", description="The balancer (nginx).")
    default_model: Segment | None = Field(
        default=None,
        description="The model of SageMaker-style calls (`/invocations`) that name none, and of `/ping`'s "
        "check.",
    )
    data_dir: Path = Field(
        default=Path.home() / ".modelfleet" / "data",
        description="Batch jobs' and watches' files: locations are paths inside this directory, or `s3://` "
        "(`modelfleet up` sets it and `MODELHOST_DATA_DIR` to `<data-dir>/data`; compose shares the "
        "`jobs` volume).",
    )
    jobs_db_url: str | None = Field(
        default=None,
        description="The job store (an SQLAlchemy URL): SQLite in the data directory by default; "
        "`postgresql+psycopg://...` to share one.",
    )
    jobs_max_in_flight: int = Field(
        default=8,
        gt=0,
        description="Partitions running at once across the fleet (every gateway counted): online traffic "
        "keeps the rest. A gateway claims as many fewer as it had online predictions in flight at once "
        "lately (the last 1-2 s), at least 1.",
    )
    jobs_partition_timeout_s: float = Field(default=600.0, gt=0, description="One partition's node call.")
    jobs_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A partition's claim lapses this long after its gateway last renewed it (a gateway that "
        "died).",
    )
    jobs_deadline_s: float = Field(
        default=86400.0, gt=0, description="A job not finished this long after its submission fails."
    )
    watch_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="How often a watched folder or prefix is listed (inotify also wakes a local folder at "
        "once when it reports a change).",
    )
    watch_settle_s: float = Field(
        default=2.0, ge=0, description="A file is taken once unchanged for this long."
    )
    watch_max_running: int = Field(
        default=16,
        gt=0,
        description="Files with a job under way at once, across the fleet (every gateway counted); the "
        "rest wait pending.",
    )
    nodes_file: Path | None = Field(
        default=None,
        description='JSON `{"modelhost-1": "http://127.0.0.1:8101", ...}`, rendered from the topology; '
        "re-read when it changes.",
    )
    nodes_dns: str | None = Field(
        default=None,
        description="`name:port` whose DNS records are the nodes, in place of a node list: Swarm's "
        "`tasks.modelhost:8101`, or a Kubernetes headless Service. Resolved every "
        "`INFERRER_NODES_DNS_INTERVAL_S`; each address is asked its node id.",
    )
    nodes_dns_interval_s: float = Field(
        default=2.0, gt=0, description="How often `INFERRER_NODES_DNS` is resolved again."
    )
    status_timeout_s: float = Field(default=1.0, gt=0, description="Timeout of node status calls.")
    node_sync_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a deploy, switch or delete waits for each node's sync (its model load "
        "included).",
    )
    balancer_max_connections: int = Field(
        default=256, gt=0, description="Connections to nginx per inferrer process (predictions)."
    )
    node_max_connections: int = Field(
        default=64,
        gt=0,
        description="Connections to the nodes directly per inferrer process (sync, status, drain).",
    )
    connect_timeout_s: float = Field(
        default=2.0, gt=0, description="Connect timeout of both (to nginx and to the nodes)."
    )
    max_request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A prediction's deadline: the client's `X-Request-Timeout`, at most this (also the "
        "default; 504 past it).",
    )
    max_in_flight: int = Field(
        default=512,
        gt=0,
        description="Predictions in flight per inferrer process; beyond it 503 + `Retry-After: 1` at once.",
    )
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, gt=0, description="Largest model upload.")
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        gt=0,
        description="Largest body of any other request (predict JSON or CSV): 413 above it, declared or "
        "chunked. The launcher and compose set it from the topology's `MAX_BODY_BYTES`.",
    )
    max_rows: int = Field(default=10_000, gt=0, description="Rows per predict request (413 above).")
    max_values: int = Field(
        default=1_000_000, gt=0, description="Rows x features per predict request (413 above)."
    )
    max_selftest_items: int = Field(
        default=1_000,
        gt=0,
        description="Items of one `POST /api/test/sendtomodelhost` call; more are refused.",
    )
    batch_max_rows: int = Field(default=64, gt=0, description="Rows per batched upstream call.")
    batch_max_wait_s: float = Field(default=0.005, gt=0, description="Longest a request waits for its batch.")
    batch_max_in_flight: int = Field(
        default=2, gt=0, description="Upstream calls per model before requests queue into a batch."
    )
    batch_gather_above_s: float = Field(
        default=0.001,
        ge=0,
        description="After a batch, gather the next requests of a model whose predict call takes at least "
        "this on a node.",
    )
    keep_versions: int = Field(
        default=10,
        ge=0,
        description="Version retention: a model keeps its newest N versions (and its active one, and any "
        "pinned by a deploy under way or a job); older ones are removed. `0` keeps every version.",
    )
    prediction_cache_size: int = Field(
        default=0,
        ge=0,
        description="Entries in the prediction cache (model, version, input) -> outputs; `0` turns it off.",
    )

    # Bearer tokens (wire.bearer), shared with the nodes: the launcher passes them from the .env.
    management_token: str | None = Field(
        default=None,
        validation_alias=MANAGEMENT_TOKEN_VAR,
        repr=False,
        description="Bearer token for management, shared with the nodes; the first `modelfleet up` "
        "generates it into `deploy/.env`, and the launcher passes it from there.",
    )
    inference_token: str | None = Field(
        default=None,
        validation_alias=INFERENCE_TOKEN_VAR,
        repr=False,
        description="When set, predictions and model reads need it (or the management token).",
    )

    management_token_file: Path | None = Field(
        default=None,
        validation_alias=token_file_var(MANAGEMENT_TOKEN_VAR),
        description="A file holding the management token (a Swarm or Kubernetes secret), read at start "
        "when the token itself is not set.",
    )
    inference_token_file: Path | None = Field(
        default=None,
        validation_alias=token_file_var(INFERENCE_TOKEN_VAR),
        description="A file holding the inference token, read at start when the token itself is not set.",
    )

    tls_ca_file: Path | None = Field(
        default=None,
        validation_alias=TLS_CA_VAR,
        description="The fleet's CA certificate (`modelfleet certs`): with it, calls to nginx and the nodes "
        "use https and trust that CA only. The launcher sets it from the `.env`'s `TLS_DIR`.",
    )

    _check_tokens = field_validator("management_token", "inference_token")(check_token)

    def rows_allowed(self, n_features: int) -> int:
        """The most rows one request may send to a model with `n_features` features."""
        return max(1, min(self.max_rows, self.max_values // max(n_features, 1)))

    _check_url = field_validator("nginx_url")(check_http_url)
    _check_nodes_dns = field_validator("nodes_dns")(check_name_and_port)

    @field_validator("repository_db_url", "repository_artifacts_url", "jobs_db_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # compose passes `${VAR:-}` for a variable not set

    @model_validator(mode="after")
    def _one_node_list(self) -> InferrerSettings:
        if self.nodes_file and self.nodes_dns:
            raise ValueError("set INFERRER_NODES_FILE or INFERRER_NODES_DNS, not both")
        return self

    @model_validator(mode="after")
    def _tokens_from_files(self) -> InferrerSettings:
        self.management_token = token_from_file(self.management_token, self.management_token_file)
        self.inference_token = token_from_file(self.inference_token, self.inference_token_file)
        return self

    @model_validator(mode="after")
    def _shared_repository_needs_both(self) -> InferrerSettings:
        if bool(self.repository_db_url) != bool(self.repository_artifacts_url):
            raise ValueError("INFERRER_REPOSITORY_DB_URL and INFERRER_REPOSITORY_ARTIFACTS_URL go together: "
                             "the shared repository's index, and where it keeps model files")  # fmt: skip
        if self.repository_poll_s * 4 > self.repository_lease_s:
            raise ValueError("INFERRER_REPOSITORY_LEASE_S must be at least 4 x INFERRER_REPOSITORY_POLL_S")
        return self
