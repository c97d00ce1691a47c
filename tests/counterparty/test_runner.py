"""The counterparty on real loopback sockets: runner, order client and ``fixsecure counterparty``.

Every test writes its own settings files and keys under tmp_path, uses free loopback ports, bounds
every wait, and closes everything it started. A :class:`Relay` between client and counterparty
records the wire (to show what is encrypted) and cuts connections mid-stream (to make gaps).
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import run

from fixsecure.benchproxy import free_port
from fixsecure.cli import main
from fixsecure.counterparty.client import OrderClient, OrderResult
from fixsecure.counterparty.fields import MsgType, OutboundMessage, Tag, format_utc_timestamp
from fixsecure.counterparty.orders import FILLED
from fixsecure.counterparty.runner import (
    CounterpartyRunner,
    Schedule,
    load_counterparty_sessions,
)
from fixsecure.counterparty.store import FileStore, store_name
from fixsecure.errors import ConfigError
from fixsecure.keys import write_keypair
from fixsecure.sessionid import SessionID

SUITE = "Noise_KK_25519_AESGCM_SHA256"
CPTY_BANK = SessionID("FIX.4.4", "CPTY", "BANK")
CPTY_BASE = SessionID("FIX.4.4", "CPTY", "BASELINE")
BANK_CPTY = SessionID("FIX.4.4", "BANK", "CPTY")
SYMBOL = "ZZMARKER"  # never in a log line, never in clear on an encrypted wire


pytestmark = pytest.mark.usefixtures("no_asyncio_errors")


def make_keys(directory: Path) -> None:
    for name in ("cpty", "bank", "mallory"):
        write_keypair(name, SUITE, directory / "keys")


def acceptor_cfg(directory: Path, port: int, extra: str = "", sessions: str | None = None) -> Path:
    """The counterparty: CPTY accepting BANK (encrypted) and BASELINE (plaintext) on one port."""
    if sessions is None:
        sessions = """
[SESSION]
TargetCompID=BANK
FixSecurePrivateKeyFile=keys/cpty.key
FixSecurePeerPublicKeyFile=keys/bank.pub

[SESSION]
TargetCompID=BASELINE
FixSecureRequired=N
"""
    path = directory / "cpty.cfg"
    path.write_text(
        f"""[DEFAULT]
ConnectionType=acceptor
BeginString=FIX.4.4
SenderCompID=CPTY
SocketAcceptHost=127.0.0.1
SocketAcceptPort={port}
FileStorePath=store
FixSecureStatePath=state
FixSecureHandshakeTimeout=5
FixSecureDrainTimeout=3
FixSecureLogonRatePerSession=60
{extra}
{sessions}"""
    )
    return path


def client_cfg(
    directory: Path,
    port: int,
    *,
    sender: str = "BANK",
    encrypted: bool = True,
    extra: str = "",
    reconnect: float = 0.1,
    name: str = "client.cfg",
) -> Path:
    """The order client's side: an initiator to CPTY through ``port``."""
    keys = (
        "FixSecurePrivateKeyFile=keys/bank.key\nFixSecurePeerPublicKeyFile=keys/cpty.pub\n"
        if encrypted
        else "FixSecureRequired=N\n"
    )
    path = directory / name
    path.write_text(
        f"""[DEFAULT]
ConnectionType=initiator
BeginString=FIX.4.4
SenderCompID={sender}
TargetCompID=CPTY
SocketConnectHost=127.0.0.1
SocketConnectPort={port}
HeartBtInt=30
ReconnectInterval={reconnect}
{keys}{extra}
[SESSION]
"""
    )
    return path


