"""What a file job leaves once its partitions are all done, written in a thread before the job is
marked succeeded (and safe to write again: a gateway may die half-way).

A job's parts stay where the nodes wrote them, with `_manifest.json` and then `_SUCCESS` beside
them. A job with `assemble_to` (a watch's) has its parts joined into that one file instead, written
atomically and read back: it is reported only once it holds every row; then the parts go.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import orjson

from datafiles.assembly import count_rows, part_blocks
from datafiles.locations import Location, Storage
from inferrer.jobs.submission import output_format


class OutputNotVerified(OSError):
    """An assembled output does not hold the rows its parts reported."""


def write_outputs(storage: Storage, job: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The job's result: its manifest, as written."""
    spec = job["spec"]
    out = spec["output_location"]
    manifest = {
        "job": job["id"], "model": job["model"], "version": job["version"], "sha256": spec["sha256"],
        "input": spec["input"], "format": spec["format"], "output": out,
        "parts": [p["output"] for p in parts], "rows": sum(p["rows_done"] or 0 for p in parts),
        "bad_rows": sum(p["rows_failed"] or 0 for p in parts),
    }  # fmt: skip
    if "assemble_to" in spec:
        return _assemble(storage, spec, parts, manifest)
    storage.write_atomic(storage.location(f"{out}/_manifest.json"), orjson.dumps(manifest))
    storage.write_atomic(success_marker(storage, job), b"")
    return {**manifest, "manifest": f"{out}/_manifest.json"}


def success_marker(storage: Storage, job: dict[str, Any]) -> Location:
    return storage.location(f"{job['spec']['output_location']}/_SUCCESS")


def _assemble(
    storage: Storage, spec: dict[str, Any], parts: list[dict[str, Any]], manifest: dict[str, Any]
) -> dict[str, Any]:
    fmt = output_format(spec)
    target = storage.location(spec["assemble_to"])
    rows = manifest["rows"]
    if not _holds(storage, target, fmt, rows):  # written by an attempt that died before the end
        sources = [storage.location(p["output"]["location"]) for p in parts]
        storage.write_blocks_atomic(target, part_blocks(storage, sources, fmt))
        if not _holds(storage, target, fmt, rows):
            raise OutputNotVerified(f"{target.url!r} does not hold the {rows} rows written")
    errors = None
    if manifest["bad_rows"]:  # skipped rows: their reasons beside the output, as one file
        name = PurePosixPath(target.path).name
        errors = f"{spec['assemble_to'].rsplit('/', 1)[0]}/_errors/{name}.jsonl"
        error_parts = [
            storage.location(f"{spec['output_location']}/_errors/part-{p['idx']:05d}.jsonl")
            for p in parts
            if p["rows_failed"]
        ]
        if error_parts and all(storage.filesystem(e).exists(e.path) for e in error_parts):
            storage.write_blocks_atomic(storage.location(errors), part_blocks(storage, error_parts, "jsonl"))
    storage.remove_tree(storage.location(spec["output_location"]))  # the parts, now joined
    whole = {"location": target.url, "rows": rows}
    return {**manifest, "output": target.url, "parts": [whole], "errors": errors}


def _holds(storage: Storage, target: Location, fmt: str, rows: int) -> bool:
    try:
        return count_rows(storage, target, fmt) == rows
    except FileNotFoundError:
        return False
