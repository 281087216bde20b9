"""Split a line-oriented file (JSON lines, CSV) into newline-aligned byte ranges.

The planner reads only around each cut: from every multiple of the partition size it scans forward
to the next newline (in windows, so a line longer than a window is still found whole), and the
partition ends just after it. So every line lies in exactly one range, ranges never overlap, a file
without a final newline keeps its last line, and ranges that would hold nothing are dropped. A CSV
file's header line is read once and left out of every range: each partition carries it instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

SCAN_WINDOW = 64 * 1024


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # exclusive

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class LinePlan:
    header: bytes | None  # a CSV header line, without its newline
    ranges: list[ByteRange]


def plan_lines(
    file: BinaryIO, size: int, partition_bytes: int, has_header: bool, window: int = SCAN_WINDOW
) -> LinePlan:
    """Newline-aligned ranges of about `partition_bytes` covering every line of a `size`-byte file
    (after its header line, when `has_header`)."""
    if partition_bytes < 1 or window < 1:
        raise ValueError("partition_bytes and window must be positive")
    header = None
    start = 0
    if has_header:
        start = _after_newline(file, 0, size, window)
        header = _read(file, 0, start).rstrip(b"\r\n")
    ranges = []
    while start < size:
        # The partition ends with the line that holds its last byte (the byte before the cut).
        cut = min(start + partition_bytes, size)
        end = _after_newline(file, cut - 1, size, window)
        ranges.append(ByteRange(start, end))
        start = end
    return LinePlan(header, ranges)


def _after_newline(file: BinaryIO, offset: int, size: int, window: int) -> int:
    """The offset just after the first newline at `offset` or later, or `size` when none follows."""
    while offset < size:
        chunk = _read(file, offset, min(window, size - offset))
        if not chunk:  # the file ended early (cut short since its size was read)
            return offset
        newline = chunk.find(b"\n")
        if newline >= 0:
            return offset + newline + 1
        offset += len(chunk)
    return size


def _read(file: BinaryIO, offset: int, length: int) -> bytes:
    file.seek(offset)
    return file.read(length)


def read_lines(file: BinaryIO, byte_range: ByteRange) -> list[tuple[int, bytes]]:
    """The lines of one range, numbered from 1 within it, without their line ends (LF or CRLF);
    blank lines are counted but left out."""
    data = _read(file, byte_range.start, byte_range.size)
    lines = (line.removesuffix(b"\r") for line in data.split(b"\n"))
    return [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