class Relay:
    """A TCP relay that records both directions and can cut every connection mid-stream."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.upstream = bytearray()  # client -> counterparty, every connection
        self.downstream = bytearray()
        self.connections = 0
        self.port = 0
        self._links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._budget: int | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def cut_after(self, upstream_bytes: int) -> None:
        """Forward ``upstream_bytes`` more toward the counterparty, then cut everything."""
        self._budget = upstream_bytes

    def cut(self) -> None:
        for client, server in self._links:
            client.transport.abort()
            server.transport.abort()
        self._links.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._links.append((writer, up_writer))
        await asyncio.gather(
            self._pump(reader, up_writer, upstream=True),
            self._pump(up_reader, writer, upstream=False),
            return_exceptions=True,
        )

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        record = self.upstream if upstream else self.downstream
        while data := await reader.read(65536):
            if upstream and self._budget is not None:
                if len(data) >= self._budget:
                    data = data[: self._budget]
                    self._budget = None
                    record.extend(data)
                    writer.write(data)
                    await writer.drain()
                    self.cut()
                    return
                self._budget -= len(data)
            record.extend(data)
            writer.write(data)
            await writer.drain()
        writer.close()


def record(latencies: list[float]) -> Callable[[OrderResult], None]:
    return lambda result: latencies.append(result.latency)


def assert_each_filled_once(results: list[OrderResult], quantity: Decimal) -> None:
    assert len({r.cl_ord_id for r in results}) == len(results)
    for result in results:
        assert result.status == "filled"
        assert result.cum_qty == quantity
        assert result.fills == 1


# --- settings -------------------------------------------------------------------------------------


def test_schedule_windows_follow_quickfix() -> None:
    day = 20_000 * 86_400.0  # a midnight UTC
    daytime = Schedule(8 * 3600, 17 * 3600)
    assert daytime.window(day + 8 * 3600) == (day + 8 * 3600, day + 17 * 3600 + 1)
    assert daytime.window(day + 17 * 3600 + 0.9) is not None  # the EndTime second is inside
    assert daytime.window(day + 17 * 3600 + 1) is None
    assert daytime.window(day + 7 * 3600) is None
    assert daytime.next_start(day + 9 * 3600) == day + 86_400 + 8 * 3600
    overnight = Schedule(22 * 3600, 6 * 3600)
    assert overnight.window(day + 23 * 3600) == (day + 22 * 3600, day + 86_400 + 6 * 3600 + 1)
    assert overnight.window(day + 5 * 3600) == (day - 86_400 + 22 * 3600, day + 6 * 3600 + 1)
    assert overnight.window(day + 12 * 3600) is None
    always = Schedule(0, 0)
    assert always.window(day + 5) == (day, day + 86_400)
    assert always.window(day - 5) == (day - 86_400, day)
    assert str(overnight) == "22:00:00-06:00:00 UTC"


def test_settings_map_to_the_engine(tmp_path: Path) -> None:
    make_keys(tmp_path)
    path = acceptor_cfg(
        tmp_path,
        9999,
        extra="""HeartBtInt=5
