"""``fixsecure demo`` (``make demo``): an encrypted FIX session, start to finish, on loopback.

With no setup: throwaway keys in a temporary directory, the test counterparty as the venue, an order
client as the bank, and a recording tap between them that sees exactly what a router or a network
monitor would. It logs on (the Noise_KK handshake inside the Logon), sends orders, receives every
fill, logs out, then shows a few messages three ways — as the bank's engine wrote them, as they
crossed the network, as the venue's engine received them — and the throughput and latency it
measured. Everything is verified on the way: each message the venue received must be byte-for-byte
what the bank sent, and the other way round. Exit status 0 if all of it holds, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from fixsecure import wire
from fixsecure.benchproxy import free_ports, percentile
from fixsecure.counterparty.client import OrderClient, OrderResult
from fixsecure.counterparty.runner import CounterpartyRunner
from fixsecure.framing import Framer
from fixsecure.keys import write_keypair
from fixsecure.sessionid import SessionID
from fixsecure.suites import DEFAULT_SUITE

__all__ = ["run_demo"]

_LATENCY_ORDERS = 200


class _Tap:
    """A loopback relay that records every byte in each direction: the network's view."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.up = bytearray()
        self.down = bytearray()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, log: bytearray
        ) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    log += data
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, self.up), pump(up_reader, writer, self.down))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class _Observed:
    """Plaintext messages as each engine sent and received them, in order."""

    sent: list[bytes] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)

    def observer(self) -> Callable[[SessionID, str, bytes], None]:
        def observe(_sid: SessionID, direction: str, message: bytes) -> None:
            (self.sent if direction == "sent" else self.received).append(message)

        return observe


def _settings(tmp: Path, suite: str, venue_port: int, tap_port: int) -> tuple[Path, Path]:
    common = f"""FixSecureSuite={suite}
HeartBtInt=30
FixSecureDrainTimeout=3
"""
    venue = tmp / "venue.cfg"
    venue.write_text(
        f"""# the venue: fixsecure's test counterparty, encrypted session with BANK
[DEFAULT]
ConnectionType=acceptor
{common}FileStorePath=store
FixSecureStatePath=state
FixSecurePrivateKeyFile=keys/venue.key
FixSecurePeerPublicKeyFile=keys/bank.pub
SocketAcceptHost=127.0.0.1
SocketAcceptPort={venue_port}
[SESSION]
BeginString=FIX.4.4
SenderCompID=VENUE
TargetCompID=BANK
"""
    )
    bank = tmp / "bank.cfg"
    bank.write_text(
        f"""# the bank: an order-sending client, connecting through the recording tap
[DEFAULT]
ConnectionType=initiator
{common}ReconnectInterval=1
FixSecurePrivateKeyFile=keys/bank.key
FixSecurePeerPublicKeyFile=keys/venue.pub
SocketConnectHost=127.0.0.1
SocketConnectPort={tap_port}
[SESSION]
BeginString=FIX.4.4
SenderCompID=BANK
TargetCompID=VENUE
"""
    )
    return venue, bank


def _show(message: bytes, width: int) -> str:
    text = message.replace(b"\x01", b"|").decode("ascii", "replace")
    return text if len(text) <= width else text[: width - 1] + "…"


def _messages(stream: bytes) -> list[bytes]:
    framer = Framer(1 << 22)
    framer.feed(stream)
    out = []
    while (message := framer.next_message()) is not None:
        out.append(message)
    return out


