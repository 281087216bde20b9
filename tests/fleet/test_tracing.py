"""One trace per request, on a real fleet (2 nodes behind nginx) exporting to an OTLP receiver the
test runs (testbed/otlp_receiver.py, decoding the protobuf the exporters send). Sampling is 0: only
a request that arrives with a sampled `traceparent` is traced, as Triton does.

A predict's trace covers the gateway (server span, admission, the batch, the upstream call) and the
node (server span, parse, predict, render), each with its right parent; a job's trace has a span per
partition under the job; a graph's has a span per step under the graph."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from deploy.ephemeral_fleet import RunningFleet, start_fleet, wait_until
from testbed.otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.graphs.documents import graph_document

pytestmark = pytest.mark.fleet

X = np.random.default_rng(5).normal(size=(200, 4))
Y = (X[:, 0] + X[:, 1] > 0).astype(int)
ROW = [0.5, -1.0, 2.0, 0.1]


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningFleet, OtlpReceiver]]:
    with otlp_receiver() as receiver:
        env = f"MODELFLEET_TRACING_OTLP_ENDPOINT={receiver.url}\nMODELFLEET_TRACING_SAMPLE_RATIO=0\n"
        fleet = start_fleet(
            tmp_path_factory.mktemp("traced"), nodes=2, env_lines=env, extra_args=("--no-example",)
        )
        try:
            scaler = StandardScaler().fit(X)
            logistic = LogisticRegression().fit(scaler.transform(X), Y)
            for name, model in (("traced-scale", scaler), ("traced-logistic", logistic)):
                assert fleet.deploy(name, sio.dumps(model), version="1").status_code == 201
            yield fleet, receiver
        finally:
            assert fleet.stop() == 0, fleet.log()


def sampled() -> tuple[str, str, dict[str, str]]:
    """A client's own trace: its trace id, its span id and the header that carries both, sampled."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, {"traceparent": f"00-{trace_id}-{span_id}-01"}


def spans_of(receiver: OtlpReceiver, trace_id: str, names: set[str]) -> dict[str, list[ReceivedSpan]]:
    """The trace's spans by name, once every name in `names` arrived (exports come every second)."""
    assert wait_until(lambda: names <= {s.name for s in receiver.trace(trace_id)}, timeout_s=30), sorted(
        {s.name for s in receiver.trace(trace_id)}
    )
    by_name: dict[str, list[ReceivedSpan]] = {}
    for span in receiver.trace(trace_id):
        by_name.setdefault(span.name, []).append(span)
    return by_name


def one(spans: dict[str, list[ReceivedSpan]], name: str, service: str) -> ReceivedSpan:
    found = [s for s in spans[name] if s.service == f"modelfleet-{service}"]
    assert len(found) == 1, (name, service, found)
    return found[0]


