"""docs/configuration.md is what deploy/settings_reference.py generates from the Settings classes and
the topology's entries: a setting added, renamed or described anew without regenerating the page
fails here, and so does a setting or a `.env` entry the page does not describe."""

from __future__ import annotations

import re
from pathlib import Path

from deploy import settings_reference
from deploy.serve_command import env_name
from deploy.topology import EXAMPLE_ENV_FILE

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = ".venv/bin/python -m deploy.settings_reference --write"


def test_the_committed_page_is_what_the_script_generates() -> None:
    assert settings_reference.PAGE == ROOT / "docs" / "configuration.md"
    committed = settings_reference.PAGE.read_text()
    assert committed == settings_reference.generate(), f"docs/configuration.md is stale: run {REGENERATE}"


def test_every_setting_is_on_the_page_with_a_description() -> None:
    page = settings_reference.PAGE.read_text()
    for service in settings_reference.SERVICES:
        for name in service.settings.model_fields:
            variable = env_name(service.settings, name)
            assert f"**`{variable}`**" in page, f"{variable} is missing from docs/configuration.md"
            assert settings_reference.describe(service.settings, name), (
                f"{service.settings.__name__}.{name} has no description: add Field(description=...)"
            )


def test_every_settings_class_of_the_project_is_in_the_reference() -> None:
    documented = {service.settings.__name__ for service in settings_reference.SERVICES}
    defined = set()
    packages = [p for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name not in {"tests"}]
    for source in (source for package in packages for source in package.rglob("*.py")):
        defined |= set(re.findall(r"^class (\w+)\(BaseSettings\):", source.read_text(), flags=re.M))
    assert defined == documented


def test_every_env_example_entry_is_on_the_page() -> None:
    """Each key of deploy/.env.example, those commented out included (MODELHOST_1_HOST as
    MODELHOST_<n>_HOST)."""
    page = settings_reference.PAGE.read_text()
    keys = re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", EXAMPLE_ENV_FILE.read_text(), flags=re.M)
    assert len(keys) > 10
    for key in keys:
        key = re.sub(r"^(MODELHOST|GATEWAY)_\d+_", r"\1_<n>_", key)
        assert f"`{key}`" in page, f"{key} (deploy/.env.example) is missing from docs/configuration.md"
