"""The fleet's rules (monitoring/rules.yml) pass `promtool check rules`, and their unit tests
(monitoring/rules.test.yml) pass `promtool test rules`: each alert is tested firing and not firing,
each recording rule that a console page or an alert reads is tested for its value."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from deploy.render import MONITORING_DIR

RULES = MONITORING_DIR / "rules.yml"
TESTS = MONITORING_DIR / "rules.test.yml"


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required: the README's test command installs prometheus"
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, cwd=MONITORING_DIR)


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_rules_pass_promtool_check() -> None:
    result = _promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_the_rules_unit_tests_pass() -> None:
    result = _promtool("test", "rules", TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = [
        case
        for test in yaml.safe_load(TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for alert in (rule["alert"] for rule in _rules() if "alert" in rule):
        tested = [case for case in cases if case["alertname"] == alert]
        assert any(case["exp_alerts"] for case in tested), f"{alert} is never tested firing"
        assert any(not case["exp_alerts"] for case in tested), f"{alert} is never tested silent"


def test_a_broken_expectation_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests can fail: an alert expected where it must not fire is reported."""
    tests = yaml.safe_load(TESTS.read_text())
    case = next(
        c
        for t in tests["tests"]
        for c in t.get("alert_rule_test", [])
        if c["alertname"] == "ModelfleetNodeDown"
    )
    case["exp_alerts"] = [] if case["exp_alerts"] else [{"exp_labels": {"severity": "page"}}]
    tests["rule_files"] = [str(RULES)]
    broken = tmp_path / "broken.test.yml"
    broken.write_text(yaml.safe_dump(tests))
    result = _promtool("test", "rules", broken)
    assert result.returncode != 0 and "ModelfleetNodeDown" in result.stdout + result.stderr


def test_the_alertmanager_config_passes_amtool() -> None:
    amtool = shutil.which("amtool")
    assert amtool, "amtool is required: the README's test command installs prometheus-alertmanager"
    result = subprocess.run(
        [amtool, "check-config", str(MONITORING_DIR / "alertmanager.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and " - 1 receivers" in result.stdout, result.stdout
