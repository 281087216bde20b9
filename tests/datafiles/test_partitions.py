"""Newline-aligned partitions: every line of any file in exactly one partition, whatever the sizes."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datafiles.partitions import ByteRange, plan_lines, read_lines

# Lines of any bytes but newlines, some far longer than the scan windows drawn below; some blank.
_lines = st.lists(
    st.one_of(
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"x")),  # \r included: CRLF ends
        st.integers(min_value=50, max_value=400).map(lambda n: b"L" * n),
    ),
    max_size=60,
)


def _file(lines: list[bytes], final_newline: bool) -> bytes:
    text = b"\n".join(lines)
    return text + b"\n" if final_newline and lines else text


@settings(max_examples=400, deadline=None)
@given(
    lines=_lines,
    final_newline=st.booleans(),
    has_header=st.booleans(),
    partition_bytes=st.integers(min_value=1, max_value=300),
    window=st.integers(min_value=1, max_value=64),
)
def test_every_line_lies_in_exactly_one_partition(
    lines: list[bytes], final_newline: bool, has_header: bool, partition_bytes: int, window: int
) -> None:
    data = _file(lines, final_newline)
    plan = plan_lines(io.BytesIO(data), len(data), partition_bytes, has_header, window)
    body_start = data.index(b"\n") + 1 if has_header and b"\n" in data else (len(data) if has_header else 0)
    if has_header:
        assert plan.header == data[:body_start].rstrip(b"\r\n")
    # Contiguous, not overlapping, nothing empty, covering the body exactly.
    assert all(r.size > 0 for r in plan.ranges)
    starts = [r.start for r in plan.ranges]
    assert starts == ([body_start, *(r.end for r in plan.ranges[:-1])] if plan.ranges else [])
    assert (plan.ranges[-1].end if plan.ranges else body_start) == len(data)
    # Each range ends at a line end (or the end of the file): no line is cut in two.
    assert all(data[r.end - 1 : r.end] == b"\n" or r.end == len(data) for r in plan.ranges)
    # So the lines read partition by partition are the file's lines, each once, in order.
    read = [line for r in plan.ranges for _, line in read_lines(io.BytesIO(data), r)]
    body = data[body_start:]
    expected = (line.removesuffix(b"\r") for line in body.split(b"\n"))  # LF or CRLF line ends
    assert read == [line for line in expected if line.strip()]


def test_a_partition_is_about_the_asked_size_and_crlf_ends_are_removed() -> None:
    data = b"".join(b'{"id": %d}\r\n' % i for i in range(1000))
    plan = plan_lines(io.BytesIO(data), len(data), 1024, has_header=False)
    assert len(plan.ranges) == pytest.approx(len(data) / 1024, abs=1)
    assert all(1024 <= r.size < 1024 + 20 for r in plan.ranges[:-1])
    first = read_lines(io.BytesIO(data), plan.ranges[0])
    assert first[0] == (1, b'{"id": 0}')


def test_a_header_only_file_has_no_partitions_and_sizes_must_be_positive() -> None:
    plan = plan_lines(io.BytesIO(b"a,b\n"), 4, 10, has_header=True)
    assert plan.header == b"a,b" and plan.ranges == []
    with pytest.raises(ValueError):
        plan_lines(io.BytesIO(b"x\n"), 2, 0, has_header=False)
    assert read_lines(io.BytesIO(b"a\n\n \nb"), ByteRange(0, 6)) == [(1, b"a"), (4, b"b")]
