"""What the job and watch request bodies share: optional fields given or left out (never null), and
fields renamed in this release whose old names are still taken for one release, with a note."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, PrivateAttr, model_validator
from pydantic_core.core_schema import ValidatorFunctionWrapHandler


class GivenOrLeftOut(BaseModel):
    """A request body whose optional fields are given or left out, never null."""

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(value is None for value in data.values()):
            raise ValueError("leave a field out rather than send null")
        return data


class RenamedFields(GivenOrLeftOut):
    """A body that still takes the old names in `RENAMED` (old: new), one or the other, never both;
    `renamed` says which old names this one used."""

    RENAMED: ClassVar[dict[str, str]] = {}
    _renamed: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _old_names(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        used = tuple(old for old in cls.RENAMED if isinstance(data, dict) and old in data)
        for old in used:
            new = cls.RENAMED[old]
            if new in data:
                raise ValueError(f'give "{new}" only: "{old}" is its old name')
            data = {(new if key == old else key): value for key, value in data.items()}
        body = handler(data)
        body._renamed = used
        return body

    @property
    def renamed(self) -> tuple[str, ...]:
        return self._renamed

    def deprecation_headers(self) -> dict[str, str]:
        """What an answer to this body says when it used old names: `Deprecation` and a `Warning`."""
        if not self._renamed:
            return {}
        notes = ", ".join(
            f"299 - \"field '{old}' is deprecated; use '{self.RENAMED[old]}'\"" for old in self._renamed
        )
        return {"Deprecation": "true", "Warning": notes}


def declare_old_names(schema: dict[str, Any], renamed: dict[str, str]) -> None:
    """Declare, in a body's JSON Schema, the old names it still takes: each as its new name is
    (marked deprecated), never with it, and one of the two where the new one is required."""
    properties, required = schema["properties"], schema.get("required", [])
    for old, new in renamed.items():
        properties[old] = {**properties[new], "deprecated": True, "description": f'The old name of "{new}"'}
        rules = schema.setdefault("allOf", [])
        rules.append({"not": {"required": [old, new]}})
        if new in required:
            required.remove(new)
            rules.append({"anyOf": [{"required": [new]}, {"required": [old]}]})
