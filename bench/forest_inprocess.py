"""In-process cost of the bench's 100-tree RandomForest (depth 10, 20 features) against batch rows.

    .venv/bin/python -m bench.forest_inprocess [--repeat 40]

For 1, 8, 32, 64, 128, 512 rows: predict() and predict_proba() as fitted (n_jobs=None), a manual
loop over the trees (no joblib at all: the floor of the tree work), and the joblib Parallel call
alone with 100 empty tasks (the per-call dispatch overhead sklearn pays). Also the same via the
modelhost's own path (np.asarray(...).tolist()) and orjson decode/encode of a batch body.
Prints markdown tables (median ms per call, and µs per row).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import orjson
from joblib import Parallel, delayed

from bench.throughput import make_models


def timed(call: Callable[[], Any], repeat: int) -> float:
    call()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def manual_proba(model: Any, x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    total = model.estimators_[0].tree_.predict(x)
    for est in model.estimators_[1:]:
        total = total + est.tree_.predict(x)
    return total


def _noop() -> None:
    return None


def _node_path(rf: Any, x: np.ndarray) -> list[Any]:
    """What a node does around the predict: the answer as lists."""
    return list(np.asarray(rf.predict(x)).tolist())


def _codec(rf: Any, rows: int, body: bytes) -> np.ndarray:
    """A batch body parsed and an answer written, as a node does."""
    orjson.dumps({"outputs": {"predict": rf.classes_[:1].tolist() * rows}})
    return np.asarray(orjson.loads(body)["instances"], dtype=float)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    models, _ = make_models()
    rf = models["rf"]
    print(f"n_jobs={rf.n_jobs}, n_estimators={rf.n_estimators}, max_depth={rf.max_depth}")
    rng = np.random.default_rng(1)
    print(
        "\n| rows | predict ms | predict_proba ms | trees, no joblib ms | joblib 100 no-op tasks ms "
        "| predict µs/row | node path (predict+tolist) ms | orjson loads+dumps body ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    noop_parallel = timed(
        lambda: Parallel(n_jobs=rf.n_jobs, prefer="threads")(delayed(_noop)() for _ in range(100)),
        args.repeat,
    )
    for rows in (1, 8, 32, 64, 128, 512):
        x = rng.normal(size=(rows, 20))
        body = orjson.dumps({"version": "1", "sha256": "x" * 64, "instances": x.tolist()})
        pred = timed(partial(rf.predict, x), args.repeat)
        proba = timed(partial(rf.predict_proba, x), args.repeat)
        manual = timed(partial(manual_proba, rf, x), args.repeat)
        node = timed(partial(_node_path, rf, x), args.repeat)
        codec = timed(partial(_codec, rf, rows, body), args.repeat)
        print(
            f"| {rows} | {pred:.2f} | {proba:.2f} | {manual:.2f} | {noop_parallel:.2f} | "
            f"{pred * 1000 / rows:,.0f} | {node:.2f} | {codec:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
