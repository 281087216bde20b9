"""A job as submitted (`POST /api/v1/jobs`): `model` (or `graph`) and exactly one input, inline rows or a file
(planned into partitions by jobs.planning)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import ConfigDict, Field, TypeAdapter, model_validator
from pydantic.json_schema import SkipJsonSchema

from artifacts.names import Segment
from artifacts.schema import JsonInt
from datafiles.formats import InputFormat, OutputFormat, output_format
from inferrer.jobs.bodies import RenamedFields, declare_old_names
from inferrer.jobs.records import predict_body
from wire.partition_calls import OnBadRows, PredictionKind

_CELL = Annotated[Any, Field(json_schema_extra={"type": ["number", "null"]})]
_FIELD = Annotated[Any, Field(json_schema_extra={"type": ["number", "string", "boolean", "null"]})]
_Instances = Annotated[list[Annotated[list[_CELL], Field(min_length=1)]], Field(min_length=1)]
_Records = Annotated[list[Annotated[dict[str, _FIELD], Field(min_length=1)]], Field(min_length=1)]
Location = Annotated[str, Field(min_length=1, max_length=1024)]


def _alone(key: str, *others: str) -> dict[str, Any]:
    return {"required": [key], "not": {"anyOf": [{"required": [other]} for other in others]}}


# A job or a watch predicts with a model or with an inference graph: exactly one of them.
ONE_TARGET = {"oneOf": [_alone("model", "graph"), _alone("graph", "model")]}


def check_one_target(model: str | None, graph: str | None) -> None:
    if (model is None) == (graph is None):
        raise ValueError('give exactly one of "model" or "graph"')


_RENAMED = {"output": "prediction"}  # this release's new names: the old ones go in the next


def _declared(schema: dict[str, Any]) -> None:
    """Exactly one input; `format` and `output_location` only with a file (declared for the
    document, checked again by the validators below); the old names still taken."""
    schema["oneOf"] = [
        _alone("instances", "records", "input", "format", "output_location", "output_format"),
        _alone("records", "instances", "input", "format", "output_location", "output_format"),
        _alone("input", "instances", "records"),
    ]
    schema["allOf"] = [ONE_TARGET]
    declare_old_names(schema, _RENAMED)


# A node holds a partition's bytes, rows and output at once: 256 MiB at most.
PartitionBytes = Annotated[JsonInt, Field(ge=4096, le=2**28)]
DEFAULT_PARTITION_BYTES = 8 * 2**20


class JobSubmission(RenamedFields):
    """`model` and exactly one input: `instances` or `records` inline, or `input`, a file. A field
    is given or left out, never null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_declared)
    RENAMED = _RENAMED

    model: SkipJsonSchema[None] | Segment = None
    graph: SkipJsonSchema[None] | Segment = None  # an inference graph, in place of a model
    version: SkipJsonSchema[None] | Segment = None  # of the model or graph; default: the active
    prediction: PredictionKind = "predict"
    instances: SkipJsonSchema[None] | _Instances = None
    records: SkipJsonSchema[None] | _Records = None
    input: SkipJsonSchema[None] | Location = None
    format: SkipJsonSchema[None] | InputFormat = None  # default: from the suffix
    output_location: SkipJsonSchema[None] | Location = None
    # Default: as datafiles.formats.output_format says (the input's; parquet gives JSON lines).
    output_format: SkipJsonSchema[None] | OutputFormat = None
    partition_bytes: PartitionBytes = DEFAULT_PARTITION_BYTES
    on_bad_rows: OnBadRows = "fail"
    max_attempts: JsonInt = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _one_input(self) -> JobSubmission:
        check_one_target(self.model, self.graph)
        given = [k for k in ("instances", "records", "input") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError('give exactly one of "instances", "records" or "input"')
        if self.input is None and (self.format or self.output_location or self.output_format):
            raise ValueError('"format", "output_format" and "output_location" go with "input"')
        if self.format is not None:
            output_format(self.format, self.output_format)  # FormatRefused is a ValueError
        return self

    def inline_body(self) -> bytes:
        """An inline job's predict body: what `POST .../predict` would have received."""
        return predict_body(self.prediction, self.instances, self.records)


job_submission = TypeAdapter(JobSubmission)
FORM_FIELDS = (set(JobSubmission.model_fields) | set(_RENAMED)) - {"instances", "records", "input"}


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:20]}"
