"""The attack catalogue (design brief §5) items 3, 9 and 10 over real loopback connections.

The acceptor is a :class:`CounterpartyRunner` (fixsecure built in through :mod:`fixsecure.asyncio`),
the initiator an :class:`OrderClient` or a raw socket playing the attacker. A :class:`CutRelay`
between them records each connection both ways, cuts a connection after exactly k bytes of one
direction, or injects bytes into it. Each test shows the attack refused, nothing delivered to the
engine that was not sent by its peer, and no state changed (sequence numbers, session counters, the
anti-replay record), and that the real session carries on. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from conftest import run

from fixsecure import endpoint as endpoint_module
from fixsecure.admission import Admission
from fixsecure.benchproxy import free_ports
from fixsecure.counterparty.client import OrderClient, OrderResult
from fixsecure.counterparty.orders import FILLED, Order
from fixsecure.counterparty.runner import CounterpartyRunner, SessionDriver, SessionStatus
from fixsecure.keys import write_keypair
from fixsecure.memory import fix_message, format_timestamp
from fixsecure.sessionid import SessionID
from fixsecure.suites import DEFAULT_SUITE

CPTY_BANK = SessionID("FIX.4.4", "CPTY", "BANK")
SYMBOL = "ZZCUT"
LOOPBACK = "127.0.0.1"
CLEAN_END = "closed locally after the peer's Logout"

Direction = Literal["up", "down"]  # up: client -> counterparty; down: counterparty -> client


pytestmark = pytest.mark.usefixtures("no_asyncio_errors")


# --- settings ------------------------------------------------------------------------------------


def make_keys(directory: Path) -> None:
    for name in ("cpty", "bank"):
        write_keypair(name, DEFAULT_SUITE, directory / "keys")


def acceptor_cfg(
    directory: Path,
    port: int,
    *,
    name: str = "cpty.cfg",
    state: str = "state",
    store: str | None = "store",
    handshake_timeout: float = 5,
    max_half_open: int = 64,
    per_source: int = 100_000,
    per_session: int = 100_000,
) -> Path:
    """CPTY accepting BANK (encrypted); the rate limits stay out of the way unless set."""
    path = directory / name
    path.write_text(
        f"""[DEFAULT]
ConnectionType=acceptor
BeginString=FIX.4.4
SenderCompID=CPTY
SocketAcceptHost={LOOPBACK}
SocketAcceptPort={port}
{f"FileStorePath={store}" if store else ""}
FixSecureStatePath={state}
FixSecureHandshakeTimeout={handshake_timeout}
FixSecureMaxHalfOpen={max_half_open}
FixSecureLogonRatePerSource={per_source}
FixSecureLogonRatePerSession={per_session}
FixSecureDrainTimeout=2

[SESSION]
TargetCompID=BANK
FixSecurePrivateKeyFile=keys/cpty.key
FixSecurePeerPublicKeyFile=keys/bank.pub
"""
    )
    return path


def client_cfg(
    directory: Path, port: int, *, name: str = "bank.cfg", reconnect: float = 0.05
) -> Path:
    """The order client BANK -> CPTY, connecting to ``port`` (a relay, or the counterparty)."""
    path = directory / name
    path.write_text(
        f"""[DEFAULT]
ConnectionType=initiator
BeginString=FIX.4.4
SenderCompID=BANK
TargetCompID=CPTY
SocketConnectHost={LOOPBACK}
SocketConnectPort={port}
HeartBtInt=30
ReconnectInterval={reconnect}
FixSecurePrivateKeyFile=keys/bank.key
FixSecurePeerPublicKeyFile=keys/cpty.pub

