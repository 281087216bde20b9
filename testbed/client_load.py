"""Load from a client host: `python -m testbed.client_load URL OUT.json --requests N
--concurrency C --token T --body JSON`, run inside the client's namespace (testbed/hosts.py). Every
answer is counted by status, node and gateway, with its latency; the summary goes to OUT.json.
Bounded in count and time; it stops by itself."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from typing import Any

import httpx

from wire.tls import client_context


async def _load(args: argparse.Namespace) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    nodes: Counter[str] = Counter()
    gateways: Counter[str] = Counter()
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + args.max_seconds
    sent = 0
    headers = {"Authorization": f"Bearer {args.token}"}
    timeout = httpx.Timeout(args.timeout, connect=args.timeout)
    started = time.monotonic()
    verify = client_context(args.cacert) or True
    async with httpx.AsyncClient(headers=headers, timeout=timeout, verify=verify) as client:

        async def worker() -> None:
            nonlocal sent
            while sent < args.requests and time.monotonic() < deadline:
                sent += 1
                body = args.body
                if args.vary:  # another first value each time: no answer comes from a cache
                    instances = json.loads(body)["instances"]
                    instances[0][0] += random.random()
                    body = json.dumps({"instances": instances})
                start = time.monotonic()
                try:
                    answer = await client.post(
                        args.url, content=body, headers={"content-type": "application/json"}
                    )
                    status = str(answer.status_code)
                    nodes[answer.headers.get("x-modelhost-node", "-")] += 1
                    gateways[answer.headers.get("x-modelfleet-gateway", "-")] += 1
                    if answer.status_code != 200:
                        failures.append(f"{status} {answer.text[:200]}")
                except httpx.HTTPError as exc:
                    status = f"error {type(exc).__name__}"
                    failures.append(status)
                statuses[status] += 1
                latencies.append(time.monotonic() - start)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    latencies.sort()
    return {
        "sent": sent,
        "seconds": time.monotonic() - started,
        "statuses": dict(statuses),
        "nodes": dict(nodes),
        "gateways": dict(gateways),
        "p50": latencies[len(latencies) // 2] if latencies else 0.0,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0,
        "max": latencies[-1] if latencies else 0.0,
        "failures": failures[:20],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--token", default="")
    parser.add_argument("--cacert", help="the fleet's CA certificate, for https")
    parser.add_argument("--body", default="{}")
    parser.add_argument("--vary", action="store_true", help="change the first value of each request")
    args = parser.parse_args()
    summary = asyncio.run(_load(args))
    with open(args.out, "w") as out:
        json.dump(summary, out)


if __name__ == "__main__":
    main()
