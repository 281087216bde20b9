"""The node's errors. Bodies are {"error": ..., "node": ...} (see wire.errors)."""

from __future__ import annotations

from wire.errors import ServiceError

__all__ = [
    "ArtifactUnavailable",
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


class ModelNotLoaded(ModelhostError):
    # 503 so that nginx retries the prediction on another node.
    status_code = 503


class NodeDraining(ModelhostError):
    # 503 so that nginx retries the prediction on another node.
    status_code = 503


class MemoryBudgetExceeded(ModelhostError):
    # 503: another node may have room; nginx retries there.
    status_code = 503


class ArtifactUnavailable(ModelhostError):
    status_code = 502


class UnloadableArtifact(ModelhostError):
    """The artifact is there, but does not load as its manifest says (format, trusted types)."""

    status_code = 422


class UnknownInput(ModelhostError):
    """A job's input location holds no file."""

    status_code = 404


class StorageUnavailable(ModelhostError):
    """Storage refused a read or a write (unreachable, read-only, no such bucket): another attempt,
    on this node or another, may succeed."""

    status_code = 502
