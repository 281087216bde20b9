"""The node's errors. Bodies are {"error": ..., "node": ...} (see wire.errors)."""

from __future__ import annotations

from wire.errors import ModelUnavailableHere, ServiceError

__all__ = [
    "ArtifactUnavailable",
    "BatchWorkerLost",
    "InvalidInput",
    "MemoryBudgetExceeded",
    "ModelNotLoaded",
    "ModelhostError",
    "NodeDraining",
    "StorageUnavailable",
    "UnknownInput",
    "UnknownModel",
    "UnloadableArtifact",
]


class ModelhostError(ServiceError):
    """Base of the node's own errors."""


class InvalidInput(ModelhostError):
    status_code = 422


class UnknownModel(ModelhostError):
    status_code = 404


class ModelNotLoaded(ModelhostError, ModelUnavailableHere):
    """Another node may hold it: the gateway tries once more."""


class NodeDraining(ModelhostError):
    """The node itself will not serve: 503, so nginx takes it out of rotation and retries elsewhere."""

    status_code = 503


class MemoryBudgetExceeded(ModelhostError, ModelUnavailableHere):
    """Another node may have room: the gateway tries once more."""


class ArtifactUnavailable(ModelhostError, ModelUnavailableHere):
    """The artifact could not be fetched (the inferrer unreachable, the version deleted meanwhile)."""

    answer_status = 502


class UnloadableArtifact(ModelhostError):
    """The artifact is there, but does not load as its manifest says (format, trusted types)."""

    status_code = 422


class UnknownInput(ModelhostError):
    """A job's input location holds no file."""

    status_code = 404


class StorageUnavailable(ModelhostError, ModelUnavailableHere):
    """Storage refused a read or a write (unreachable, read-only, no such bucket): another attempt,
    on this node or another, may succeed."""

    answer_status = 502


class BatchWorkerLost(ModelhostError, ModelUnavailableHere):
    """The batch worker process died during a partition: another attempt starts a new one."""
