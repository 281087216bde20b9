"""The files of jobs, for the event loop: an upload kept or dropped, a file job planned, its outputs
written, its result read back; each storage call in a worker thread (jobs.store_async.off_loop)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

from artifacts.manifest import Manifest
from datafiles.formats import OutputFormat
from datafiles.locations import Storage
from inferrer.jobs.outputs import success_marker, write_outputs
from inferrer.jobs.planning import plan_file_job
from inferrer.jobs.records import FilePlan, Job, NewJob, OutputManifest, Partition, PartOutput
from inferrer.jobs.store_async import off_loop
from inferrer.jobs.submission import JobSubmission

_BLOCK = 2**20  # bytes read at a time when a result is streamed


class BinaryReader(Protocol):
    """An uploaded file: its bytes in `file`."""

    file: BinaryIO


class JobFiles:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def keep_upload(self, upload: BinaryReader, input: str) -> None:
        """A multipart job's file, copied whole into the data directory at its `input`."""
        await off_loop(self.storage.write_stream_atomic, self.storage.location(input), upload.file)

    async def drop_upload(self, input: str) -> None:
        """The folder of an upload whose job was refused."""
        await off_loop(shutil.rmtree, Path(self.storage.location(input).path).parent, True)

    async def plan(
        self,
        job_id: str,
        submission: JobSubmission,
        manifest: Manifest,
        deadline_s: float,
        assemble_to: str | None,
    ) -> NewJob:
        return await off_loop(
            plan_file_job, job_id, submission, manifest, self.storage, deadline_s, assemble_to
        )

    async def write_outputs(self, job: Job, plan: FilePlan, parts: list[Partition]) -> OutputManifest:
        return await off_loop(write_outputs, self.storage, job, plan, parts)

    async def withdraw(self, plan: FilePlan) -> None:
        """A job finished otherwise while its outputs were written: no `_SUCCESS` for it."""
        await off_loop(self.storage.remove, success_marker(self.storage, plan))

    async def stream(self, parts: list[PartOutput], fmt: OutputFormat) -> AsyncIterator[bytes]:
        """Each part in turn, read a block at a time (a part is as large as its partition), one
        header in all for CSV: the first part's."""
        for number, part in enumerate(parts):
            assert part.location is not None
            source = await off_loop(self.storage.open_read, self.storage.location(part.location))
            skip_header = fmt == "csv" and number > 0
            try:
                while block := await off_loop(source.read, _BLOCK):
                    if skip_header:
                        if b"\n" not in block:
                            continue  # still in the header line
                        block, skip_header = block.split(b"\n", 1)[1], False
                    yield block
            finally:
                await off_loop(source.close)
