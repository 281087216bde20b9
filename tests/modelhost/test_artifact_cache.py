"""The node's artifact cache on disk: pruned to what stored versions need, within its size budget."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from artifacts.formats import sha256_hex
from modelhost.artifact_cache import ArtifactCache


def _cache(directory: Path, budget: int | None = None) -> ArtifactCache:
    unreachable = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    return ArtifactCache(directory, "http://inferrer", unreachable, budget)


def _cached(directory: Path, content: bytes, used_at: float) -> str:
    sha256 = sha256_hex(content)
    path = directory / sha256
    path.write_bytes(content)
    os.utime(path, (used_at, used_at))
    return sha256


def test_artifacts_no_stored_version_needs_are_deleted(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    now = time.time()
    kept, gone = _cached(tmp_path, b"kept", now), _cached(tmp_path, b"gone", now)
    (tmp_path / "notes.txt").write_text("not an artifact: left alone")
    assert cache.prune(needed={kept}, active=set()) == [gone]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([kept, "notes.txt"])


def test_over_the_budget_the_least_recently_used_go_but_never_the_active_ones(tmp_path: Path) -> None:
    cache = _cache(tmp_path, budget=2500)
    now = time.time()
    oldest_active = _cached(tmp_path, b"a" * 1000, now - 300)
    old = _cached(tmp_path, b"b" * 1000, now - 200)
    recent = _cached(tmp_path, b"c" * 1000, now - 100)
    newest = _cached(tmp_path, b"d" * 1000, now)
    needed = {oldest_active, old, recent, newest}
    assert cache.prune(needed, active={oldest_active}) == [old, recent]
    assert {p.name for p in tmp_path.iterdir()} == {oldest_active, newest}
    alone = _cache(tmp_path, budget=10)  # the active artifact alone is over: it stays
    assert alone.prune({oldest_active}, active={oldest_active}) == [newest]
    assert {p.name for p in tmp_path.iterdir()} == {oldest_active}


def test_a_killed_fetchs_temporary_file_goes_once_old(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    stale, live = tmp_path / f".{'a' * 64}.1.tmp", tmp_path / f".{'b' * 64}.2.tmp"
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    cache.prune(needed=set(), active=set())
    assert not stale.exists()
    assert live.exists()
