"""An inference graph against the same work done otherwise, on a real fleet.

    .venv/bin/python -m bench.graphs [--nodes 3] [--seconds 10] [--concurrency 32]

Three models deployed apart (a StandardScaler, a PCA, a LogisticRegression fitted on their
output) and the same three as one scikit-learn Pipeline. At `--concurrency` for `--seconds` each:
- the 3-step graph: one `POST /api/v1/graphs/{name}/predict` per row;
- the Pipeline: one `POST /api/v1/models/{name}/predict` per row (one model call);
- the same chain client-side: three predict calls in a row per row (transform, transform,
  predict_proba), each answer sent on as the next call's rows.
Prints req/s, p50 and p99 (client side, aiohttp), and the graph's own overhead (the gateway's
`modelfleet_graph_overhead_seconds`: the time of a graph run with no model call under way).
The load generator shares the machine's cores with the fleet.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import orjson
import skops.io as sio
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from deploy.ephemeral_fleet import RunningFleet, start_fleet

ROW = [[0.5, -1.2, 0.3, 2.2, -0.7, 1.1]]
_JSON = {"content-type": "application/json"}
Call = Callable[[aiohttp.ClientSession], Awaitable[None]]


def _deploy(fleet: RunningFleet) -> None:
    x, y = make_classification(n_samples=2000, n_features=6, n_informative=4, random_state=0)
    scaler = StandardScaler().fit(x)
    pca = PCA(n_components=4).fit(scaler.transform(x))
    logistic = LogisticRegression().fit(pca.transform(scaler.transform(x)), y)
    for name, model in (("b-scale", scaler), ("b-reduce", pca), ("b-classify", logistic)):
        assert fleet.deploy(name, sio.dumps(model)).status_code == 201
    pipeline = Pipeline([("s", scaler), ("p", pca), ("c", logistic)])
    assert fleet.deploy("b-pipeline", sio.dumps(pipeline)).status_code == 201
    graph = {
        "apiVersion": "modelfleet/v1", "kind": "InferenceGraph", "name": "b-graph",
        "steps": [
            {"name": "scale", "model": "b-scale", "output": "transform"},
            {"name": "reduce", "model": "b-reduce", "output": "transform"},
            {"name": "classify", "model": "b-classify", "output": "predict_proba"},
        ],
    }  # fmt: skip
    answer = httpx.post(f"{fleet.url}/api/v1/graphs", json=graph, headers=fleet.auth, timeout=30)
    assert answer.status_code == 200, answer.text


def _calls(url: str) -> dict[str, Call]:
    async def post(client: aiohttp.ClientSession, path: str, body: dict[str, object]) -> list[object]:
        async with client.post(url + path, data=orjson.dumps(body), headers=_JSON) as answer:
            answer.raise_for_status()
            predictions: list[object] = orjson.loads(await answer.read())["predictions"]
            return predictions

    async def graph(client: aiohttp.ClientSession) -> None:
        await post(client, "/api/v1/graphs/b-graph/predict", {"instances": ROW})

    async def pipeline(client: aiohttp.ClientSession) -> None:
        await post(client, "/api/v1/models/b-pipeline/predict", {"instances": ROW, "output": "predict_proba"})

    async def client_side(client: aiohttp.ClientSession) -> None:
        scaled = await post(
            client, "/api/v1/models/b-scale/predict", {"instances": ROW, "output": "transform"}
        )
        reduced = await post(
            client, "/api/v1/models/b-reduce/predict", {"instances": scaled, "output": "transform"}
        )
        await post(
            client, "/api/v1/models/b-classify/predict", {"instances": reduced, "output": "predict_proba"}
        )

    return {"3-step graph": graph, "one Pipeline model": pipeline, "client-side chain (3 calls)": client_side}


async def _load(call: Call, concurrency: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker(client: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await call(client)
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as client:
        await call(client)  # warm: connections, models loaded
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies


def _overhead(fleet: RunningFleet) -> tuple[float, int, str]:
    """The graph's own time per run: its mean, its count, and the bucket its median lies in."""
    text = httpx.get(f"{fleet.url}/metrics", timeout=10).text
    metric = "modelfleet_graph_overhead_seconds"
    total = float(re.search(rf'{metric}_sum{{graph="b-graph"}} (\S+)', text)[1])  # type: ignore[index]
    count = int(float(re.search(rf'{metric}_count{{graph="b-graph"}} (\S+)', text)[1]))  # type: ignore[index]
    buckets = [
        (float(bound), float(n))
        for bound, n in re.findall(rf'{metric}_bucket{{graph="b-graph",le="([^"+]+)"}} (\S+)', text)
    ]
    lower = 0.0
    for bound, cumulative in buckets:
        if cumulative >= count / 2:
            return total / count, count, f"{lower * 1000:.3f}-{bound * 1000:.3f} ms"
        lower = bound
    return total / count, count, f"> {lower * 1000:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp), nodes=args.nodes, extra_args=("--no-example",))
        try:
            _deploy(fleet)
            print(f"# bench.graphs: {args.nodes} nodes, c={args.concurrency}, {args.seconds:.0f} s each\n")
            print("| setup | req/s | p50 ms | p99 ms |")
            print("|---|---:|---:|---:|")
            for name, call in _calls(fleet.url).items():
                latencies = np.array(asyncio.run(_load(call, args.concurrency, args.seconds)))
                p50, p99 = np.percentile(latencies, [50, 99]) * 1000
                print(f"| {name} | {len(latencies) / args.seconds:,.0f} | {p50:.2f} | {p99:.2f} |")
            mean, count, median = _overhead(fleet)
            print(f"\ngraph overhead over {count:,} runs: mean {mean * 1000:.3f} ms, median in {median}")
        finally:
            fleet.stop()


if __name__ == "__main__":
    main()
