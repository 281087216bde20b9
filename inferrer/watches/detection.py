"""How a watch finds files that are whole: it lists its folder or prefix (at an interval, and at
once when inotify reports a change in a local folder), and takes a file only once it has seen the
same version of it (size and mtime, or size and ETag) in listings at least `settle_s` apart: one
still being copied in changes between them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import watchfiles

from datafiles.locations import FileEntry

logger = logging.getLogger(__name__)


class Settling:
    """One watch's view, in one gateway process, of the files it has listed but not yet taken."""

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self._first_seen: dict[str, tuple[str, float]] = {}  # name: (identity, when first listed so)

    def settled(self, entries: list[FileEntry], now: float) -> list[FileEntry]:
        """The entries listed with the same identity for at least `settle_s`."""
        listed = {entry.name for entry in entries}
        for gone in set(self._first_seen) - listed:
            del self._first_seen[gone]
        whole = []
        for entry in entries:
            identity, since = self._first_seen.get(entry.name, (None, now))
            if identity != entry.identity:
                self._first_seen[entry.name] = (entry.identity, now)
            elif now - since >= self.settle_s:
                whole.append(entry)
        return whole

    def forget(self, names: set[str]) -> None:
        """Files recorded in the store: nothing more to settle."""
        for name in names:
            self._first_seen.pop(name, None)

    def next_check(self) -> float | None:
        """When the earliest file still settling may be taken (None: none is)."""
        return min((since + self.settle_s for _, since in self._first_seen.values()), default=None)


async def listen(folder: Path, on_change: Callable[[], None], stop: asyncio.Event) -> None:
    """Call `on_change` whenever something in `folder` changes, by inotify, until `stop`. Returns
    (or raises) when inotify cannot watch it: the interval's listings still find every file."""
    async for _ in watchfiles.awatch(
        folder,
        watch_filter=None,
        debounce=50,
        step=20,
        stop_event=stop,
        recursive=False,
        force_polling=False,
        ignore_permission_denied=True,
    ):
        on_change()
