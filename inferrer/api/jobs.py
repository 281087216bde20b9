"""Batch and async jobs: submit, show, list, cancel, and fetch the result (inference scope; the
management token works too)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Query, Request
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.responses import Response, StreamingResponse

from artifacts.names import Segment, is_path_segment
from artifacts.schema import ModelSchema
from inferrer.api import dependencies as deps
from inferrer.api.rest_codec import parse_predict_body
from inferrer.errors import InvalidInput
from inferrer.jobs.runner import InlineParser
from inferrer.jobs.submission import FORM_FIELDS, JobSubmission, job_submission
from inferrer.jobs.targets import resolve_target
from wire.bearer import INFERENCE
from wire.errors import InvalidRequest, describe, parse_body
from wire.job_answers import InlineResult, JobAccepted, JobList, JobStatus, JobView
from wire.json import FastJSONResponse
from wire.openapi import answers, refusals, request_body

router = APIRouter(prefix="/api/v1/jobs", dependencies=[INFERENCE])


def _submission_body() -> dict[str, Any]:
    """JSON (rows inline, or a file's location), or multipart: the file and the same fields but
    `input` (the file is the input). The multipart form's document names the new fields only: the
    old names are still taken there for this release (docs/jobs-and-watches.md), but a rule "one or
    the other" beside a binary part is more than schema-driven fuzzers can generate from."""
    schema = job_submission.json_schema()
    body = request_body(schema)
    declared = sorted(FORM_FIELDS - set(JobSubmission.RENAMED))
    form = {name: schema["properties"][name] for name in declared}
    form["file"] = {"type": "string", "format": "binary", "description": "JSON lines or CSV rows"}
    body["requestBody"]["content"]["multipart/form-data"] = {
        "schema": {
            "type": "object",
            "properties": form,
            "required": ["file", "model"],
            "additionalProperties": False,
        }
    }
    return body


_SUBMISSION_BODY = _submission_body()

JobId = Annotated[Segment, Path()]
_MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


def inline_parser(rows_allowed: Callable[[int], int]) -> InlineParser:
    """How an inline job's rows are read: as the predict route reads them, with the same limits."""

    def parse(raw: bytes, signature: ModelSchema) -> tuple[np.ndarray, str]:
        parsed = parse_predict_body(raw, signature, rows_allowed(signature.n_features))
        return parsed.rows, parsed.output

    return parse


@router.post(
    "",
    status_code=202,
    openapi_extra=_SUBMISSION_BODY,
    responses={
        **answers(JobAccepted, "Queued; `Location` names the job", status=202),
        **refusals(
            "Refused: 400 for a location outside the data directory (absolute, '..', a link out, a "
            "hidden name) or not a path or s3://bucket/key; 404 for an unknown model or version, or an "
            "input that is no file; 409 for an output_location that holds files already; 422 for "
            "inline rows the model cannot take (its signature says), or a body that breaks the "
            "schema; 413 for more inline rows than the limit. `output` (the old name of `prediction`) is "
            "still taken, for one release: the answer then carries `Deprecation: true` and a `Warning`"
        ),
    },
)
async def submit(request: Request) -> Response:
    """A job: `model` (or `graph`, an inference graph), and `instances`/`records` inline (an async
    prediction) or `input`, a file; or, as multipart, the file itself (`file`) with the other
    fields as form fields."""
    jobs = deps.jobs(request)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=len(FORM_FIELDS)) as form:
            submission, upload = _uploaded(form)
            await jobs.keep_upload(upload, submission)
        accepted = await jobs.submit(submission, uploaded=True)
    else:
        submission = parse_body(job_submission, await request.body())
        if submission.input is None:  # the rows are checked now, as predict would check them
            target = await resolve_target(
                deps.repository(request), deps.graphs(request), submission.model, submission.graph,
                submission.version, submission.prediction,
            )  # fmt: skip
            parse = inline_parser(deps.settings(request).rows_allowed)
            parse(submission.inline_body(), target.reader.signature)
        accepted = await jobs.submit(submission)
    headers = {"Location": f"/api/v1/jobs/{accepted.id}", **submission.deprecation_headers()}
    return FastJSONResponse(accepted.model_dump(mode="json"), status_code=202, headers=headers)


def _uploaded(form: FormData) -> tuple[JobSubmission, UploadFile]:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidInput('a multipart job carries its rows in a "file" part')
    unknown = set(form) - FORM_FIELDS - {"file"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    name = upload.filename or ""
    if not is_path_segment(name) or name.startswith("."):
        raise InvalidInput(f"file name {name!r}: use 1-64 of A-Z a-z 0-9 . _ - (not starting with '.')")
    fields = {key: value for key, value in form.items() if key != "file"}
    try:  # form fields are text: "3" is the number 3 here
        submission = job_submission.validate_python({**fields, "input": f"uploads/{uuid.uuid4().hex}/{name}"})
    except ValidationError as exc:
        raise InvalidRequest(f"invalid request: {describe(exc.errors())}") from None
    return submission, upload


@router.get("", responses=answers(JobList, "Newest first"))
async def listing(
    request: Request,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    return FastJSONResponse((await deps.jobs(request).listing(status, limit)).model_dump(mode="json"))


@router.get("/{job_id}", responses=answers(JobView, "The job's state and progress"))
async def show(request: Request, job_id: JobId) -> Response:
    return FastJSONResponse((await deps.jobs(request).view(job_id)).model_dump(mode="json"))


@router.delete("/{job_id}", responses=answers(JobView, "Cancelled (or finished already: unchanged)"))
async def cancel(request: Request, job_id: JobId) -> Response:
    return FastJSONResponse((await deps.jobs(request).cancel(job_id)).model_dump(mode="json"))


@router.get(
    "/{job_id}/result",
    responses={
        **answers(InlineResult, "Inline jobs: as predict answers; file jobs: the output rows in input "
                  "order, as JSON lines or CSV like the input"),
        **refusals("Refused: 409 while the job has not succeeded; 404 for an unknown job"),
    },
)  # fmt: skip
async def result(request: Request, job_id: JobId) -> Response:
    result = await deps.jobs(request).result(job_id)
    if isinstance(result, InlineResult):
        return FastJSONResponse(result.model_dump(mode="json"))
    fmt, body = result
    return StreamingResponse(body, media_type=_MEDIA[fmt])
