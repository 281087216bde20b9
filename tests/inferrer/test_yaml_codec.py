"""YAML bodies (inferrer/api/yaml_codec.py) read as YAML 1.2: a switch's `on:` stays a key."""

from __future__ import annotations

import pytest

from inferrer.api.yaml_codec import is_yaml, read_yaml_mapping
from inferrer.errors import MalformedRequest


def test_words_and_dates_stay_text_and_only_true_and_false_are_booleans() -> None:
    read = read_yaml_mapping(b"on: yes\nno: off\nwhen: 2024-01-01\nflag: true\nother: False\nn: 3\nx: 1.5")
    assert read == {
        "on": "yes",
        "no": "off",
        "when": "2024-01-01",
        "flag": True,
        "other": False,
        "n": 3,
        "x": 1.5,
    }


DEEP = b"a: " + b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(
    "body",
    [b"a: &x [1, 2]\nb: *x", b"- a list", b"just text", b"a: [unclosed", b"? [1, 2]\n: complex key",
     b"a: !!binary aGVsbG8=", b"a: !!set {x, y}", DEEP, b"a: " + b"[" * 80 + b"]" * 80],
    ids=["alias", "list", "scalar", "malformed", "non-text key", "binary", "set", "recursion", "too deep"],
)  # fmt: skip
def test_anything_but_one_mapping_without_aliases_is_refused(body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        read_yaml_mapping(body)


def test_the_yaml_media_types() -> None:
    assert (
        is_yaml("application/yaml") and is_yaml("text/yaml; charset=utf-8") and is_yaml("Application/X-YAML")
    )
    assert not is_yaml("application/json") and not is_yaml("")
