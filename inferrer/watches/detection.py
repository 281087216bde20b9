"""How a watch finds files that are whole: it lists its folder or prefix (at an interval, and at
once when inotify reports a change in a local folder), and takes a file only once it has seen the
same version of it (size and mtime, or size and ETag) in listings at least `settle_s` apart: one
still being copied in changes between them."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import watchfiles

from datafiles.locations import FileEntry

logger = logging.getLogger(__name__)

_RETRY_S = 10.0


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


class FolderListener:
    """One inotify watcher (watchfiles) over every local watched folder, in one thread of its own
    (not a pool's: hundreds of watches take one thread); a change in a folder calls `on_change`
    with its watch's name, on the event loop. Where inotify fails, `watching` says so and the
    listings carry on alone."""

    def __init__(self, on_change: Callable[[str], None], loop: asyncio.AbstractEventLoop) -> None:
        self._on_change = on_change
        self._loop = loop
        self._folders: dict[Path, str] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._next_try = 0.0

    def follow(self, folders: dict[str, Path], now: float) -> None:
        """Listen to these folders (watch name: folder) from now on; a listener that failed is
        started again at most every `_RETRY_S`."""
        wanted = {folder: name for name, folder in folders.items() if folder.is_dir()}
        alive = self._thread is not None and self._thread.is_alive()
        if wanted == self._folders and (alive or now < self._next_try):
            return
        self.close()
        self._folders, self._next_try = wanted, now + _RETRY_S
        if wanted:
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._listen, args=(dict(wanted), self._stop), name="watch-inotify", daemon=True
            )
            self._thread.start()

    def watching(self, name: str) -> bool:
        return self._thread is not None and self._thread.is_alive() and name in self._folders.values()

    def _listen(self, folders: dict[Path, str], stop: threading.Event) -> None:
        try:
            for changes in watchfiles.watch(
                *folders, watch_filter=None, debounce=50, step=20, stop_event=stop, rust_timeout=1000,
                raise_interrupt=False, recursive=False, force_polling=False, ignore_permission_denied=True,
            ):  # fmt: skip
                parents = {Path(path).parent for _, path in changes}
                for name in {folders[parent] for parent in parents if parent in folders}:
                    self._loop.call_soon_threadsafe(self._on_change, name)
        except Exception as exc:  # no inotify here, a folder gone: the listings go on alone
            logger.info("inotify stopped (%s): watched folders are listed at the interval only", exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
