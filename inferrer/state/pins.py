"""Versions that version retention must not remove: one file per pin, <dir>/<name>/<version>/<holder>,
holding the time (epoch seconds) the pin lapses, `inf` for a pin that lasts until it is removed.

A deploy pins the version it stores until it has answered (with a lease, so a deploy killed half-way
leaves no pin forever); a job pins the version it runs. Files, not memory: every gateway process
sees every pin, and pins outlive a restart. The repository reads and writes them under its lock.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from artifacts.names import is_path_segment

# A pin held by something built on the model (an inference graph): the model cannot be deleted
# while it is held, and the refusal names the holder.
USER_PREFIX = "user."


@dataclass(frozen=True)
class Pin:
    holder: str  # who pins: a deploy, a job, a user (one path segment)
    lease_s: float | None = None  # None: until unpinned


def user_pin(kind: str, name: str, token: str) -> Pin:
    """The pin a `kind` (graph) called `name` holds on each model version it uses; `token` tells
    apart what one deploy of it holds from another's (a delete releases only what it deleted)."""
    return Pin(f"{USER_PREFIX}{kind}.{name}.{token}")


def describe_users(holders: set[str]) -> list[str]:
    """'graph scored' for each user pin among `holders`."""
    users = set()
    for holder in holders:
        if holder.startswith(USER_PREFIX):
            kind, _, named = holder[len(USER_PREFIX) :].partition(".")
            users.add(f"{kind} {named.rpartition('.')[0]}")
    return sorted(users)


class VersionPins:
    def __init__(self, directory: Path) -> None:
        self._dir = directory
        directory.mkdir(parents=True, exist_ok=True)

    def pin(self, name: str, version: str, pin: Pin) -> None:
        if not is_path_segment(pin.holder):
            raise ValueError(f"a pin's holder is one path segment, not {pin.holder!r}")
        path = self._dir / name / version / pin.holder
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(math.inf if pin.lease_s is None else time.time() + pin.lease_s))

    def unpin(self, name: str, version: str, holder: str) -> None:
        (self._dir / name / version / holder).unlink(missing_ok=True)
        for empty in (self._dir / name / version, self._dir / name):
            with contextlib.suppress(OSError):  # not empty: other pins remain
                empty.rmdir()

    def pinned(self, name: str) -> set[str]:
        """The versions of `name` with a pin that has not lapsed; lapsed pins are removed."""
        versions = set()
        now = time.time()
        for pin in self._dir.glob(f"{name}/*/*"):  # a name is one segment of A-Z a-z 0-9 . _ -
            if _lapses_at(pin) < now:
                self.unpin(name, pin.parent.name, pin.name)
            else:
                versions.add(pin.parent.name)
        return versions

    def holders(self, name: str) -> set[str]:
        """Who holds a pin on any version of `name` that has not lapsed."""
        self.pinned(name)  # lapsed pins removed first
        return {pin.name for pin in self._dir.glob(f"{name}/*/*")}

    def forget(self, name: str) -> None:
        """A deleted model's pins go with it."""
        shutil.rmtree(self._dir / name, ignore_errors=True)


def _lapses_at(pin: Path) -> float:
    """A pin whose file a crash left half-written (empty) has lapsed."""
    try:
        return float(pin.read_text())
    except (OSError, ValueError):
        return 0.0
