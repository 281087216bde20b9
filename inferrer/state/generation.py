"""Which write of the repository a process has seen: every write replaces the generation file, and
a reader compares one stat of it with the file it last read before trusting its in-memory index."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from datafiles.atomic_file import replace_file

Stamp = tuple[int, int]


class Generation:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._seen: Stamp | None = None
        self._lock = threading.Lock()
        self._pinned: BinaryIO | None = None  # the file this process last read, held open

    @property
    def seen(self) -> object:
        return self._seen

    def exists(self) -> bool:
        return self._path.exists()

    def bump(self) -> Stamp:
        """Record a write (by this process, under the repository's write lock)."""
        replace_text(self._path, uuid.uuid4().hex)  # a new inode each time
        with self._lock:
            self._seen = self._pin()
            return self._seen

    def catch_up(self, rescan: Callable[[Stamp], None]) -> None:
        """`rescan` when another process wrote since we last looked (one stat when not). A thread
        that arrives while another rescans waits for that rescan: the stamp is recorded only once
        the index it stands for is in place (recorded before, a writer thread took the old index
        for current, and retention removed a version another process had removed already)."""
        with self._lock:
            if _stamp(self._path) == self._seen:
                return
            stamp = self._pin()
            rescan(stamp)  # after the pin: a write in between makes the next look scan again
            self._seen = stamp

    def _pin(self) -> Stamp:
        """Hold the file open and return its stamp. A file's inode number is reused once the file is
        gone, so an older generation file could come back with the stamp this process last saw, and
        it would miss a write: an open file is never gone, so its number stays ours."""
        try:
            pinned = self._path.open("rb")
        except FileNotFoundError:  # a repository not written yet
            return (0, 0)
        if self._pinned is not None:
            self._pinned.close()
        self._pinned = pinned
        info = os.fstat(pinned.fileno())
        return (info.st_ino, info.st_mtime_ns)


def replace_text(path: Path, text: str) -> None:
    """Readers see the old text or the new."""
    replace_file(path, [text.encode()])


def _stamp(path: Path) -> Stamp:
    try:
        info = os.stat(path)
    except FileNotFoundError:  # a repository not written yet
        return (0, 0)
    return (info.st_ino, info.st_mtime_ns)
