"""What the job routes do: submit (check, pin, plan, store), show, list, cancel, and the result."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from datafiles.locations import Storage
from inferrer.errors import InvalidInput, JobNotFinished, JobNotFound
from inferrer.jobs.runner import JobRunner
from inferrer.jobs.schema import UNFINISHED
from inferrer.jobs.store import JobStore
from inferrer.jobs.submission import JobSubmission, inline_job, new_job_id, output_format, plan_file_job
from inferrer.state.pins import Pin
from inferrer.state.repository import ModelRepository

_ERRORS_SHOWN = 100
_BLOCK = 2**20  # bytes read at a time when a result is streamed


class BinaryReader(Protocol):
    """An uploaded file: its bytes in `file`."""

    file: BinaryIO


class JobService:
    def __init__(
        self,
        store: JobStore,
        repository: ModelRepository,
        storage: Storage,
        runner: JobRunner,
        deadline_s: float,
    ) -> None:
        self.store = store
        self.repository = repository
        self.storage = storage
        self.runner = runner
        self.deadline_s = deadline_s

    async def keep_upload(self, upload: BinaryReader, submission: JobSubmission) -> None:
        """A multipart job's file, copied whole into the data directory at its `input`."""
        assert submission.input is not None
        location = self.storage.location(submission.input)
        await asyncio.to_thread(self.storage.write_stream_atomic, location, upload.file)

    async def submit(
        self,
        submission: JobSubmission,
        uploaded: bool = False,
        job_id: str | None = None,
        assemble_to: str | None = None,
    ) -> dict[str, Any]:
        """Pinned to the version asked for (the active one by default) until the job finishes.
        `uploaded`: its input was uploaded with it, and goes when the submission is refused.
        `job_id`: given by a caller that may ask again (a watch): the job is made once.
        `assemble_to`: the one file its parts are joined into (a watch's output)."""
        try:
            return await self._submit(submission, job_id, assemble_to)
        except BaseException:
            if uploaded and submission.input is not None:
                upload_dir = Path(self.storage.location(submission.input).path).parent
                await asyncio.to_thread(shutil.rmtree, upload_dir, True)
            raise

    async def _submit(
        self, submission: JobSubmission, job_id: str | None, assemble_to: str | None
    ) -> dict[str, Any]:
        if job_id is not None and (made := await asyncio.to_thread(self.store.job, job_id)) is not None:
            return {"id": job_id, "status": made["status"], "partitions": made["partitions_total"]}
        manifest = self.repository.get(submission.model, submission.version)
        if submission.output not in manifest.signature.outputs:
            raise InvalidInput(
                f"model {manifest.name!r} offers {manifest.signature.outputs}, not {submission.output!r}"
            )
        job_id = job_id or new_job_id()
        # Pinned for as long as the job may run: a gateway killed before the job ends leaves no
        # pin for good.
        pin = Pin(job_id, lease_s=self.deadline_s + 3600)
        await asyncio.to_thread(self.repository.pin, manifest.name, manifest.version, pin)
        try:
            if submission.input is None:
                job, parts = inline_job(job_id, submission, manifest, self.deadline_s), [{"inline": True}]
            else:
                job, parts = await asyncio.to_thread(
                    plan_file_job, job_id, submission, manifest, self.storage, self.deadline_s, assemble_to
                )
            await asyncio.to_thread(self.store.create, job, parts)
        except BaseException as exc:
            made = await asyncio.to_thread(self.store.job, job_id) if isinstance(exc, Exception) else None
            if made is not None:  # by another caller with the same id meanwhile: its pin is this one
                return {"id": job_id, "status": made["status"], "partitions": made["partitions_total"]}
            await asyncio.to_thread(self.repository.unpin, manifest.name, manifest.version, job_id)
            raise
        self.runner.wake()
        return {"id": job_id, "status": "queued", "partitions": len(parts)}

    async def view(self, job_id: str) -> dict[str, Any]:
        job = await self._job(job_id)
        parts = await asyncio.to_thread(self.store.partitions_of, job_id)
        errors = await asyncio.to_thread(self.store.errors_of, job_id, _ERRORS_SHOWN)
        return _render(job, parts, errors)

    async def listing(self, status: str | None, limit: int) -> dict[str, Any]:
        jobs = await asyncio.to_thread(self.store.listing, status, limit)
        views = []
        for job in jobs:
            parts = await asyncio.to_thread(self.store.partitions_of, job["id"])
            views.append(_render(job, parts, []))
        return {"jobs": views}

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Nothing more is sent; partitions under way finish or are abandoned. Cancelling a finished
        job changes nothing and answers its state."""
        job = await self._job(job_id)
        if await asyncio.to_thread(self.store.finish, job_id, "cancelled", None, "cancelled by request"):
            await asyncio.to_thread(self.repository.unpin, job["model"], job["version"], job_id)
        return await self.view(job_id)

    async def result(self, job_id: str) -> tuple[str, Any]:
        """("inline", the prediction answer) or (format, an async iterator of the output's bytes,
        rows in input order)."""
        job = await self._job(job_id)
        if job["status"] != "succeeded":
            state = "still " + job["status"] if job["status"] in UNFINISHED else job["status"]
            raise JobNotFinished(f"job {job_id} is {state}: its result exists once it has succeeded")
        if job["spec"]["kind"] == "inline":
            return "inline", job["result"]
        fmt = output_format(job["spec"])
        return fmt, self._stream(job["result"]["parts"], fmt)

    async def _stream(self, parts: list[dict[str, Any]], fmt: str) -> AsyncIterator[bytes]:
        """Each part in turn, read a block at a time (a part is as large as its partition)."""
        for number, part in enumerate(parts):
            location = self.storage.location(part["location"])
            source = await asyncio.to_thread(self.storage.open_read, location)
            skip_header = fmt == "csv" and number > 0  # one header: the first part's
            try:
                while block := await asyncio.to_thread(source.read, _BLOCK):
                    if skip_header:
                        if b"\n" not in block:
                            continue  # still in the header line
                        block, skip_header = block.split(b"\n", 1)[1], False
                    yield block
            finally:
                await asyncio.to_thread(source.close)

    async def _job(self, job_id: str) -> dict[str, Any]:
        job = await asyncio.to_thread(self.store.job, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        return job


def _render(job: dict[str, Any], parts: list[dict[str, Any]], errors: list[dict[str, Any]]) -> dict[str, Any]:
    spec = job["spec"]
    output = None
    if "assemble_to" in spec:  # a watch's job: one output file, no manifest
        output = {"location": spec["assemble_to"], "manifest": None}
    elif spec["kind"] == "file":
        output = {
            "location": spec["output_location"],
            "manifest": f"{spec['output_location']}/_manifest.json",
        }
    return {
        "id": job["id"],
        "status": job["status"],
        "model": job["model"],
        "version": job["version"],
        "kind": spec["kind"],
        "partitions": {
            "total": job["partitions_total"],
            "done": sum(p["status"] == "done" for p in parts),
            "failed": sum(p["status"] == "failed" for p in parts),
        },
        "rows": {
            "done": sum(p["rows_done"] or 0 for p in parts),
            "failed": sum(p["rows_failed"] or 0 for p in parts),
        },
        "errors": errors,
        "error": job["error"],
        "output": output,
        "created": iso_time(job["created"]),
        "started": iso_time(job["started"]),
        "finished": iso_time(job["finished"]),
    }


def iso_time(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()
