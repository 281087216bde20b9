"""Request bodies in YAML (an inference graph's document), read as YAML 1.2 reads them: `on`, `yes`
and `no` are words, not booleans (a switch's `on:` stays a key), a date stays its text, and anchors
and aliases are refused (a small document cannot stand for a huge one)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from inferrer.errors import MalformedRequest

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
_BOOL = "tag:yaml.org,2002:bool"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAX_NESTING = 64


class _Yaml12Loader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise MalformedRequest("YAML aliases (*name) are not taken")
        return super().compose_node(parent, index)


# Only true and false are booleans; no implicit timestamps (YAML 1.2's core schema).
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def is_yaml(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() in YAML_TYPES


def read_yaml_mapping(raw: bytes) -> dict[str, Any]:
    """The body as one YAML mapping of what JSON has; MalformedRequest (400) for anything else."""
    try:
        document = yaml.load(raw, Loader=_Yaml12Loader)  # a safe loader, without aliases
    except yaml.YAMLError as exc:
        raise MalformedRequest(f"malformed YAML body: {str(exc)[:300]}") from None
    except RecursionError:
        raise MalformedRequest("the YAML body nests too deep") from None
    if not isinstance(document, dict) or not _json_like(document, _MAX_NESTING):
        raise MalformedRequest(
            "the body must be one YAML mapping of what JSON has (text keys; mappings, lists, text, "
            f"numbers, booleans, null), nested at most {_MAX_NESTING} deep"
        )
    return document


def _json_like(value: Any, depth: int) -> bool:
    """What a JSON body could hold: no bytes (!!binary), sets, or other tagged types."""
    if depth < 0:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_like(v, depth - 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_json_like(v, depth - 1) for v in value)
    return value is None or isinstance(value, str | int | float | bool)
