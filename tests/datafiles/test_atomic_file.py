"""A local file replaced whole, and what killed writers of it left cleared when asked."""

from __future__ import annotations

import os
import time
from pathlib import Path

from datafiles.atomic_file import is_temporary, replace_file


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "scored.csv"
    replace_file(target, [b"a,b\n", b"1,2\n"])
    replace_file(target, [b"a,b\n3,4\n"])
    assert target.read_bytes() == b"a,b\n3,4\n"
    assert [p.name for p in target.parent.iterdir()] == ["scored.csv"]


def test_clearing_litter_deletes_what_killed_writers_of_that_file_left_and_nothing_else(
    tmp_path: Path,
) -> None:
    target = tmp_path / "scored[1].csv"  # a name glob would read as a pattern
    killed = tmp_path / ".scored[1].csv.0a1b.tmp"
    alive = tmp_path / ".scored[1].csv.2c3d.tmp"  # a writer that is still writing
    other = tmp_path / ".other.csv.4e5f.tmp"
    for path in (killed, alive, other):
        path.write_bytes(b"half")
    an_hour_ago = time.time() - 3600
    for path in (killed, other):
        os.utime(path, (an_hour_ago, an_hour_ago))
    os.utime(alive, (time.time() + 60, time.time() + 60))
    assert all(is_temporary(p) for p in (killed, alive, other))

    replace_file(target, [b"whole"])
    assert killed.exists()  # not asked
    replace_file(target, [b"whole"], clear_litter=True)
    assert not killed.exists()
    assert alive.exists() and other.exists()
    assert target.read_bytes() == b"whole"
