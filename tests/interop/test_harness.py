"""Proof that the interop harness works: real QuickFIX engines over direct TCP, through the
recording relay (with connections dropped mid-flow) and through a stunnel TLS 1.3 pair; plus
engine-free checks of the framing, log parsing and relay the proofs rely on."""

from __future__ import annotations

import itertools
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import simplefix

from .harness import (
    Address,
    Harness,
    MessageLog,
    RelayStats,
    StunnelPair,
    TcpRelay,
    checksum_ok,
    first_difference,
    frame_length,
    msg_type,
    split_messages,
    write_settings,
)

ORDERS = 10_000


def fix_message(seq: int, *fields: tuple[int, bytes | str], sender: str = "CLIENT") -> bytes:
    msg = simplefix.FixMessage()
    msg.append_pair(8, "FIX.4.4", header=True)
    msg.append_pair(35, "D", header=True)
    msg.append_pair(49, sender, header=True)
    msg.append_pair(56, "EXEC" if sender == "CLIENT" else "CLIENT", header=True)
    msg.append_pair(34, seq, header=True)
    for tag, value in fields:
        msg.append_pair(tag, value)
    encoded: bytes = msg.encode()
    return encoded


def assert_clean_run(ini: dict[str, Any], exe: dict[str, Any], orders: int) -> None:
    """Every order sent once, filled once, consistently; nothing unexpected on either side."""
    assert ini["complete"], ini
    assert ini["orders_sent"] == ini["distinct_filled"] == orders, ini
    for key in ("duplicate_fills", "duplicate_exec_ids", "unknown_fills", "bad_fills", "rejects"):
        assert ini[key] == 0, (key, ini)
    assert exe["distinct_orders"] == exe["fills_sent"] == orders, exe
    assert exe["duplicate_orders"] == 0, exe
    assert ini["logouts"] >= 1, ini


def up_bytes_at_least(threshold: int) -> Callable[[RelayStats], bool]:
    return lambda stats: stats.up_bytes >= threshold


def assert_same(expected: list[bytes], actual: list[bytes]) -> None:
    difference = first_difference(expected, actual)
    assert difference is None, difference


# --- engine-free checks of the tools -----------------------------------------------------------


def test_framing_follows_body_length_across_chunks() -> None:
    # A data field holding SOH, "10=" and a newline must not end the message early.
    tricky = b"x\x0110=000\x01\ny"
    messages = [
        fix_message(1, (11, "A1"), (95, str(len(tricky))), (96, tricky)),
        fix_message(2, (11, "A2")),
    ]
    stream = b"".join(messages)
    assert split_messages(stream) == (messages, b"")
    # Fed one byte at a time, exactly the two messages come out.
    out: list[bytes] = []
    buffer = b""
    for i in range(len(stream)):
        buffer += stream[i : i + 1]
        done, buffer = split_messages(buffer)
        out += done
    assert out == messages
    assert buffer == b""
    assert frame_length(stream[:-1]) == len(messages[0])
    assert frame_length(messages[0][:-1]) is None
    with pytest.raises(ValueError, match="no FIX header"):
        split_messages(b"GET / HTTP/1.1\r\n\r\n")
    broken = messages[1].replace(b"\x019=", b"\x019=1", 1)  # BodyLength now points past 10=
    with pytest.raises(ValueError, match="CheckSum"):
        frame_length(broken + b"0" * 2000)
    assert all(checksum_ok(m) for m in messages)
    assert not checksum_ok(messages[1][:-4] + b"000\x01")


def test_message_log_parses_quickfix_filelog_format() -> None:
    out = fix_message(7, (58, "line\nbreak"))
    inc = fix_message(9, (58, "reply"), sender="EXEC")
    lines = [b"20261125-16:34:07.526738000 : " + m + b"\n" for m in (out, inc, out)]
    data = b"".join(lines)
    log = MessageLog.parse(data, "CLIENT")
    assert log.sent == [out, out]
    assert log.received == [inc]
    assert log.of_type(b"D", outgoing=False) == [inc]
    with pytest.raises(ValueError, match="offset"):
        MessageLog.parse(data + b"20261125-16:34:07 : 8=FIX.4.4\x01garbage\n", "CLIENT")
    # A log cut anywhere, as while the engine writes it: live parsing returns the complete
    # entries, strict parsing refuses the torn one.
    ends = list(itertools.accumulate(len(line) for line in lines))
    for cut in range(len(data) + 1):
        partial = MessageLog.parse(data[:cut], "CLIENT", live=True)
        assert partial.entries == log.entries[: sum(end <= cut for end in ends)]
        if cut not in (0, *ends):
            with pytest.raises(ValueError, match="offset"):
                MessageLog.parse(data[:cut], "CLIENT")


