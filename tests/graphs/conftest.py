"""The models the in-process graph tests deploy, fitted once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.graphs.documents import fit_models


@pytest.fixture(scope="session")
def fitted() -> dict[str, Any]:
    return fit_models()