[SESSION]
"""
    )
    return path


# --- FIX bytes, checked independently of fixsecure's framer --------------------------------------


def split_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """The complete messages at the start of ``data`` (by BodyLength), and the incomplete rest."""
    messages: list[bytes] = []
    start = 0
    while (length_at := data.find(b"\x019=", start)) >= 0:
        length_end = data.find(b"\x01", length_at + 3)
        if length_end < 0:
            break
        end = length_end + 1 + int(data[length_at + 3 : length_end]) + len(b"10=nnn\x01")
        if end > len(data):
            break
        messages.append(data[start:end])
        start = end
    return messages, data[start:]


def well_framed(message: bytes) -> bool:
    """BodyLength and CheckSum are right and nothing follows the trailer."""
    if not message.startswith(b"8=FIX.4.4\x019=") or not message.endswith(b"\x01"):
        return False
    length_end = message.index(b"\x01", 12)
    trailer = len(message) - len(b"10=nnn\x01")
    return (
        int(message[12:length_end]) == trailer - length_end - 1
        and message[trailer : trailer + 3] == b"10="
        and int(message[trailer + 3 : -1]) == sum(message[:trailer]) % 256
    )


def tag_value(message: bytes, tag: int) -> bytes | None:
    """The first value of ``tag`` (plaintext messages: no raw data fields here)."""
    marker = b"\x01%d=" % tag
    start = message.find(marker)
    if start < 0:
        return None
    start += len(marker)
    return message[start : message.index(b"\x01", start)]


def msg_types(messages: Iterable[bytes]) -> list[bytes]:
    return [tag_value(m, 35) or b"?" for m in messages]


def reframe(message: bytes, old: bytes, new: bytes) -> bytes:
    """Replace bytes inside a message and fix BodyLength and CheckSum, as an attacker would."""
    length_end = message.index(b"\x01", 12) + 1
    inner = message[length_end : -len(b"10=nnn\x01")]
    assert old in inner
    inner = inner.replace(old, new, 1)
    head = b"8=FIX.4.4\x019=%d\x01" % len(inner) + inner
    return head + b"10=%03d\x01" % (sum(head) % 256)


def tap(driver: SessionDriver) -> list[bytes]:
    """Every plaintext message fixsecure hands to the engine of ``driver``, in order."""
    seen: list[bytes] = []
    app = driver.app
    original = app.receive_many

    def receive_many(messages: Iterable[bytes], now: float) -> list[Any]:
        batch = list(messages)
        seen.extend(batch)
        return original(batch, now)

    setattr(app, "receive_many", receive_many)  # noqa: B010 - an instance attribute, not a method
    return seen


def state_snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of the anti-replay state directory: contents and modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


# --- a relay that records, cuts and injects -------------------------------------------------------


@dataclass(eq=False)
class Link:
    """One relayed connection: the bytes that crossed it each way."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    up: bytearray = field(default_factory=bytearray)
    down: bytearray = field(default_factory=bytearray)
    cut: bool = False


class CutRelay:
    """A TCP relay between the client and the counterparty.

    ``cut_after(direction, k)`` arms a cut of the next connection: exactly k more bytes of that
    direction are forwarded, then the receiving side gets a FIN (it sees the stream end after
    exactly those bytes), the sending side is reset, and nothing else crosses. ``inject`` writes
    bytes into the current connection between the messages of its peers.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.links: list[Link] = []
        self.port = 0
        self._budgets: dict[Direction, int] = {}
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._on_client, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def reset(self) -> None:
        self.links.clear()
        self._budgets.clear()

    def cut_after(self, direction: Direction, k: int) -> None:
        self._budgets[direction] = k

    async def inject(self, direction: Direction, data: bytes) -> None:
        link = self.links[-1]
        writer = link.server if direction == "up" else link.client
        writer.write(data)
        await writer.drain()

    def abort(self) -> None:
        for link in self.links:
            link.client.transport.abort()
            link.server.transport.abort()

    async def close(self) -> None:
        self.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link = Link(writer, up_writer)
        self.links.append(link)
        await asyncio.gather(
            self._pump(link, reader, up_writer, "up"), self._pump(link, up_reader, writer, "down")
        )
        writer.close()
        up_writer.close()

    async def _pump(
        self,
        link: Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: Direction,
    ) -> None:
        record = link.up if direction == "up" else link.down
        try:
            while data := await reader.read(1 << 16):
                if link.cut:
                    continue  # read and dropped: a FIN'd peer is never reset for unread data
                budget = self._budgets.pop(direction, None)
                if budget is not None and len(data) >= budget:
                    link.cut = True
                    record += data[:budget]
                    writer.write(data[:budget])
                    await writer.drain()
                    writer.write_eof()
                    (link.client if direction == "up" else link.server).transport.abort()
                    continue
                if budget is not None:
                    self._budgets[direction] = budget - len(data)
                record += data
                writer.write(data)
                await writer.drain()
            if not link.cut and writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            link.client.transport.abort()
            link.server.transport.abort()


async def probe(
    port: int, payload: bytes | None, *, source: str = LOOPBACK, timeout: float = 10.0
) -> tuple[bytes, float]:
    """Connect from ``source``, send ``payload`` (None: nothing at all) and read until the
    acceptor closes. Returns what it sent back and how long it kept the connection open."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(LOOPBACK, port, local_addr=(source, 0))
    received = bytearray()
    try:
        async with asyncio.timeout(timeout):
            if payload is not None:
                writer.write(payload)
                with contextlib.suppress(ConnectionError):  # closed first: still an answer
                    await writer.drain()
            while True:
                try:
                    data = await reader.read(1 << 16)
                except ConnectionError:
                    break
                if not data:
                    break
                received += data
    finally:
        writer.transport.abort()
    return bytes(received), time.monotonic() - started


async def refused_silently(
    port: int, payloads: Iterable[bytes | None], sources: Iterable[str], *, wave: int = 20
) -> list[float]:
    """Send each payload on its own connection (``wave`` at a time); every connection must be
    closed by the acceptor without a byte sent back. Returns how long each stayed open."""
    jobs = list(zip(payloads, sources, strict=True))
    durations: list[float] = []
    for start in range(0, len(jobs), wave):
        answers = await asyncio.gather(
            *(probe(port, payload, source=src) for payload, src in jobs[start : start + wave])
        )
        assert all(data == b"" for data, _ in answers), [d for d, _ in answers if d]
        durations += [seconds for _, seconds in answers]
    return durations


