"""An inference graph's document read into typed steps (spec.py), every problem of its shape
collected with its path (`steps[2].input`) rather than the first one raised. Conditions are data: an
operator and a value, never an expression to evaluate.

What the steps mean against the deployed models (widths, outputs, references) is checked in
validation.py; this module only reads the document."""

from __future__ import annotations

import math
from typing import Any

from artifacts.names import SEGMENT_RULE, is_path_segment
from artifacts.schema import OUTPUTS
from inferrer.graphs.conditions import finite, read_condition
from inferrer.graphs.spec import (
    API_VERSION,
    COMBINE,
    ENSEMBLE_OUTPUTS,
    KIND,
    MAX_DEPTH,
    MAX_GRAPH_NAME,
    MAX_STEPS,
    OPERATORS,
    REQUEST,
    STEP_KINDS,
    Branch,
    Condition,
    EnsembleStep,
    GraphSpec,
    Member,
    ModelRef,
    ModelStep,
    Problem,
    SelectStep,
    SplitStep,
    Step,
    SwitchStep,
)


class _Reader:
    """Collects the problems of one document as it reads it."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.counted = 0  # steps and members read so far

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def mapping(self, value: Any, path: str, allowed: set[str], required: set[str]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.problem(path, "must be a mapping")
            return None
        for key in sorted(set(value) - allowed, key=str):
            self.problem(
                f"{path}.{key}" if path else str(key),
                f"unknown field (allowed: {', '.join(sorted(allowed))})",
            )
        for key in sorted(required - set(value)):
            self.problem(f"{path}.{key}" if path else key, "is required")
        return value

    def name(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not is_path_segment(value):
            self.problem(path, f"must be a name of {SEGMENT_RULE}")
            return None
        if value == REQUEST:
            self.problem(path, f"{REQUEST!r} names the graph's input: pick another name")
            return None
        return value

    def steps(self, value: Any, path: str, depth: int) -> tuple[Step, ...]:
        self.counted += len(value) if isinstance(value, list) else 0
        if self.counted > MAX_STEPS:
            self.problem(path, f"a graph has at most {MAX_STEPS} steps and ensemble members")
            return ()
        if depth > MAX_DEPTH:
            self.problem(path, f"branches nest at most {MAX_DEPTH} deep")
            return ()
        if not isinstance(value, list) or not value:
            self.problem(path, "must be a non-empty list of steps")
            return ()
        read = (self.step(item, f"{path}[{i}]", depth) for i, item in enumerate(value))
        return tuple(step for step in read if step is not None)

    def step(self, value: Any, path: str, depth: int) -> Step | None:
        if not isinstance(value, dict):
            self.problem(path, "must be a mapping")
            return None
        kinds = [kind for kind in STEP_KINDS if kind in value]
        if len(kinds) != 1:
            self.problem(
                path, f"a step has exactly one of {', '.join(STEP_KINDS)}; this one has {kinds or 'none'}"
            )
            return None
        kind = kinds[0]
        extra = {"version", "follow", "output"} if kind == "model" else set()
        body = self.mapping(value, path, {"name", "input", kind} | extra, {"name"})
        if body is None:
            return None
        name = self.name(body.get("name"), f"{path}.name")
        inputs = self.inputs(body["input"], f"{path}.input") if "input" in body else None
        if name is None:
            return None
        if kind == "model":
            ref = self.ref(body, path)
            output = body.get("output", "predict")
            if output not in OUTPUTS:
                self.problem(f"{path}.output", f"must be one of {', '.join(OUTPUTS)}")
            return ModelStep(name, path, inputs, ref, output) if ref else None
        if kind == "ensemble":
            return self.ensemble(body["ensemble"], name, path, inputs)
        if kind == "switch":
            return self.switch(body["switch"], name, path, inputs, depth)
        if kind == "split":
            return self.split(body["split"], name, path, inputs, depth)
        return self.select(body["select"], name, path, inputs)

    def inputs(self, value: Any, path: str) -> tuple[str, ...] | None:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            self.problem(path, f"must be {REQUEST!r}, an earlier step's name, or a list of earlier steps")
            return None
        if len(set(names)) != len(names):
            self.problem(path, "names a step twice")
        return tuple(names)

    def ref(self, body: dict[str, Any], path: str) -> ModelRef | None:
        model = body.get("model")
        if not isinstance(model, str) or not is_path_segment(model):
            self.problem(f"{path}.model", "must be a model's name")
            return None
        version, follow = body.get("version"), body.get("follow")
        if isinstance(version, int) and not isinstance(version, bool):
            version = str(version)  # YAML reads `version: 2` as a number
        if version is not None and (not isinstance(version, str) or not is_path_segment(version)):
            self.problem(f"{path}.version", "must be a version's name (a string)")
            version = None
        if follow is not None and follow != "active":
            self.problem(f"{path}.follow", "must be 'active' (or left out: the version is pinned at deploy)")
        if follow is not None and version is not None:
            self.problem(f"{path}.follow", "a step names a version or follows the active one, not both")
        return ModelRef(model, version, follow == "active")

    def ensemble(self, value: Any, name: str, path: str, inputs: tuple[str, ...] | None) -> Step | None:
        where = f"{path}.ensemble"
        body = self.mapping(value, where, {"combine", "weights", "output", "members"}, {"combine", "members"})
        if body is None:
            return None
        combine, output, weights = body.get("combine"), body.get("output", "predict"), body.get("weights")
        if combine not in COMBINE:
            self.problem(f"{where}.combine", f"must be one of {', '.join(COMBINE)}")
        if output not in ENSEMBLE_OUTPUTS:
            self.problem(f"{where}.output", f"must be one of {', '.join(ENSEMBLE_OUTPUTS)}")
        elif combine == "vote" and output != "predict":
            self.problem(f"{where}.output", "a vote answers labels: output predict")
        members = self.members(body.get("members"), f"{where}.members")
        if combine == "weighted" or weights is not None:
            numbers = weights if isinstance(weights, list) else []
            ok = all(finite(w) and w >= 0 for w in numbers) and math.isfinite(sum(numbers))
            if not ok or len(numbers) != len(members) or not sum(numbers):
                self.problem(f"{where}.weights", "must be one number >= 0 per member, not all 0")
                weights = None
        if combine not in COMBINE or output not in ENSEMBLE_OUTPUTS or not members:
            return None
        weighted = tuple(float(w) for w in weights) if weights else None
        return EnsembleStep(name, path, inputs, combine, weighted, output, members)

    def members(self, value: Any, path: str) -> tuple[Member, ...]:
        if not isinstance(value, list) or len(value) < 2:
            self.problem(path, "an ensemble has at least two members")
            return ()
        members = []
        for i, item in enumerate(value):
            body = self.mapping(
                item, f"{path}[{i}]", {"name", "model", "version", "follow"}, {"name", "model"}
            )
            if body is None:
                continue
            name = self.name(body.get("name"), f"{path}[{i}].name")
            ref = self.ref(body, f"{path}[{i}]")
            if name is not None and ref is not None:
                members.append(Member(name, f"{path}[{i}]", ref))
        return tuple(members)

    def switch(
        self, value: Any, name: str, path: str, inputs: tuple[str, ...] | None, depth: int
    ) -> Step | None:
        where = f"{path}.switch"
        body = self.mapping(value, where, {"on", "cases", "default"}, {"on", "cases"})
        if body is None:
            return None
        on = body.get("on")
        if not isinstance(on, str):
            self.problem(f"{where}.on", "must name an earlier step whose output routes the rows")
        cases_in = body.get("cases")
        if not isinstance(cases_in, list) or not cases_in:
            self.problem(f"{where}.cases", "must be a non-empty list of {when, steps}")
            cases_in = []
        cases = []
        for i, case in enumerate(cases_in):
            case_path = f"{where}.cases[{i}]"
            fields = self.mapping(case, case_path, {"name", "when", "steps"}, {"when", "steps"})
            if fields is None:
                continue
            label = fields.get("name", f"case-{i}")
            if not isinstance(label, str) or not is_path_segment(label):
                self.problem(f"{case_path}.name", f"must be a name of {SEGMENT_RULE}")
            when = self.condition(fields.get("when"), f"{case_path}.when")
            steps = self.steps(fields.get("steps"), f"{case_path}.steps", depth + 1)
            cases.append(Branch(str(label), case_path, steps, when=when))
        if len({case.name for case in cases}) != len(cases):
            self.problem(f"{where}.cases", "case names must differ")
        default = None
        if "default" not in body:
            self.problem(f"{where}.default", "a switch needs a default branch: no row may go unrouted")
        else:
            steps = self.steps(body["default"], f"{where}.default", depth + 1)
            default = Branch("default", f"{where}.default", steps)
        return SwitchStep(name, path, inputs, on if isinstance(on, str) else "", tuple(cases), default)

    def condition(self, value: Any, path: str) -> Condition | None:
        body = self.mapping(value, path, {"column", *OPERATORS}, {"column"})
        if body is None:
            return None
        condition, problems = read_condition(body, path)
        self.problems += problems
        return condition

    def split(
        self, value: Any, name: str, path: str, inputs: tuple[str, ...] | None, depth: int
    ) -> Step | None:
        where = f"{path}.split"
        body = self.mapping(value, where, {"branches"}, {"branches"})
        branches_in = body.get("branches") if body is not None else None
        if not isinstance(branches_in, list) or len(branches_in) < 2:
            self.problem(f"{where}.branches", "a split has at least two branches")
            return None
        branches = []
        for i, item in enumerate(branches_in):
            branch_path = f"{where}.branches[{i}]"
            fields = self.mapping(item, branch_path, {"name", "weight", "steps"}, {"name", "weight", "steps"})
            if fields is None:
                continue
            label, given = fields.get("name"), fields.get("weight")
            if not isinstance(label, str) or not is_path_segment(label):
                self.problem(f"{branch_path}.name", f"must be a name of {SEGMENT_RULE}")
            weight = float(given) if finite(given) else 0.0
            if not 0 < weight <= _MAX_WEIGHT:
                self.problem(f"{branch_path}.weight", f"must be a number above 0, at most {_MAX_WEIGHT:g}")
            steps = self.steps(fields.get("steps"), f"{branch_path}.steps", depth + 1)
            branches.append(Branch(str(label), branch_path, steps, weight=weight))
        if len({b.name for b in branches}) != len(branches):
            self.problem(f"{where}.branches", "branch names must differ")
        return SplitStep(name, path, inputs, tuple(branches))

    def select(self, value: Any, name: str, path: str, inputs: tuple[str, ...] | None) -> Step | None:
        body = self.mapping(value, f"{path}.select", {"columns"}, {"columns"})
        columns = body.get("columns") if body is not None else None
        listed = columns if isinstance(columns, list) else []
        ok = all(
            (isinstance(c, int) and not isinstance(c, bool) and c >= 0) or isinstance(c, str) for c in listed
        )
        if not listed or not ok:
            self.problem(
                f"{path}.select.columns", "must be a non-empty list of column numbers (from 0) or names"
            )
            return None
        return SelectStep(name, path, inputs, tuple(listed))


_MAX_WEIGHT = 1e6  # a split's weights are shares: their sum stays an ordinary number


def read_graph(document: Any) -> tuple[GraphSpec | None, list[Problem]]:
    """The graph a document describes, and every problem of its shape (the spec is None when the
    document is not a graph at all)."""
    reader = _Reader()
    body = reader.mapping(
        document,
        "",
        {"apiVersion", "kind", "name", "steps", "output"},
        {"apiVersion", "kind", "name", "steps"},
    )
    if body is None:
        return None, reader.problems
    if "apiVersion" in body and body["apiVersion"] != API_VERSION:
        reader.problem("apiVersion", f"must be {API_VERSION!r}")
    if "kind" in body and body["kind"] != KIND:
        reader.problem("kind", f"must be {KIND!r}")
    name = reader.name(body.get("name"), "name") if "name" in body else None
    if name is not None and len(name) > MAX_GRAPH_NAME:
        reader.problem("name", f"a graph's name has at most {MAX_GRAPH_NAME} characters")
        name = None
    steps = reader.steps(body.get("steps"), "steps", 0) if "steps" in body else ()
    output = body.get("output")
    if output is not None and not isinstance(output, str):
        reader.problem("output", "must name a step")
        output = None
    if name is None:
        return None, reader.problems
    return GraphSpec(name, steps, output), reader.problems
