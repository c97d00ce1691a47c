"""``fixsecure bench proxy`` with tiny counts: every topology runs and the JSON is consistent.

Only structure and arithmetic are checked (every topology present, positive rates and round-trip
times, ratios and added latencies derived from the rows of the same run); never a timing target.
stunnel4 is required (``make sysdeps``) like in the interop tests: its absence fails, unless
FIXSECURE_ALLOW_SKIP_INTEROP=1 turns that into a skip.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from typing import Any

import pytest

from fixsecure.bench import new_order_single
from fixsecure.benchproxy import (
    MESSAGE_BYTES,
    TOPOLOGIES,
    execution_report,
    percentile,
    stunnel_binary,
)
from fixsecure.framing import Framer


def close(a: float, b: float, *, rel: float = 2e-3, abs_: float = 0.0015) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def test_the_messages_are_200_framed_bytes() -> None:
    for message in (new_order_single(size=MESSAGE_BYTES), execution_report(MESSAGE_BYTES)):
        assert len(message) == MESSAGE_BYTES
        framer = Framer()
        framer.feed(message)
        assert framer.next_message() == message


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0


@pytest.fixture
def report() -> dict[str, Any]:
    if stunnel_binary() is None:
        message = "stunnel4 is not installed: run `make sysdeps`"
        if os.environ.get("FIXSECURE_ALLOW_SKIP_INTEROP") == "1":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    argv = ["bench", "proxy", "--json", "--messages", "300", "--repeats", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "fixsecure", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_bench_proxy_json_is_complete_and_consistent(report: dict[str, Any]) -> None:
    assert report["benchmark"] == "proxy"
    assert report["message_bytes"] == MESSAGE_BYTES
    assert report["messages"] == 300
    assert report["round_trips"] == 300
    assert report["repeats"] == 2
    rows = report["topologies"]
    assert list(rows) == list(TOPOLOGIES)
    direct, stunnel = rows["direct"], rows["stunnel"]
    for name, row in rows.items():
        assert row["name"] == name
        assert row["msg_per_s"] > 0
        assert 0 < row["rtt_p50_us"] <= row["rtt_p99_us"]
        assert row["cpu_us_per_msg"] >= row["busiest_process_cpu_us_per_msg"] >= 0
        assert row["engines_cpu_us_per_msg"] >= 0
        # Added latency is the row's RTT minus direct TCP's, of the same run.
        assert close(row["added_p50_us"], row["rtt_p50_us"] - direct["rtt_p50_us"], abs_=0.15)
        assert close(row["added_p99_us"], row["rtt_p99_us"] - direct["rtt_p99_us"], abs_=0.15)
        assert close(row["throughput_vs_stunnel"], row["msg_per_s"] / stunnel["msg_per_s"])
        if stunnel["added_p50_us"] > 0:
            expected = row["added_p50_us"] / stunnel["added_p50_us"]
            assert close(row["added_p50_vs_stunnel"], expected, rel=2e-2)
        assert row["cpu_us_per_round_trip"] >= 0
    assert rows["direct"]["processes"] == 0
    assert rows["direct"]["cpu_us_per_round_trip"] == 0.0
    assert rows["relay"]["processes"] == rows["stunnel"]["processes"] == 2
    assert rows["fixsecure"]["processes"] == rows["fixsecure-busypoll"]["processes"] == 2
    assert direct["added_p50_us"] == direct["added_p99_us"] == 0.0
    assert stunnel["throughput_vs_stunnel"] == 1.0
    assert report["hot_path"] in ("c", "python")
    assert report["event_loop"] in ("uvloop", "asyncio")
    targets = report["targets"]
    assert targets["throughput_vs_stunnel"] == rows["fixsecure"]["throughput_vs_stunnel"]
    assert targets["throughput_met"] == (targets["throughput_vs_stunnel"] >= 0.25)
    assert targets["latency_met"] == (
        rows["fixsecure"]["added_p50_us"] <= stunnel["added_p50_us"]
    )
    spinning = rows["fixsecure-busypoll"]
    assert targets["busy_poll_added_p50_us"] == spinning["added_p50_us"]
    assert targets["busy_poll_latency_met"] == (spinning["added_p50_us"] <= stunnel["added_p50_us"])
    assert targets["busy_poll_cpu_us_per_round_trip"] == spinning["cpu_us_per_round_trip"]
    assert targets["relay_msg_per_s"] == rows["relay"]["msg_per_s"]
    assert targets["proxies_cpu_us_per_msg"] == rows["fixsecure"]["cpu_us_per_msg"]
    assert targets["cpu_budget_us_per_msg"] > 0
    assert close(
        targets["protocol_cpu_us_per_msg"],
        rows["fixsecure"]["cpu_us_per_msg"] - rows["relay"]["cpu_us_per_msg"],
        abs_=0.011,
    )

