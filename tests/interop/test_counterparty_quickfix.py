"""A real QuickFIX initiator against ``fixsecure counterparty``, through an initiator-side proxy.

::

    QuickFIX initiator (qfapps.py) --plain--> fixsecure proxy ==encrypted==> fixsecure counterparty

The counterparty has fixsecure built in (no proxy on its side) and answers each NewOrderSingle
with an ExecutionReport New and one full fill. Shown: the QuickFIX engine logs on through the
handshake, gets every order filled exactly once, logs out cleanly; the counterparty's own store
holds exactly the ExecutionReports QuickFIX received, byte for byte, each echoing its order.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter

import pytest

from fixsecure.counterparty.store import FileStore, store_name
from fixsecure.keys import write_keypair
from fixsecure.suites import DEFAULT_SUITE

from .harness import (
    BEGIN_STRING,
    EXECUTOR_ID,
    INITIATOR_ID,
    LOOPBACK,
    Address,
    Harness,
    HarnessError,
    ManagedProcess,
    SessionKey,
    free_ports,
    header_field,
    msg_type,
    wait_until,
    write_settings,
)

pytestmark = pytest.mark.interop

ORDERS = 2_000
COUNTERPARTY_SESSION = f"{BEGIN_STRING}:{EXECUTOR_ID}->{INITIATOR_ID}"
PROXY_SESSION = f"{BEGIN_STRING}:{INITIATOR_ID}->{EXECUTOR_ID}"
_STATS = re.compile(r"stats " + re.escape(COUNTERPARTY_SESSION) + r": .*$", re.MULTILINE)


def log_of(proc: ManagedProcess) -> str:
    return proc.stderr_path.read_text(errors="replace") if proc.stderr_path.exists() else ""


def wait_for_line(proc: ManagedProcess, text: str, timeout: float = 15.0) -> None:
    def logged() -> bool:
        if not proc.running:
            raise HarnessError(f"{proc.name} exited\n{proc.diagnostics()}")
        return text in log_of(proc)

    try:
        wait_until(logged, timeout, what=f"{text!r} in the log of {proc.name}")
    except TimeoutError as exc:
        raise HarnessError(f"{exc}\n{proc.diagnostics()}") from None


def last_stats(proc: ManagedProcess) -> dict[str, int]:
    """The counters of the counterparty's latest stats line (FixSecureStatsInterval)."""
    lines = _STATS.findall(log_of(proc))
    if not lines:
        return {}
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1])}


def fields_of(message: bytes, *tags: int) -> tuple[bytes | None, ...]:
    return tuple(header_field(message, tag) for tag in tags)


