"""A local file replaced whole: written beside its target under a hidden temporary name, then
renamed over it, so that a reader (nginx, Prometheus, another gateway process, a node) sees the
old content or the new, never half. What a writer killed half-way leaves is `is_temporary`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

_SUFFIX = ".tmp"


def replace_file(target: Path, blocks: Iterable[bytes]) -> None:
    """Write `blocks` to `target` atomically (readable by all: nginx's workers run as another user)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}{_SUFFIX}")
    try:
        with temporary.open("wb") as out:
            for block in blocks:
                out.write(block)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def is_temporary(path: Path) -> bool:
    """A file `replace_file` was writing when its writer died."""
    return path.name.startswith(".") and path.name.endswith(_SUFFIX)