ResetOnLogon=Y
ResetOnDisconnect=Y
LogonTimeout=2.5
LogoutTimeout=1
CheckLatency=N
MaxLatency=30
TimestampPrecision=6
EnableNextExpectedMsgSeqNum=Y
FileStoreSync=Y
StartTime=08:00:00
EndTime=17:30:00
CounterpartyFillParts=3
CounterpartyFillInterval=0.25
CounterpartyMarketPrice=101.5""",
    )
    bank, baseline = load_counterparty_sessions(path)
    engine = bank.engine
    assert (engine.sender_comp_id, engine.target_comp_id, engine.role.value) == (
        "CPTY",
        "BANK",
        "acceptor",
    )
    assert engine.heart_bt_int == 5
    assert engine.reset_on_logon
    assert engine.reset_on_disconnect
    assert not engine.reset_on_logout
    assert (engine.logon_timeout, engine.logout_timeout, engine.max_latency) == (2.5, 1.0, 30.0)
    assert not engine.check_latency
    assert engine.check_comp_id
    assert engine.persist_messages
    assert engine.timestamp_precision == 6
    assert engine.send_next_expected_msg_seq_num
    assert bank.simulator.fill_parts == 3
    assert bank.simulator.fill_interval == 0.25
    assert bank.simulator.market_price == Decimal("101.5")
    assert bank.store_path == tmp_path / "store"
    assert bank.fsync == "always"
    assert bank.schedule == Schedule(8 * 3600, 17 * 3600 + 1800)
    assert (bank.host, bank.port) == ("127.0.0.1", 9999)
    assert baseline.settings.secure.required is False
    client = load_counterparty_sessions(client_cfg(tmp_path, 9999))[0]
    assert client.engine.role.value == "initiator"
    assert client.reconnect_interval == 0.1
    assert client.store_path is None  # memory
    assert client.fsync == "commit"  # FileStoreSync=N: one fsync per read
    assert client.schedule is None


@pytest.mark.parametrize(
    ("line", "key", "words"),
    [
        ("CounterpartyFillParts=0", "CounterpartyFillParts", "at least 1"),
        ("CounterpartyFillInterval=-1", "CounterpartyFillInterval", "at least 0"),
        ("CounterpartyMarketPrice=abc", "CounterpartyMarketPrice", "positive decimal"),
        ("CounterpartyMarketPrice=0", "CounterpartyMarketPrice", "positive decimal"),
        ("TimestampPrecision=2", "TimestampPrecision", "0, 3, 6 or 9"),
        ("StartTime=08:00:00", "EndTime", "a window needs both"),
        ("StartTime=25:00:00\nEndTime=01:00:00", "StartTime", "HH:MM:SS"),
        ("StartDay=monday", "StartDay", "daily, in UTC"),
        ("UseLocalTime=Y", "UseLocalTime", "UTC"),
        ("ReconnectInterval=0", "ReconnectInterval", "greater than 0"),
        ("FileStoreSync=yes", "FileStoreSync", "Y or N"),
        ("FixSecureAcceptPort=9443", "FixSecureAcceptPort", "proxy setting"),
        ("HeartBtInt=-1", "HeartBtInt", "at least 0"),
    ],
)
def test_bad_settings_name_file_section_and_key(
    tmp_path: Path, line: str, key: str, words: str
) -> None:
    make_keys(tmp_path)
    path = acceptor_cfg(
        tmp_path, 9999, sessions=f"[SESSION]\nTargetCompID=BASELINE\nFixSecureRequired=N\n{line}\n"
    )
    path.write_text(path.read_text().replace("FileStorePath=store\n", ""))
    with pytest.raises(ConfigError) as caught:
        load_counterparty_sessions(path)
    assert caught.value.path == path
    assert caught.value.section is not None
    assert "[SESSION] #1" in caught.value.section
    assert caught.value.key == key
    assert words in caught.value.message


def test_settings_refuse_what_the_counterparty_cannot_run(tmp_path: Path) -> None:
    path = tmp_path / "x.cfg"
    path.write_text(
        "[SESSION]\nConnectionType=acceptor\nBeginString=FIX.4.3\nSenderCompID=A\n"
        "TargetCompID=B\nSocketAcceptPort=1234\nFixSecureRequired=N\n"
    )
    with pytest.raises(ConfigError, match=r"BeginString.*FIX\.4\.2 and FIX\.4\.4"):
        load_counterparty_sessions(path)
    path.write_text(
        "[SESSION]\nConnectionType=initiator\nBeginString=FIX.4.4\nSenderCompID=A\n"
        "TargetCompID=B\nSocketConnectHost=127.0.0.1\nFixSecureRequired=N\n"
    )
    with pytest.raises(ConfigError, match=r"SocketConnectPort.*is required"):
        load_counterparty_sessions(path)
    path.write_text(
        "[DEFAULT]\nConnectionType=acceptor\nBeginString=FIX.4.4\nSenderCompID=A\n"
        "SocketAcceptPort=1234\nFixSecureRequired=N\nFileStorePath=s\n"
        "[SESSION]\nTargetCompID=B\n[SESSION]\nTargetCompID=B\nSocketAcceptPort=1235\n"
    )
    with pytest.raises(ConfigError, match="duplicate session"):
        load_counterparty_sessions(path)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("TargetCompID=X\nSessionQualifier=Y", "TargetCompID=X-Y"),  # FIX.4.4-CPTY-X-Y twice
        ("TargetCompID=X/Y", "TargetCompID=X_Y"),  # unsafe characters become _
    ],
)
def test_sessions_whose_store_files_would_collide_are_refused(
    tmp_path: Path, first: str, second: str
) -> None:
    path = acceptor_cfg(
        tmp_path,
        9999,
        sessions=f"[SESSION]\n{first}\nFixSecureRequired=N\n"
        f"[SESSION]\n{second}\nFixSecureRequired=N\nSocketAcceptPort=9998\n",
    )
    with pytest.raises(ConfigError, match="keeps the same session's store there") as caught:
        load_counterparty_sessions(path)
    assert caught.value.key == "FileStorePath"
    assert caught.value.section is not None
    assert caught.value.section.startswith("[SESSION] #2")
    path.write_text(path.read_text().replace(f"{second}\n", f"{second}\nFileStorePath=other\n"))
    assert len(load_counterparty_sessions(path)) == 2  # another directory: no collision


def test_sessions_sharing_a_listener_agree_on_its_settings(tmp_path: Path) -> None:
    make_keys(tmp_path)
    path = acceptor_cfg(
        tmp_path,
        9999,
        sessions="""[SESSION]
