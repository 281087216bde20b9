"""Locations: a path inside the data directory or s3://bucket/key, nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from datafiles.locations import LocationError, S3Settings, Storage, parse_location

REFUSED = [
    "", "/etc/passwd", "../x.jsonl", "in/../../x.jsonl", "a/../b.jsonl", "file:///etc/passwd",
    "http://127.0.0.1/x", "s3://", "s3://bucket", "s3://bucket/", "s3://Bad_Bucket/key",
    "s3://bucket/../key", "s3://bucket//key", "in\x00.jsonl", ".modelfleet/jobs.db", "in/.secret.csv",
]  # fmt: skip


@pytest.mark.parametrize("url", REFUSED)
def test_locations_outside_the_data_directory_or_malformed_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(LocationError):
        parse_location(url, tmp_path)


def test_a_link_out_of_the_data_directory_is_refused_and_one_inside_is_followed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "in").mkdir(parents=True)
    outside = tmp_path / "secret.jsonl"
    outside.write_text("{}\n")
    os.symlink(outside, data / "in" / "leak.jsonl")
    os.symlink(tmp_path, data / "up")
    with pytest.raises(LocationError, match="out of the data directory"):
        parse_location("in/leak.jsonl", data)
    with pytest.raises(LocationError):
        parse_location("up/secret.jsonl", data)
    (data / "in" / "real.jsonl").write_text("{}\n")
    os.symlink(data / "in" / "real.jsonl", data / "alias.jsonl")
    assert parse_location("alias.jsonl", data).path == str((data / "in" / "real.jsonl").resolve())


def test_accepted_locations(tmp_path: Path) -> None:
    local = parse_location("in/batch.jsonl", tmp_path)
    assert (local.protocol, local.path, local.name) == (
        "file",
        str(tmp_path.resolve() / "in/batch.jsonl"),
        "batch.jsonl",
    )
    s3 = parse_location("s3://my-bucket/in/batch.csv", tmp_path)
    assert (s3.protocol, s3.path, s3.name) == ("s3", "my-bucket/in/batch.csv", "batch.csv")


def test_a_local_write_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    storage = Storage(tmp_path, S3Settings())
    target = storage.location("out/job/part-00000.jsonl")
    storage.write_atomic(target, b'{"a": 1}\n')
    assert storage.read_range(target, 0, 4) == b'{"a"'
    assert storage.size(target) == 9
    with pytest.raises(TypeError):
        storage.write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert Path(target.path).read_bytes() == b'{"a": 1}\n'  # the earlier content, whole
    assert [p.name for p in Path(target.path).parent.iterdir()] == ["part-00000.jsonl"]  # no temp left
