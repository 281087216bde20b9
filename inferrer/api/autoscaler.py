"""The autoscaler's routes: what it weighs and decided, and the node starts and stops reported by
what runs the nodes (the launcher follows the desired count and reports each change)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from inferrer.scaling.service import ScalingService
from wire.autoscaler_answers import AutoscalerView, NodeReport, ReportRecorded, ScaleEventView, ScaleSignals
from wire.bearer import MANAGEMENT
from wire.json import FastJSONResponse
from wire.openapi import answers

router = APIRouter(prefix="/api/v1/autoscaler", dependencies=[MANAGEMENT])


def _scaling(request: Request) -> ScalingService:
    scaling: ScalingService = request.app.state.scaling
    return scaling


@router.get("", responses=answers(AutoscalerView, "The settings, the signals and the newest decisions"))
async def autoscaler(request: Request) -> FastJSONResponse:
    """The autoscaler's limits, the desired and current node counts, the signals summed over every
    gateway process, and its newest decisions and node starts (newest first), with their reasons."""
    scaling = _scaling(request)
    settings = scaling.settings
    seen = await scaling.view()
    state, signals = seen.state, seen.signals
    view = AutoscalerView(
        enabled=settings.limits.enabled,
        min_nodes=settings.min_nodes,
        max_nodes=settings.max_nodes,
        target_in_flight=settings.target_in_flight,
        keep_warm_s=settings.keep_warm_s,
        up_window_s=settings.up_window_s,
        down_window_s=settings.down_window_s,
        cooldown_s=settings.cooldown_s,
        lease_s=settings.lease_s,
        desired=state.desired if state else None,
        nodes=signals.nodes,
        ready_nodes=signals.ready_nodes,
        decider=seen.decider,
        signals=ScaleSignals(
            in_flight=signals.in_flight,
            held=signals.held,
            batch_queued=signals.batch_queued,
            partitions_waiting=signals.partitions_waiting,
            predict_s=signals.predict_s,
            cold_start_s=signals.cold_start_s,
            expected_wait_s=seen.expected_wait_s,
        ),
        events=[
            ScaleEventView(
                at=e.at,
                kind=e.kind,
                reason=e.reason,
                nodes_from=e.nodes_from,
                nodes_to=e.nodes_to,
                node=e.node,
                seconds=e.seconds,
            )
            for e in seen.events
        ],
    )
    return FastJSONResponse(view.model_dump())


@router.post("/reports", responses=answers(ReportRecorded, "The report is in the autoscaler's log"))
async def report(body: NodeReport, request: Request) -> FastJSONResponse:
    """A node start (with its time until ready with the active models), a failed start, or a stop,
    as what runs the nodes saw it: a start's time moves the cold-start average."""
    await _scaling(request).record(body)
    return FastJSONResponse(ReportRecorded(recorded=True).model_dump())
