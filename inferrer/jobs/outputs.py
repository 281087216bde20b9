"""What a file job leaves once its partitions are all done, written in a thread before the job is
marked succeeded (and safe to write again: a gateway may die half-way).

A job's parts stay where the nodes wrote them, with `_manifest.json` and then `_SUCCESS` beside
them. A job with `assemble_to` (a watch's) has its parts joined into that one file instead, written
atomically and read back: it is reported only once it holds every row; then the parts go.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from datafiles.assembly import count_rows, part_blocks
from datafiles.locations import Location, Storage
from inferrer.jobs.records import FilePlan, Job, OutputManifest, Partition, PartOutput


class OutputNotVerified(OSError):
    """An assembled output does not hold the rows its parts reported."""


def write_outputs(storage: Storage, job: Job, plan: FilePlan, parts: list[Partition]) -> OutputManifest:
    """The job's result: its manifest, as written."""
    out = plan.output_location
    manifest = OutputManifest(
        job=job.id, model=job.model, version=job.version, sha256=plan.sha256, input=plan.input,
        format=plan.format, output=out, parts=[p.output for p in parts if p.output is not None],
        rows=sum(p.rows_done or 0 for p in parts), bad_rows=sum(p.rows_failed or 0 for p in parts),
    )  # fmt: skip
    if plan.assemble_to is not None:
        return _assemble(storage, plan, plan.assemble_to, parts, manifest)
    written = manifest.model_dump_json(exclude_none=True).encode()
    storage.write_atomic(storage.location(f"{out}/_manifest.json"), written)
    storage.write_atomic(success_marker(storage, plan), b"")
    return manifest.model_copy(update={"manifest": f"{out}/_manifest.json"})


def success_marker(storage: Storage, plan: FilePlan) -> Location:
    return storage.location(f"{plan.output_location}/_SUCCESS")


def _assemble(
    storage: Storage, plan: FilePlan, assemble_to: str, parts: list[Partition], manifest: OutputManifest
) -> OutputManifest:
    fmt = plan.out_format
    target = storage.location(assemble_to)
    rows = manifest.rows
    if not _holds(storage, target, fmt, rows):  # written by an attempt that died before the end
        sources = [storage.location(p.location) for p in manifest.parts if p.location is not None]
        # The output of a gateway killed while writing it leaves a temporary file: cleared here.
        storage.write_blocks_atomic(target, part_blocks(storage, sources, fmt), clear_litter=True)
        if not _holds(storage, target, fmt, rows):
            raise OutputNotVerified(f"{target.url!r} does not hold the {rows} rows written")
    errors = None
    if manifest.bad_rows:  # skipped rows: their reasons beside the output, as one file
        name = PurePosixPath(target.path).name
        errors = f"{assemble_to.rsplit('/', 1)[0]}/_errors/{name}.jsonl"
        error_parts = [
            storage.location(f"{plan.output_location}/_errors/part-{p.idx:05d}.jsonl")
            for p in parts
            if p.rows_failed
        ]
        if error_parts and all(storage.filesystem(e).exists(e.path) for e in error_parts):
            storage.write_blocks_atomic(storage.location(errors), part_blocks(storage, error_parts, "jsonl"))
    storage.remove_tree(storage.location(plan.output_location))  # the parts, now joined
    whole = PartOutput(location=target.url, rows=rows)
    return manifest.model_copy(update={"output": target.url, "parts": [whole], "errors": errors})


def _holds(storage: Storage, target: Location, fmt: str, rows: int) -> bool:
    try:
        return count_rows(storage, target, fmt) == rows
    except FileNotFoundError:
        return False