def assert_filled_once(results: list[OrderResult], count: int) -> None:
    assert len(results) == count
    assert len({r.cl_ord_id for r in results}) == count
    assert all(r.status == "filled" and r.fills == 1 and r.cum_qty == r.quantity for r in results)


def assert_book(orders: Iterable[Order], results: list[OrderResult]) -> None:
    """The counterparty's book holds exactly the client's orders, intact and filled once."""
    book = {o.cl_ord_id: o for o in orders}
    assert sorted(book) == sorted(r.cl_ord_id for r in results)
    for result in results:
        order = book[result.cl_ord_id]
        assert (order.symbol, order.side, order.order_qty) == (SYMBOL, b"1", result.quantity)
        assert order.status == FILLED
        assert order.fills == 1


# --- 3. a replayed Logon on a new connection ------------------------------------------------------


@pytest.mark.parametrize("when", ["session-up", "session-down", "after-restart"])
def test_a_replayed_logon_changes_nothing(
    tmp_path: Path, when: str, dh_calls: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Every Logon the client ever sent, replayed on a new connection, is refused before any DH:
    closed without a byte in reply, the counterparty's session status (logged on or not, counters,
    both sequence numbers) and the anti-replay state file unchanged. The first replayed Logon
    carries ResetSeqNumFlag=Y: had it reached the engine, the sequence numbers would be reset."""
    make_keys(tmp_path)
    (port,) = free_ports(1)
    cpty_cfg = acceptor_cfg(tmp_path, port)
    caplog.set_level(logging.INFO, logger="fixsecure")

    async def main_() -> None:
        runner = CounterpartyRunner(cpty_cfg)
        await runner.start()
        relay = CutRelay(port)
        client = OrderClient.from_settings(client_cfg(tmp_path, await relay.start()))
        delivered = tap(runner.driver(CPTY_BANK))
        try:
            await client.logon()
            assert_filled_once(await client.send_orders(4, symbol=SYMBOL), 4)
            if when != "session-up":  # a second session, so both an older and the last Logon
                await client.logout()
                await client.logon()
                assert_filled_once(await client.send_orders(2, symbol=SYMBOL), 2)
                await client.logout()
                await runner.wait_for(CPTY_BANK, lambda s: not s.connected, 5)
            recorded = [split_frames(bytes(link.up))[0][0] for link in relay.links]
            logons = [m for m in delivered if tag_value(m, 35) == b"A"]
            assert len(recorded) == len(logons) == (1 if when == "session-up" else 2)
            assert tag_value(logons[0], 141) == b"Y"  # the client's first Logon resets both sides
            assert tag_value(recorded[0], 141) is None  # ... which no one on the wire can see
            if when == "after-restart":  # a new process on the same store and state files
                await runner.stop(logout=False)
                runner = CounterpartyRunner(cpty_cfg)
                await runner.start()
            before = runner.status(CPTY_BANK)
            state = state_snapshot(tmp_path / "state")
            assert before.next_target_seq > 1
            assert before.logged_on == (when == "session-up")
            dh_calls.clear()
            caplog.clear()
            for _ in range(2):
                durations = await refused_silently(port, recorded, [LOOPBACK] * len(recorded))
                assert max(durations) < 1.0  # refused at once, not at the handshake timeout
            assert dh_calls == []
            assert runner.status(CPTY_BANK) == before
            assert state_snapshot(tmp_path / "state") == state
            reasons = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
            assert len(reasons) == 2 * len(recorded)
            assert all("not later than the last accepted" in text for text in reasons)
            # The real session carries on where it was: no reset happened.
            if when == "session-up":
                assert client.status().logged_on
            else:
                await client.logon()
            assert_filled_once([await client.send_order(symbol=SYMBOL)], 1)
            after = runner.status(CPTY_BANK)
            assert after.logons == before.logons + (when != "session-up")
            assert after.next_target_seq == before.next_target_seq + 1 + (when != "session-up")
        finally:
            await client.close()
            await relay.close()
            await runner.stop()

    run(main_())


def test_old_messages_fail_on_a_new_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The rest of item 3 over sockets: an order recorded on one connection, injected into the
    next one, fails authentication under the new keys (nothing delivered, sequence numbers kept;
    the client reconnects and trades on); the Logon reply recorded on one connection, played
    back to a new connection of the same client, does not complete its handshake."""
    make_keys(tmp_path)
    (port,) = free_ports(1)
    cpty_cfg = acceptor_cfg(tmp_path, port)
    caplog.set_level(logging.INFO, logger="fixsecure")

    async def main_() -> None:
        async with CounterpartyRunner(cpty_cfg) as runner:
            relay = CutRelay(port)
            client = OrderClient.from_settings(
                client_cfg(tmp_path, await relay.start(), reconnect=0.3)
            )
            to_counterparty = tap(runner.driver(CPTY_BANK))
            try:
                await client.logon()
                results = await client.send_orders(3, symbol=SYMBOL)
                await client.logout()
                old_orders = split_frames(bytes(relay.links[0].up))[0][1:-1]
                old_reply = split_frames(bytes(relay.links[0].down))[0][0]
                assert msg_types(old_orders) == [b"D"] * 3
                await client.logon()
                before, heard = await in_step(runner, client), len(to_counterparty)
                caplog.clear()
                await relay.inject("up", old_orders[0])
                ended = await runner.wait_for(CPTY_BANK, lambda s: not s.connected, 5)
                assert len(to_counterparty) == heard
                assert (ended.next_sender_seq, ended.next_target_seq) == (
                    before.next_sender_seq,
                    before.next_target_seq,
                )
                assert ended.last_disconnect == "protocol failure: authentication failed"
                await client.driver.wait_for(lambda: client.status().logons == 3, 5)
                results += await client.send_orders(3, symbol=SYMBOL)
                assert_filled_once(results, 6)
                assert_book(runner.counterparty(CPTY_BANK).simulator.orders.values(), results)
            finally:
                await client.close()
                await relay.close()

        async def play_back(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1 << 16)  # the new Logon (message 1, fresh ephemeral key)
            writer.write(old_reply)
            await writer.drain()
            await reader.read(1 << 16)  # until the client gives up
            writer.close()

        impostor = await asyncio.start_server(play_back, LOOPBACK, 0)
        fresh = OrderClient.from_settings(
            client_cfg(tmp_path, impostor.sockets[0].getsockname()[1], name="again.cfg")
        )
        handed = tap(fresh.driver)
        try:
            with pytest.raises(TimeoutError, match="not logged on"):
                await fresh.logon(timeout=1)
            assert fresh.status().connections >= 1
            assert handed == []  # the client engine was handed nothing
            assert fresh.status().last_disconnect == "protocol failure: authentication failed"
        finally:
            await fresh.close()
            impostor.close()
            await impostor.wait_closed()

    run(main_())