TargetCompID=A
FixSecureRequired=N
[SESSION]
TargetCompID=B
FixSecureRequired=N
FixSecureMaxHalfOpen=3
""",
    )
    with pytest.raises(ConfigError, match="one listener has one value") as caught:
        load_counterparty_sessions(path)
    assert caught.value.key == "FixSecureMaxHalfOpen"
    assert caught.value.section is not None
    assert caught.value.section.startswith("[SESSION] #2")


def test_a_store_in_use_is_refused_naming_the_key(tmp_path: Path) -> None:
    make_keys(tmp_path)
    path = acceptor_cfg(tmp_path, free_port())

    async def main_() -> None:
        async with CounterpartyRunner(path):
            with pytest.raises(ConfigError, match="in use by another process") as caught:
                await CounterpartyRunner(path).start()
            assert caught.value.key == "FileStorePath"

    run(main_())


def test_cli_exits_2_naming_file_section_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = acceptor_cfg(
        tmp_path,
        9999,
        sessions="[SESSION]\nTargetCompID=B\nFixSecureRequired=N\nCounterpartyMarketPrice=-3\n",
    )
    assert main(["counterparty", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fixsecure counterparty: ")
    assert str(path) in err
    assert "[SESSION] #1" in err
    assert "CounterpartyMarketPrice" in err
    assert main(["counterparty", "-c", str(tmp_path / "missing.cfg")]) == 2
    assert "cannot read the settings file" in capsys.readouterr().err
    path = acceptor_cfg(tmp_path, free_port())  # keys/cpty.key does not exist
    assert main(["counterparty", "-c", str(path)]) == 2
    assert "FixSecurePrivateKeyFile: does not exist" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()  # nothing was opened before the keys were checked


# --- acceptor sessions --------------------------------------------------------------------------


def test_encrypted_and_plaintext_sessions_share_one_listener(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_keys(tmp_path)
    port = free_port()
    path = acceptor_cfg(tmp_path, port)
    caplog.set_level(logging.DEBUG, logger="fixsecure")

    async def main_() -> None:
        async with CounterpartyRunner(path) as runner:
            assert runner.addresses == (("127.0.0.1", port),)
            secure_relay, plain_relay = Relay(port), Relay(port)
            secure_port, plain_port = await secure_relay.start(), await plain_relay.start()
            secure = OrderClient.from_settings(client_cfg(tmp_path, secure_port, name="b.cfg"))
            plain = OrderClient.from_settings(
                client_cfg(tmp_path, plain_port, sender="BASELINE", encrypted=False, name="p.cfg")
            )
            try:
                async with secure, plain:
                    qty = Decimal(250)
                    got = await asyncio.gather(
                        secure.send_orders(20, symbol=SYMBOL, quantity=qty),
                        plain.send_orders(20, symbol=SYMBOL, quantity=qty),
                    )
                    for results in got:
                        assert_each_filled_once(results, qty)
                    one = await secure.send_order(symbol=SYMBOL, price=Decimal("1.25"))
                    assert one.avg_px == Decimal("1.25")
                    bank, base = runner.status(CPTY_BANK), runner.status(CPTY_BASE)
                    assert bank.encrypted
                    assert not base.encrypted
                    assert (bank.orders_received, bank.fills_sent) == (21, 21)
                    assert (base.orders_received, base.fills_sent) == (20, 20)
                    assert secure.status().encrypted
            finally:
                await secure_relay.close()
                await plain_relay.close()
            for status in (runner.status(CPTY_BANK), runner.status(CPTY_BASE)):
                assert not status.connected
                assert status.logons == 1
        marker = SYMBOL.encode()
        assert marker not in secure_relay.upstream
        assert marker not in secure_relay.downstream
        assert b"\x0191=" in secure_relay.upstream  # SecureData on the wire
        assert marker in plain_relay.upstream
        assert marker in plain_relay.downstream
        assert secure.stats().overfilled == plain.stats().overfilled == 0

    run(main_())
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "FIX.4.4:CPTY->BANK: logged on (encrypted" in text
    assert "FIX.4.4:CPTY->BASELINE: logged on (PLAINTEXT" in text
    assert "Received logout request" in text
    assert "application message 35=D" in text  # DEBUG logs the type ...
    assert SYMBOL not in text  # ... never the contents


def test_refused_logons_never_reach_the_session(tmp_path: Path) -> None:
    """A plaintext Logon for the encrypted session, a wrong key, a second connection."""
    make_keys(tmp_path)
    port = free_port()
    path = acceptor_cfg(tmp_path, port)

    async def refused(cfg: Path) -> str:
        client = OrderClient.from_settings(cfg, clock=time.time)
        logon = asyncio.create_task(client.logon(timeout=5))
        try:
            await client.driver.wait_for(lambda: client.status().connections >= 1, 5)
            await client.driver.wait_for(lambda: not client.status().connected, 5)
            assert not client.session.is_logged_on
            return client.status().last_disconnect
        finally:
            logon.cancel()
            await client.close()

    async def main_() -> None:
        async with CounterpartyRunner(path) as runner:
            plain_for_bank = client_cfg(tmp_path, port, encrypted=False, name="p.cfg")
            assert "ended" in await refused(plain_for_bank)
            wrong_key = client_cfg(tmp_path, port, name="m.cfg")
            wrong_key.write_text(wrong_key.read_text().replace("bank.key", "mallory.key"))
            await refused(wrong_key)
            assert runner.status(CPTY_BANK).connections == 0
            async with OrderClient.from_settings(client_cfg(tmp_path, port)) as first:
                await refused(client_cfg(tmp_path, port, name="again.cfg"))
                assert first.session.is_logged_on
                assert (await first.send_order()).status == "filled"
            status = runner.status(CPTY_BANK)
            assert (status.connections, status.logons) == (1, 1)

    run(main_())


def test_throughput_encrypted_and_plaintext(tmp_path: Path) -> None:
    """Round trips through one socket read = one store commit; the rate is printed (pytest -s)."""
    make_keys(tmp_path)
    port = free_port()
    path = acceptor_cfg(tmp_path, port)
    count = 2000
    rates: dict[str, float] = {}

    async def main_() -> None:
        async with CounterpartyRunner(path) as runner:
            for label, cfg in (
                ("encrypted", client_cfg(tmp_path, port, name="e.cfg")),
                (
                    "plaintext",
                    client_cfg(tmp_path, port, sender="BASELINE", encrypted=False, name="p.cfg"),
                ),
            ):
                latencies: list[float] = []
                async with OrderClient.from_settings(cfg, on_result=record(latencies)) as client:
                    started = time.perf_counter()
                    results = await client.send_orders(count, timeout=60)
                    rates[label] = count / (time.perf_counter() - started)
                    assert_each_filled_once(results, Decimal(100))
                    assert len(latencies) == count
            assert runner.status(CPTY_BANK).fills_sent == count
            assert runner.status(CPTY_BASE).fills_sent == count

    run(main_())
    print(
        f"\ncounterparty round trips, {count} orders in one batch, client and counterparty in "
        f"one process: encrypted {rates['encrypted']:.0f}/s, plaintext {rates['plaintext']:.0f}/s"
    )


# --- initiator sessions, reconnects, restarts -----------------------------------------------------


def test_initiator_and_acceptor_runners(tmp_path: Path) -> None:
    """Two counterparty runners, one file each; the initiator starts first and reconnects."""
    make_keys(tmp_path)
    port = free_port()
    venue = acceptor_cfg(
        tmp_path,
        port,
        sessions="""[SESSION]
