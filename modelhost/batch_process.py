"""What runs inside a node's batch worker process (modelhost/batch_worker.py starts it): its lowest
CPU priority, the models it predicts with, and a partition's run, paced while the node serves
online traffic."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from artifacts.formats import ArtifactError, sha256_hex
from artifacts.manifest import Manifest
from datafiles.locations import S3Settings, Storage
from modelhost.errors import ArtifactUnavailable, UnloadableArtifact
from modelhost.partitions import PartitionWork, Predictor, ServedModel, run_partition
from modelhost.remote_graph import GatewayAccess, GraphUnavailable, RemoteGraph
from modelhost.store import load_served
from wire.errors import ServiceError
from wire.partition_calls import PartitionCall

# While the node served an online prediction within ONLINE_RECENT_S, the worker rests between
# steps so that it works ONLINE_DUTY of its time: the kernel's priorities order threads on this
# machine, but a virtual machine's cores are shared with a host that counts a busy core as busy.
ONLINE_RECENT_S = 1.0
ONLINE_DUTY = 0.25
_MODELS_KEPT = 2  # loaded models the worker keeps between partitions (least recently used go)
_PR_SET_PDEATHSIG = 1

_storage: Storage | None = None
_online_at: Any = None  # the node's shared double: when it last served an online prediction
_gateway: GatewayAccess | None = None
_gateway_client: httpx.Client | None = None  # made at the first graph partition
_models: OrderedDict[str, Any] = OrderedDict()  # served sha256 -> estimator


def start_worker(data_dir: str, online_at: Any, node_pid: int, gateway: GatewayAccess | None = None) -> None:
    """The process's initializer: lowest priority, dies with the node, first to go when memory is short."""
    global _storage, _online_at, _gateway
    _lowest_priority()
    with contextlib.suppress(OSError):  # raising one's own score needs no privilege
        Path("/proc/self/oom_score_adj").write_text("1000")
    with contextlib.suppress(OSError, AttributeError):  # where there is no prctl: the pipe's EOF ends it
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != node_pid:  # the node died before the line above
        os._exit(1)
    _storage = Storage(Path(data_dir), S3Settings())
    _online_at = online_at
    _gateway = gateway


def _lowest_priority() -> None:
    """SCHED_IDLE: a core running the worker is a free core to the kernel, which hands it to any
    other thread that wakes, at once (a nice 19 thread keeps it for up to a time slice). Both are
    per thread on Linux: set on every thread there is (imports start BLAS threads), and inherited
    by every thread started later. Where the kernel groups processes by session for scheduling
    (autogroup), nice orders threads within a group only, and every service of the fleet runs in a
    session of its own: the worker takes a session of its own, whose group gets nice 19 too."""
    tasks = Path("/proc/self/task")
    for thread in [int(t.name) for t in tasks.iterdir()] if tasks.exists() else [0]:
        with contextlib.suppress(OSError, AttributeError):  # not Linux, or a sandbox that refuses
            os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, thread, 19)
    with contextlib.suppress(OSError):
        os.setsid()
    for _ in range(20):  # the kernel takes one autogroup change per 100 ms from the unprivileged
        try:
            Path("/proc/self/autogroup").write_text("19")
            return
        except BlockingIOError:
            time.sleep(0.1)
        except OSError:
            return  # no autogroup here (a cgroup decides)


def work(node: str, call: PartitionCall, manifest: Manifest, artifact: str) -> PartitionWork:
    """One partition; an error the node cannot unpickle comes back as a plain RuntimeError."""
    assert _storage is not None
    try:
        pace = Pace(lambda: _online_at.value)
        return run_partition(call, _predictor(node, call, manifest, artifact), _storage, pace)
    except ServiceError:
        raise
    except Exception as exc:
        raise RuntimeError(f"{type(exc).__name__}: {exc}") from None


def _predictor(node: str, call: PartitionCall, manifest: Manifest, artifact: str) -> Predictor:
    """The model itself, or, for an inference graph's job, the gateway running the graph."""
    global _gateway_client
    if call.graph is None or call.graph_version is None:
        return ServedModel(node, _loaded(manifest, artifact), manifest.signature)
    if _gateway is None:
        raise GraphUnavailable("this node's batch worker has no gateway to run graphs through")
    if _gateway_client is None:
        _gateway_client = _gateway.client()
    return RemoteGraph(node, manifest.signature, _gateway_client, call.graph, call.graph_version)


class Pace:
    """Called between a partition's steps: rests, while the node serves online traffic, three
    times as long as it worked since the last call (ONLINE_DUTY). Work is CPU time: time the
    worker waited for a core is not work."""

    def __init__(
        self,
        online_at: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.thread_time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._online_at, self._clock, self._cpu_clock, self._sleep = online_at, clock, cpu_clock, sleep
        self._since = cpu_clock()

    def __call__(self) -> None:
        worked = self._cpu_clock() - self._since
        if self._clock() - self._online_at() < ONLINE_RECENT_S:
            self._sleep(worked * (1 - ONLINE_DUTY) / ONLINE_DUTY)
        self._since = self._cpu_clock()


class CachedArtifactUnusable(ArtifactUnavailable):
    """The node's cached artifact is gone or not what its sha256 says: the node fetches it again."""


def _loaded(manifest: Manifest, artifact: str) -> Any:
    sha256 = manifest.served_sha256
    if sha256 in _models:
        _models.move_to_end(sha256)
        return _models[sha256]
    try:
        data = Path(artifact).read_bytes()
    except OSError as exc:
        raise CachedArtifactUnusable(f"cannot read the cached artifact {sha256}: {exc}") from None
    if sha256_hex(data) != sha256:
        raise CachedArtifactUnusable(f"the cached artifact {sha256} does not match its sha256")
    try:
        estimator = load_served(data, manifest)
    except ArtifactError as exc:
        raise UnloadableArtifact(f"cannot load {manifest.name}/{manifest.version}: {exc}") from None
    _models[sha256] = estimator
    while len(_models) > _MODELS_KEPT:
        _models.popitem(last=False)
    return estimator
