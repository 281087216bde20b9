"""A deployed graph run on a request's rows: steps in the order written, an ensemble's members and a
switch's branches concurrently, every model call through the balanced, batched prediction path.

A step that fails fails the graph with that failure's status, naming the step and the model: a
graph never answers part of its rows. Each step's time, and the graph's own (the time no model call
was under way), go to the metrics; with a trace, to the answer too."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferrer.dataplane.prediction import PredictionService
from inferrer.errors import GraphStepFailed, InferrerError
from inferrer.graphs.combine import (
    as_columns,
    average,
    choose_branch,
    hard_vote,
    labels_of,
    soft_vote,
)
from inferrer.graphs.conditions import matches
from inferrer.graphs.deployed import DeployedGraph
from inferrer.graphs.spec import (
    REQUEST,
    EnsembleStep,
    ModelRef,
    ModelStep,
    SelectStep,
    SplitStep,
    Step,
    SwitchStep,
)
from metrics.graphs import GraphMetrics
from wire import tracing
from wire.graph_answers import StepTrace

Values = dict[str, np.ndarray]  # step -> its answer, [rows, columns]


@dataclass
class GraphAnswer:
    predictions: list[Any]
    branches: dict[str, str]
    trace: list[StepTrace]


@dataclass
class _Run:
    graph: DeployedGraph
    trace: list[StepTrace] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)
    calls_under_way: int = 0
    calls_since: float = 0.0
    in_calls_s: float = 0.0  # wall time with at least one model call under way

    def call_started(self) -> None:
        if self.calls_under_way == 0:
            self.calls_since = time.perf_counter()
        self.calls_under_way += 1

    def call_ended(self) -> None:
        self.calls_under_way -= 1
        if self.calls_under_way == 0:
            self.in_calls_s += time.perf_counter() - self.calls_since


class GraphRunner:
    def __init__(self, prediction: PredictionService, metrics: GraphMetrics) -> None:
        self._prediction = prediction
        self._metrics = metrics

    def forget(self, graph: str) -> None:
        """A graph deleted: its metric series go."""
        self._metrics.forget(graph)

    async def run(self, graph: DeployedGraph, rows: np.ndarray) -> GraphAnswer:
        run = _Run(graph)
        start = time.perf_counter()
        name = graph.record.name
        try:
            with tracing.span(f"graph {name}", {"modelfleet.graph": name, "modelfleet.rows": len(rows)}):
                values = await self._steps(run, graph.spec.steps, {REQUEST: rows}, (REQUEST,))
        except GraphStepFailed:
            self._metrics.requests(name, "error").inc()
            raise
        answer = values[graph.output]
        elapsed = time.perf_counter() - start
        self._metrics.requests(name, "ok").inc()
        self._metrics.duration(name).observe(elapsed)
        self._metrics.overhead(name).observe(max(0.0, elapsed - run.in_calls_s))
        flat = answer.shape[1] == 1 and graph.wiring.flat
        predictions = answer[:, 0].tolist() if flat else answer.tolist()
        return GraphAnswer(predictions, run.branches, run.trace)

    async def _steps(
        self, run: _Run, steps: tuple[Step, ...], values: Values, first: tuple[str, ...]
    ) -> Values:
        values = dict(values)
        previous = first
        for step in steps:
            inputs = step.inputs if step.inputs is not None else previous
            start = time.perf_counter()
            with tracing.span(f"graph step {step.name}", {"modelfleet.graph": run.graph.record.name}):
                values[step.name] = await self._step(run, step, inputs, values)
            self._metrics.step_duration(run.graph.record.name, step.name).observe(time.perf_counter() - start)
            previous = (step.name,)
        return values

    async def _step(self, run: _Run, step: Step, inputs: tuple[str, ...], values: Values) -> np.ndarray:
        if isinstance(step, ModelStep):
            return await self._call(run, step.name, step.ref, step.output, _joined(values, inputs))
        if isinstance(step, EnsembleStep):
            return await self._ensemble(run, step, _joined(values, inputs))
        if isinstance(step, SelectStep):
            return _columns(_joined(values, inputs), run.graph.wiring.select[step.name], step.name)
        if isinstance(step, SwitchStep):
            return await self._switch(run, step, inputs, values)
        return await self._split(run, step, inputs, values)

    async def _call(self, run: _Run, name: str, ref: ModelRef, output: str, rows: np.ndarray) -> np.ndarray:
        graph = run.graph
        version = ref.version or (None if ref.follow_active else graph.record.pins[name])
        start = time.perf_counter()
        run.call_started()
        try:
            manifest = self._prediction.resolve(ref.model, version)
            prediction = await self._prediction.predict(manifest, _model_input(rows), [output])
        except InferrerError as exc:
            self._metrics.step_errors(graph.record.name, name).inc()
            where = f"model {ref.model!r}" + (f" version {version!r}" if version else "")
            message = f"graph {graph.record.name!r} step {name!r} ({where}) failed: {exc.message}"
            raise GraphStepFailed(exc.status_code, message, name, ref.model) from None
        finally:
            run.call_ended()
        ms = (time.perf_counter() - start) * 1000
        run.trace.append(
            StepTrace(
                step=name,
                model=ref.model,
                version=prediction.version,
                node=prediction.node,
                rows=len(rows),
                ms=round(ms, 3),
            )
        )
        return as_columns(prediction.outputs[output])

    async def _ensemble(self, run: _Run, step: EnsembleStep, rows: np.ndarray) -> np.ndarray:
        first = step.members[0]
        version = first.ref.version or (
            None if first.ref.follow_active else run.graph.record.pins[first.name]
        )
        classes = self._prediction.resolve(first.ref.model, version).signature.classes
        wanted = "predict" if step.combine == "vote" or classes is None else "predict_proba"
        answers = await _all(self._call(run, m.name, m.ref, wanted, rows) for m in step.members)
        if classes is None:
            return average(answers, step.weights)
        if step.combine == "vote":
            return hard_vote(answers, classes, step.weights)
        probabilities = soft_vote(answers, step.weights)
        return probabilities if step.output == "predict_proba" else labels_of(probabilities, classes)

    async def _switch(
        self, run: _Run, step: SwitchStep, inputs: tuple[str, ...], values: Values
    ) -> np.ndarray:
        tested = values[step.on]
        unrouted = np.ones(len(tested), dtype=bool)
        routes = []
        for case in step.cases:
            assert case.when is not None
            column = run.graph.wiring.switch[(step.name, case.name)]
            taken = unrouted & matches(_columns(tested, (column,), step.name)[:, 0], case.when)
            routes.append((case.steps, taken))
            unrouted &= ~taken
        assert step.default is not None
        routes.append((step.default.steps, unrouted))
        picked = [(steps, np.flatnonzero(taken)) for steps, taken in routes if taken.any()]
        answers = await _all(
            self._steps(run, steps, {k: v[rows] for k, v in values.items()}, inputs) for steps, rows in picked
        )
        merged: np.ndarray | None = None
        for (steps, rows), branch_values in zip(picked, answers, strict=True):
            part = branch_values[steps[-1].name]
            if merged is not None and part.shape[1] != merged.shape[1]:
                why = f"its branches answered {merged.shape[1]} and {part.shape[1]} columns"
                raise GraphStepFailed(
                    422, f"graph {run.graph.record.name!r} step {step.name!r}: {why}", step.name, None
                )
            if merged is None:
                merged = np.empty(
                    (len(tested), part.shape[1]), dtype=part.dtype if part.dtype.kind in "biuf" else object
                )
            if merged.dtype != object and part.dtype != merged.dtype:
                merged = (
                    merged.astype(object)
                    if part.dtype.kind not in "biuf"
                    else merged.astype(np.result_type(merged, part))
                )
            merged[rows] = part
        assert merged is not None
        return merged

    async def _split(self, run: _Run, step: SplitStep, inputs: tuple[str, ...], values: Values) -> np.ndarray:
        branch = step.branches[choose_branch([b.weight for b in step.branches])]
        run.branches[step.name] = branch.name
        self._metrics.branches(run.graph.record.name, step.name, branch.name).inc()
        branch_values = await self._steps(run, branch.steps, values, inputs)
        return branch_values[branch.steps[-1].name]


async def _all(calls: Any) -> list[np.ndarray]:
    """Every call's answer, concurrently; the first failure fails them all (the rest are cancelled)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def _joined(values: Values, inputs: tuple[str, ...]) -> np.ndarray:
    if len(inputs) == 1:
        return values[inputs[0]]
    parts = [values[name] for name in inputs]
    if all(p.dtype.kind in "biuf" for p in parts):
        return np.hstack([p.astype(np.float64) for p in parts])
    return np.hstack([p.astype(object) for p in parts])


def _columns(rows: np.ndarray, numbers: tuple[int, ...], step: str) -> np.ndarray:
    """Columns by number; where the width was known only once answered, a number past it fails
    the step (422), never the server."""
    if numbers and max(numbers) >= rows.shape[1]:
        why = f"column {max(numbers)} is past the {rows.shape[1]} columns of its input"
        raise GraphStepFailed(422, f"step {step!r}: {why}", step, None)
    return rows[:, list(numbers)]


def _model_input(rows: np.ndarray) -> np.ndarray:
    """What a model is sent: floats where the values are numbers (labels and counts included), in
    one block of memory (a select's columns are a view)."""
    if rows.dtype.kind in "biu":
        return rows.astype(np.float64)
    if rows.dtype == object and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in rows.flat
    ):
        return rows.astype(np.float64)
    return np.ascontiguousarray(rows)
