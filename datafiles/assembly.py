"""A file job's parts read back as one stream of rows (CSV: one header, the first part's), and an
output file's rows counted, to verify it before anything is reported done."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from datafiles.locations import Location, Storage

_BLOCK = 2**20


def part_blocks(storage: Storage, parts: list[Location], fmt: str) -> Iterator[bytes]:
    """The parts' bytes in order, a block at a time; a CSV part after the first loses its header."""
    for number, part in enumerate(parts):
        skip_header = fmt == "csv" and number > 0
        with storage.open_read(part) as source:
            while block := source.read(_BLOCK):
                if skip_header:
                    if b"\n" not in block:
                        continue  # still in the header line
                    block, skip_header = block.split(b"\n", 1)[1], False
                if block:
                    yield block


def count_rows(storage: Storage, location: Location, fmt: str) -> int:
    """The rows of an output file: its lines (JSON lines), or its CSV records but the header (a
    quoted cell may hold a line break)."""
    with storage.open_read(location) as source:
        if fmt != "csv":
            return sum(block.count(b"\n") for block in iter(lambda: source.read(_BLOCK), b""))
        text = io.TextIOWrapper(source, encoding="utf-8", newline="")
        return max(sum(1 for _ in csv.reader(text)) - 1, 0)
