"""The node's model store in-process: memory budget (LRU), retiring old versions, idle unloads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
import skops.io as sio
from prometheus_client import CollectorRegistry
from sklearn.linear_model import LogisticRegression

from artifacts.formats import ArtifactFormat, sha256_hex
from artifacts.manifest import Manifest, RuntimeChoice
from artifacts.onnx_conversion import choose_runtime
from artifacts.schema import inspect_schema
from metrics.definitions import ModelhostMetrics
from modelhost.artifact_cache import ArtifactCache
from modelhost.errors import InvalidInput, MemoryBudgetExceeded, ModelNotLoaded
from modelhost.store import ModelStore


def _manifest(cache_dir: Path, name: str, version: str, seed: int) -> Manifest:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(50, 3))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    data = sio.dumps(model)
    (cache_dir / sha256_hex(data)).write_bytes(data)  # cached: no inferrer needed
    return Manifest(
        name=name, version=version, format=ArtifactFormat.SKOPS, sha256=sha256_hex(data),
        size=len(data), created=datetime.now(UTC), signature=inspect_schema(model),
    )  # fmt: skip


def _store(tmp_path: Path, budget: int | None = None) -> ModelStore:
    unreachable = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    cache = ArtifactCache(tmp_path, "http://inferrer", unreachable)
    return ModelStore("node-t", cache, ModelhostMetrics(CollectorRegistry(), "node-t"), budget)


def test_memory_budget_unloads_the_least_recently_used(tmp_path: Path) -> None:
    a, b, c = (_manifest(tmp_path, n, "1", seed) for seed, n in enumerate("abc"))
    store = _store(tmp_path, budget=a.size + b.size + 10)

    async def scenario() -> None:
        await store.ensure_loaded(a)
        await store.ensure_loaded(b)
        await store.predict("a", "1", a.sha256, [[0, 0, 0]], ["predict"])  # b is now least recently used
        await store.ensure_loaded(c)

    asyncio.run(scenario())
    assert sorted(m.name for m in store.loaded()) == ["a", "c"]
    assert ("b", "1") in store.evicted
    with pytest.raises(MemoryBudgetExceeded):
        asyncio.run(_store(tmp_path, budget=10).ensure_loaded(a))


def test_old_versions_retire_and_idle_models_scale_to_zero(tmp_path: Path) -> None:
    old, new = _manifest(tmp_path, "m", "1", 1), _manifest(tmp_path, "m", "2", 2)
    store = _store(tmp_path)

    async def load_both() -> None:
        await store.ensure_loaded(old)
        await store.ensure_loaded(new)

    asyncio.run(load_both())
    stored = {("m", "1", old.sha256), ("m", "2", new.sha256)}
    store.retire({("m", "2")}, stored, grace_s=60)
    assert [m.version for m in store.loaded()] == ["1", "2"]  # 1 is stored: it waits out its grace
    store.retire({("m", "2")}, stored, grace_s=0)
    assert [m.version for m in store.loaded()] == ["2"]
    store.evict_idle(idle_s=0)
    assert store.loaded() == [] and ("m", "2") in store.evicted
    with pytest.raises(ModelNotLoaded):
        asyncio.run(store.predict("m", "2", new.sha256, [[0, 0, 0]], ["predict"]))


def test_predict_checks_outputs_and_shape(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, "m", "1", 3)
    store = _store(tmp_path)

    async def scenario() -> dict[str, list[object]]:
        await store.ensure_loaded(manifest)
        with pytest.raises(InvalidInput, match="expected 3 features"):
            await store.predict("m", "1", manifest.sha256, [[0, 0]], ["predict"])
        with pytest.raises(InvalidInput, match="not available"):
            await store.predict("m", "1", manifest.sha256, [[0, 0, 0]], ["transform"])
        return await store.predict("m", "1", manifest.sha256, [[0, 0, 0]], ["predict", "predict_proba"])

    outputs = asyncio.run(scenario())
    assert set(outputs) == {"predict", "predict_proba"}
    assert store.in_flight == 0


def test_a_version_is_served_only_as_the_artifact_the_inferrer_names(tmp_path: Path) -> None:
    """A model deleted and deployed again reuses its version numbers: a node that still has the old
    artifact under (name, "1") must not answer for the new one."""
    old, new = _manifest(tmp_path, "m", "1", 4), _manifest(tmp_path, "m", "1", 5)
    store = _store(tmp_path)

    async def scenario() -> None:
        await store.ensure_loaded(old)
        assert store.loaded_sha256(("m", "1")) == old.sha256
        with pytest.raises(ModelNotLoaded):
            await store.predict("m", "1", new.sha256, [[0, 0, 0]], ["predict"])
        await store.ensure_loaded(new)  # replaces the old artifact under the same key
        assert store.loaded_sha256(("m", "1")) == new.sha256
        await store.predict("m", "1", new.sha256, [[0, 0, 0]], ["predict"])
        with pytest.raises(ModelNotLoaded):
            await store.predict("m", "1", old.sha256, [[0, 0, 0]], ["predict"])

    asyncio.run(scenario())


def test_the_same_upload_under_another_runtime_is_another_artifact(tmp_path: Path) -> None:
    """Deployed compiled, deleted, deployed again from the same file with runtime=sklearn: a node
    that missed the delete still holds the graph under (name, "1"), and must load the upload."""
    upload = _manifest(tmp_path, "m", "1", 6)
    model = sio.loads((tmp_path / upload.sha256).read_bytes(), trusted=["numpy.dtype"])
    compiled = choose_runtime(model, "auto")
    assert compiled.graph is not None, compiled.choice
    (tmp_path / sha256_hex(compiled.graph)).write_bytes(compiled.graph)
    as_graph = upload.model_copy(update={"runtime": compiled.choice})
    as_sklearn = upload.model_copy(update={"runtime": RuntimeChoice(runtime="sklearn", reason="asked")})
    store = _store(tmp_path)

    async def scenario() -> None:
        await store.ensure_loaded(as_graph)
        assert store.loaded_sha256(("m", "1")) == as_graph.served_sha256 != upload.sha256
        with pytest.raises(ModelNotLoaded):  # the gateway names the upload: not what is loaded
            await store.predict("m", "1", as_sklearn.served_sha256, [[0, 0, 0]], ["predict"])
        await store.ensure_loaded(as_sklearn)
        assert store.loaded_sha256(("m", "1")) == upload.sha256
        # scikit-learn's own refusal of NaN, not the compiled graph's
        with pytest.raises(InvalidInput, match="Input X contains NaN"):
            await store.predict("m", "1", upload.sha256, [[None, 0, 0]], ["predict"])

    asyncio.run(scenario())
