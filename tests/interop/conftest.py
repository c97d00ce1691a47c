"""Fixtures for the engine interop tests.

Tests marked ``interop`` need the QuickFIX binding. CI always installs it (``make quickfix``), so
its absence is a failure with instructions, not a silent skip; FIXSECURE_ALLOW_SKIP_INTEROP=1
turns that into a skip for machines that cannot build the wheel. stunnel is handled the same way.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from .harness import Harness, quickfix_import_error, stunnel_binary

ALLOW_SKIP_ENV = "FIXSECURE_ALLOW_SKIP_INTEROP"


def _missing(what: str, fix: str) -> NoReturn:
    message = f"{what}: run `{fix}` (set {ALLOW_SKIP_ENV}=1 to skip these tests instead)"
    if os.environ.get(ALLOW_SKIP_ENV) == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


@functools.cache
def _quickfix_error() -> str | None:
    return quickfix_import_error()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """Fail (in the call phase, so it reads FAILED, not ERROR) when an engine is missing."""
    if item.get_closest_marker("interop") is not None:
        error = _quickfix_error()
        if error is not None:
            _missing(f"the quickfix binding is not importable ({error})", "make quickfix")
    if "stunnel" in getattr(item, "fixturenames", ()) and stunnel_binary() is None:
        _missing("stunnel4 is not installed", "make sysdeps")


@pytest.fixture
def stunnel() -> str:
    """Path of the stunnel binary (Debian package stunnel4); checked by pytest_runtest_call."""
    return stunnel_binary() or "stunnel4"


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """A Harness in this test's directory; everything it started is stopped afterwards."""
    with Harness(tmp_path) as h:
        yield h
