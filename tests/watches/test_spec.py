"""Which file names a watch takes (WatchSpec.takes): named as its pattern, never a hidden name or
one a file has while it is still being written (docs/jobs-and-watches.md, "Which files")."""

from __future__ import annotations

import pytest

from inferrer.watches import spec as watch_spec_module
from inferrer.watches.spec import WatchSpec

# The documented ones first, then the code's further ones; each is checked against the code's list.
TEMPORARY_SUFFIXES = [".tmp", ".part", ".partial", ".crdownload", ".temp", ".download", ".swp", "~"]
TEMPORARY_MARKS = ["_COPYING_"]
HIDDEN_PREFIXES = [".", "~"]


def _watch(pattern: str = "*") -> WatchSpec:
    return WatchSpec(name="w", input="in", model="m", output_location="out", pattern=pattern)


def test_every_temporary_name_of_the_code_is_checked_here() -> None:
    assert sorted(watch_spec_module._TEMPORARY_SUFFIXES) == sorted(TEMPORARY_SUFFIXES)
    assert sorted(watch_spec_module._TEMPORARY_MARKS) == sorted(TEMPORARY_MARKS)


@pytest.mark.parametrize("pattern", ["*", "*.csv*", "rows*"])
@pytest.mark.parametrize("suffix", TEMPORARY_SUFFIXES)
def test_a_temporary_suffix_is_never_taken(suffix: str, pattern: str) -> None:
    watch = _watch(pattern)
    assert watch.takes("rows.csv")  # the whole file's name
    assert not watch.takes(f"rows.csv{suffix}")


@pytest.mark.parametrize("mark", TEMPORARY_MARKS)
@pytest.mark.parametrize("pattern", ["*", "*.csv*", "*COPYING*"])
def test_a_name_marked_as_being_copied_is_never_taken(mark: str, pattern: str) -> None:
    watch = _watch(pattern)
    assert watch.takes("rows.COPYING.csv")  # the word alone is no mark
    for name in (f"rows.csv.{mark}", f"{mark}rows.csv", f"rows.{mark}.csv", f"rows.csv{mark}1"):
        assert not watch.takes(name), name


@pytest.mark.parametrize("prefix", HIDDEN_PREFIXES)
@pytest.mark.parametrize("pattern", ["*", "*.csv", "?rows.csv"])
def test_a_hidden_name_is_never_taken(prefix: str, pattern: str) -> None:
    assert _watch(pattern).takes("xrows.csv")
    assert not _watch(pattern).takes(f"{prefix}rows.csv")