# --- 9. the stream cut at every byte offset ------------------------------------------------------

ORDERS = 3
WORKERS = 4


@dataclass
class CutRun:
    """What one session, cut once, left behind on both sides."""

    direction: Direction | None  # None: not cut
    k: int
    first: Link
    results: list[OrderResult]
    client: SessionStatus
    duplicates: int
    overfilled: int
    to_client: list[bytes]
    to_counterparty: list[bytes]
    counterparty: SessionStatus
    book: list[Order]


class CutWorker:
    """Runs sessions one after another on its own port, state directory and relay.

    Each session starts a fresh counterparty (memory store) and a fresh client, so every cut
    starts from the same state: Logon (ResetSeqNumFlag=Y), ``ORDERS`` market orders in one write,
    every fill awaited, Logout.
    """

    def __init__(self, directory: Path, index: int, port: int) -> None:
        self.port = port
        self.cpty_cfg = acceptor_cfg(
            directory, port, name=f"cpty{index}.cfg", state=f"state{index}", store=None
        )
        self.directory = directory
        self.client_cfg = directory / f"bank{index}.cfg"
        self.relay = CutRelay(port)

    async def start(self) -> None:
        port = await self.relay.start()
        client_cfg(self.directory, port, name=self.client_cfg.name, reconnect=0.02)

    async def close(self) -> None:
        await self.relay.close()

    async def session(self, direction: Direction | None, k: int) -> CutRun:
        self.relay.reset()
        if direction is not None:
            self.relay.cut_after(direction, k)
        runner = CounterpartyRunner(self.cpty_cfg)
        await runner.start()
        try:
            to_counterparty = tap(runner.driver(CPTY_BANK))
            client = OrderClient.from_settings(self.client_cfg)
            to_client = tap(client.driver)
            try:
                await client.logon(timeout=10)
                results = await client.send_orders(ORDERS, symbol=SYMBOL, timeout=10)
                await client.logout()
            finally:
                await client.close()
            counterparty = await runner.wait_for(CPTY_BANK, lambda s: not s.connected, 5)
            stats = client.stats()
            return CutRun(
                direction=direction,
                k=k,
                first=self.relay.links[0],
                results=results,
                client=client.status(),
                duplicates=stats.duplicate_reports + stats.unknown_reports,
                overfilled=stats.overfilled,
                to_client=to_client,
                to_counterparty=to_counterparty,
                counterparty=counterparty,
                book=list(runner.counterparty(CPTY_BANK).simulator.orders.values()),
            )
        finally:
            self.relay.abort()
            await runner.stop()


def message_ends(data: bytes) -> list[int]:
    """Offsets where the messages of a recorded stream end."""
    messages, rest = split_frames(data)
    assert rest == b""
    ends, total = [], 0
    for message in messages:
        total += len(message)
        ends.append(total)
    return ends