TargetCompID=BANK
FixSecurePrivateKeyFile=keys/cpty.key
FixSecurePeerPublicKeyFile=keys/bank.pub
""",
    )
    bank = client_cfg(tmp_path, port, extra="FileStorePath=bank-store\n", reconnect=0.2)
    count = 50

    async def main_() -> None:
        async with CounterpartyRunner(bank) as initiator:
            await initiator.wait_for(BANK_CPTY, lambda s: "cannot connect" in s.last_disconnect)
            async with CounterpartyRunner(venue) as acceptor:
                await initiator.wait_for(BANK_CPTY, lambda s: s.logged_on, 5)
                stamp = format_utc_timestamp(time.time())
                for n in range(count):
                    await initiator.send(
                        BANK_CPTY,
                        OutboundMessage(
                            MsgType.NEW_ORDER_SINGLE,
                            (
                                (Tag.CL_ORD_ID, f"R{n}"),
                                (Tag.HANDL_INST, b"1"),
                                (Tag.SYMBOL, SYMBOL),
                                (Tag.SIDE, b"2"),
                                (Tag.TRANSACT_TIME, stamp),
                                (Tag.ORDER_QTY, b"10"),
                                (Tag.ORD_TYPE, b"1"),
                            ),
                        ),
                    )
                done = await initiator.wait_for(
                    BANK_CPTY, lambda s: s.reports_received >= 2 * count, 10
                )
                assert done.reports_received == 2 * count  # New + Fill, each once
                served = acceptor.status(CPTY_BANK)
                assert (served.orders_received, served.fills_sent) == (count, count)
                orders = acceptor.counterparty(CPTY_BANK).simulator.orders.values()
                assert sorted(o.cl_ord_id for o in orders) == sorted(f"R{n}" for n in range(count))
                assert all(o.status == FILLED and o.cum_qty == 10 for o in orders)
                assert done.encrypted
                assert served.encrypted
            # the acceptor logged out on stop: the initiator saw a clean end, then reconnects
            after = await initiator.wait_for(BANK_CPTY, lambda s: not s.connected, 5)
            assert after.last_disconnect.startswith("closed locally after the peer's Logout")

    run(main_())


def test_reconnect_after_a_cut_heals_gaps_both_ways(tmp_path: Path) -> None:
    make_keys(tmp_path)
    port = free_port()
    path = acceptor_cfg(tmp_path, port)
    count = 400

    async def main_() -> None:
        relay = Relay(port)
        relay_port = await relay.start()
        try:
            async with CounterpartyRunner(path) as runner:
                client = OrderClient.from_settings(client_cfg(tmp_path, relay_port))
                async with client:
                    relay.cut_after(20_000)  # a fraction of the orders gets through
                    futures = await client.submit(count)
                    await client.driver.wait_for(lambda: client.status().connections >= 2, 5)
                    results = await asyncio.wait_for(asyncio.gather(*futures), 20)
                    assert_each_filled_once(list(results), Decimal(100))
                    stats = client.stats()
                    assert stats.overfilled == 0
                    assert stats.unknown_reports == 0
                    assert stats.fills == count
                    served = runner.status(CPTY_BANK)
                    assert served.connections == 2
                    assert served.logons == 2
                    assert (served.orders_received, served.fills_sent) == (count, count)
                    assert 0 < len(runner.counterparty(CPTY_BANK).simulator.orders) == count
        finally:
            await relay.close()
        assert relay.connections == 2

    run(main_())


def test_restart_mid_flow_loses_no_order_and_fills_none_twice(tmp_path: Path) -> None:
    """Orders keep coming while the counterparty crashes and a new one starts on its store."""
    make_keys(tmp_path)
    port = free_port()
    path = acceptor_cfg(tmp_path, port, extra="CounterpartyFillParts=2")
    batches, size = 20, 30
    count = batches * size

    async def main_() -> None:
        relay = Relay(port)
        relay_port = await relay.start()
        first = CounterpartyRunner(path)
        await first.start()
        client = OrderClient.from_settings(client_cfg(tmp_path, relay_port))
        futures: list[asyncio.Future[OrderResult]] = []

        async def produce() -> None:
            for _ in range(batches):
                futures.extend(await client.submit(size))
                await asyncio.sleep(0.02)

        try:
            await client.logon()
            producer = asyncio.create_task(produce())
            await client.driver.wait_for(lambda: client.stats().orders_done >= 3 * size, 10)
            relay.cut()  # the crash: what was in flight is lost with the process ...
            await first.stop(logout=False)  # ... which never logs out
            assert client.stats().orders_done < count  # mid-flow
            assert not producer.done()
            before = first.status(CPTY_BANK)
            async with CounterpartyRunner(path) as second:
                restored = len(second.counterparty(CPTY_BANK).simulator.orders)
                assert restored >= before.orders_received > 0
                await producer
                async with asyncio.timeout(20):
                    results = await asyncio.gather(*futures)
                after = second.status(CPTY_BANK)
                orders = second.counterparty(CPTY_BANK).simulator.orders
        finally:
            await client.close()
            await relay.close()
        assert len(results) == count
        assert all(r.status == "filled" and r.cum_qty == 100 and r.fills == 2 for r in results)
        assert client.stats().overfilled == 0
        assert before.orders_received + after.orders_received == count
        assert len(orders) == count  # restored from the store + received after the restart
        assert all(o.status == FILLED and o.fills == 2 for o in orders.values())
        assert before.fills_sent + after.fills_sent == 2 * count

    run(main_())


# --- StartTime / EndTime ------------------------------------------------------------------------


def _outside_now() -> str:
    """StartTime/EndTime lines for a window that starts in 2 h and ends in 3 h (so not now)."""
    second = int(time.time()) % 86_400
    start, end = (second + 7200) % 86_400, (second + 10_800) % 86_400
    return f"StartTime={_hms(start)}\nEndTime={_hms(end)}"


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def test_outside_the_window_logons_are_refused_and_initiators_wait(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_keys(tmp_path)
    port = free_port()
    path = acceptor_cfg(tmp_path, port, extra=_outside_now())
    silent_port = free_port()
    initiator = client_cfg(tmp_path, silent_port, extra=_outside_now(), name="i.cfg")
    caplog.set_level(logging.INFO, logger="fixsecure.counterparty")

    async def main_() -> None:
        attempts = 0

        async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal attempts
            attempts += 1
            writer.close()

        listener = await asyncio.start_server(count, "127.0.0.1", silent_port)
        try:
            async with CounterpartyRunner(path) as runner, CounterpartyRunner(initiator):
                client = OrderClient.from_settings(client_cfg(tmp_path, port))
                try:
                    with pytest.raises(TimeoutError, match="not logged on"):
                        await client.logon(timeout=1.0)
                    assert client.status().connections >= 1
                finally:
                    await client.close()
                status = runner.status(CPTY_BANK)
                assert (status.connections, status.logons) == (0, 0)
        finally:
            listener.close()
            await listener.wait_closed()
        assert attempts == 0

    run(main_())
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "refused: outside the session window" in text
    assert "outside the session window" in text
    assert "next one starts in" in text


def test_store_older_than_the_window_is_reset_at_start(tmp_path: Path) -> None:
    make_keys(tmp_path)
    port = free_port()
    path = acceptor_cfg(tmp_path, port, extra="StartTime=00:00:00\nEndTime=00:00:00")
    now = time.time()
    for target, created in (("BANK", now - 2 * 86_400), ("BASELINE", now)):
        store = FileStore.open(tmp_path / "store", store_name("FIX.4.4", "CPTY", target), created)
        store.set_next_sender_seq(7)
        store.set_next_target_seq(9)
        store.close()

    async def main_() -> None:
        async with CounterpartyRunner(path) as runner:
            stale, fresh = runner.status(CPTY_BANK), runner.status(CPTY_BASE)
            assert (stale.next_sender_seq, stale.next_target_seq) == (1, 1)
            assert (fresh.next_sender_seq, fresh.next_target_seq) == (7, 9)
            store = runner.driver(CPTY_BANK).session.store
            assert store.creation_time >= math.floor(now / 86_400) * 86_400

    run(main_())


def test_logs_out_at_end_time(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The runner's clock is set 1.5 s before its EndTime has passed; no real waiting for hours."""
    make_keys(tmp_path)
    port = free_port()
    path = acceptor_cfg(
        tmp_path, port, extra="StartTime=00:00:00\nEndTime=12:00:00\nCheckLatency=N"
    )
    real = time.time()
    window_end = math.floor(real / 86_400) * 86_400 + 12 * 3600 + 1
    offset = window_end - 1.5 - real
    caplog.set_level(logging.INFO, logger="fixsecure.counterparty")

    def clock() -> float:
        return time.time() + offset

    async def main_() -> None:
        async with CounterpartyRunner(path, clock=clock) as runner:
            cfg = client_cfg(tmp_path, port, extra="CheckLatency=N", reconnect=5)
            async with OrderClient.from_settings(cfg) as client:
                assert (await client.send_order()).status == "filled"
                await client.driver.wait_for(lambda: not client.status().connected, 5)
                assert clock() >= window_end
            status = await runner.wait_for(CPTY_BANK, lambda s: not s.connected, 5)
            assert status.logons == 1
            assert not status.connected
            assert status.last_disconnect.startswith("closed locally after the peer's Logout")

    run(main_())
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "FIX.4.4:CPTY->BANK: end of the session window: logging out" in text


