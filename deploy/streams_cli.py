"""`modelfleet streams produce FILE --stream S`: add a file's records to a stream as messages, for
tests and demos: JSON lines (one object per line) or CSV (a header, then one message per row).
Values that are not text are written as JSON, as the producer route writes them."""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import redis
from dotenv import dotenv_values

from deploy.broker import URL_VARIABLE, local_broker
from deploy.local_specs import DataDirs
from deploy.topology import Topology, TopologyError

_PIPELINE = 1000  # messages sent per round trip


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    streams = commands.add_parser("streams", help="stream bindings' helpers (docs/streams.md)")
    actions = streams.add_subparsers(dest="streams_command", required=True)
    produce = actions.add_parser("produce", help="add a file's records to a stream as messages")
    produce.add_argument("file", type=Path, help="JSON lines (.jsonl, .ndjson) or CSV (.csv)")
    produce.add_argument("--stream", required=True, help="the stream's key")
    produce.add_argument(
        "--broker", help=f"the broker's URL (default: the .env's {URL_VARIABLE}, or the broker `up` starts)"
    )


def run(args: argparse.Namespace, topology: Topology, env_file: Path) -> int:
    from inferrer.streams.spec import field_text  # here: the launcher never loads scikit-learn

    url = args.broker or dotenv_values(env_file).get(URL_VARIABLE)
    if not url:
        broker = local_broker(env_file, topology, DataDirs(args.data_dir).broker)
        if broker is None:
            raise TopologyError(
                f"no broker: set BROKER_PORT or {URL_VARIABLE} in {env_file}, or give --broker"
            )
        url = broker.url
    client = redis.Redis.from_url(url, decode_responses=True)
    first = last = None
    count = 0
    batch: list[dict[str, str]] = []
    for record in _records(args.file):
        batch.append({name: field_text(value) for name, value in record.items()})
        if len(batch) == _PIPELINE:
            ids = _send(client, args.stream, batch)
            first, last, count, batch = first or ids[0], ids[-1], count + len(ids), []
    if batch:
        ids = _send(client, args.stream, batch)
        first, last, count = first or ids[0], ids[-1], count + len(ids)
    print(f"added {count} messages to {args.stream}" + (f" ({first} .. {last})" if count else ""))
    return 0


def _send(client: redis.Redis, stream: str, batch: list[dict[str, str]]) -> list[str]:
    with client.pipeline(transaction=False) as pipe:
        for fields in batch:
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
        return [str(mid) for mid in pipe.execute()]


def _records(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            yield from csv.DictReader(handle)
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            record = orjson.loads(line)
            if not isinstance(record, dict) or not record:
                raise TopologyError(f"{path}:{number}: each line must be a JSON object with fields")
            yield record
