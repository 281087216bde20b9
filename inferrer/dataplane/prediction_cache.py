"""A bounded LRU of predictions keyed by (model, version, artifact sha256, outputs, input). Off unless
sized.

The key names the artifact, not only the version: a model deleted and deployed again under the same
name reuses version numbers, and must never be answered from the entries of the one before. Each
gateway process keeps its own cache; when the repository changes (in any process), the next lookup
drops the entries of artifacts that are no longer stored, so every process forgets a deleted model.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from prometheus_client import Counter

from artifacts.manifest import Manifest
from inferrer.dataplane.columns import is_table

CacheKey = tuple[str, str, str, tuple[str, ...], str]  # model, version, sha256, outputs, input digest
Stored = tuple[str, str, str]  # model, version, sha256


class PredictionCache:
    def __init__(self, max_entries: int, hits: Counter, misses: Counter) -> None:
        self._max = max_entries
        self._entries: OrderedDict[CacheKey, dict[str, list[Any]]] = OrderedDict()
        self._hits = hits
        self._misses = misses
        self._generation: object = None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        return self._max > 0

    @staticmethod
    def key(manifest: Manifest, outputs: list[str], rows: np.ndarray) -> CacheKey:
        # A table's cells are Python objects: its array bytes would be their addresses, not values.
        data = orjson.dumps(rows.tolist()) if is_table(rows) else rows.tobytes()
        digest = hashlib.blake2b(data, digest_size=16)
        digest.update(repr((rows.dtype.kind, rows.shape)).encode())
        return (manifest.name, manifest.version, manifest.served_sha256, tuple(outputs), digest.hexdigest())

    def get(self, key: CacheKey) -> dict[str, list[Any]] | None:
        found = self._entries.get(key)
        if found is None:
            self._misses.labels(key[0]).inc()
            return None
        self._entries.move_to_end(key)
        self._hits.labels(key[0]).inc()
        return found

    def put(self, key: CacheKey, outputs: dict[str, list[Any]]) -> None:
        self._entries[key] = outputs
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def follow(self, generation: object, stored: Callable[[], set[Stored]]) -> None:
        """Drop the entries of artifacts no longer stored, once per change of the repository."""
        if generation == self._generation:
            return
        self._generation = generation
        keep = stored()
        for key in [k for k in self._entries if k[:3] not in keep]:
            del self._entries[key]
