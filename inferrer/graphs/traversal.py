"""Walking a graph's nested structure: its steps with their branches' steps, and a plan's stages
with their branches' stages, in document order."""

from __future__ import annotations

from inferrer.graphs.spec import Branch, SplitStep, Step, SwitchStep
from wire.graph_answers import GraphPlan, PlannedStep


def pinned_versions(plan: GraphPlan) -> dict[str, str]:
    """Step or member -> version, for every call that does not follow the active version."""
    calls = (call for stage in every_stage(plan.stages) for call in stage.calls)
    return {call.member: call.version for call in calls if call.follow is None}


def every_stage(stages: list[PlannedStep]) -> list[PlannedStep]:
    """The stages and, after each, the stages of its branches."""
    found = []
    for stage in stages:
        found.append(stage)
        for branch in stage.branches:
            found.extend(every_stage(branch.stages))
    return found


def branches_of(step: Step) -> list[Branch]:
    if isinstance(step, SwitchStep):
        return [*step.cases, *([step.default] if step.default else [])]
    return list(step.branches) if isinstance(step, SplitStep) else []


def every_step(steps: tuple[Step, ...]) -> list[Step]:
    found: list[Step] = []
    for step in steps:
        found.append(step)
        for branch in branches_of(step):
            found.extend(every_step(branch.steps))
    return found
