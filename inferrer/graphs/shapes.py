"""What each step of a graph answers, worked out from the models' stored signatures: its width
(columns per row), the names of its columns (a model's classes, a transformer's output names), and
whether it is one label per row. Each function answers a shape and the problems it found (as
messages); validation.py puts them at their paths in the document."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from artifacts.manifest import Manifest


@dataclass(frozen=True)
class Shape:
    width: int | None  # None: known only once it answers
    columns: tuple[str, ...] | None
    text: bool = False  # labels that are not numbers: no model can take them
    labels: bool = False  # one label or value per row (answered as a flat list)

    @property
    def column_list(self) -> list[str] | None:
        return list(self.columns) if self.columns is not None else None


UNKNOWN = Shape(None, None)


def joined(shapes: Sequence[Shape]) -> Shape:
    """Several steps' outputs side by side, in order."""
    if len(shapes) == 1:
        return shapes[0]
    widths = [s.width for s in shapes]
    columns = [s.columns for s in shapes]
    return Shape(
        None if None in widths else sum(w for w in widths if w is not None),
        None if None in columns else tuple(c for cols in columns if cols is not None for c in cols),
        any(s.text for s in shapes),
    )


def model_output(manifest: Manifest, output: str, step: str) -> tuple[Shape, str | None]:
    """What `output` of a model version answers, or why the version cannot answer it."""
    signature = manifest.signature
    if output not in signature.outputs:
        hint = ""
        if manifest.runtime_name == "onnx" and output in ("transform", "decision_function"):
            hint = f" (it is served by ONNX Runtime: deploy it with runtime=sklearn for {output})"
        offered = ", ".join(signature.outputs)
        return UNKNOWN, f"{_named(manifest)} offers {offered}, not {output}{hint}"
    width = signature.output_width(output)
    classes = tuple(str(c) for c in signature.classes or [])
    columns: tuple[str, ...] | None
    if output == "predict":
        columns = (step,)
    elif output == "transform":
        columns = tuple(signature.transform_columns) if signature.transform_columns else None
    else:
        columns = classes if width == len(classes) else (step,)
    text = output == "predict" and _text(signature.classes)
    return Shape(width, columns, text, labels=output == "predict"), None


def fits(manifest: Manifest, shape: Shape, inputs: Sequence[str]) -> str | None:
    """Why `shape` cannot be a model version's input (its width against the features it was fitted
    on; text labels), or None."""
    n = manifest.signature.n_features
    if shape.text:
        return f"its input holds text labels, which {_named(manifest)} cannot take"
    if shape.width is not None and shape.width != n:
        answer = f"{' + '.join(inputs)} answer {shape.width} columns per row"
        return f"{answer}; {_named(manifest)} was fitted on {n} features"
    return None


def ensemble_output(step: str, output: str, classes: list[Any] | None) -> Shape:
    """An ensemble's labels (one column) or averaged probabilities (one column per class)."""
    if output == "predict_proba":
        labels = tuple(str(c) for c in classes or [])
        return Shape(len(labels), labels)
    return Shape(1, (step,), _text(classes), labels=True)


def selected(columns: Sequence[int | str], shape: Shape) -> tuple[Shape, list[int], list[tuple[int, str]]]:
    """The columns a select keeps, by number or name: their shape, their numbers, and the problems
    (with the place of each column in the list)."""
    names: list[str] = []
    numbers: list[int] = []
    problems: list[tuple[int, str]] = []
    for i, column in enumerate(columns):
        number, problem = column_number(column, shape)
        if problem is not None:
            problems.append((i, problem))
            continue
        numbers.append(number)
        names.append(shape.columns[number] if shape.columns and number < len(shape.columns) else str(number))
    return (
        Shape(len(columns), tuple(names), shape.text, shape.labels and len(numbers) == 1),
        numbers,
        problems,
    )


def column_number(column: int | str, shape: Shape) -> tuple[int, str | None]:
    """A column given by number or name, as its number in `shape`; or why there is no such column."""
    if isinstance(column, int):
        if shape.width is not None and column >= shape.width:
            return column, f"column {column} is past the {shape.width} columns of its input"
        return column, None
    if shape.columns is None or column not in shape.columns:
        known = list(shape.columns) if shape.columns else "unnamed columns"
        return 0, f"no column named {column!r} among {known}"
    return shape.columns.index(column), None


def _named(manifest: Manifest) -> str:
    return f"model {manifest.name!r} version {manifest.version!r}"


def _text(classes: list[Any] | None) -> bool:
    return any(isinstance(c, str) for c in classes or [])
