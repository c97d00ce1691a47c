"""The fixsecure proxy against the real QuickFIX engine: two ``fixsecure proxy`` processes on
loopback, a QuickFIX initiator and executor with file stores, each proxy reading its engine's own
settings file (:class:`~tests.interop.fixsecure_hop.FixsecureProxyPair`).

Proved here: byte-exact delivery of 10,000 orders and their fills; healing by FIX gap recovery
when the network connection between the proxies is dropped or a proxy is SIGKILLed and restarted;
refusal, with a clear log line and nothing reaching the executor, of a wrong peer key, a wrong
suite, a plaintext peer and a replayed Logon.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Sequence
from typing import Any

import pytest

from fixsecure.suites import DEFAULT_SUITE, SUITES

from .fixsecure_hop import ACCEPTOR, INITIATOR, FixsecureProxyPair
from .harness import (
    FixPair,
    Harness,
    RelayConnection,
    TcpRelay,
    checksum_ok,
    header_field,
    msg_type,
    split_messages,
)
from .test_harness import assert_clean_run, assert_same, up_bytes_at_least

pytestmark = pytest.mark.interop

ORDERS = 10_000
# How each proxy names the session in its log.
SESSION = {ACCEPTOR: "FIX.4.4:EXEC->CLIENT", INITIATOR: "FIX.4.4:CLIENT->EXEC"}
# Bytes of one order between the proxies: header, base64 of the encrypted body, trailer.
WIRE_ORDER_BYTES = 250
# Body fields of orders and fills; none may appear in clear between the proxies.
BODY_TAGS = (b"\x0111=", b"\x0158=", b"\x0138=", b"\x0117=", b"\x01150=")


def is_subsequence(part: Sequence[bytes], whole: Sequence[bytes]) -> bool:
    """Whether ``part`` is ``whole`` with some messages left out, order kept."""
    remaining = iter(whole)
    return all(any(m == w for w in remaining) for m in part)


def assert_encrypted_on_network(conn: RelayConnection, suite: str = DEFAULT_SUITE) -> None:
    """A connection between the proxies: a fresh handshake, then only SecureData bodies."""
    up, _ = split_messages(conn.up)
    down, _ = split_messages(conn.down)
    assert up, conn
    logon = up[0]
    assert msg_type(logon) == b"A"
    assert header_field(logon, 25800) == b"fixsecure/1"
    assert header_field(logon, 25801) == suite.encode()
    for message in up + down:
        assert b"\x0190=" in message, message
        assert b"\x0191=" in message, message
        assert checksum_ok(message), message
        for tag in BODY_TAGS:
            assert tag not in message, (tag, message)


def assert_closed_silently(address: tuple[str, int], payload: bytes) -> None:
    """Send ``payload`` on a new connection; the peer must close without sending a byte."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(payload)
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
    assert data == b"", data


def lines_with(log: str, *texts: str) -> list[str]:
    return [line for line in log.splitlines() if all(text in line for text in texts)]


# --- the happy path ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suite", "orders"), [(SUITES[0], ORDERS), *((suite, 2_000) for suite in SUITES[1:])]
)
def test_orders_through_two_proxies_are_byte_exact(
    harness: Harness, suite: str, orders: int, record_property: Any, capsys: Any
) -> None:
    pair = FixsecureProxyPair(harness, suite=suite)
    fix = pair.start_engines(orders=orders, window=200, deadline=90)
    ini, exe = fix.wait(timeout=120)
    assert_clean_run(ini, exe, orders)
    assert ini["logons"] == exe["logons"] == 1
    assert ini["possdup_fills"] == ini["resent_orders"] == exe["possdup_orders"] == 0

    ini_log, exe_log = fix.messages()
    assert len(ini_log.of_type(b"D", outgoing=True)) == orders
    assert [msg_type(m) for m in (ini_log.sent[0], ini_log.sent[-1])] == [b"A", b"5"]
    assert_same(ini_log.sent, exe_log.received)  # what the executor got is what was sent
    assert_same(exe_log.sent, ini_log.received)

    # One handshake; every message crossed each proxy exactly once.
    initiator_log, acceptor_log = pair.log(INITIATOR), pair.log(ACCEPTOR)
    accepted = lines_with(acceptor_log, SESSION[ACCEPTOR], "Logon accepted", "encrypted")
    assert len(accepted) == 1, acceptor_log
    assert len(lines_with(initiator_log, SESSION[INITIATOR], "handshake complete", suite)) == 1
    out_in = f"{len(ini_log.sent)} messages out, {len(ini_log.received)} in"
    assert lines_with(initiator_log, SESSION[INITIATOR], "closed", out_in), initiator_log
    in_out = f"{len(exe_log.sent)} messages out, {len(exe_log.received)} in"
    assert lines_with(acceptor_log, SESSION[ACCEPTOR], "closed", in_out), acceptor_log
    pair.close()
    assert pair.stats(ACCEPTOR)["handshakes_ok"] == pair.stats(INITIATOR)["handshakes_ok"] == 1

    record_property("orders_per_s", ini["orders_per_s"])
    with capsys.disabled():
        print(
            f"\n[fixsecure proxies, {suite}] {orders} orders filled at "
            f"{ini['orders_per_s']:.0f} orders/s"
        )


