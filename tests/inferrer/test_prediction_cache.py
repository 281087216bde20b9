"""The prediction cache follows the repository: entries name the artifact, and a delete made by any
gateway process (another ModelRepository on the same directory) drops them at the next lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from artifacts.formats import ArtifactFormat
from artifacts.schema import ModelSchema
from inferrer.dataplane.prediction_cache import PredictionCache
from inferrer.state.folder_backend import FolderBackend
from inferrer.state.repository import ModelRepository
from metrics.definitions import InferrerMetrics

SIGNATURE = ModelSchema(n_features=2, outputs=["predict"])
ROWS = np.zeros((1, 2))


def _cache() -> PredictionCache:
    metrics = InferrerMetrics(CollectorRegistry())
    return PredictionCache(10, metrics.cache_hits, metrics.cache_misses)


def test_a_delete_in_another_process_drops_the_entries_and_new_artifacts_never_hit_them(
    tmp_path: Path,
) -> None:
    mine, theirs = (
        ModelRepository(FolderBackend(tmp_path)),
        ModelRepository(FolderBackend(tmp_path)),
    )  # two gateway processes
    old = mine.store("m", None, b"one", ArtifactFormat.SKOPS, SIGNATURE)
    kept = mine.store("k", None, b"kept", ArtifactFormat.SKOPS, SIGNATURE)
    cache = _cache()
    cache.follow(mine.generation(), mine.stored)
    for manifest in (old, kept):
        cache.put(PredictionCache.key(manifest, ["predict"], ROWS), {"predict": [manifest.name]})

    theirs.delete("m")
    new = theirs.store("m", None, b"two", ArtifactFormat.SKOPS, SIGNATURE)
    assert new.version == old.version and new.sha256 != old.sha256  # the number comes back
    assert PredictionCache.key(new, ["predict"], ROWS) != PredictionCache.key(old, ["predict"], ROWS)

    cache.follow(mine.generation(), mine.stored)  # what a prediction in this process does first
    assert cache.get(PredictionCache.key(old, ["predict"], ROWS)) is None  # dropped, not only missed
    assert cache.get(PredictionCache.key(kept, ["predict"], ROWS)) == {"predict": ["k"]}
    assert len(cache) == 1