def test_quickfix_initiator_through_the_proxy_to_the_counterparty(harness: Harness) -> None:
    keys = harness.workdir / "keys"
    write_keypair("counterparty", DEFAULT_SUITE, keys)
    write_keypair("client", DEFAULT_SUITE, keys)
    counterparty_port, proxy_port = free_ports(2)
    store = harness.workdir / "counterparty-store"

    # The counterparty: an acceptor EXEC <- CLIENT, encrypted, with a file store.
    counterparty_cfg = write_settings(
        harness.workdir / "counterparty.cfg",
        {
            "ConnectionType": "acceptor",
            "BeginString": BEGIN_STRING,
            "SocketAcceptHost": LOOPBACK,
            "SocketAcceptPort": counterparty_port,
            "FileStorePath": store,
            "FixSecureSuite": DEFAULT_SUITE,
            "FixSecurePrivateKeyFile": keys / "counterparty.key",
            "FixSecurePeerPublicKeyFile": keys / "client.pub",
            "FixSecureStatePath": harness.workdir / "counterparty-state",
            "FixSecureHandshakeTimeout": 5,
            "FixSecureDrainTimeout": 2,
            "FixSecureStatsInterval": 0.25,
        },
        [{"SenderCompID": EXECUTOR_ID, "TargetCompID": INITIATOR_ID}],
    )
    counterparty = harness.spawn(
        "counterparty",
        [sys.executable, "-m", "fixsecure", "counterparty", "-c", str(counterparty_cfg)],
        env={"PYTHONUNBUFFERED": "1"},
    )
    wait_for_line(counterparty, "counterparty ready")

    # The initiator side: QuickFIX and its proxy read one settings file (spec §12).
    entry = Address(LOOPBACK, proxy_port)
    secure: dict[str, object] = {
        "FixSecureSuite": DEFAULT_SUITE,
        "FixSecurePrivateKeyFile": keys / "client.key",
        "FixSecurePeerPublicKeyFile": keys / "counterparty.pub",
        "FixSecureConnectHost": LOOPBACK,
        "FixSecureConnectPort": counterparty_port,
        "FixSecureHandshakeTimeout": 5,
        "FixSecureDrainTimeout": 1,
    }
    default, session = harness.engine_settings(
        "initiator",
        "initiator",
        SessionKey(BEGIN_STRING, INITIATOR_ID, EXECUTOR_ID),
        {"SocketConnectHost": entry.host, "SocketConnectPort": entry.port},
    )
    initiator_cfg = write_settings(
        harness.workdir / "initiator.cfg", {**default, **secure}, [session]
    )
    proxy_read = initiator_cfg.read_bytes()
    proxy = harness.spawn(
        "proxy",
        [sys.executable, "-m", "fixsecure", "proxy", "-c", str(initiator_cfg)],
        env={"PYTHONUNBUFFERED": "1"},
    )
    wait_for_line(proxy, "fixsecure proxy ready")
    started = time.monotonic()
    engine = harness.start_initiator(
        entry, "initiator", orders=ORDERS, window=200, deadline=90, default=secure
    )
    assert engine.settings_path == initiator_cfg
    assert initiator_cfg.read_bytes() == proxy_read  # the engine runs on the proxy's file

    exit_code = engine.wait_exit(120)
    elapsed = time.monotonic() - started
    assert exit_code == 0, engine.diagnostics()
    log = engine.messages()
    # The counterparty's counters, once its stats line has caught up with the whole exchange.
    final = {"messages_in": len(log.sent), "messages_out": len(log.received)}
    wait_until(
        lambda: final.items() <= last_stats(counterparty).items(),
        10,
        what=f"a counterparty stats line with {final}",
    )
    stats = last_stats(counterparty)
    assert counterparty.stop(15) == 0, counterparty.diagnostics()
    assert proxy.stop(15) == 0, proxy.diagnostics()

    # QuickFIX: every order sent once and filled once, nothing resent, nothing unexpected.
    result = engine.result()
    assert result["complete"], result
    assert result["orders_sent"] == result["distinct_filled"] == ORDERS
    for key in (
        "duplicate_fills",
        "possdup_fills",
        "possdup_duplicate_fills",
        "duplicate_exec_ids",
        "unknown_fills",
        "resent_orders",
        "rejects",
        "other_app_messages",
    ):
        assert result[key] == 0, (key, result)
    assert (result["logons"], result["logouts"]) == (1, 1)
    # qfapps' fill check expects its own executor, which sends fills only; the counterparty also
    # acknowledges each order with an ExecutionReport New (150=0), which it counts as "bad".
    assert result["bad_fills"] == ORDERS

    orders = log.of_type(b"D", outgoing=True)
    reports = log.of_type(b"8", outgoing=False)
    assert len(orders) == ORDERS
    assert len({header_field(m, 11) for m in orders}) == ORDERS
    assert [msg_type(m) for m in (log.sent[0], log.sent[-1])] == [b"A", b"5"]
    assert [msg_type(m) for m in (log.received[0], log.received[-1])] == [b"A", b"5"]
    assert Counter(header_field(m, 150) for m in reports) == {b"0": ORDERS, b"F": ORDERS}
    assert all(header_field(m, 43) is None for m in log.received)
    per_order = Counter((header_field(m, 11), header_field(m, 150)) for m in reports)
    assert set(per_order.values()) == {1}
    assert {cl for cl, _ in per_order} == {header_field(m, 11) for m in orders}

    # The counterparty: its own counters and its store, read after it exited.
    assert stats["logons"] == stats["connections"] == 1
    assert stats["orders_received"] == stats["fills_sent"] == ORDERS
    with FileStore.open(store, store_name(BEGIN_STRING, EXECUTOR_ID, INITIATOR_ID), 0.0) as files:
        sent = [data for _, data in files.get(1, files.next_sender_seq - 1)]
    # Byte-exact: the ExecutionReports QuickFIX received are those the counterparty sent.
    assert [m for m in sent if msg_type(m) == b"8"] == reports
    by_id = {header_field(m, 11): m for m in orders}
    for report in reports:  # each report echoes its order's terms: the order arrived intact
        order = by_id[header_field(report, 11)]
        assert fields_of(report, 38, 44, 54, 55) == fields_of(order, 38, 44, 54, 55)

    cp_log, proxy_log = log_of(counterparty), log_of(proxy)
    assert cp_log.count(f"{COUNTERPARTY_SESSION}: logged on (encrypted") == 1
    assert f"{COUNTERPARTY_SESSION}: logged out (clean)" in cp_log
    assert (
        sum(
            PROXY_SESSION in line and "handshake complete" in line
            for line in proxy_log.splitlines()
        )
        == 1
    )
    print(f"\n{ORDERS} orders QuickFIX -> proxy -> counterparty, filled in {elapsed:.1f} s")