async def reference(worker: CutWorker) -> tuple[list[int], list[int]]:
    """An uncut session: the message layout of each direction (the same for every session: all
    lengths are fixed - timestamps, ids and sequence numbers keep their widths)."""
    run_ = await worker.session(None, 0)
    up, down = bytes(run_.first.up), bytes(run_.first.down)
    assert msg_types(split_frames(up)[0]) == [b"A", *[b"D"] * ORDERS, b"5"]
    assert msg_types(split_frames(down)[0]) == [b"A", *[b"8"] * (2 * ORDERS), b"5"]
    assert run_.client.connections == 1
    return message_ends(up), message_ends(down)


async def cut_everywhere(
    directory: Path, plan: Callable[[list[int], list[int]], list[tuple[Direction, int]]]
) -> tuple[list[int], list[int], list[CutRun]]:
    """Record the reference layout, then run one cut session per (direction, offset) of
    ``plan(up_ends, down_ends)`` on ``WORKERS`` workers; failures name their offset."""
    ports = free_ports(WORKERS)
    workers = [CutWorker(directory, i, port) for i, port in enumerate(ports)]
    for worker in workers:
        await worker.start()
    try:
        up_ends, down_ends = await reference(workers[0])
        queue: asyncio.Queue[tuple[Direction, int]] = asyncio.Queue()
        for item in plan(up_ends, down_ends):
            queue.put_nowait(item)
        runs: list[CutRun] = []
        failures: list[str] = []

        async def work(worker: CutWorker) -> None:
            while not queue.empty():
                direction, k = queue.get_nowait()
                try:
                    runs.append(await worker.session(direction, k))
                except Exception as exc:  # reported with its offset below
                    failures.append(f"{direction} cut at {k}: {exc!r}")

        await asyncio.gather(*(work(w) for w in workers))
        assert not failures, failures[:5]
        return up_ends, down_ends, runs
    finally:
        for worker in workers:
            await worker.close()


def assert_each(
    runs: list[CutRun], check: Callable[[CutRun, list[int]], None], ends: list[int]
) -> None:
    """Run ``check`` on every session; a failure names the offsets that failed."""
    failed = []
    for run_ in runs:
        try:
            check(run_, ends)
        except AssertionError as exc:
            failed.append(f"{run_.direction} cut at {run_.k}: {exc}")
    assert not failed, f"{len(failed)} offsets failed, e.g. {failed[:3]}"


def is_resent_order(message: bytes) -> bool:
    return tag_value(message, 35) == b"D" and tag_value(message, 43) == b"Y"


def check_common(run_: CutRun) -> None:
    """Whatever the offset: every order filled exactly once, nothing partial or garbled handed to
    either engine, no report delivered twice, both books agree."""
    assert_filled_once(run_.results, ORDERS)
    assert run_.duplicates == run_.overfilled == 0
    assert all(well_framed(m) for m in run_.to_client + run_.to_counterparty)
    assert_book(run_.book, run_.results)
    assert run_.counterparty.orders_received == run_.counterparty.fills_sent == ORDERS
    reports = [m for m in run_.to_client if tag_value(m, 35) == b"8"]
    exec_ids = [tag_value(m, 17) for m in reports]
    assert len(set(exec_ids)) == len(exec_ids) == 2 * ORDERS  # New + Fill per order, once each


def check_up_cut(run_: CutRun, ends: list[int]) -> None:
    """Client -> counterparty stream cut after k bytes (``ends``: Logon, orders, Logout)."""
    k = run_.k
    logon_end, logout_start, total = ends[0], ends[-2], ends[-1]
    assert len(run_.first.up) == k  # the counterparty got exactly k bytes, then the end
    complete, partial = split_frames(bytes(run_.first.up))
    assert len(complete) == sum(end <= k for end in ends)  # the layout is the reference's
    assert len(partial) == k - sum(map(len, complete))
    check_common(run_)
    # The counterparty engine got the complete messages of the first connection, nothing of the
    # partial one; the orders it missed came again as resends (PossDupFlag=Y) after the Logon.
    orders = [m for m in run_.to_counterparty if tag_value(m, 35) == b"D"]
    got_first = msg_types(complete).count(b"D")
    resent = ORDERS - got_first if k > logon_end else 0
    assert [tag_value(m, 43) for m in orders] == [None] * (ORDERS - resent) + [b"Y"] * resent
    reconnected = k <= logout_start
    logons = (k >= logon_end) + reconnected
    assert run_.counterparty.logons == logons
    if reconnected:  # healed by the next Logon; both ends saw the final Logout
        assert run_.client.connections >= 2
        assert run_.client.last_disconnect.startswith(CLEAN_END)
        assert run_.counterparty.last_disconnect.startswith(CLEAN_END)
    else:  # cut inside or right after the Logout: nothing to heal, but the end is not clean
        assert run_.client.connections == 1
        assert not run_.client.last_disconnect.startswith(CLEAN_END)  # Logout reply dropped
        if k < total:
            assert not run_.counterparty.last_disconnect.startswith(CLEAN_END)


