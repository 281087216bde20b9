"""The bench's models served as scikit-learn estimators and as ONNX graphs, in one process.

    .venv/bin/python -m bench.onnx_inprocess [--repeat 200]

The 100-tree RandomForest (depth 10, 20 features) and the LogisticRegression of bench/throughput.py,
loaded the way a node loads them: the .skops file (artifacts.formats.load_artifact), and the graph a
deploy with runtime=auto compiles and verifies from it (artifacts.onnx_conversion.choose_runtime,
whose time and probe count are printed), then predict and predict_proba through the node's own call
(np.asarray(...).tolist()) for 1, 32 and 512 rows: median ms per call. Then whether the two agree
on 5,000 rows, and each format's peak memory (ru_maxrss) in a fresh process that loads it.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio

from artifacts.formats import ArtifactFormat, load_artifact
from artifacts.onnx_conversion import choose_runtime
from artifacts.onnx_model import OnnxModel, SourceModel
from bench.forest_inprocess import timed
from bench.throughput import make_models

ROWS = (1, 32, 512)


def _answer(method: Any, x: np.ndarray) -> list[Any]:
    """What a node makes of a predict call's result."""
    return list(np.asarray(method(x)).tolist())


def _peak_rss_mib(path: Path, fmt: ArtifactFormat) -> float:
    """ru_maxrss of a fresh process that imports what a node does and loads the file."""
    code = (
        "import resource, sys\n"
        "from artifacts.formats import ArtifactFormat, load_artifact\n"
        "model = load_artifact(open(sys.argv[1], 'rb').read(), ArtifactFormat(sys.argv[2]))\n"
        "model.predict([[0.0] * model.n_features_in_])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), fmt.value], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    models, _ = make_models()
    rows = np.random.default_rng(1).normal(size=(5000, 20))
    print("| model | runtime | " + " | ".join(f"{n} rows predict / proba (ms)" for n in ROWS) + " |")
    print("|---|---|" + "---|" * len(ROWS))
    agreement, memory, compiling = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        for name, model in models.items():
            start = time.perf_counter()
            compiled = choose_runtime(model, "auto")
            compiling.append((name, time.perf_counter() - start, compiled.choice))
            assert compiled.graph is not None, compiled.choice
            files = {ArtifactFormat.SKOPS: sio.dumps(model), ArtifactFormat.ONNX: compiled.graph}
            source = SourceModel(model.classes_.tolist(), compiled.choice.accepts_missing)
            served: dict[ArtifactFormat, Any] = {}
            for fmt, data in files.items():
                loaded = (
                    load_artifact(data, fmt)
                    if fmt is ArtifactFormat.SKOPS
                    else OnnxModel(data, source=source)
                )
                served[fmt] = loaded
                cells = []
                for n in ROWS:
                    x = rows[:n]
                    predict = timed(partial(_answer, loaded.predict, x), args.repeat)
                    proba = timed(partial(_answer, loaded.predict_proba, x), args.repeat)
                    cells.append(f"{predict:.3f} / {proba:.3f}")
                print(f"| {name} | {fmt.value} | " + " | ".join(cells) + " |")
                path = Path(scratch) / f"{name}.{fmt.value}"
                path.write_bytes(data)
                memory.append((name, fmt.value, len(data) / 2**20, _peak_rss_mib(path, fmt)))
            sk, ox = served[ArtifactFormat.SKOPS], served[ArtifactFormat.ONNX]
            equal = int((np.asarray(sk.predict(rows)) == np.asarray(ox.predict(rows))).sum())
            gap = float(np.abs(sk.predict_proba(rows) - ox.predict_proba(rows)).max())
            agreement.append((name, equal, gap))
    print("\n| model | compile and verify at deploy (s) | probe rows | runtime chosen |\n|---|---|---|---|")
    for name, seconds, choice in compiling:
        print(f"| {name} | {seconds:.2f} | {choice.probes} | {choice.runtime}: {choice.reason} |")
    print("\n| model | predict equal (of 5,000) | largest predict_proba difference |\n|---|---|---|")
    for name, equal, gap in agreement:
        print(f"| {name} | {equal} | {gap:.2e} |")
    print("\n| model | format | file (MiB) | peak RSS of a process that loads it (MiB) |\n|---|---|---|---|")
    for name, format_name, size, rss in memory:
        print(f"| {name} | {format_name} | {size:.2f} | {rss:.0f} |")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(this process, both formats of both models loaded: {own:.0f} MiB peak)")


if __name__ == "__main__":
    main()
