"""A node's batch worker: the process a batch job's partitions run in, beside the process that
serves online predictions.

Online first: the worker runs at the lowest CPU priority (SCHED_IDLE, nice 19: see
modelhost/batch_process.py), so the kernel gives the cores to online work first, on this node and on
every process beside it; and as a process of its own it never holds the GIL an online prediction
waits for. (Batch threads at nice 19 inside the node did: a descheduled batch thread holding the
GIL stalled the online calls behind it.)

The worker starts with the first partition, loads the models it predicts with from the node's
artifact cache (the artifacts the node fetched and verified), checks each against its sha256, and
stops after IDLE_STOP_S without a partition, giving its memory back. It dies with the node, and is
killed when the node stops or when the partition it runs is abandoned (the gateway gave up on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from artifacts.manifest import Manifest
from modelhost.artifact_cache import ArtifactCache
from modelhost.batch_process import CachedArtifactUnusable, start_worker, work
from modelhost.errors import BatchWorkerLost
from modelhost.partitions import PartitionWork
from modelhost.remote_graph import GatewayAccess
from wire.partition_calls import PartitionCall

IDLE_STOP_S = 60.0


class BatchWorker:
    """The node's side: starts the worker process when a partition comes, hands it partitions one
    at a time, and stops it when idle."""

    def __init__(
        self, node: str, data_dir: Path, cache: ArtifactCache, gateway: GatewayAccess | None = None
    ) -> None:
        """`gateway`: where an inference graph's partitions are predicted."""
        self._node = node
        self._gateway = gateway
        self._data_dir = data_dir
        self._cache = cache
        self._pool: ProcessPoolExecutor | None = None
        self.running = 0  # partitions handed over and not answered
        self._closed = False
        self._idle_stop: asyncio.TimerHandle | None = None
        self._context = multiprocessing.get_context("spawn")  # never a fork of a threaded server
        self._online_at = self._context.RawValue(ctypes.c_double, -math.inf)

    @property
    def online_at(self) -> float:
        """When the node last took an online prediction (time.monotonic)."""
        return self._online_at.value

    def online_served(self) -> None:
        """An online prediction came: partitions slow down for a while."""
        self._online_at.value = time.monotonic()

    async def run(self, call: PartitionCall, manifest: Manifest) -> PartitionWork:
        if self._closed:
            raise BatchWorkerLost(f"{self._node} is stopping")
        self.running += 1
        if self._idle_stop is not None:
            self._idle_stop.cancel()
        try:
            artifact = self._cache.path(manifest.served_sha256)
            if not artifact.exists():  # pruned while loaded (the node serves from memory)
                await self._cache.read(manifest)
            try:
                return await self._submit(call, manifest, artifact)
            except CachedArtifactUnusable:  # changed on disk: fetched and checked again
                await self._cache.read(manifest)
                return await self._submit(call, manifest, artifact)
        finally:
            self.running -= 1
            if not self.running and not self._closed:
                self._idle_stop = asyncio.get_running_loop().call_later(IDLE_STOP_S, self._stop_if_idle)

    def close(self) -> None:
        """Stop the worker, and the partition it runs with it (its gateway tries it elsewhere)."""
        self._closed = True
        if self._idle_stop is not None:
            self._idle_stop.cancel()
        self._stop(kill=True)

    async def _submit(self, call: PartitionCall, manifest: Manifest, artifact: Path) -> PartitionWork:
        work_args = (self._node, call, manifest, str(artifact))
        pool = self._pool_now()
        try:
            try:
                running: Future[PartitionWork] = pool.submit(work, *work_args)
            except BrokenProcessPool:  # it died between partitions: a new one
                self._forget(pool)
                pool = self._pool_now()
                running = pool.submit(work, *work_args)
            return await asyncio.wrap_future(running)
        except BrokenProcessPool:
            self._forget(pool)  # the next partition starts a new worker
            raise BatchWorkerLost(
                f"{self._node}: the batch worker process died (killed, or out of memory) during "
                f"partition {call.partition}"
            ) from None
        except asyncio.CancelledError:  # abandoned: the worker would go on with it for nobody
            if self._pool is pool:
                self._stop(kill=True)
            raise

    def _pool_now(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=self._context,
                initializer=start_worker,
                initargs=(str(self._data_dir), self._online_at, os.getpid(), self._gateway),
            )
        return self._pool

    def _forget(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None

    def _stop_if_idle(self) -> None:
        if not self.running:
            self._stop(kill=False)

    def _stop(self, kill: bool) -> None:
        """Let the worker end (idle), or kill it (a running partition would hold the node's exit)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            # The pool's own process handles (no public API kills a running call): SIGKILL, reaped
            # by the pool's thread, so the number is never one another process took meanwhile.
            processes = getattr(pool, "_processes", None) or {}
            for process in list(processes.values()):
                with contextlib.suppress(OSError, ValueError):
                    process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