def check_down_cut(run_: CutRun, ends: list[int]) -> None:
    """Counterparty -> client stream cut after k bytes (``ends``: Logon reply, reports, Logout)."""
    k = run_.k
    reply_end, last_fill, total = ends[0], ends[-2], ends[-1]
    assert len(run_.first.down) == k
    complete, _ = split_frames(bytes(run_.first.down))
    assert len(complete) == sum(end <= k for end in ends)
    check_common(run_)
    reports = [m for m in run_.to_client if tag_value(m, 35) == b"8"]
    if k > reply_end:  # logged on in the first connection: what it got arrived first, as new
        got_first = msg_types(complete).count(b"8")
        assert [tag_value(m, 43) for m in reports[:got_first]] == [None] * got_first
    if k < last_fill:  # something was missing: the client reconnected and recovered it
        assert run_.client.connections >= 2
        assert run_.client.last_disconnect.startswith(CLEAN_END)
    elif k > last_fill:  # every fill in, the Logout reply cut: visible as an abnormal end
        assert run_.client.connections == 1
        clean = k == total
        assert run_.client.last_disconnect.startswith(CLEAN_END) == clean


def test_the_client_stream_cut_at_every_byte_offset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every offset of the client's whole stream (Logon, orders, Logout: about 1 kB), each on a
    fresh counterparty: nothing lost, nothing delivered twice, the next Logon heals the gap."""
    make_keys(tmp_path)
    caplog.set_level(logging.ERROR, logger="fixsecure")  # thousands of expected warnings

    def plan(up: list[int], down: list[int]) -> list[tuple[Direction, int]]:
        return [("up", k) for k in range(up[-1] + 1)]

    async def main_() -> None:
        up, _, runs = await cut_everywhere(tmp_path, plan)
        assert sorted(r.k for r in runs) == list(range(up[-1] + 1))
        assert_each(runs, check_up_cut, up)
        resent = [r for r in runs if any(is_resent_order(m) for m in r.to_counterparty)]
        assert len(resent) == up[-2] - up[0] - 1  # cut after the Logon, before the last order

    run(main_(), timeout=120)


def test_the_counterparty_stream_cut_around_the_handshake_and_the_logout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The other direction: every offset of message 2 (the Logon reply) and of the Logout reply
    (a dropped Logout reply must show as an abnormal end), every report boundary +-1 and a seeded
    sample inside the ExecutionReports. Why not every offset there too: they are transport
    messages like the orders the client-side test cuts at every offset; all of them would be
    ~1,800 more sessions (~25 s) for no new protocol state."""
    make_keys(tmp_path)
    caplog.set_level(logging.ERROR, logger="fixsecure")  # thousands of expected warnings

    def plan(up: list[int], down: list[int]) -> list[tuple[Direction, int]]:
        reply_end, last_fill, total = down[0], down[-2], down[-1]
        offsets = set(range(reply_end + 1)) | set(range(last_fill, total + 1))
        offsets |= {end + delta for end in down for delta in (-1, 0, 1)}
        offsets |= set(random.Random(9).sample(range(reply_end + 1, last_fill), 60))
        return [("down", k) for k in sorted(offsets) if 0 <= k <= total]

    async def main_() -> None:
        _, down, runs = await cut_everywhere(tmp_path, plan)
        reply_end, last_fill, total = down[0], down[-2], down[-1]
        assert len(runs) > reply_end + (total - last_fill)
        assert_each(runs, check_down_cut, down)
        dropped = [r for r in runs if last_fill < r.k < total]
        assert dropped
        assert all("without a Logout" in r.client.last_disconnect for r in dropped)

    run(main_(), timeout=120)


# --- 9. a plaintext Logout injected -------------------------------------------------------------


