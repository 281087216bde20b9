"""A node's batch worker: the process a batch job's partitions run in, beside the process that
serves online predictions.

Online first: the worker runs at the lowest CPU priority (nice 19), so the kernel gives the cores to
online work first, on this node and on every process beside it; and as a process of its own it never
holds the GIL an online prediction waits for. (Batch threads at nice 19 inside the node did: a
descheduled batch thread holding the GIL stalled the online calls behind it.)

The worker starts with the first partition, loads the models it predicts with from the node's
artifact cache (the artifacts the node fetched and verified), checks each against its sha256, and
stops after IDLE_STOP_S without a partition, giving its memory back. It dies with the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import multiprocessing
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from artifacts.formats import ArtifactError, sha256_hex
from artifacts.manifest import Manifest
from datafiles.locations import S3Settings, Storage
from modelhost.artifact_cache import ArtifactCache
from modelhost.errors import ArtifactUnavailable, BatchWorkerLost, UnloadableArtifact
from modelhost.partitions import PartitionWork, ServedModel, run_partition
from modelhost.store import load_served
from wire.partition_calls import PartitionCall

IDLE_STOP_S = 60.0
# While the node served an online prediction within ONLINE_RECENT_S, the worker rests between
# chunks so that it works ONLINE_DUTY of its time: the kernel's priorities order threads on this
# machine, but a virtual machine's cores are shared with a host that counts a busy core as busy.
ONLINE_RECENT_S = 1.0
ONLINE_DUTY = 0.25
_MODELS_KEPT = 2  # loaded models the worker keeps between partitions (least recently used go)
_PR_SET_PDEATHSIG = 1


class BatchWorker:
    """The node's side: starts the worker process when a partition comes, hands it partitions one
    at a time, and stops it when idle."""

    def __init__(self, node: str, data_dir: Path, cache: ArtifactCache) -> None:
        self._node = node
        self._data_dir = data_dir
        self._cache = cache
        self._pool: ProcessPoolExecutor | None = None
        self._running = 0
        self._idle_stop: asyncio.TimerHandle | None = None
        self._context = multiprocessing.get_context("spawn")  # never a fork of a threaded server
        self._online_at = self._context.RawValue(ctypes.c_double, -math.inf)

    @property
    def online_at(self) -> float:
        """When the node last served an online prediction (time.monotonic)."""
        return self._online_at.value

    def online_served(self) -> None:
        """An online prediction was served: partitions slow down for a while."""
        self._online_at.value = time.monotonic()

    async def run(self, call: PartitionCall, manifest: Manifest) -> PartitionWork:
        if self._idle_stop is not None:
            self._idle_stop.cancel()
        artifact = self._cache.path(manifest.served_sha256)
        if not artifact.exists():  # pruned while loaded (the node serves from memory): fetched again
            await self._cache.read(manifest)
        work = (self._node, call, manifest, str(artifact))
        self._running += 1
        try:
            try:
                running = self._pool_now().submit(_work, *work)
            except BrokenProcessPool:  # it died between partitions: a new one
                self._pool = None
                running = self._pool_now().submit(_work, *work)
            return await asyncio.wrap_future(running)
        except BrokenProcessPool:
            self._pool = None  # the next partition starts a new worker
            raise BatchWorkerLost(
                f"{self._node}: the batch worker process died (killed, or out of memory) during "
                f"partition {call.partition}"
            ) from None
        finally:
            self._running -= 1
            if not self._running:
                self._idle_stop = asyncio.get_running_loop().call_later(IDLE_STOP_S, self._stop_if_idle)

    def close(self) -> None:
        """Stop the worker: waiting partitions are cancelled, and the one running ends with it."""
        if self._idle_stop is not None:
            self._idle_stop.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _stop_if_idle(self) -> None:
        if not self._running and self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _pool_now(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = self._start()
        return self._pool

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=self._context,
            initializer=_start_worker,
            initargs=(str(self._data_dir), self._online_at, os.getpid()),
        )


# In the worker process.
_storage: Storage | None = None
_online_at: Any = None  # the node's shared double: when it last served an online prediction
_models: OrderedDict[str, Any] = OrderedDict()  # served sha256 -> estimator


def _start_worker(data_dir: str, online_at: Any, node_pid: int) -> None:
    global _storage, _online_at
    # SCHED_IDLE: a core running the worker is a free core to the kernel, which hands it to any
    # other thread that wakes, at once (a nice 19 thread keeps it for up to a time slice). Set on
    # this thread, inherited by every thread it starts later.
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    # Where the kernel groups processes by session for scheduling (autogroup), nice orders threads
    # within a group only, and every service of the fleet runs in a session of its own: the worker
    # takes a session of its own too, and gives its group the lowest priority.
    with contextlib.suppress(OSError):
        os.setsid()
        Path("/proc/self/autogroup").write_text("19")
    with contextlib.suppress(OSError, AttributeError):  # where there is no prctl: the pipe's EOF ends it
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != node_pid:  # the node died before the line above
        os._exit(1)
    _storage = Storage(Path(data_dir), S3Settings())
    _online_at = online_at


def _work(node: str, call: PartitionCall, manifest: Manifest, artifact: str) -> PartitionWork:
    assert _storage is not None
    estimator = _loaded(manifest, artifact)
    return run_partition(
        call, ServedModel(node, estimator, manifest.signature), _storage, Pace(lambda: _online_at.value)
    )


class Pace:
    """Called between a partition's steps: rests, while the node serves online traffic, three
    times as long as it worked since the last call (ONLINE_DUTY)."""

    def __init__(
        self,
        online_at: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._online_at, self._clock, self._sleep = online_at, clock, sleep
        self._since = clock()

    def __call__(self) -> None:
        now = self._clock()
        if now - self._online_at() < ONLINE_RECENT_S:
            self._sleep((now - self._since) * (1 - ONLINE_DUTY) / ONLINE_DUTY)
        self._since = self._clock()


def _loaded(manifest: Manifest, artifact: str) -> Any:
    sha256 = manifest.served_sha256
    if sha256 in _models:
        _models.move_to_end(sha256)
        return _models[sha256]
    try:
        data = Path(artifact).read_bytes()
    except OSError as exc:
        raise ArtifactUnavailable(f"cannot read the cached artifact {sha256}: {exc}") from None
    if sha256_hex(data) != sha256:  # pruned and fetched again meanwhile: the node checks anew
        raise ArtifactUnavailable(f"the cached artifact {sha256} changed while being read")
    try:
        estimator = load_served(data, manifest)
    except ArtifactError as exc:
        raise UnloadableArtifact(f"cannot load {manifest.name}/{manifest.version}: {exc}") from None
    _models[sha256] = estimator
    while len(_models) > _MODELS_KEPT:
        _models.popitem(last=False)
    return estimator
