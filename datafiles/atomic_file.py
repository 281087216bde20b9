"""A local file replaced whole: written beside its target under a hidden temporary name, then
renamed over it, so that a reader (nginx, Prometheus, another gateway process, a node) sees the
old content or the new, never half. What a writer killed half-way leaves is `is_temporary`."""

from __future__ import annotations

import contextlib
import glob
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

_SUFFIX = ".tmp"


def replace_file(target: Path, blocks: Iterable[bytes], clear_litter: bool = False) -> None:
    """Write `blocks` to `target` atomically (readable by all: nginx's workers run as another user).
    `clear_litter`: then delete the temporary files of `target` that writers killed before this
    write began left (a listing of the folder: for a job's output, not for each of its parts)."""
    began = time.time()
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
    if clear_litter:
        for litter in target.parent.glob(f".{glob.escape(target.name)}.*{_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):  # a writer alive writes to it still
                if litter.stat().st_mtime < began:
                    litter.unlink()


def is_temporary(path: Path) -> bool:
    """A file `replace_file` was writing when its writer died."""
    return path.name.startswith(".") and path.name.endswith(_SUFFIX)
