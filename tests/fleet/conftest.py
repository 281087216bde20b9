"""What several fleet test modules share: moto's S3 emulator (a server process on loopback), one per
module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from datafiles.locations import S3Settings
from tests.s3_server import s3_server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Settings]:
    with s3_server() as settings:
        yield settings
