"""A graph checked against the models as deployed, every problem at once, and its plan.

A model step's input must have the width its model was fitted on, an output must be one the version
offers (shapes.py works both out from stored signatures), a step may take only earlier steps that
it can see (so there is no cycle), every step must be used, names are unique, and a switch routes
every row. What passes is the plan: the stages in order, what runs in parallel, and the version
each call is pinned to."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from artifacts.manifest import Manifest
from inferrer.errors import ModelNotFound
from inferrer.graphs.shapes import (
    UNKNOWN,
    Shape,
    column_number,
    ensemble_output,
    fits,
    joined,
    model_output,
    selected,
)
from inferrer.graphs.spec import (
    REQUEST,
    EnsembleStep,
    GraphSpec,
    ModelRef,
    ModelStep,
    Problem,
    SelectStep,
    SplitStep,
    Step,
    SwitchStep,
)
from inferrer.graphs.traversal import branches_of, every_step
from inferrer.state.repository import ModelRepository
from wire.graph_answers import GraphPlan, PlannedBranch, PlannedCall, PlannedStep

Scope = dict[str, Shape]  # the steps a step can see, by name


@dataclass
class Wiring:
    """What running the graph needs beyond its steps, worked out once: the column numbers that
    select steps keep and switch cases test, and whether the answer is one value per row."""

    select: dict[str, tuple[int, ...]] = field(default_factory=dict)
    switch: dict[tuple[str, str], int] = field(default_factory=dict)  # (switch, case) -> column
    flat: bool = False


@dataclass(frozen=True)
class Checked:
    plan: GraphPlan | None  # None: there are problems
    wiring: Wiring
    problems: list[Problem]


def check_graph(spec: GraphSpec, repository: ModelRepository, pins: dict[str, str] | None = None) -> Checked:
    """The plan and no problems, or the problems; `pins`: the versions a stored graph was deployed
    with (model steps that do not follow the active version keep them)."""
    walk = _Walk(repository, pins or {})
    return walk.check(spec)


class _Walk:
    def __init__(self, repository: ModelRepository, pins: dict[str, str]) -> None:
        self.repository = repository
        self.pins = pins
        self.problems: list[Problem] = []
        self.order: dict[str, int] = {}  # every name -> its place in the document
        self.used: set[str] = set()
        self.request = UNKNOWN  # what a request sends, as the first model that reads it says
        self.wiring = Wiring()

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def check(self, spec: GraphSpec) -> Checked:
        if self.repository.versions_if_any(spec.name):
            self.problem(
                "name", f"a model is named {spec.name!r}: the Open Inference Protocol serves both by name"
            )
        self.number(spec.steps)
        stages, scope, _ = self.steps(spec.steps, {}, (REQUEST,))
        output = spec.output or (spec.steps[-1].name if spec.steps else "")
        if output not in scope:
            self.problem("output", f"no step named {spec.output!r} among the graph's steps")
        self.wiring.flat = output in scope and scope[output].labels
        self.used.add(output)
        for step in every_step(spec.steps):
            if step.name not in self.used:
                why = "no step takes its output and the graph does not answer it"
                self.problem(f"{step.path}.name", f"step {step.name!r} is not used: {why}")
        if self.problems:
            return Checked(None, self.wiring, self.problems)
        width = self.request.width
        plan = GraphPlan(graph=spec.name, version=None, output=output, request_width=width, stages=stages)
        return Checked(plan, self.wiring, [])

    def number(self, steps: tuple[Step, ...]) -> None:
        """Every name in document order; a name used again is a problem where it comes again."""
        for step in steps:
            names = [(step.name, f"{step.path}.name")]
            if isinstance(step, EnsembleStep):
                names += [(m.name, f"{m.path}.name") for m in step.members]
            for name, path in names:
                if name in self.order:
                    self.problem(path, f"the name {name!r} is used twice: steps and members need their own")
                else:
                    self.order[name] = len(self.order)
            for branch in branches_of(step):
                self.number(branch.steps)

    def steps(
        self, steps: tuple[Step, ...], scope: Scope, first: tuple[str, ...]
    ) -> tuple[list[PlannedStep], Scope, Shape]:
        """Plan a list of steps; `first`: the first one's input (the request, a branch's input).
        Answers the stages, what the steps after them can see, and the last step's shape."""
        scope = dict(scope)
        stages, shape, previous = [], UNKNOWN, first
        for step in steps:
            inputs = step.inputs if step.inputs is not None else previous
            stage, shape = self.step(step, inputs, self.input(step, inputs, scope), scope)
            stages.append(stage)
            scope[step.name] = shape
            previous = (step.name,)
        return stages, scope, shape

    def input(self, step: Step, inputs: tuple[str, ...], scope: Scope) -> Shape:
        """The joined shape of the step's inputs, each an earlier step it can see (or the request)."""
        shapes = []
        for ref in inputs:
            seen = self.see(ref, step, scope, f"{step.path}.input")
            if seen is None:
                return UNKNOWN
            shapes.append(seen)
        return joined(shapes)

    def see(self, ref: str, step: Step, scope: Scope, path: str) -> Shape | None:
        if ref == REQUEST:
            return self.request
        if ref in scope:
            self.used.add(ref)
            return scope[ref]
        if ref == step.name:
            self.problem(path, f"step {ref!r} takes its own output: a graph has no cycles")
        elif ref not in self.order:
            self.problem(path, f"no step named {ref!r}")
        elif self.order[ref] > self.order[step.name]:
            self.problem(path, f"{ref!r} comes later: a step takes only earlier steps (no cycles)")
        else:
            self.problem(path, f"{ref!r} is inside a branch this step is not in")
        return None

    def step(
        self, step: Step, inputs: tuple[str, ...], shape: Shape, scope: Scope
    ) -> tuple[PlannedStep, Shape]:
        if isinstance(step, ModelStep):
            manifest = self.model(step.name, step.ref, step.path, shape, inputs, f"{step.path}.input")
            out, calls = UNKNOWN, []
            if manifest is not None:
                out, problem = model_output(manifest, step.output, step.name)
                if problem:
                    self.problem(f"{step.path}.output", problem)
                calls = [_call(step.name, step.ref, manifest)]
            return _planned(step, inputs, "model", step.output, out, calls), out
        if isinstance(step, EnsembleStep):
            return self.ensemble(step, inputs, shape)
        if isinstance(step, SelectStep):
            out, numbers, problems = selected(step.columns, shape)
            for i, problem in problems:
                self.problem(f"{step.path}.select.columns[{i}]", problem)
            self.wiring.select[step.name] = tuple(numbers)
            return _planned(step, inputs, "select", "select", out, []), out
        return self.branching(step, inputs, scope)

    def model(
        self, name: str, ref: ModelRef, path: str, shape: Shape, inputs: tuple[str, ...], input_path: str
    ) -> Manifest | None:
        """The version a call runs, checked against its input (the request's shape is set by the
        first model that reads it alone)."""
        version = ref.version or (None if ref.follow_active else self.pins.get(name))
        try:
            manifest = self.repository.get(ref.model, version)
        except ModelNotFound as exc:
            self.problem(f"{path}.version" if ref.version else f"{path}.model", exc.message)
            return None
        names = manifest.signature.feature_names
        if inputs == (REQUEST,) and self.request.width is None:
            self.request = shape = Shape(manifest.signature.n_features, tuple(names) if names else None)
        elif inputs == (REQUEST,) and names and self.request.columns and tuple(names) != self.request.columns:
            first = list(self.request.columns)
            self.problem(input_path, f"reads the request as the features {names}; an earlier step as {first}")
        if (problem := fits(manifest, shape, inputs)) is not None:
            self.problem(input_path, problem)
        return manifest

    def ensemble(
        self, step: EnsembleStep, inputs: tuple[str, ...], shape: Shape
    ) -> tuple[PlannedStep, Shape]:
        calls, classes = [], []
        for member in step.members:
            manifest = self.model(member.name, member.ref, member.path, shape, inputs, f"{member.path}.model")
            if manifest is None:
                continue
            calls.append(_call(member.name, member.ref, manifest))
            signature = manifest.signature
            classes.append(signature.classes)
            wanted = "predict" if step.combine == "vote" or signature.classes is None else "predict_proba"
            if wanted not in signature.outputs:
                offered = ", ".join(signature.outputs)
                self.problem(
                    f"{member.path}.model",
                    f"a {step.combine} ensemble needs {wanted}; {manifest.name!r} offers {offered}",
                )
        where = f"{step.path}.ensemble"
        if len({repr(c) for c in classes}) > 1:
            self.problem(f"{where}.members", f"members must share their classes; they have {classes}")
        first = classes[0] if classes else None
        if classes and first is None and (step.combine == "vote" or step.output == "predict_proba"):
            self.problem(
                f"{where}.combine", f"{step.combine} with {step.output} needs classifiers as members"
            )
        out = ensemble_output(step.name, step.output, first)
        return _planned(step, inputs, "ensemble", f"{step.combine}:{step.output}", out, calls), out

    def branching(
        self, step: SwitchStep | SplitStep, inputs: tuple[str, ...], scope: Scope
    ) -> tuple[PlannedStep, Shape]:
        on = None
        if isinstance(step, SwitchStep):
            on = self.see(step.on, step, scope, f"{step.path}.switch.on")
        planned, shapes = [], []
        for branch in branches_of(step):
            if branch.when is not None and on is not None:
                number, problem = column_number(branch.when.column, on)
                if problem:
                    self.problem(f"{branch.path}.when.column", problem)
                self.wiring.switch[(step.name, branch.name)] = number
            stages, _, out = self.steps(branch.steps, scope, inputs)
            if branch.steps:
                self.used.add(branch.steps[-1].name)  # what the branch answers
            shapes.append((branch, out))
            when = (
                {"column": branch.when.column, branch.when.operator: branch.when.value}
                if branch.when
                else None
            )
            weight = branch.weight if isinstance(step, SplitStep) else None
            planned.append(PlannedBranch(branch=branch.name, when=when, weight=weight, stages=stages))
        if len({out.width for _, out in shapes if out.width is not None}) > 1:
            widths = ", ".join(f"{b.name}: {out.width}" for b, out in shapes)
            self.problem(step.path, f"its branches must answer as many columns each ({widths})")
        text, labels = any(o.text for _, o in shapes), all(o.labels for _, o in shapes)
        out = replace(shapes[0][1], text=text, labels=labels) if shapes else UNKNOWN
        kind: Literal["switch", "split"] = "switch" if isinstance(step, SwitchStep) else "split"
        stage = _planned(step, inputs, kind, kind, out, [])
        stage.on = step.on if isinstance(step, SwitchStep) else None
        stage.branches = planned
        return stage, out


def _call(name: str, ref: ModelRef, manifest: Manifest) -> PlannedCall:
    follow: Literal["active"] | None = "active" if ref.follow_active else None
    return PlannedCall(
        member=name, model=manifest.name, version=manifest.version, follow=follow, nodes_ready=None
    )


def _planned(
    step: Step,
    inputs: tuple[str, ...],
    kind: Literal["model", "ensemble", "switch", "split", "select"],
    output: str,
    shape: Shape,
    calls: list[PlannedCall],
) -> PlannedStep:
    return PlannedStep(
        step=step.name,
        kind=kind,
        path=step.path,
        inputs=list(inputs),
        output=output,
        width=shape.width,
        columns=shape.column_list,
        calls=calls,
    )
