"""Bounded log files for the local launcher's children: what Docker's json-file driver does in compose.

Each child writes its stdout and stderr into a pipe; a thread of the launcher copies the pipe into
`<name>.log` and rotates it by size: at `max_bytes` the file becomes `<name>.log.1` (the older ones
shift, the oldest goes), so one service never holds more than `max_files` files of at most
`max_bytes` each. The children never reopen anything (nginx writes its access and error lines to the
same pipe), and a full disk drops lines rather than block a child that serves requests.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

_PIPE_BYTES = 2**20  # what a child may write ahead of the copying thread before it would block
_READ_BYTES = 2**16


class RotatingLog:
    """`path` and its rotated predecessors `path.1` … `path.<max_files - 1>`, newest first. Whole
    lines stay in one file; only a line longer than `max_bytes` is split."""

    def __init__(self, path: Path, max_bytes: int, max_files: int) -> None:
        if max_bytes < 1 or max_files < 1:
            raise ValueError("a log needs max_bytes >= 1 and max_files >= 1")
        self.path = path
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.dropped_bytes = 0  # lines lost to write errors (a full disk)
        self._lock = threading.Lock()  # a restarted child's pipe may drain beside its successor's
        self._file = path.open("ab", buffering=0)
        self._size = self._file.seek(0, os.SEEK_END)

    def write(self, data: bytes | bytearray, length: int | None = None) -> None:
        """Append `data[:length]` (all of it by default), rotating at line ends as needed."""
        end = len(data) if length is None else length
        with self._lock:
            try:
                self._write(data, end)
            except OSError as exc:
                if not self.dropped_bytes:
                    logger.warning("cannot write %s (%s): dropping its lines", self.path, exc)
                self.dropped_bytes += end

    def _write(self, data: bytes | bytearray, end: int) -> None:
        view = memoryview(data)
        start = 0
        while start < end:
            room = self.max_bytes - self._size
            if end - start <= room:
                self._append(view[start:end])
                return
            cut = data.rfind(b"\n", start, start + room) + 1  # the end of the last whole line that fits
            if cut == 0 and self._size == 0:
                cut = start + room  # one line longer than a whole file
            if cut > start:
                self._append(view[start:cut])
                start = cut
            self._rotate()

    def _append(self, data: memoryview) -> None:
        self._file.write(data)
        self._size += len(data)

    def _rotate(self) -> None:
        self._file.close()
        for index in range(self.max_files - 1, 0, -1):
            older = self._numbered(index - 1) if index > 1 else self.path
            if older.exists():
                os.replace(older, self._numbered(index))
        # max_files == 1: the one file starts again empty
        self._file = self.path.open("wb", buffering=0)
        self._size = 0

    def _numbered(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def files(self) -> list[Path]:
        """The current file and every rotated one that exists, newest first."""
        candidates = [self.path, *(self._numbered(i) for i in range(1, self.max_files))]
        return [p for p in candidates if p.exists()]

    def close(self) -> None:
        with self._lock:
            self._file.close()


def log_pipe(log: RotatingLog) -> tuple[int, threading.Thread]:
    """A pipe whose write end the child gets as stdout and stderr, and the daemon thread that copies
    what comes out of it into `log` until every writer has closed it. Close the write end in the
    launcher once the child has it; join the thread after the child stopped, for its last lines."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):  # a larger buffer where the kernel allows it
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    copier = threading.Thread(target=_copy, args=(read_end, log), name=f"log {log.path.name}", daemon=True)
    copier.start()
    return write_end, copier


def _copy(read_end: int, log: RotatingLog) -> None:
    buffer = bytearray(_READ_BYTES)  # one buffer for the pipe's whole life: no allocation per read
    try:
        while length := os.readv(read_end, [buffer]):
            log.write(buffer, length)
    finally:
        os.close(read_end)
