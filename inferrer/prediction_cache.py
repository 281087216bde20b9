"""A bounded LRU of predictions keyed by (model, version, outputs, input). Off unless sized.

A new version never hits an old entry (the version is part of the key); activating or deleting a
model also drops its entries so memory goes to what is served.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np
import orjson
from prometheus_client import Counter

from inferrer.columns import is_table

CacheKey = tuple[str, str, tuple[str, ...], str]


class PredictionCache:
    def __init__(self, max_entries: int, hits: Counter, misses: Counter) -> None:
        self._max = max_entries
        self._entries: OrderedDict[CacheKey, dict[str, list[Any]]] = OrderedDict()
        self._hits = hits
        self._misses = misses

    @property
    def enabled(self) -> bool:
        return self._max > 0

    @staticmethod
    def key(name: str, version: str, outputs: list[str], rows: np.ndarray) -> CacheKey:
        # A table's cells are Python objects: its array bytes would be their addresses, not values.
        data = orjson.dumps(rows.tolist()) if is_table(rows) else rows.tobytes()
        digest = hashlib.blake2b(data, digest_size=16)
        digest.update(repr((rows.dtype.kind, rows.shape)).encode())
        return (name, version, tuple(outputs), digest.hexdigest())

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

    def invalidate(self, name: str) -> None:
        for key in [k for k in self._entries if k[0] == name]:
            del self._entries[key]
