"""The bench's models served as scikit-learn estimators and as ONNX graphs, in one process.

    .venv/bin/python -m bench.onnx_inprocess [--repeat 200]

The 100-tree RandomForest (depth 10, 20 features) and the LogisticRegression of bench/throughput.py,
loaded the way a node loads them (artifacts.formats.load_artifact: the .skops file, and the same
model converted with skl2onnx into an .onnx file), then predict and predict_proba through the node's
own call (np.asarray(...).tolist()) for 1, 32 and 512 rows: median ms per call. Then whether the two
agree on 5,000 rows, and each format's peak memory (ru_maxrss) in a fresh process that loads it.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
from skl2onnx import to_onnx

from artifacts.formats import ArtifactFormat, load_artifact
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
    agreement, memory = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for name, model in models.items():
            files = {
                ArtifactFormat.SKOPS: sio.dumps(model),
                ArtifactFormat.ONNX: to_onnx(model, rows[:1].astype(np.float32)).SerializeToString(),
            }
            served: dict[ArtifactFormat, Any] = {}
            for fmt, data in files.items():
                served[fmt] = loaded = load_artifact(data, fmt)
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
