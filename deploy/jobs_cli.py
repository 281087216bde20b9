"""`modelfleet jobs`: submit a file as a batch job (uploaded with it) and follow it, list, show,
cancel, and fetch a result; through the inferrer's job API, with the .env's management token."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, get_args

import httpx

from wire.job_answers import JobStatus

_FINISHED = {"succeeded", "failed", "cancelled"}
_BAR = 30


def add_commands(commands: Any) -> None:
    jobs = commands.add_parser("jobs", help="batch jobs: submit a file, follow, list, cancel")
    job_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    submit = job_commands.add_parser("submit", help="upload a JSON-lines or CSV file as a job")
    submit.add_argument("file", type=Path)
    submit.add_argument("--model", required=True)
    submit.add_argument("--version", help="default: the active version")
    submit.add_argument(  # --output: its old name
        "--prediction", "--output", choices=["predict", "predict_proba"], default="predict"
    )
    submit.add_argument("--on-bad-rows", choices=["fail", "skip"], default="fail")
    submit.add_argument("--partition-mib", type=float, help="partition size (default: the server's)")
    submit.add_argument("--wait", action="store_true", help="follow it with a progress bar until it ends")
    listing = job_commands.add_parser("list", help="the newest jobs")
    listing.add_argument("--status", choices=get_args(JobStatus))
    for name, text in (("status", "a job's state"), ("cancel", "cancel a job"), ("result", "its rows")):
        command = job_commands.add_parser(name, help=text)
        command.add_argument("id")


def run(args: argparse.Namespace, client: httpx.Client) -> int:
    """Run one `jobs` command; the client has the inferrer's URL and the token."""
    command = args.jobs_command
    if command == "submit":
        return _submit(args, client)
    if command == "list":
        params = {"status": args.status} if args.status else {}
        return _print(client.get("/api/v1/jobs", params=params))
    if command == "status":
        return _print(client.get(f"/api/v1/jobs/{args.id}"))
    if command == "cancel":
        return _print(client.delete(f"/api/v1/jobs/{args.id}"))
    with client.stream("GET", f"/api/v1/jobs/{args.id}/result") as response:
        if response.status_code != 200:
            response.read()
            return _print(response)
        for chunk in response.iter_bytes():
            sys.stdout.buffer.write(chunk)
    return 0


def _submit(args: argparse.Namespace, client: httpx.Client) -> int:
    fields = {"model": args.model, "prediction": args.prediction, "on_bad_rows": args.on_bad_rows}
    if args.version:
        fields["version"] = args.version
    if args.partition_mib:
        fields["partition_bytes"] = str(int(args.partition_mib * 2**20))
    with args.file.open("rb") as rows:
        answer = client.post("/api/v1/jobs", data=fields, files={"file": (args.file.name, rows)})
    if answer.status_code != 202 or not args.wait:
        return _print(answer)
    job_id = answer.json()["id"]
    print(f"job {job_id}: {answer.json()['partitions']} partitions", file=sys.stderr)
    while True:
        view = client.get(f"/api/v1/jobs/{job_id}").json()
        _progress(view)
        if view["status"] in _FINISHED:
            print(file=sys.stderr)
            print(json.dumps(view, indent=2))
            return 0 if view["status"] == "succeeded" else 1
        time.sleep(0.5)


def _progress(view: dict[str, Any]) -> None:
    parts = view["partitions"]
    done = parts["done"] / max(parts["total"], 1)
    bar = "#" * round(done * _BAR) + "." * (_BAR - round(done * _BAR))
    rows = view["rows"]
    print(
        f"\r[{bar}] {parts['done']}/{parts['total']} partitions, {rows['done']:,} rows, "
        f"{rows['failed']:,} bad  {view['status']}   ",
        end="",
        file=sys.stderr,
        flush=True,
    )


def _print(response: httpx.Response) -> int:
    try:
        print(json.dumps(response.json(), indent=2))
    except ValueError:
        print(response.text)
    return 0 if response.status_code < 400 else 1
