"""A bounded load loop on loopback: counts answers per node and failures while a test changes things."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx


class LoadLoop:
    def __init__(self, url: str, body: Any, max_requests: int, max_seconds: float) -> None:
        self.url = url
        self.body = body
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.sent = 0
        self.failures: list[str] = []
        self.nodes: Counter[str] = Counter()
        self.versions: list[tuple[float, str]] = []  # (when the request was sent, version that answered)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoadLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def mark(self) -> Counter[str]:
        """A copy of the per-node counts so far (to see who served after a point)."""
        return Counter(self.nodes)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set() and self.sent < self.max_requests and time.monotonic() < deadline:
                self.sent += 1
                sent_at = time.monotonic()
                try:
                    response = client.post(self.url, json=self.body)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if response.status_code == 200:
                    answer = response.json()
                    self.nodes[answer["node"]] += 1
                    self.versions.append((sent_at, answer["version"]))
                else:
                    self.failures.append(f"{response.status_code}: {response.text}")

    def report(self) -> str:
        return f"sent={self.sent} failed={len(self.failures)} per node={dict(self.nodes)}"
