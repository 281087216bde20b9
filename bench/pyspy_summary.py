"""Summarise a py-spy `record --format raw` file (collapsed stacks): top self and inclusive frames,
and the share of samples by where the leaf frame is (a coarse category).

    .venv/bin/python -m bench.pyspy_summary PROFILE.txt [--top 15]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (category, regex on the whole stack, regex on the leaf frame); first match wins.
CATEGORIES = [
    (
        "sklearn Parallel wrapper: config_context + warnings filters per tree task",
        r"ForestClassifier\.predict",
        r"warnings\.py|_config\.py|sklearn/utils/parallel\.py|functools\.py|contextlib\.py|re/__init__",
    ),
    ("joblib dispatch (sequential backend)", r"ForestClassifier\.predict", r"joblib/"),
    ("tree predict_proba (input checks + Cython tree walk)", r"ForestClassifier\.predict", r"sklearn/tree/"),
    ("forest: other (validation, accumulate, argmax)", r"ForestClassifier\.predict", r"."),
    ("node: body parse / as_rows / result tolist", r"parse_json_object|as_rows|_timed_call", r"."),
    ("JSON encode/decode (orjson, FastJSONResponse, aiohttp json)", r".", r"orjson|json|render|_json"),
    ("aiohttp client (inferrer -> nginx)", r".", r"aiohttp/"),
    ("batcher", r".", r"batching\.py"),
    ("pydantic / FastAPI validation", r".", r"pydantic|fastapi/"),
    ("prometheus metrics", r".", r"prometheus_client"),
    (
        "uvicorn / httptools / starlette / asyncio loop",
        r".",
        r"uvicorn|httptools|starlette|asyncio|uvloop|selectors",
    ),
    ("threading / executor hand-off", r".", r"threading\.py|concurrent/futures"),
    ("other", r".", r"."),
]


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        frames = stack.split(";")[1:]  # first is the process
        if frames and frames[0].startswith("thread ("):
            frames = frames[1:]
        stacks.append((frames, int(count)))
    return stacks


def short(frame: str) -> str:
    return re.sub(r"\(.*?(site-packages/|lib/python3\.\d+/|mf-head/)", "(", frame)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    stacks = parse(args.profile)
    # py-spy's idle detection misses these blocking leaves here (native waits: SimpleQueue.get of the
    # executor, uvloop's epoll in Runner.run, Condition.wait): drop them, keep on-CPU samples.
    idle = re.compile(
        r"^(_worker \(.*concurrent/futures/thread\.py:8[0-9]\)|Runner\.run \(|Condition\.wait \(|"
        r"Queue\.get \(|Event\.wait \()"
    )
    dropped = sum(c for f, c in stacks if f and idle.search(f[-1]))
    stacks = [(f, c) for f, c in stacks if f and not idle.search(f[-1])]
    print(f"dropped {dropped} samples whose leaf is a blocking wait")
    total = sum(c for _, c in stacks)
    leaf: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    cats: Counter[str] = Counter()
    for frames, count in stacks:
        if not frames:
            continue
        leaf[short(re.sub(r":\d+\)", ")", frames[-1]))] += count
        for f in {re.sub(r":\d+\)", ")", fr) for fr in frames}:
            incl[short(f)] += count
        joined = ";".join(frames)
        for name, stack_re, leaf_re in CATEGORIES:
            if re.search(stack_re, joined) and re.search(leaf_re, frames[-1]):
                cats[name] += count
                break
    print(f"{args.profile}: {total} samples (non-idle, all threads)\n")
    print("| category (by leaf frame) | share |\n|---|---|")
    for name, count in cats.most_common():
        print(f"| {name} | {100 * count / total:.1f}% |")
    print("\n| top self (leaf) frames | share |\n|---|---|")
    for name, count in leaf.most_common(args.top):
        print(f"| `{name}` | {100 * count / total:.1f}% |")
    print("\n| top inclusive frames | share |\n|---|---|")
    generic = re.compile(
        r"_bootstrap|Thread\.run|runpy|click/|uvicorn/main|uvicorn/server|uvicorn/_compat|"
        r"uvicorn/__main__|Runner\.run|asyncio/runners|<module>"
    )
    for name, count in [(n, c) for n, c in incl.most_common() if not generic.search(n)][: args.top]:
        print(f"| `{name}` | {100 * count / total:.1f}% |")


if __name__ == "__main__":
    main()