async def _run(orders: int, suite: str, out: TextIO, width: int) -> int:
    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    with tempfile.TemporaryDirectory(prefix="fixsecure-demo-") as name:
        tmp = Path(name)
        bank_key = write_keypair("bank", suite, tmp / "keys")
        venue_key = write_keypair("venue", suite, tmp / "keys")
        say(f"fixsecure demo — {suite}, {orders:,} orders, everything on loopback in {tmp}")
        say(f"  keys: bank {bank_key.fingerprint}")
        say(f"        venue {venue_key.fingerprint}")
        (venue_port,) = free_ports(1)
        tap = _Tap(venue_port)
        tap_port = await tap.start()
        venue_cfg, bank_cfg = _settings(tmp, suite, venue_port, tap_port)
        venue_seen, bank_seen = _Observed(), _Observed()
        runner = CounterpartyRunner(venue_cfg, observer=venue_seen.observer())
        await runner.start()
        say(f"  venue: fixsecure counterparty on 127.0.0.1:{venue_port}")
        say(f"  tap:   a recording relay on 127.0.0.1:{tap_port} (what a router sees)")
        client = OrderClient.from_settings(bank_cfg, observer=bank_seen.observer())
        try:
            started = time.perf_counter()
            await client.logon()
            say(
                f"  logged on: Noise_KK handshake inside the Logon in "
                f"{(time.perf_counter() - started) * 1e3:.1f} ms"
            )
            results: list[OrderResult] = []
            step = max(orders // 10, 1)
            began = time.perf_counter()
            while len(results) < orders:
                results += await client.send_orders(min(step, orders - len(results)))
                say(f"  {len(results):>7,}/{orders:,} orders filled")
            elapsed = time.perf_counter() - began
            latencies = []
            for _ in range(min(_LATENCY_ORDERS, orders)):
                one = await client.send_order(quantity=Decimal(10))
                latencies.append(one.latency)
            await client.logout()
        finally:
            await client.close()
            await runner.stop()
            await tap.close()

        failures = []
        filled = sum(1 for r in results if r.status == "filled" and r.cum_qty == r.quantity)
        if filled != orders:
            failures.append(f"{orders - filled} of {orders} orders not completely filled")
        stats = client.stats()
        if stats.overfilled or stats.unknown_reports:
            failures.append(
                f"{stats.overfilled} overfilled, {stats.unknown_reports} unknown reports"
            )
        if bank_seen.sent != venue_seen.received:
            failures.append("the venue did not receive exactly what the bank sent")
        if venue_seen.sent != bank_seen.received:
            failures.append("the bank did not receive exactly what the venue sent")
        wire_up, wire_down = _messages(bytes(tap.up)), _messages(bytes(tap.down))
        if len(wire_up) != len(bank_seen.sent) or len(wire_down) != len(venue_seen.sent):
            failures.append("the tap saw a different number of messages than the engines sent")
        for secret in (b"\x0111=", b"\x0155=EUR/USD", b"\x0132="):  # body fields never in clear
            if secret in tap.up or secret in tap.down:
                failures.append(f"body field {secret[1:]!r} crossed the network in clear")

        say()
        say("Three views of the same messages (| is SOH):")
        examples = [("Logon (handshake message 1)", 0, True), ("Logon reply (message 2)", 0, False)]
        first_order = next(
            (i for i, m in enumerate(bank_seen.sent) if wire.split(m)[4] == b"D"), None
        )
        first_fill = next(
            (
                i
                for i, m in enumerate(venue_seen.sent)
                if wire.split(m)[4] == b"8" and b"\x01150=F\x01" in m
            ),
            None,
        )
        if first_order is not None:
            examples.append(("NewOrderSingle", first_order, True))
        if first_fill is not None:
            examples.append(("ExecutionReport (fill)", first_fill, False))
        examples.append(("Logout", len(bank_seen.sent) - 1, True))
        label = 22
        for title, index, upward in examples:
            sent = (bank_seen.sent if upward else venue_seen.sent)[index]
            seen = (wire_up if upward else wire_down)[index]
            got = (venue_seen.received if upward else bank_seen.received)[index]
            who = ("BANK", "VENUE") if upward else ("VENUE", "BANK")
            say(f"\n  {title}, {who[0]} -> {who[1]}")
            say(f"    {who[0] + ' engine wrote':<{label}}{_show(sent, width - label - 4)}")
            say(f"    {'on the wire':<{label}}{_show(seen, width - label - 4)}")
            same = "identical, byte for byte" if got == sent else "DIFFERENT"
            say(f"    {who[1] + ' engine received':<{label}}{_show(got, width - label - 4)}")
            say(f"    {'':<{label}}({same}; {len(sent)} bytes plaintext, {len(seen)} on the wire)")

        say()
        say("Measured:")
        say(f"  {orders:,} orders in batches of {step:,}: {orders / elapsed:,.0f} orders/s")
        if latencies:
            p50 = statistics.median(latencies) * 1e6
            p99 = percentile(latencies, 0.99) * 1e6
            say(
                f"  round trip, one order at a time ({len(latencies)} orders): "
                f"p50 {p50:,.0f} µs, p99 {p99:,.0f} µs"
            )
        total = len(bank_seen.sent) + len(venue_seen.sent)
        verdict = "yes" if not failures else "NO"
        say(f"  {total:,} messages, every one delivered byte-exact: {verdict}")
        if failures:
            for failure in failures:
                say(f"  FAILED: {failure}")
            return 1
        say("  clean end: both sides logged out; the temporary keys and stores are removed")
        return 0


def run_demo(
    orders: int = 1000,
    suite: str = DEFAULT_SUITE,
    *,
    out: TextIO = sys.stdout,
    width: int | None = None,
) -> int:
    """Run the demo; return the exit status. ``width``: the terminal's, at least 100."""
    if orders < 1:
        raise ValueError("orders must be at least 1")
    columns = width if width is not None else max(shutil.get_terminal_size((140, 24)).columns, 100)
    return asyncio.run(_run(orders, suite, out, columns))
