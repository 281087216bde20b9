"""A switch's conditions: `{column: <number or name>, <operator>: <value>}` read from a document,
and the rows a condition holds for. Data, never an expression: each operator is a comparison, and
values compare as JSON does (1 equals 1.0; "1" does not equal 1; true does not equal 1)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeGuard

import numpy as np

from inferrer.graphs.spec import OPERATORS, Condition, Problem

NUMERIC = ("above", "below", "at_least", "at_most")


def finite(value: Any) -> TypeGuard[float]:
    """A JSON number that is not infinite or NaN (YAML writes them as .inf and .nan)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_condition(body: dict[str, Any], path: str) -> tuple[Condition | None, list[Problem]]:
    """A condition's mapping (its fields already checked) as a Condition, or its problem."""
    column = body.get("column")
    if (
        isinstance(column, bool)
        or not isinstance(column, int | str)
        or (isinstance(column, int) and column < 0)
    ):
        return None, [Problem(f"{path}.column", "must be a column's number (from 0) or name")]
    operators = [op for op in OPERATORS if op in body]
    if len(operators) != 1:
        return None, [Problem(path, f"a condition has exactly one of {', '.join(OPERATORS)}")]
    operator, compared = operators[0], body[operators[0]]
    numeric = operator in NUMERIC
    if numeric and not finite(compared):
        return None, [Problem(f"{path}.{operator}", "must be a finite number")]
    if operator == "in" and not (isinstance(compared, list) and compared):
        return None, [Problem(f"{path}.in", "must be a non-empty list of values")]
    values = list(compared) if operator == "in" else [compared]
    if not numeric and not all(isinstance(v, str | bool) or finite(v) for v in values):
        return None, [Problem(f"{path}.{operator}", "must be numbers, strings or booleans")]
    return Condition(column, operator, compared), []


def matches(column: np.ndarray, condition: Condition) -> np.ndarray:
    """Which rows' value in the tested column meets the condition (a boolean per row)."""
    operator, value = condition.operator, condition.value
    if operator in NUMERIC:
        numbers = _numbers(column)
        compare = {
            "above": np.greater,
            "below": np.less,
            "at_least": np.greater_equal,
            "at_most": np.less_equal,
        }
        with np.errstate(invalid="ignore"):
            return np.asarray(compare[operator](numbers, float(value)))
    wanted = value if operator == "in" else [value]
    hit = np.array([_equal_any(item, wanted) for item in column.tolist()], dtype=bool)
    return ~hit if operator == "not_equals" else hit


def _numbers(column: np.ndarray) -> np.ndarray:
    """The column as floats; a value that is not a number (text, even "1.5") meets no numeric
    condition (NaN)."""
    if column.dtype.kind in "biuf":
        return column.astype(np.float64)
    return np.array(
        [v if isinstance(v, int | float) and not isinstance(v, bool) else np.nan for v in column.tolist()],
        dtype=np.float64,
    )


def _equal_any(item: Any, wanted: Sequence[Any]) -> bool:
    """JSON equality: 1 equals 1.0, "1" does not equal 1, true does not equal 1."""
    return any((type(item) is bool) == (type(w) is bool) and item == w for w in wanted)
