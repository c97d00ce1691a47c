"""QuickFIX end to end: orders/s direct, through a stunnel pair and through a fixsecure proxy pair.

    python benchmarks/quickfix_e2e.py                   # 5,000 orders, best of 3
    python benchmarks/quickfix_e2e.py --orders 20000 --repeats 5 --json

Real engines from the interop harness (``tests/interop/harness.py``): the QuickFIX initiator app
sends NewOrderSingle with at most ``--window`` unfilled orders in flight, the QuickFIX executor
answers each with a full-fill ExecutionReport, both with file stores and logs as in production.
The initiator reports orders/s from its first order to its last fill. Between them:

- ``direct``: nothing;
- ``stunnel``: the harness's :class:`StunnelPair` (TLS 1.3, mutual authentication, ECDSA P-256);
- ``fixsecure``: :class:`FixsecureProxyPair` from ``tests/interop/fixsecure_hop.py``, two
  ``fixsecure proxy`` processes reading the engines' own settings files (default suite).

Each run uses fresh processes and stores; the repeats are interleaved across topologies and the
best is reported, with ratios to stunnel and to direct from the same run. Needs the ``quickfix``
binding (``make quickfix``) and stunnel4 (``make sysdeps``). Timings vary with the machine's load;
nothing here is a pass/fail threshold (the exit status is 1 only if a run did not complete).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.interop.fixsecure_hop import FixsecureProxyPair  # noqa: E402
from tests.interop.harness import (  # noqa: E402
    FixPair,
    Harness,
    HarnessError,
    StunnelPair,
    quickfix_import_error,
    stunnel_binary,
)

TOPOLOGIES = ("direct", "stunnel", "fixsecure")
LABELS = {
    "direct": "direct TCP",
    "stunnel": "stunnel pair (TLS 1.3)",
    "fixsecure": "fixsecure proxy pair",
}


def start(name: str, harness: Harness, orders: int, window: int, deadline: float) -> FixPair:
    """The executor, the topology's hops and the initiator, all in ``harness``."""
    kwargs: dict[str, Any] = {"orders": orders, "window": window, "deadline": deadline}
    if name == "direct":
        return harness.start_pair(**kwargs)
    if name == "stunnel":
        return harness.start_pair(hops=[StunnelPair(harness)], **kwargs)
    return FixsecureProxyPair(harness).start_engines(**kwargs)


def run_once(name: str, workdir: Path, orders: int, window: int, deadline: float) -> float:
    """Orders/s of one complete run; raises HarnessError if it did not complete cleanly."""
    with Harness(workdir) as harness:
        pair = start(name, harness, orders, window, deadline)
        initiator, executor = pair.wait(timeout=deadline + 30)
    if not initiator["complete"] or initiator["distinct_filled"] != orders:
        raise HarnessError(f"{name}: incomplete run: {initiator}")
    if executor["distinct_orders"] != orders or initiator["duplicate_fills"]:
        raise HarnessError(f"{name}: inconsistent run: {initiator} {executor}")
    return float(initiator["orders_per_s"])


def measure(
    orders: int,
    window: int,
    repeats: int,
    deadline: float,
    base: Path,
    progress: Callable[[str], None],
) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {name: [] for name in TOPOLOGIES}
    for repeat in range(repeats):
        for name in TOPOLOGIES:
            rate = run_once(name, base / f"{name}-{repeat}", orders, window, deadline)
            progress(f"{name} run {repeat + 1}/{repeats}: {rate:,.0f} orders/s")
            rates[name].append(rate)
    return rates


def report(rates: dict[str, list[float]], args: argparse.Namespace) -> dict[str, Any]:
    best = {name: max(values) for name, values in rates.items()}
    return {
        "benchmark": "quickfix_e2e",
        "orders": args.orders,
        "window": args.window,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "topologies": {
            name: {
                "label": LABELS[name],
                "orders_per_s": round(best[name], 1),
                "runs": [round(r, 1) for r in rates[name]],
                "vs_stunnel": round(best[name] / best["stunnel"], 3),
                "vs_direct": round(best[name] / best["direct"], 3),
            }
            for name in TOPOLOGIES
        },
    }


def table(data: dict[str, Any]) -> str:
    lines = [
        f"QuickFIX end to end — {data['orders']:,} NewOrderSingle, each filled, at most "
        f"{data['window']} in flight, best of {data['repeats']}, {data['cpus']} CPUs",
        f"  {'topology':<26}{'orders/s':>10} {'×stunnel':>9} {'×direct':>8}   runs",
    ]
    for row in data["topologies"].values():
        runs = ", ".join(f"{r:,.0f}" for r in row["runs"])
        lines.append(
            f"  {row['label']:<26}{row['orders_per_s']:>10,.0f} {row['vs_stunnel']:>8.2f}× "
            f"{row['vs_direct']:>7.2f}×   {runs}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000, help="per run (%(default)s)")
    parser.add_argument("--window", type=int, default=200, help="unfilled orders in flight")
    parser.add_argument("--repeats", type=int, default=3, help="runs per topology")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.window < 1 or args.repeats < 1:
        parser.error("--orders, --window and --repeats must be positive")
    missing = quickfix_import_error()
    if missing is not None:
        print(f"the quickfix binding is not importable ({missing}): run `make quickfix`")
        return 2
    if stunnel_binary() is None:
        print("stunnel4 is not installed: run `make sysdeps`")
        return 2

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="qfe2e-") as tmp:
        try:
            rates = measure(
                args.orders, args.window, args.repeats, args.deadline, Path(tmp), progress
            )
        except HarnessError as exc:
            print(f"quickfix_e2e: {exc}", file=sys.stderr)
            return 1
    data = report(rates, args)
    print(json.dumps(data, indent=2) if args.json else table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