def test_one_predict_is_one_trace_across_gateway_batcher_node_and_model(
    traced: tuple[RunningFleet, OtlpReceiver],
) -> None:
    fleet, receiver = traced
    trace_id, client_span, headers = sampled()
    answer = httpx.post(
        f"{fleet.url}/api/v1/models/traced-logistic/predict", json={"instances": [ROW]}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    route = "POST /api/v1/models/{name}/predict"
    spans = spans_of(
        receiver, trace_id, {route, "admission", "batch", "upstream POST", "parse", "predict", "render"}
    )
    gateway = one(spans, route, "inferrer")
    node = one(spans, route, "modelhost")
    assert gateway.parent_id == client_span  # the client's context was taken, not a new trace
    assert gateway.attributes["modelfleet.model"] == "traced-logistic"
    assert one(spans, "admission", "inferrer").parent_id == gateway.span_id
    batch = one(spans, "batch", "inferrer")
    assert batch.parent_id == gateway.span_id and batch.attributes["modelfleet.batch.rows"] == 1
    upstream = one(spans, "upstream POST", "inferrer")
    assert upstream.parent_id == batch.span_id
    assert node.parent_id == upstream.span_id  # through nginx, which passed the traceparent on
    for step in ("parse", "predict", "render"):
        assert one(spans, step, "modelhost").parent_id == node.span_id, step
    assert upstream.attributes["modelfleet.node"] == answer.json()["node"]
    print(f"\none predict: {len(receiver.trace(trace_id))} spans in trace {trace_id}")


def test_requests_without_a_sampled_context_are_not_traced(traced: tuple[RunningFleet, OtlpReceiver]) -> None:
    """Sampling 0: a request without a context, or with one that says not sampled, leaves no span;
    a sampled one sent after them arrives, so the others had their chance to."""
    fleet, receiver = traced
    url = f"{fleet.url}/api/v1/models/traced-logistic/predict"
    unsampled_trace = secrets.token_hex(16)
    before = len(receiver.spans)
    assert httpx.post(url, json={"instances": [ROW]}).status_code == 200
    not_sampled = {"traceparent": f"00-{unsampled_trace}-{secrets.token_hex(8)}-00"}
    assert httpx.post(url, json={"instances": [ROW]}, headers=not_sampled).status_code == 200
    trace_id, _, headers = sampled()
    assert httpx.post(url, json={"instances": [ROW]}, headers=headers).status_code == 200
    spans_of(receiver, trace_id, {"POST /api/v1/models/{name}/predict", "predict"})
    later = receiver.spans[before:]
    assert {s.trace_id for s in later if s.name in ("predict", "batch")} == {trace_id}, later
    assert receiver.trace(unsampled_trace) == []


def test_a_job_is_one_trace_with_a_span_per_partition(traced: tuple[RunningFleet, OtlpReceiver]) -> None:
    fleet, receiver = traced
    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(4000, 4)), columns=["f0", "f1", "f2", "f3"])
    named = LogisticRegression().fit(frame, (frame["f0"] > 0).astype(int))
    assert fleet.deploy("traced-named", sio.dumps(named)).status_code == 201
    source = fleet.data_dir / "data" / "traced.jsonl"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(frame.to_json(orient="records", lines=True))
    trace_id, _, headers = sampled()
    body = {"model": "traced-named", "input": "traced.jsonl", "partition_bytes": 64 * 1024}
    answer = httpx.post(f"{fleet.url}/api/v1/jobs", json=body, headers={**fleet.auth, **headers}, timeout=30)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["partitions"] >= 3
    assert fleet.finished_job(job["id"])["status"] == "succeeded"
    partitions = {f"partition {i}" for i in range(job["partitions"])}
    spans = spans_of(receiver, trace_id, {"job", *partitions})
    submitted = one(spans, "job", "inferrer")
    assert one(spans, "POST /api/v1/jobs", "inferrer").span_id == submitted.parent_id

    def calls_to_nodes() -> list[tuple[ReceivedSpan, ReceivedSpan]]:
        """Each partition attempt's call through nginx and the node's span under it, once exported."""
        children: dict[str, list[ReceivedSpan]] = {}
        for span in receiver.trace(trace_id):
            children.setdefault(span.parent_id, []).append(span)
        found = []
        for attempt in (s for s in receiver.trace(trace_id) if s.name in partitions):
            for call in (c for c in children.get(attempt.span_id, []) if c.name == "upstream POST"):
                found += [(call, node) for node in children.get(call.span_id, [])]
        return found

    attempts = [s for s in receiver.trace(trace_id) if s.name in partitions]
    assert all(s.parent_id == submitted.span_id for s in attempts), attempts  # each under the job
    assert wait_until(lambda: len(calls_to_nodes()) >= len(attempts), timeout_s=30), calls_to_nodes()
    for _, node in calls_to_nodes():
        assert node.service == "modelfleet-modelhost" and node.name == "POST /internal/v1/partitions"
    print(
        f"\njob {job['id']}: {job['partitions']} partitions, {len(receiver.trace(trace_id))} spans, one trace"
    )


