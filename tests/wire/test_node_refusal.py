"""How the gateway reads a node's refusal: a failure of one model carries the status to answer and
whether to try again; any other 5xx may pass on another attempt; a 4xx refuses the request."""

from __future__ import annotations

import orjson
import pytest

from modelhost.errors import ArtifactUnavailable, MemoryBudgetExceeded, ModelNotLoaded, NodeDraining
from wire.errors import ModelUnavailableHere, NodeRefusal


@pytest.mark.parametrize(
    ("error", "answered"),
    [(ArtifactUnavailable, 502), (MemoryBudgetExceeded, 503), (ModelNotLoaded, 503)],
)
def test_a_failure_of_one_model_is_no_node_failure(error: type[ModelUnavailableHere], answered: int) -> None:
    # nginx counts 502, 503 and 504 against a node (proxy_next_upstream): none of these may use them.
    assert error.status_code == 424
    body = orjson.dumps({"error": "why", "node": "modelhost-1", **error("why").body_fields()})
    assert NodeRefusal.read(424, body) == NodeRefusal(answered, "why", retry=True)


def test_a_draining_node_is_a_node_failure() -> None:
    assert NodeDraining.status_code == 503


@pytest.mark.parametrize(
    ("status", "content", "expected"),
    [
        (422, b'{"error": "bad rows"}', NodeRefusal(422, "bad rows", retry=False)),
        (404, b'{"error": "no such model"}', NodeRefusal(404, "no such model", retry=False)),
        (500, b"Internal Server Error", NodeRefusal(500, "Internal Server Error", retry=True)),
        (502, b"<html>bad gateway</html>", NodeRefusal(502, "<html>bad gateway</html>", retry=True)),
        (424, b'{"error": "no status"}', NodeRefusal(424, "no status", retry=False)),  # not a node's
        (424, b'{"error": "x", "answer_status": 502}', NodeRefusal(502, "x", retry=False)),
        (400, b"[1, 2]", NodeRefusal(400, "[1, 2]", retry=False)),
    ],
)
def test_other_answers_keep_their_status(status: int, content: bytes, expected: NodeRefusal) -> None:
    assert NodeRefusal.read(status, content) == expected