# --- recovery ----------------------------------------------------------------------------------


def assert_healed(fix: FixPair, ini: dict[str, Any], exe: dict[str, Any]) -> None:
    """0 orders lost, 0 fills duplicated (PossDup aside), healed through FIX recovery, and each
    engine received only bytes the other sent, in order."""
    assert_clean_run(ini, exe, ORDERS)
    ini_log, exe_log = fix.messages()
    resend_requests = ini_log.of_type(b"2", outgoing=True) + exe_log.of_type(b"2", outgoing=True)
    assert resend_requests, "no ResendRequest: the cut lost nothing, the test proved nothing"
    assert ini["resent_orders"] + ini["possdup_fills"] > 0, ini
    assert is_subsequence(exe_log.received, ini_log.sent)
    assert is_subsequence(ini_log.received, exe_log.sent)


def test_network_drops_between_the_proxies_heal_by_gap_recovery(
    harness: Harness, capsys: Any
) -> None:
    relay = TcpRelay(name="network")
    pair = FixsecureProxyPair(harness, network=[relay])
    fix = pair.start_engines(orders=ORDERS, window=200, deadline=90)
    total = ORDERS * WIRE_ORDER_BYTES
    for logon, threshold in ((1, total // 4), (2, total // 2)):
        fix.initiator.wait_for_logon(count=logon, timeout=30)
        relay.wait_for(up_bytes_at_least(threshold), timeout=60)
        assert relay.drop() == 1, "nothing to drop: the flow ended before the drop point"
    ini, exe = fix.wait(timeout=120)

    assert_healed(fix, ini, exe)
    assert ini["logons"] == exe["logons"] == 3
    connections = relay.connections()
    assert [c.dropped for c in connections] == [True, True, False]
    for conn in connections:  # each reconnect is a fresh handshake; nothing readable on the wire
        assert_encrypted_on_network(conn)
    assert len({split_messages(c.up)[0][0] for c in connections}) == 3
    assert len(lines_with(pair.log(ACCEPTOR), SESSION[ACCEPTOR], "Logon accepted")) == 3
    cut = lines_with(pair.log(INITIATOR), SESSION[INITIATOR], "network side ended (abnormal)")
    assert len(cut) == 2, pair.log(INITIATOR)
    with capsys.disabled():
        print(
            f"\n[fixsecure proxies, 2 network drops] {ini['resent_orders']} orders resent, "
            f"{ini['possdup_fills']} PossDup fills, {exe['possdup_orders']} PossDup orders"
        )


@pytest.mark.parametrize("side", [INITIATOR, ACCEPTOR])
def test_proxy_sigkilled_and_restarted_mid_flow(harness: Harness, side: str) -> None:
    """No relay here: the proxies are connected directly, so the reset of the killed proxy's
    sockets reaches the other one at once (TcpRelay passes on a FIN but not a reset)."""
    pair = FixsecureProxyPair(harness)
    fix = pair.start_engines(orders=ORDERS, window=200, deadline=90)
    fix.executor.wait_for_messages(
        lambda log: len(log.of_type(b"D", outgoing=False)) >= ORDERS // 3, timeout=60
    )
    killed = pair.process(side)
    pair.kill_and_restart(side)
    ini, exe = fix.wait(timeout=120)

    assert killed.proc.returncode == -signal.SIGKILL
    assert_healed(fix, ini, exe)
    assert ini["logons"] == exe["logons"] == 2
    # Each incarnation of the killed side carried one session; the new one read the same file.
    first, second = (path.read_text() for path in pair.log_paths(side))
    assert str(pair.config(side)) in second
    done = "Logon accepted" if side == ACCEPTOR else "handshake complete"
    assert len(lines_with(first, SESSION[side], done)) == 1
    assert len(lines_with(second, SESSION[side], done)) == 1
    other = ACCEPTOR if side == INITIATOR else INITIATOR
    other_log = pair.log(other)
    assert len(lines_with(other_log, SESSION[other], "closed", "abnormal")) == 1, other_log


# --- refusals ----------------------------------------------------------------------------------


WRONG_SUITE = "Noise_KK_25519_ChaChaPoly_SHA256"  # same key type as the pinned keys


@pytest.mark.parametrize(
    ("attack", "logged"),
    [
        ("wrong_key", "Logon failed authentication with every pinned key"),
        ("wrong_suite", f"suite b'{WRONG_SUITE}' is not the configured {DEFAULT_SUITE}"),
        ("plaintext", "plaintext Logon, but the session requires encryption"),
    ],
)
def test_refused_peer_reaches_nothing(harness: Harness, attack: str, logged: str) -> None:
    """A real QuickFIX initiator (through its own proxy, or plaintext straight to the network
    port) keeps trying; every Logon is refused in silence before the executor is even connected
    to. Then the genuine initiator logs on through the same proxy, and the executor has received
    exactly its messages and nothing else."""
    pair = FixsecureProxyPair(harness)
    executor = pair.start_executor()
    if attack == "plaintext":
        mallory = harness.start_initiator(pair.network_address, "mallory", orders=1, deadline=30)
    else:
        secure: dict[str, object] = {"FixSecureSuite": WRONG_SUITE}
        if attack == "wrong_key":
            pair.make_key("mallory")
            secure = {"FixSecurePrivateKeyFile": pair.private_key("mallory")}
        mallory = pair.start_initiator_side("mallory", secure, orders=1, deadline=30)
    # The engine retried and was refused every time; it never received a byte.
    pair.wait_for_log(ACCEPTOR, SESSION[ACCEPTOR], "rejected", logged, count=2)
    assert mallory.stop() == 0, mallory.diagnostics()
    assert mallory.result()["logons"] == 0
    assert mallory.messages().received == []
    assert executor.messages().entries == ()
    assert executor.logons() == 0

    genuine = pair.start_initiator(orders=100, deadline=30)
    assert genuine.wait_exit(60) == 0, genuine.diagnostics()
    assert executor.stop() == 0
    ini_log, exe_log = genuine.messages(), executor.messages()
    assert_same(ini_log.sent, exe_log.received)
    assert len(exe_log.of_type(b"A", outgoing=False)) == 1
    pair.close()
    assert pair.stats(ACCEPTOR)["engine_connections"] == 1


def test_replayed_logon_is_refused_while_up_while_down_and_after_restart(
    harness: Harness,
) -> None:
    relay = TcpRelay(name="network")
    pair = FixsecureProxyPair(harness, network=[relay])
    fix = pair.start_engines(orders=100, hold=True, deadline=60)
    fix.initiator.wait_for_messages(lambda log: len(log.of_type(b"8", outgoing=False)) >= 100)
    recorded = split_messages(relay.connections()[0].up)[0][0]  # handshake message 1
    assert header_field(recorded, 25800) == b"fixsecure/1"

    refused = "is not later than the last accepted"
    assert_closed_silently(pair.network_address, recorded)  # the real session is up
    pair.wait_for_log(ACCEPTOR, "rejected", refused, count=1)
    assert fix.initiator.stop() == 0  # Logout: the session is down
    assert_closed_silently(pair.network_address, recorded)
    pair.wait_for_log(ACCEPTOR, "rejected", refused, count=2)
    pair.kill_and_restart(ACCEPTOR)  # the last accepted Logon time was persisted
    assert_closed_silently(pair.network_address, recorded)
    pair.wait_for_log(ACCEPTOR, "rejected", refused, count=3)

    assert len(lines_with(pair.log(ACCEPTOR), SESSION[ACCEPTOR], "rejected", refused)) == 3
    assert len(lines_with(pair.log(ACCEPTOR), "Logon accepted")) == 1
    assert fix.executor.stop() == 0
    ini, exe = fix.initiator.result(), fix.executor.result()
    assert ini["complete"], ini
    assert ini["logons"] == exe["logons"] == exe["logouts"] == 1
    ini_log, exe_log = fix.messages()
    assert_same(ini_log.sent, exe_log.received)  # not one byte of the replays
    assert len(exe_log.of_type(b"A", outgoing=False)) == 1
