"""``fixsecure demo`` runs end to end, checks byte-exactness itself, shows the three views."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from fixsecure.demo import run_demo
from fixsecure.suites import SUITES


@pytest.mark.parametrize("suite", SUITES)
def test_demo_runs_and_verifies(suite: str) -> None:
    out = io.StringIO()
    assert run_demo(50, suite, out=out, width=120) == 0
    text = out.getvalue()
    assert f"fixsecure demo — {suite}, 50 orders" in text
    assert "50/50 orders filled" in text
    assert text.count("identical, byte for byte") == 5
    assert "25800=fixsecure/1" in text  # the wire view of message 1
    assert "|90=" in text
    assert "|91=" in text
    assert "every one delivered byte-exact: yes" in text
    assert "orders/s" in text
    assert "p50" in text
    assert "FAILED" not in text


def test_demo_cli_exits_zero_and_checks_its_argument() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fixsecure", "demo", "--orders", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20/20 orders filled" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "fixsecure", "demo", "--orders", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "--orders must be at least 1" in bad.stderr