@pytest.mark.parametrize("toward", ["up", "down"], ids=["to-counterparty", "to-client"])
def test_an_injected_plaintext_logout_is_rejected(
    tmp_path: Path, toward: Direction, caplog: pytest.LogCaptureFixture
) -> None:
    """A plaintext Logout with the exact next MsgSeqNum, inserted between two messages of an
    established connection: the receiving endpoint closes the connection, nothing is delivered,
    neither engine logs out cleanly (both see an abnormal disconnect), the sequence numbers stay;
    the client reconnects and trades on, and only the final, genuine Logout is ever delivered."""
    make_keys(tmp_path)
    (port,) = free_ports(1)
    cpty_cfg = acceptor_cfg(tmp_path, port)
    caplog.set_level(logging.INFO, logger="fixsecure")

    async def main_() -> None:
        async with CounterpartyRunner(cpty_cfg) as runner:
            relay = CutRelay(port)
            client = OrderClient.from_settings(
                client_cfg(tmp_path, await relay.start(), reconnect=0.3)
            )
            to_counterparty, to_client = tap(runner.driver(CPTY_BANK)), tap(client.driver)
            try:
                await client.logon()
                results = await client.send_orders(5, symbol=SYMBOL)
                before, mine = runner.status(CPTY_BANK), client.status()
                heard = (len(to_counterparty), len(to_client))
                if toward == "up":
                    forged = fix_message(b"5", before.next_target_seq, b"BANK", b"CPTY")
                else:
                    forged = fix_message(b"5", mine.next_target_seq, b"CPTY", b"BANK")
                caplog.clear()
                await relay.inject(toward, forged)
                ended = await runner.wait_for(CPTY_BANK, lambda s: not s.connected, 5)
                await client.driver.wait_for(lambda: not client.status().connected, 5)
                gone = client.status()
                assert (len(to_counterparty), len(to_client)) == heard  # nothing delivered
                assert (ended.logons, gone.logons) == (1, 1)
                for now, then in ((ended, before), (gone, mine)):
                    assert not now.logged_on
                    assert (now.next_sender_seq, now.next_target_seq) == (
                        then.next_sender_seq,
                        then.next_target_seq,
                    )
                rejecting, other = (ended, gone) if toward == "up" else (gone, ended)
                assert rejecting.last_disconnect.startswith("protocol failure")
                assert other.last_disconnect.startswith("connection ended without a Logout")
                text = "\n".join(r.getMessage() for r in caplog.records)
                assert "Received logout request" not in text
                assert text.count("logged out (abnormal): connection lost without Logout") == 2
                # The client reconnects by itself and carries on; no order is lost or repeated.
                await client.driver.wait_for(lambda: client.status().logons == 2, 5)
                results += await client.send_orders(5, symbol=SYMBOL)
                assert_filled_once(results, 10)
                await client.logout()
                final = await runner.wait_for(CPTY_BANK, lambda s: not s.connected, 5)
                assert final.logons == 2
                assert final.last_disconnect.startswith(CLEAN_END)
                assert_book(runner.counterparty(CPTY_BANK).simulator.orders.values(), results)
            finally:
                await client.close()
                await relay.close()
        for delivered in (to_counterparty, to_client):
            assert msg_types(delivered).count(b"5") == 1  # the genuine Logout exchange only
            assert msg_types(delivered)[-1] == b"5"
        stats = client.stats()
        assert stats.duplicate_reports == stats.overfilled == stats.unknown_reports == 0

    run(main_())


# --- 10. a Logon flood ---------------------------------------------------------------------------

HALF_OPEN = 24
PER_SOURCE = 20
PER_SESSION = 60
HANDSHAKE_TIMEOUT = 2.0


class WatchedAdmission(Admission):
    """The runner's admission limits, recording the highest number of half-open handshakes."""

    peak = 0

    def open_connection(self, source: object) -> bool:
        admitted = super().open_connection(source)
        self.peak = max(self.peak, self.half_open)
        return admitted


@pytest.fixture
def admissions(monkeypatch: pytest.MonkeyPatch) -> list[WatchedAdmission]:
    """Every :class:`Admission` a runner creates (one per listener), watched."""
    created: list[WatchedAdmission] = []

    class Watched(WatchedAdmission):
        @classmethod
        def create(cls, **kwargs: Any) -> Admission:
            admission = super().create(**kwargs)
            assert isinstance(admission, WatchedAdmission)
            created.append(admission)
            return admission

    monkeypatch.setattr(endpoint_module, "Admission", Watched)
    return created


