"""The success bodies of a node's routes (modelhost/routes.py), as its OpenAPI document declares them.

The gateway passes some of them on (a node's loaded models, a drain, the self-test's pings), so it
declares them with these models too.
"""

from __future__ import annotations

from typing import Literal

from wire.openapi import Answer


class LoadedModelStatus(Answer):
    """A model version loaded on a node."""

    name: str
    version: str
    sha256: str
    in_flight: int
    idle_s: float
    cold_start_avg_s: float | None  # null until it was loaded on demand once


class NodeStatus(Answer):
    """`GET /` of a node."""

    service: Literal["modelhost"]
    node: str
    ready: bool
    draining: bool
    in_flight: int
    models: list[LoadedModelStatus]


class NodeLive(Answer):
    live: Literal[True]
    node: str


class NodeReady(Answer):
    ready: Literal[True]
    node: str
    reason: str


class NodeNotReady(Answer):
    """503: not synced with the inferrer yet, a model that failed to load, or draining (`reason`)."""

    ready: Literal[False]
    node: str
    reason: str


class Pong(Answer):
    """The ping self-test: which node answered for `item`."""

    item: str
    node: str


class Draining(Answer):
    """The node turned not ready; new predictions answer 503, the `in_flight` ones finish."""

    node: str
    draining: Literal[True]
    in_flight: int
