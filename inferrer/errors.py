"""The gateway's errors. Bodies are {"error": ...} (see wire.errors)."""

from __future__ import annotations

from typing import ClassVar

from wire.errors import MalformedRequest, ServiceError

__all__ = ["MalformedRequest"]


class InferrerError(ServiceError):
    """Base of the gateway's own errors."""


class ModelNotFound(InferrerError):
    status_code = 404


class NodeNotFound(InferrerError):
    status_code = 404


class VersionConflict(InferrerError):
    status_code = 409


class ModelInUse(InferrerError):
    """A model that something built on it (an inference graph) still uses."""

    status_code = 409


class GraphNotFound(InferrerError):
    status_code = 404


class GraphInvalid(InferrerError):
    """A graph document with problems: every one, each with its path in the document."""

    status_code = 422

    def __init__(self, message: str, problems: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems

    def body_fields(self) -> dict[str, object]:
        return {"problems": [{"path": path, "message": message} for path, message in self.problems]}


class GraphStepFailed(InferrerError):
    """A graph step's model call failed: the graph answers that failure's status, naming the step
    and the model, never a partial answer."""

    def __init__(self, status_code: int, message: str, step: str, model: str | None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.step = step
        self.model = model

    def body_fields(self) -> dict[str, object]:
        return {"step": self.step, "model": self.model}


class DeployOvertaken(InferrerError):
    """A deploy that lost a race with a delete of the same model: what it stored is gone."""

    status_code = 409


class PayloadTooLarge(InferrerError):
    status_code = 413


class InvalidInput(InferrerError):
    status_code = 422


class UpstreamAnswered(InferrerError):
    """A node refused the request (its status and message are passed on)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class UpstreamUnavailable(InferrerError):
    status_code = 503
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class UpstreamTimeout(InferrerError):
    status_code = 504


class InvalidLocation(InferrerError):
    """A job location outside the data directory, or malformed: refused before anything is read."""

    status_code = 400


class InputNotFound(InferrerError):
    status_code = 404


class JobNotFound(InferrerError):
    status_code = 404


class JobNotFinished(InferrerError):
    """A job's result asked for before it succeeded."""

    status_code = 409


class OutputExists(InferrerError):
    """A job's output location holds files already: a job never overwrites another's output."""

    status_code = 409


class UnsupportedMediaType(InferrerError):
    status_code = 415


class WatchExists(InferrerError):
    status_code = 409


class WatchNotFound(InferrerError):
    status_code = 404


class RepositoryUnreachable(InferrerError):
    """A gateway that has not read the shared repository's index for too long: it answers nothing
    from what it read before (a model deleted meanwhile would be served)."""

    status_code = 503
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class StoreUnreachable(InferrerError):
    """The job store's database (where the autoscaler keeps its state) did not answer."""

    status_code = 503
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class StreamBindingExists(InferrerError):
    status_code = 409


class StreamBindingNotFound(InferrerError):
    status_code = 404


class BrokerUnreachable(InferrerError):
    """The stream broker (Redis) did not answer, or this gateway has none configured."""

    status_code = 503
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}