# --- the command ----------------------------------------------------------------------------------


def test_sigterm_logs_out_and_exits_0(tmp_path: Path) -> None:
    make_keys(tmp_path)
    port = free_port()
    path = acceptor_cfg(tmp_path, port)

    async def main_() -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fixsecure",
            "counterparty",
            "-c",
            str(path),
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        lines: list[str] = []

        async def read_until(marker: str) -> None:
            while not any(marker in line for line in lines):
                line = await asyncio.wait_for(process.stderr.readline(), 10)  # type: ignore[union-attr]
                if not line:
                    raise AssertionError("counterparty exited:\n" + "".join(lines))
                lines.append(line.decode())

        try:
            await read_until("counterparty ready")
            client = OrderClient.from_settings(client_cfg(tmp_path, port, reconnect=30))
            try:
                await client.logon()
                assert len(await client.send_orders(10)) == 10
                process.send_signal(signal.SIGTERM)
                await client.driver.wait_for(lambda: not client.status().connected, 5)
                assert client.status().last_disconnect.startswith("closed locally after the peer")
            finally:
                await client.close()
            assert await asyncio.wait_for(process.wait(), 10) == 0
            rest = await asyncio.wait_for(process.stderr.read(), 5)
            lines.append(rest.decode())
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        log = "".join(lines)
        assert "logging out 1 session(s)" in log
        assert "FIX.4.4:CPTY->BANK: logged out (clean)" in log
        assert "counterparty stopped" in log
        assert SYMBOL not in log

    run(main_())