def test_write_settings_quickfix_format(tmp_path: Any) -> None:
    path = write_settings(
        tmp_path / "s.cfg", {"ConnectionType": "acceptor", "PersistMessages": True}, [{"A": 1}]
    )
    assert path.read_text() == (
        "[DEFAULT]\nConnectionType=acceptor\nPersistMessages=Y\n\n[SESSION]\nA=1\n"
    )
    with pytest.raises(ValueError, match="line break"):
        write_settings(tmp_path / "t.cfg", {"X": "a\nb"}, [])


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_server() -> Iterator[Address]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Address("127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _roundtrip(address: Address, payload: bytes) -> socket.socket:
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        assert chunk, "relay closed the connection early"
        got += chunk
    assert got == payload
    return sock


def assert_closed_by_peer(sock: socket.socket) -> None:
    """The peer closed (FIN or RST) rather than sending anything or timing out."""
    with sock:
        sock.settimeout(5)
        try:
            data = sock.recv(10)
        except ConnectionResetError:
            data = b""
    assert data == b""


def test_relay_records_both_directions_and_drops(echo_server: Address, harness: Harness) -> None:
    relay = TcpRelay()
    entry = harness.chain(echo_server, [relay])
    first = _roundtrip(entry, b"hello " * 1000)
    assert relay.drop() == 1
    assert_closed_by_peer(first)
    with _roundtrip(entry, b"again"):
        pass
    relay.wait_for(lambda s: s.open_connections == 0, timeout=5)
    conns = relay.connections()
    assert [(c.up, c.down, c.dropped) for c in conns] == [
        (b"hello " * 1000, b"hello " * 1000, True),
        (b"again", b"again", False),
    ]
    relay.set_accepting(False)
    assert_closed_by_peer(socket.create_connection(entry, timeout=5))


# --- real engines ------------------------------------------------------------------------------


@pytest.mark.interop
def test_direct_tcp_orders_filled_byte_exact(
    harness: Harness, record_property: Any, capsys: Any
) -> None:
    pair = harness.start_pair(orders=ORDERS, window=200, deadline=90)
    ini, exe = pair.wait(timeout=120)
    assert_clean_run(ini, exe, ORDERS)
    assert ini["logons"] == exe["logons"] == 1
    assert ini["possdup_fills"] == ini["resent_orders"] == exe["possdup_orders"] == 0

    ini_log, exe_log = pair.initiator.messages(), pair.executor.messages()
    assert len(ini_log.of_type(b"D", outgoing=True)) == ORDERS
    assert len(exe_log.of_type(b"8", outgoing=True)) == ORDERS
    assert [msg_type(m) for m in (ini_log.sent[0], ini_log.sent[-1])] == [b"A", b"5"]
    assert [msg_type(m) for m in (exe_log.sent[0], exe_log.sent[-1])] == [b"A", b"5"]
    assert_same(ini_log.sent, exe_log.received)
    assert_same(exe_log.sent, ini_log.received)
    assert all(checksum_ok(m) for m in ini_log.sent + exe_log.sent)
    sizes = [len(m) for m in ini_log.of_type(b"D", outgoing=True)]
    assert 180 <= min(sizes) <= max(sizes) <= 230, (min(sizes), max(sizes))

    record_property("orders_per_s", ini["orders_per_s"])
    with capsys.disabled():
        print(f"\n[direct TCP] {ORDERS} orders filled at {ini['orders_per_s']:.0f} orders/s")


@pytest.mark.interop
def test_engine_logs_are_the_bytes_on_the_wire(harness: Harness) -> None:
    """The FileLog-based byte comparison is only as good as the log: check it against the relay."""
    relay = TcpRelay()
    pair = harness.start_pair(hops=[relay], orders=500)
    ini, exe = pair.wait(timeout=60)
    assert_clean_run(ini, exe, 500)
    (conn,) = relay.connections()
    ini_log, exe_log = pair.initiator.messages(), pair.executor.messages()
    assert len(ini_log.sent) > 500
    assert conn.up == b"".join(ini_log.sent) == b"".join(exe_log.received)
    assert conn.down == b"".join(exe_log.sent) == b"".join(ini_log.received)


@pytest.mark.interop
def test_dropped_connections_heal_by_gap_recovery(harness: Harness, capsys: Any) -> None:
    relay = TcpRelay()
    pair = harness.start_pair(hops=[relay], orders=ORDERS, window=200, deadline=120)
    total = ORDERS * 200  # about the bytes the initiator sends
    for logon, threshold in ((1, total // 4), (2, total // 2)):
        pair.initiator.wait_for_logon(count=logon, timeout=30)
        relay.wait_for(up_bytes_at_least(threshold), timeout=60)
        assert relay.drop() == 1, "nothing to drop: the flow ended before the drop point"
    ini, exe = pair.wait(timeout=120)

    assert_clean_run(ini, exe, ORDERS)  # 0 lost, 0 non-PossDup duplicates
    assert ini["logons"] == exe["logons"] == 3
    assert [c.dropped for c in relay.connections()] == [True, True, False]

    # Healing went through FIX recovery, not luck: resend requests were answered with PossDup
    # resends (or gap fills) and the in-flight orders/fills lost at the drops came back that way.
    ini_log, exe_log = pair.initiator.messages(), pair.executor.messages()
    resend_requests = ini_log.of_type(b"2", outgoing=True) + exe_log.of_type(b"2", outgoing=True)
    assert resend_requests, "no ResendRequest: the drops lost nothing, the test proved nothing"
    assert ini["resent_orders"] + ini["possdup_fills"] > 0, ini
    # What each engine received is exactly what the other sent (no corruption in the relay).
    ini_sent, exe_sent = set(ini_log.sent), set(exe_log.sent)
    assert all(m in ini_sent for m in exe_log.received)
    assert all(m in exe_sent for m in ini_log.received)
    with capsys.disabled():
        print(
            f"\n[relay, 2 drops] {len(resend_requests)} ResendRequests, "
            f"{ini['resent_orders']} orders resent, {ini['possdup_fills']} PossDup fills, "
            f"{ini['possdup_duplicate_fills']} PossDup duplicates, "
            f"{exe['possdup_duplicate_orders']} PossDup duplicate orders"
        )


@pytest.mark.interop
def test_stunnel_tls13_pair(
    harness: Harness, stunnel: str, record_property: Any, capsys: Any
) -> None:
    tls = StunnelPair(harness)
    pair = harness.start_pair(hops=[tls], orders=ORDERS, window=200, deadline=90)
    ini, exe = pair.wait(timeout=120)
    assert_clean_run(ini, exe, ORDERS)
    assert ini["logons"] == exe["logons"] == 1
    ini_log, exe_log = pair.initiator.messages(), pair.executor.messages()
    assert_same(ini_log.sent, exe_log.received)
    assert_same(exe_log.sent, ini_log.received)
    for side in ("client", "server"):
        assert "TLSv1.3 ciphersuite" in tls.log(side), tls.log(side)

    # TLS 1.3 only: the same client credentials handshake with 1.3 and are refused at 1.2.
    assert tls.pki is not None
    assert tls.tls_address is not None
    for version, accepted in ((ssl.TLSVersion.TLSv1_3, True), (ssl.TLSVersion.TLSv1_2, False)):
        ctx = ssl.create_default_context(cafile=str(tls.pki.ca_cert))
        ctx.load_cert_chain(tls.pki.client_cert, tls.pki.client_key)
        ctx.minimum_version = ctx.maximum_version = version
        with socket.create_connection(tls.tls_address, timeout=5) as raw:
            if accepted:
                with ctx.wrap_socket(raw, server_hostname=tls.pki.server_name) as conn:
                    assert conn.version() == "TLSv1.3"
            else:
                with pytest.raises(ssl.SSLError):
                    ctx.wrap_socket(raw, server_hostname=tls.pki.server_name)

    record_property("orders_per_s", ini["orders_per_s"])
    with capsys.disabled():
        print(f"\n[stunnel TLS 1.3] {ORDERS} orders filled at {ini['orders_per_s']:.0f} orders/s")


@pytest.mark.interop
@pytest.mark.parametrize("first", ["initiator", "executor"])
def test_sigterm_logs_out_and_exits_zero(harness: Harness, first: str) -> None:
    pair = harness.start_pair(orders=50, hold=True, deadline=60)
    pair.initiator.wait_for_messages(
        lambda log: len(log.of_type(b"8", outgoing=False)) >= 50, timeout=30
    )
    engines = {"initiator": pair.initiator, "executor": pair.executor}
    stopped, other = engines.pop(first), next(iter(engines.values()))
    assert stopped.stop() == 0, stopped.diagnostics()
    assert other.stop() == 0, other.diagnostics()
    # The signalled engine sent a Logout and the next thing it received was the Logout reply.
    # (Not necessarily its last message: an executor still accepts connections for up to a
    # second while it stops, and the initiator's reconnect Logon may arrive and be refused.)
    entries = stopped.messages().entries
    logout = next(i for i, e in enumerate(entries) if e.outgoing and msg_type(e.raw) == b"5")
    reply = next(e for e in entries[logout:] if not e.outgoing)
    assert msg_type(reply.raw) == b"5"
    assert b"5" in [msg_type(m) for m in other.messages().received]
    ini, exe = pair.initiator.result(), pair.executor.result()
    assert ini["complete"], ini
    assert ini["stopped_by_signal"], ini
    assert ini["logons"] == exe["logons"] == exe["logouts"] == 1
