"""A file job's parts read back as one stream of rows (CSV: one header, the first part's), and an
output file's rows counted, to verify it before anything is reported done."""

from __future__ import annotations

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
    """The rows of an output file: its lines, but a CSV file's header (a job's rows are lines: a
    CSV record never holds a line break, as partitions are cut at line ends)."""
    with storage.open_read(location) as source:
        lines = sum(block.count(b"\n") for block in iter(lambda: source.read(_BLOCK), b""))
    return max(lines - 1, 0) if fmt == "csv" else lines