def test_example_settings_file_runs(tmp_path: Path) -> None:
    """examples/counterparty.cfg with generated keys and a free port: both sessions work."""
    example = Path(__file__).parents[2] / "examples" / "counterparty.cfg"
    port = free_port()
    text = example.read_text().replace("SocketAcceptPort=9878", f"SocketAcceptPort={port}")
    path = tmp_path / "counterparty.cfg"
    path.write_text(text.replace("SocketAcceptHost=0.0.0.0", "SocketAcceptHost=127.0.0.1"))
    keys = tmp_path / "keys"
    write_keypair("counterparty", SUITE, keys)
    write_keypair("bank", SUITE, keys)
    (keys / "cpty.pub").write_bytes((keys / "counterparty.pub").read_bytes())  # client_cfg's pin

    async def main_() -> None:
        async with CounterpartyRunner(path) as runner:
            for cfg in (
                client_cfg(tmp_path, port, name="b.cfg"),
                client_cfg(tmp_path, port, sender="BASELINE", encrypted=False, name="p.cfg"),
            ):
                async with OrderClient.from_settings(cfg) as client:
                    result = await client.send_order()
                    assert (result.status, result.fills) == ("filled", 2)
            assert runner.status(CPTY_BANK).encrypted
            assert not runner.status(CPTY_BASE).encrypted

    run(main_())