async def in_step(runner: CounterpartyRunner, client: OrderClient) -> SessionStatus:
    """Wait until both sides are logged on and have seen every message of the other (each
    refused Logon attempt used up a sequence number of the client: a gap fill follows the Logon)."""

    def level(status: SessionStatus) -> bool:
        mine = client.status()
        return (
            status.logged_on
            and status.next_target_seq == mine.next_sender_seq
            and status.next_sender_seq == mine.next_target_seq
        )

    return await runner.wait_for(CPTY_BANK, level, 5)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def test_a_logon_flood_is_bounded_and_the_real_session_gets_through(
    tmp_path: Path,
    dh_calls: list[str],
    admissions: list[WatchedAdmission],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """310 connections from 146 loopback source addresses (127.0.0.0/8 is routable on Linux):

    - 120 Logons for unknown CompIDs (handshake-shaped and plaintext): refused, no DH at all;
    - 60 connections that send nothing: at most FixSecureMaxHalfOpen are held (until the
      handshake timeout), the excess is closed at once;
    - 40 replays of the real Logon from one address: refused before DH; the per-source limit
      closes the second half at accept;
    - 90 forgeries with the real CompIDs and a fresh SendingTime from 45 addresses: each costs
      the two DH of reading message 1 and fails. The per-session limit is kept per source, so
      they cannot spend the real counterparty's Logons: it logs on at once afterwards.

    The real client connects from 127.0.0.1, which no flood uses, so the per-source limit never
    starves it; the half-open limit delays it by at most the handshake timeout. Nothing is ever
    sent back to a flooding socket."""
    make_keys(tmp_path)
    (port,) = free_ports(1)
    cpty_cfg = acceptor_cfg(
        tmp_path,
        port,
        handshake_timeout=HANDSHAKE_TIMEOUT,
        max_half_open=HALF_OPEN,
        per_source=PER_SOURCE,
        per_session=PER_SESSION,
    )
    caplog.set_level(logging.INFO, logger="fixsecure")

    def logged(*texts: str) -> int:
        return sum(all(t in r.getMessage() for t in texts) for r in caplog.records)

    async def main_() -> None:
        runner = CounterpartyRunner(cpty_cfg)
        await runner.start()
        (admission,) = admissions
        relay = CutRelay(port)  # to record one genuine Logon
        client = OrderClient.from_settings(
            client_cfg(tmp_path, await relay.start(), reconnect=0.25)
        )
        try:
            await client.logon()
            await client.logout()
            genuine = split_frames(bytes(relay.links[0].up))[0][0]

            # Unknown CompIDs, from 40 addresses: every one reaches the session lookup.
            dh_calls.clear()
            caplog.clear()
            unknown = [
                reframe(genuine, b"\x0149=BANK\x01", b"\x0149=W%03d\x01" % i) for i in range(90)
            ]
            unknown += [fix_message(b"A", 1, b"P%03d" % i, b"CPTY", [(98, 0)]) for i in range(30)]
            await refused_silently(port, unknown, [f"127.0.1.{1 + i % 40}" for i in range(120)])
            assert dh_calls == []
            assert logged("rejected:", "Logon for an unknown session") == 120
            assert admission.refused == {"half_open": 0, "source": 0, "session": 0}

            # Silent connections from 60 addresses fill the half-open slots; the real client
            # logs on meanwhile, as soon as the held ones time out.
            silent = [
                asyncio.create_task(probe(port, None, source=f"127.0.2.{1 + i}")) for i in range(60)
            ]
            await until(lambda: admission.refused["half_open"] >= 60 - HALF_OPEN)
            assert admission.half_open == HALF_OPEN
            started = time.monotonic()
            await client.logon(timeout=HANDSHAKE_TIMEOUT + 3)
            waited = time.monotonic() - started
            answers = await asyncio.gather(*silent)
            assert all(data == b"" for data, _ in answers)
            held = sorted(seconds for _, seconds in answers)
            assert held[-HALF_OPEN] >= HANDSHAKE_TIMEOUT - 0.5  # held until the timeout ...
            assert held[-HALF_OPEN - 1] < 0.5  # ... the excess closed at once
            assert waited < HANDSHAKE_TIMEOUT + 1.5
            assert admission.refused["half_open"] > 60 - HALF_OPEN  # the client was refused too
            assert admission.peak == HALF_OPEN
            assert logged("handshake not complete in time") == HALF_OPEN

            # Replays from one address: the per-source limit closes the excess at accept.
            live = await in_step(runner, client)
            refused = dict(admission.refused)
            dh_calls.clear()
            caplog.clear()
            await refused_silently(port, [genuine] * 40, ["127.0.3.1"] * 40, wave=10)
            by_source = admission.refused["source"] - refused["source"]
            assert PER_SOURCE - 1 <= by_source <= PER_SOURCE
            assert logged("rejected:", "not later than the last accepted") == 40 - by_source
            assert dh_calls == []
            assert runner.status(CPTY_BANK) == live

            # Forgeries with the real CompIDs, two per address: each is bounded by its source's
            # limits only, and none of them touches the real client's own per-session budget.
            stamp = tag_value(genuine, 52)
            assert stamp is not None
            fresh = format_timestamp(time.time_ns())
            forged = reframe(genuine, b"\x0152=" + stamp, b"\x0152=" + fresh)
            refused = dict(admission.refused)
            dh_calls.clear()
            caplog.clear()
            await refused_silently(
                port, [forged] * 90, [f"127.0.4.{1 + i // 2}" for i in range(90)]
            )
            delta = {key: admission.refused[key] - refused[key] for key in refused}
            admitted = 90 - delta["session"]
            assert delta == {"half_open": 0, "source": 0, "session": 0}
            assert len(dh_calls) == 2 * admitted
            assert logged("rejected:", "failed authentication with every pinned key") == admitted
            assert runner.status(CPTY_BANK) == live
            assert_filled_once([await client.send_order(symbol=SYMBOL)], 1)

            # After the flood the real session logs on again at once: no lockout.
            await client.logout()
            started = time.monotonic()
            await client.logon(timeout=5)
            assert time.monotonic() - started < 1.5
            assert_filled_once([await client.send_order(symbol=SYMBOL)], 1)
            assert admission.peak == HALF_OPEN
            status = runner.status(CPTY_BANK)
            assert status.logons == 3
            assert status.orders_received == status.fills_sent == 2
        finally:
            await client.close()
            await relay.close()
            await runner.stop()

    run(main_())