def test_a_graph_request_is_one_trace_with_a_span_per_step(traced: tuple[RunningFleet, OtlpReceiver]) -> None:
    fleet, receiver = traced
    spec = graph_document("traced-chain", [
        {"name": "scale", "model": "traced-scale", "output": "transform"},
        {"name": "classify", "model": "traced-logistic", "output": "predict_proba"},
    ])  # fmt: skip
    created = httpx.post(f"{fleet.url}/api/v1/graphs", headers=fleet.auth, json=spec, timeout=30)
    assert created.status_code == 200, created.text
    trace_id, _, headers = sampled()
    answer = httpx.post(
        f"{fleet.url}/api/v1/graphs/traced-chain/predict", json={"instances": [ROW, ROW]}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    spans = spans_of(receiver, trace_id, {"graph traced-chain", "graph step scale", "graph step classify"})
    graph = one(spans, "graph traced-chain", "inferrer")
    for step in ("scale", "classify"):
        assert one(spans, f"graph step {step}", "inferrer").parent_id == graph.span_id, step

    def node_predictions() -> int:
        return sum(
            s.name == "predict" and s.service == "modelfleet-modelhost" for s in receiver.trace(trace_id)
        )

    assert wait_until(lambda: node_predictions() == 2, timeout_s=30), node_predictions()  # one per step


def test_tracing_off_costs_no_header_and_no_span(tmp_path: Path) -> None:
    """Without an endpoint no tracer exists: span() is one shared do-nothing object."""
    from wire import tracing

    assert os.environ.get("MODELFLEET_TRACING_OTLP_ENDPOINT") is None
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {} and tracing.span("x") is tracing.span("y") and tracing.traceparent() is None


def test_under_concurrency_each_sampled_request_keeps_its_whole_trace(
    traced: tuple[RunningFleet, OtlpReceiver],
) -> None:
    """200 requests, 16 at a time, every 10th sampled: batches mix sampled and unsampled requests.
    Each sampled one has its batch, upstream call and node spans in its own trace, or, when another
    sampled request's trace carries the batch it rode in, a link from that batch; and no span lands
    in a trace that nobody sampled."""
    fleet, receiver = traced
    url = f"{fleet.url}/api/v1/models/traced-logistic/predict"
    sampled_ids: list[str] = []

    def send(i: int) -> int:
        headers: dict[str, str] = {}
        if i % 10 == 0:
            trace_id, _, headers = sampled()
            sampled_ids.append(trace_id)
        return httpx.post(url, json={"instances": [ROW]}, headers=headers, timeout=30).status_code

    before = len(receiver.spans)
    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(send, range(200))) == {200}

    def whole(trace_id: str) -> bool:
        spans = {s.span_id: s for s in receiver.trace(trace_id)}
        nodes = [s for s in spans.values() if s.name == "predict" and s.service == "modelfleet-modelhost"]
        if len(nodes) == 1:  # it carries its batch: batch -> upstream call -> node -> predict
            server = spans.get(nodes[0].parent_id)
            upstream = spans.get(server.parent_id) if server else None
            batch = spans.get(upstream.parent_id) if upstream else None
            return batch is not None and batch.name == "batch"
        request = [
            s for s in spans.values() if s.service == "modelfleet-inferrer" and s.name.startswith("POST ")
        ]
        linked = {link for s in receiver.spans if s.name == "batch" for link in s.links}
        return not nodes and any(r.span_id in linked for r in request)  # it rode in another's batch

    assert wait_until(lambda: all(whole(t) for t in sampled_ids), timeout_s=30), [
        sorted(s.name for s in receiver.trace(t)) for t in sampled_ids if not whole(t)
    ]
    assert {s.trace_id for s in receiver.spans[before:]} == set(sampled_ids)
