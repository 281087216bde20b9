"""The runtime choice for a scikit-learn model, in one process: what converts and verifies, what
stays on scikit-learn and why, and how a compiled graph takes missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier

from artifacts.formats import ArtifactError
from artifacts.onnx_conversion import Compiled, choose_runtime
from artifacts.onnx_model import OnnxModel, SourceModel

_rng = np.random.default_rng(5)
X = _rng.normal(size=(600, 4))
Y = (X[:, 0] - X[:, 1] > 0).astype(int)


def _served(compiled: Compiled, classes: list[int] | None) -> OnnxModel:
    assert compiled.graph is not None
    return OnnxModel(compiled.graph, source=SourceModel(classes, compiled.choice.accepts_missing))


def test_a_regressor_verifies_within_tolerance_relative_to_its_size() -> None:
    model = LinearRegression().fit(X, 1e6 + 50 * X[:, 0])
    compiled = choose_runtime(model, "auto")
    assert compiled.choice.runtime == "onnx", compiled.choice
    assert compiled.choice.largest_difference is not None and compiled.choice.largest_difference <= 1e-5
    answered = _served(compiled, None).predict(X)
    assert np.all(np.abs(answered - model.predict(X)) <= 1e-5 * np.abs(model.predict(X)))


def test_a_split_threshold_is_probed_on_both_sides(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tree whose threshold 32-bit floats cannot hold (float32(0.1) is above 0.1) converts right;
    a tampered graph whose threshold was rounded up answers otherwise only for the one float32 value
    0.1 rounds to, which no random draw would hit: the probes either side of the split find it."""
    tree = DecisionTreeClassifier(max_depth=1).fit(X[:, :1], Y)
    tree.tree_.threshold[0] = 0.1
    compiled = choose_runtime(tree, "auto")
    assert compiled.choice.runtime == "onnx", compiled.choice
    edge = np.array([[float(np.float32(0.1))], [float(np.nextafter(np.float32(0.1), np.float32(0)))]])
    assert _served(compiled, [0, 1]).predict(edge).tolist() == tree.predict(edge).tolist()

    rounded = DecisionTreeClassifier(max_depth=1).fit(X[:, :1], Y)
    rounded.tree_.threshold[0] = float(np.float32(0.1))
    tampered = choose_runtime(rounded, "auto").graph
    assert tampered is not None and tree.predict(edge[:1]) != rounded.predict(edge[:1])
    monkeypatch.setattr("artifacts.onnx_conversion._convert", lambda *_: tampered)
    refused = choose_runtime(tree, "auto")
    assert refused.choice.runtime == "sklearn" and "another label" in refused.choice.reason, refused.choice


def test_a_text_column_model_stays_on_scikit_learn_and_says_why() -> None:
    frame = pd.DataFrame({"size": X[:, 0], "colour": np.where(Y == 1, "red", "blue")})
    encoder = ColumnTransformer(
        [("colour", OneHotEncoder(handle_unknown="ignore"), ["colour"])], remainder="passthrough"
    )
    model = make_pipeline(encoder, LogisticRegression()).fit(frame, Y)
    compiled = choose_runtime(model, "auto")
    assert compiled.choice.runtime == "sklearn" and "text" in compiled.choice.reason, compiled.choice
    assert compiled.graph is None
    with pytest.raises(ArtifactError, match=r"runtime=onnx refused: .*text"):
        choose_runtime(model, "onnx")


def test_runtime_sklearn_never_converts() -> None:
    compiled = choose_runtime(LogisticRegression().fit(X, Y), "sklearn")
    assert compiled.choice.runtime == "sklearn" and compiled.graph is None


def test_missing_values_are_refused_where_the_graph_would_answer_them_otherwise() -> None:
    # A forest fitted without missing values sends NaN down the branch that saw more rows; skl2onnx's
    # graph does not, so the compiled forest refuses NaN rather than answer otherwise.
    holes = X[:20].copy()
    holes[::3, 1] = np.nan
    forest = RandomForestRegressor(10, max_depth=5, random_state=0).fit(X, X[:, 0] * 3)
    forest.predict(holes)  # scikit-learn answers them
    compiled = choose_runtime(forest, "auto")
    assert compiled.choice.runtime == "onnx" and not compiled.choice.accepts_missing, compiled.choice
    assert "missing values (NaN) are refused" in compiled.choice.reason
    with pytest.raises(ValueError, match="runtime=sklearn"):
        _served(compiled, None).predict(holes)
    with pytest.raises(ValueError, match="infinity"):
        _served(compiled, None).predict(np.array([[np.inf, 0, 0, 0]]))
    # An imputer's graph has no 64-bit kernel in ONNX Runtime: the pipeline stays on scikit-learn.
    imputed = make_pipeline(SimpleImputer(), LogisticRegression()).fit(X, Y)
    kept = choose_runtime(imputed, "auto")
    assert kept.choice.runtime == "sklearn" and "not servable" in kept.choice.reason, kept.choice


def test_a_model_computed_in_64_bit_floats_is_compiled_in_64_bit_floats() -> None:
    """32-bit inputs would lose what separates these rows (0.03 near a million); 64-bit do not."""
    model = LogisticRegression().fit(X[:, :2], Y)
    model.coef_, model.intercept_ = np.array([[1.0, -1.0]]), np.array([0.0])
    compiled = choose_runtime(model, "auto")
    assert compiled.choice.runtime == "onnx" and "64-bit" in compiled.choice.reason, compiled.choice
    rows = np.array([[1e6 + 0.03, 1e6], [1e6 - 0.03, 1e6]])
    assert _served(compiled, [0, 1]).predict(rows).tolist() == model.predict(rows).tolist() == [1, 0]


def test_split_probes_reach_deep_nodes_and_stay_within_their_bounds() -> None:
    from artifacts.probe_rows import probe_rows

    tree = DecisionTreeClassifier(max_depth=8, random_state=0).fit(X, Y)
    rows = probe_rows(tree, 4)[1_000:]  # after the random draws
    leaves = set(tree.apply(rows).tolist())
    reachable = int((tree.tree_.feature < 0).sum())
    assert len(leaves) >= reachable * 0.9, (len(leaves), reachable)


def test_a_sample_the_model_refuses_is_not_probed_around() -> None:
    codes = np.column_stack([X[:, :2], _rng.integers(0, 3, (600, 1))])
    model = make_pipeline(
        ColumnTransformer([("c", OneHotEncoder(), [2])], remainder="passthrough"), LogisticRegression()
    )
    model.fit(codes, Y)
    # Generated draws are codes it never saw: without a sample nothing can be probed.
    without = choose_runtime(model, "auto")
    assert without.choice.runtime == "sklearn" and "send a sample" in without.choice.reason, without.choice
    with_sample = choose_runtime(model, "auto", codes[:100])
    assert with_sample.choice.runtime == "onnx" and with_sample.choice.probes == 100, with_sample.choice
    refused = choose_runtime(model, "auto", np.array([[0.0, 0.0, 7.0]]))
    assert refused.choice.runtime == "sklearn" and "refused the sample" in refused.choice.reason


def test_a_classifier_of_text_labels_answers_the_same_labels() -> None:
    labels = np.where(Y == 1, "yes", "no")
    model = RandomForestClassifier(10, max_depth=4, random_state=0).fit(X, labels)
    compiled = choose_runtime(model, "auto")
    assert compiled.choice.runtime == "onnx", compiled.choice
    assert _served(compiled, model.classes_.tolist()).predict(X).tolist() == model.predict(X).tolist()
