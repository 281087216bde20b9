"""How a watch finds whole files: inotify wakes it for a change in its folder, and a file is taken
only once the same version of it has been listed for the settle time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from datafiles.locations import FileEntry
from inferrer.watches.detection import FolderListener, Settling

pytestmark = pytest.mark.anyio


async def test_inotify_wakes_the_watch_whose_folder_changed(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    woken: list[str] = []
    listener = FolderListener(woken.append, asyncio.get_running_loop())
    listener.follow({"wa": tmp_path / "a", "wb": tmp_path / "b", "gone": tmp_path / "none"}, time.monotonic())
    try:
        assert listener.watching("wa") and listener.watching("wb") and not listener.watching("gone")
        await asyncio.sleep(0.3)  # the watcher is set up
        (tmp_path / "b" / "x.csv").write_text("a,b\n")
        for _ in range(50):
            if woken:
                break
            await asyncio.sleep(0.05)
        assert set(woken) == {"wb"}
        listener.follow({"wa": tmp_path / "a"}, time.monotonic())
        assert listener.watching("wa") and not listener.watching("wb")
    finally:
        listener.close()
    assert not listener.watching("wa")


def test_a_file_is_taken_once_unchanged_for_the_settle_time() -> None:
    settling = Settling(settle_s=1.0)
    growing = [FileEntry("f.csv", 10, "10:1")]
    assert settling.settled(growing, now=0.0) == []
    assert settling.next_check() == 1.0
    assert settling.settled([FileEntry("f.csv", 20, "20:2")], now=0.9) == []  # still being written
    assert settling.settled([FileEntry("f.csv", 20, "20:2")], now=1.5) == []  # unchanged for 0.6 s
    whole = [FileEntry("f.csv", 20, "20:2")]
    assert settling.settled(whole, now=2.0) == whole
    settling.forget({"f.csv"})
    assert settling.next_check() is None
    assert settling.settled([], now=2.1) == []
