"""``benchmarks/scale.py`` with 200 sessions: every initiator logs on through one acceptor proxy and
every message and acknowledgement arrives byte-exact. Timings are printed by the script, never
asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scale.py"
SESSIONS = 200
MESSAGES = 5


@pytest.mark.slow
def test_one_acceptor_proxy_serves_200_concurrent_sessions(tmp_path: Path) -> None:
    argv = [sys.executable, str(SCRIPT), "--sessions", str(SESSIONS), "--messages", str(MESSAGES)]
    done = subprocess.run(
        [*argv, "--json", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    result = json.loads(done.stdout)
    assert result["ok"] is True
    assert result["errors"] == []
    assert result["logged_on"] == SESSIONS
    total = SESSIONS * MESSAGES
    assert result["delivered"] == result["delivered_byte_exact"] == total
    assert result["acks_byte_exact"] == total
    # Every session holds a network and an engine socket in the proxy while idle.
    assert result["proxy_fds_after_storm"] >= 2 * SESSIONS
    assert result["rss_after_storm_kib"] > 0
    assert result["rss_before_kib"] > 0
