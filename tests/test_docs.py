"""The written word stays in step with the code: every settings key, suite, tag and command the
code knows is documented in the spec and the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixsecure import wire
from fixsecure.cli import build_parser
from fixsecure.settings import SECURE_KEYS
from fixsecure.suites import SUITES

ROOT = Path(__file__).resolve().parent.parent
SPEC = (ROOT / "specs" / "fixsecure-v1.md").read_text()
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("key", SECURE_KEYS)
def test_every_settings_key_is_documented(key: str) -> None:
    spellings = {key}
    if key.endswith("Port"):  # tables write host and port together: FixSecureConnectHost/Port
        spellings.add(key[: -len("Port")] + "Host/Port")
    for name, text in (("spec", SPEC), ("README", README)):
        assert any(s in text for s in spellings), f"{key} is missing from the {name}"


@pytest.mark.parametrize("suite", SUITES)
def test_every_suite_is_documented(suite: str) -> None:
    assert suite in SPEC
    assert suite in README


def test_the_protocol_tags_and_label_match_the_spec() -> None:
    assert f"| {wire.TAG_PROTOCOL} | FixSecureProtocol" in SPEC
    assert f"| {wire.TAG_SUITE} | FixSecureSuite" in SPEC
    assert wire.PROTOCOL_LABEL.decode() in SPEC
    for tag in sorted(wire.CLEAR_HEADER_TAGS):
        assert f" {tag} " in SPEC, f"clear header tag {tag} missing from spec §4"


def test_every_command_is_in_the_readme() -> None:
    parser = build_parser()
    commands = next(
        action.choices for action in parser._actions if getattr(action, "choices", None)
    )
    assert commands
    for command in commands:
        assert f"fixsecure {command}" in README, command
    assert "make demo" in README
    assert "make test" in README
