"""fixsecure.proxy in-process, with scripted plain-TCP engines on loopback: byte-exact forwarding,
reconnects, refusals that never reach the engine, reload, startup errors and draining.

The same proxy against the real QuickFIX engine, as separate processes, is in tests/interop/.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import run

from fixsecure import hotpath
from fixsecure.benchproxy import ManagedProcess, free_port
from fixsecure.endpoint import session_config
from fixsecure.errors import ConfigError
from fixsecure.framing import Framer
from fixsecure.keys import write_keypair
from fixsecure.memory import fix_message, format_timestamp
from fixsecure.proxy import Proxy
from fixsecure.session import Session
from fixsecure.settings import load_settings

pytestmark = pytest.mark.usefixtures("no_asyncio_errors")


def now_stamp() -> bytes:
    return format_timestamp(time.time_ns())


@dataclass
class Topology:
    """Two settings files (the bank's initiator side, the venue's acceptor side) and their ports."""

    directory: Path
    bank_cfg: Path
    venue_cfg: Path
    engine_connect_port: int  # where the bank engine connects (the bank proxy listens)
    network_port: int  # where the venue proxy listens for the network
    venue_engine_port: int  # where the venue engine listens
    extra: dict[str, str] = field(default_factory=dict)


def write_topology(tmp_path: Path, *, suite: str = "Noise_KK_25519_AESGCM_SHA256") -> Topology:
    keys = tmp_path / "keys"
    write_keypair("bank", suite, keys)
    write_keypair("venue", suite, keys)
    write_keypair("mallory", suite, keys)
    ports = [free_port() for _ in range(3)]
    bank = tmp_path / "bank.cfg"
    bank.write_text(
        f"""# the bank's engine settings, with fixsecure's keys beside them
[DEFAULT]
ConnectionType=initiator
HeartBtInt=30
FixSecureSuite={suite}
FixSecurePrivateKeyFile=keys/bank.key
FixSecurePeerPublicKeyFile=keys/venue.pub
[SESSION]
BeginString=FIX.4.4
SenderCompID=BANK
TargetCompID=VENUE
SocketConnectHost=127.0.0.1
SocketConnectPort={ports[0]}
FixSecureConnectHost=127.0.0.1
FixSecureConnectPort={ports[1]}
"""
    )
    venue = tmp_path / "venue.cfg"
    venue.write_text(
        f"""[DEFAULT]
ConnectionType=acceptor
FixSecureSuite={suite}
FixSecurePrivateKeyFile=keys/venue.key
FixSecurePeerPublicKeyFile=keys/bank.pub
FixSecureStatePath=state
FixSecureAcceptHost=127.0.0.1
FixSecureAcceptPort={ports[1]}
SocketAcceptPort={ports[2]}
FixSecureHandshakeTimeout=2
FixSecureDrainTimeout=1
[SESSION]
BeginString=FIX.4.4
SenderCompID=VENUE
TargetCompID=BANK
"""
    )
    return Topology(tmp_path, bank, venue, ports[0], ports[1], ports[2])


class Engine:
    """A scripted plain-FIX engine endpoint: records every message it receives, byte-exact."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = Framer()

    async def receive(self, timeout: float = 5.0) -> bytes:
        while (message := self.framer.next_message()) is None:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise EOFError("closed")
            self.framer.feed(data)
        return message

    async def send(self, *messages: bytes) -> None:
        self.writer.write(b"".join(messages))
        await self.writer.drain()

    async def closed(self, timeout: float = 5.0) -> bool:
        try:
            await asyncio.wait_for(self.reader.read(1), timeout)
        except (ConnectionError, TimeoutError):
            return False
        return self.reader.at_eof()


@asynccontextmanager
async def proxies(topology: Topology) -> AsyncIterator[tuple[Proxy, Proxy, asyncio.Queue[Engine]]]:
    """Both proxies, plus a venue engine listener handing out accepted engine connections."""
    accepted: asyncio.Queue[Engine] = asyncio.Queue()

    async def on_venue_engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(Engine(reader, writer))

    venue_engine = await asyncio.start_server(
        on_venue_engine, "127.0.0.1", topology.venue_engine_port
    )
    bank_proxy, venue_proxy = Proxy(topology.bank_cfg), Proxy(topology.venue_cfg)
    await venue_proxy.start()
    await bank_proxy.start()
    try:
        yield bank_proxy, venue_proxy, accepted
    finally:
        await bank_proxy.shutdown(0.5)
        await venue_proxy.shutdown(0.5)
        venue_engine.close()
        await venue_engine.wait_closed()


async def bank_engine(topology: Topology) -> Engine:
    reader, writer = await asyncio.open_connection("127.0.0.1", topology.engine_connect_port)
    return Engine(reader, writer)


def logon(sender: bytes, target: bytes, seq: int = 1, reset: bool = True) -> bytes:
    body = [(98, b"0"), (108, b"30")] + ([(141, b"Y")] if reset else [])
    return fix_message(b"A", seq, sender, target, body, sending_time=now_stamp())


async def log_on(
    topology: Topology, accepted: asyncio.Queue[Engine], *, reset: bool = True
) -> tuple[Engine, Engine]:
    """The bank engine logs on through both proxies; both Logons arrive byte-exact."""
    bank = await bank_engine(topology)
    bank_logon = logon(b"BANK", b"VENUE", reset=reset)
    await bank.send(bank_logon)
    venue = await asyncio.wait_for(accepted.get(), 5)
    assert await venue.receive() == bank_logon
    venue_logon = logon(b"VENUE", b"BANK")
    await venue.send(venue_logon)
    assert await bank.receive() == venue_logon
    return bank, venue


def test_two_proxies_forward_byte_exact_and_log_out(tmp_path: Path) -> None:
    topology = write_topology(tmp_path)

    async def main() -> None:
        async with proxies(topology) as (bank_proxy, venue_proxy, accepted):
            bank, venue = await log_on(topology, accepted)
            orders = [
                fix_message(
                    b"D",
                    seq,
                    b"BANK",
                    b"VENUE",
                    [(11, b"O%d" % seq), (55, b"X")],
                    sending_time=now_stamp(),
                )
                for seq in range(2, 502)
            ]
            await bank.send(*orders)
            got = [await venue.receive() for _ in orders]
            assert got == orders
            fills = [
                fix_message(
                    b"8",
                    seq,
                    b"VENUE",
                    b"BANK",
                    [(11, b"O%d" % seq), (150, b"F")],
                    sending_time=now_stamp(),
                )
                for seq in range(2, 502)
            ]
            await venue.send(*fills)
            assert [await bank.receive() for _ in fills] == fills
            await bank.send(fix_message(b"5", 502, b"BANK", b"VENUE", sending_time=now_stamp()))
            assert b"\x0135=5\x01" in await venue.receive()
            await venue.send(fix_message(b"5", 502, b"VENUE", b"BANK", sending_time=now_stamp()))
            assert b"\x0135=5\x01" in await bank.receive()
            venue.writer.close()
            assert await bank.closed()
            await asyncio.sleep(0.1)
            assert bank_proxy.stats.handshakes_ok == 1
            assert venue_proxy.stats.handshakes_ok == 1
            assert bank_proxy.stats.messages_to_network == 502
            assert venue_proxy.stats.messages_from_network == 502

    run(main())


def test_every_engine_reconnect_is_a_fresh_handshake(tmp_path: Path) -> None:
    topology = write_topology(tmp_path)

    async def main() -> None:
        async with proxies(topology) as (bank_proxy, _, accepted):
            for attempt in range(3):
                bank, venue = await log_on(topology, accepted, reset=attempt == 0)
                bank.writer.close()  # dropped without a Logout
                assert await venue.closed()
                await asyncio.sleep(0.002)  # SendingTime must move on (milliseconds)
            await asyncio.sleep(0.1)
            assert bank_proxy.stats.handshakes_ok == 3

    run(main())


async def _attack_network_port(topology: Topology, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", topology.network_port)
    writer.write(payload)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


def test_refused_connections_never_reach_the_engine(tmp_path: Path) -> None:
    """Plaintext peer, wrong key, replayed Logon: the venue engine is never even connected to."""
    topology = write_topology(tmp_path)
    mallory_cfg = tmp_path / "mallory.cfg"
    mallory_cfg.write_text(
        topology.bank_cfg.read_text().replace("keys/bank.key", "keys/mallory.key")
    )

    async def main() -> None:
        async with proxies(topology) as (_, venue_proxy, accepted):
            # 1. a plaintext Logon
            assert await _attack_network_port(topology, logon(b"BANK", b"VENUE")) == b""
            # 2. a real handshake recorded on the wire, then replayed
            bank_config = session_config(load_settings(topology.bank_cfg).sessions[0])
            recorded = Session.initiator(bank_config).send(logon(b"BANK", b"VENUE"))
            reader, writer = await asyncio.open_connection("127.0.0.1", topology.network_port)
            writer.write(recorded)
            venue = await asyncio.wait_for(accepted.get(), 5)  # the genuine first time ...
            await venue.receive()
            await venue.send(logon(b"VENUE", b"BANK"))
            assert await asyncio.wait_for(reader.read(65536), 5)
            writer.close()
            assert await _attack_network_port(topology, recorded) == b""  # ... the replay: nothing
            # 3. the wrong static key
            mallory = session_config(load_settings(mallory_cfg).sessions[0])
            forged = Session.initiator(mallory).send(logon(b"BANK", b"VENUE"))
            assert await _attack_network_port(topology, forged) == b""
            await asyncio.sleep(0.2)
            assert accepted.empty()
            assert venue_proxy.stats.engine_connections == 1

    run(main())


def test_reload_picks_up_rotated_peer_keys(tmp_path: Path) -> None:
    topology = write_topology(tmp_path)
    write_keypair("bank2", "Noise_KK_25519_AESGCM_SHA256", tmp_path / "keys")

    async def main() -> None:
        async with proxies(topology) as (_, venue_proxy, accepted):
            # The venue learns the bank's new key alongside the old one, then reloads.
            topology.venue_cfg.write_text(
                topology.venue_cfg.read_text().replace(
                    "FixSecurePeerPublicKeyFile=keys/bank.pub",
                    "FixSecurePeerPublicKeyFile=keys/bank.pub,keys/bank2.pub",
                )
            )
            venue_proxy.reload()
            rotated = tmp_path / "bank2.cfg"
            rotated.write_text(
                topology.bank_cfg.read_text().replace("keys/bank.key", "keys/bank2.key")
            )
            config = session_config(load_settings(rotated).sessions[0])
            for _ in range(2):
                message1 = Session.initiator(config).send(logon(b"BANK", b"VENUE"))
                _reader, writer = await asyncio.open_connection("127.0.0.1", topology.network_port)
                writer.write(message1)
                venue = await asyncio.wait_for(accepted.get(), 5)  # the new key is accepted
                await venue.receive()
                writer.close()
                # A broken reload keeps the working keys.
                topology.venue_cfg.write_text("[SESSION]\nthis is not a settings file\n")
                venue_proxy.reload()
                await asyncio.sleep(0.002)

    run(main())


@pytest.mark.parametrize("key", ["FixSecureAcceptPort", "SocketAcceptPort"])
def test_an_acceptor_session_without_a_port_is_refused_naming_it(tmp_path: Path, key: str) -> None:
    topology = write_topology(tmp_path)
    text = topology.venue_cfg.read_text()
    topology.venue_cfg.write_text(
        "".join(line for line in text.splitlines(True) if not line.startswith(f"{key}="))
    )
    with pytest.raises(ConfigError) as caught:
        Proxy(topology.venue_cfg)
    assert caught.value.key == key
    assert caught.value.section is not None
    assert caught.value.section.startswith("[SESSION] #1")


def test_startup_errors_name_the_address_and_setting(tmp_path: Path) -> None:
    topology = write_topology(tmp_path)

    async def main() -> None:
        blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", topology.network_port)
        try:
            with pytest.raises(ConfigError) as caught:
                await Proxy(topology.venue_cfg).start()
            text = str(caught.value)
            assert f"127.0.0.1:{topology.network_port}" in text
            assert "FixSecureAcceptPort" in text
            assert "address already in use" in text
            assert caught.value.key == "FixSecureAcceptPort"
            assert caught.value.path == topology.venue_cfg
        finally:
            blocker.close()
            await blocker.wait_closed()

    run(main())
    (tmp_path / "keys" / "bank.key").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Proxy(topology.bank_cfg)
    broken = tmp_path / "broken.cfg"
    broken.write_text(topology.bank_cfg.read_text().replace("FixSecureConnectPort", "#"))
    (tmp_path / "keys" / "bank.key").chmod(0o600)
    with pytest.raises(ConfigError, match="FixSecureConnectHost"):
        Proxy(broken)


def test_shutdown_drains_then_closes_live_sessions(tmp_path: Path) -> None:
    topology = write_topology(tmp_path)

    async def main() -> None:
        async with proxies(topology) as (bank_proxy, _, accepted):
            bank, venue = await log_on(topology, accepted)
            started = time.monotonic()
            await bank_proxy.shutdown(0.3)
            assert time.monotonic() - started < 5
            assert await bank.closed()
            assert await venue.closed()
            # no longer accepting
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", topology.engine_connect_port)

    run(main())


def test_an_engine_logging_on_as_an_unknown_session_is_refused(tmp_path: Path) -> None:
    topology = write_topology(tmp_path)

    async def main() -> None:
        async with proxies(topology) as (_, _, accepted):
            bank = await bank_engine(topology)
            await bank.send(logon(b"SOMEONE", b"VENUE"))
            assert await bank.closed()
            assert accepted.empty()

    run(main())


def test_an_idle_session_outlives_the_handshake_timeout(tmp_path: Path) -> None:
    """Regression: the acceptor completes the handshake by *sending* message 2 while its read is
    pending; that read must not keep the handshake deadline (2 s here) once established."""
    topology = write_topology(tmp_path)

    async def main() -> None:
        async with proxies(topology) as (_, _, accepted):
            bank, venue = await log_on(topology, accepted)
            await asyncio.sleep(2.5)  # longer than FixSecureHandshakeTimeout=2, both ways idle
            order = fix_message(b"D", 2, b"BANK", b"VENUE", [(11, b"X")], sending_time=now_stamp())
            await bank.send(order)
            assert await venue.receive(timeout=3) == order
            fill = fix_message(b"8", 2, b"VENUE", b"BANK", [(11, b"X")], sending_time=now_stamp())
            await venue.send(fill)
            assert await bank.receive(timeout=3) == fill

    run(main())


def test_a_plaintext_session_outlives_the_handshake_timeout(tmp_path: Path) -> None:
    """FixSecureRequired=N and no keys on both sides: the proxies pass plaintext through, and the
    handshake timer must stop once the Logon reply is through, as for an encrypted session."""
    topology = write_topology(tmp_path)
    for path in (topology.bank_cfg, topology.venue_cfg):
        text = path.read_text()
        for key in ("FixSecurePrivateKeyFile", "FixSecurePeerPublicKeyFile"):
            text = "\n".join(line for line in text.splitlines() if not line.startswith(key))
        path.write_text(text.replace("[DEFAULT]", "[DEFAULT]\nFixSecureRequired=N") + "\n")

    async def main() -> None:
        async with proxies(topology) as (bank_proxy, venue_proxy, accepted):
            bank, venue = await log_on(topology, accepted)
            await asyncio.sleep(2.5)  # longer than FixSecureHandshakeTimeout=2
            order = fix_message(b"D", 2, b"BANK", b"VENUE", [(11, b"P")], sending_time=now_stamp())
            await bank.send(order)
            assert await venue.receive(timeout=3) == order
            assert bank_proxy.stats.handshakes_ok == venue_proxy.stats.handshakes_ok == 1

    run(main())


def test_stats_count_messages_and_bytes_while_sessions_live(tmp_path: Path) -> None:
    topology = write_topology(tmp_path)

    async def main() -> None:
        async with proxies(topology) as (bank_proxy, venue_proxy, accepted):
            bank, venue = await log_on(topology, accepted)
            orders = [
                fix_message(b"D", seq, b"BANK", b"VENUE", [(11, b"S")], sending_time=now_stamp())
                for seq in range(2, 12)
            ]
            await bank.send(*orders)
            for _ in orders:
                await venue.receive()
            stats = bank_proxy.stats  # the session is still up: counted as messages pass
            assert stats.messages_to_network == 11
            assert stats.messages_from_network == 1
            assert stats.bytes_to_network > sum(len(o) for o in orders)
            assert stats.bytes_from_network > 0
            assert venue_proxy.stats.messages_from_network == 11
            assert "bytes_to_network=" in stats.line()

    run(main())


def test_an_engine_cannot_reach_a_session_of_another_port(tmp_path: Path) -> None:
    """Two initiator sessions on two engine ports: a Logon on port A for port B's session is
    refused, so a port always means one set of sessions (and keys)."""
    topology = write_topology(tmp_path)
    other_port = free_port()
    topology.bank_cfg.write_text(
        topology.bank_cfg.read_text()
        + f"""[SESSION]
BeginString=FIX.4.4
SenderCompID=BANK2
TargetCompID=VENUE
SocketConnectHost=127.0.0.1
SocketConnectPort={other_port}
FixSecureConnectHost=127.0.0.1
FixSecureConnectPort={topology.network_port}
"""
    )

    async def main() -> None:
        async with proxies(topology) as (_, _, accepted):
            bank = await bank_engine(topology)  # port A, whose only session is BANK
            await bank.send(logon(b"BANK2", b"VENUE"))
            assert await bank.closed()
            assert accepted.empty()

    run(main())


def test_sessions_sharing_a_port_must_agree_on_listener_limits(tmp_path: Path) -> None:
    topology = write_topology(tmp_path)
    topology.venue_cfg.write_text(
        topology.venue_cfg.read_text()
        + """[SESSION]
BeginString=FIX.4.4
SenderCompID=VENUE
TargetCompID=BROKER
FixSecureMaxHalfOpen=7
"""
    )

    async def main() -> None:
        proxy = Proxy(topology.venue_cfg)
        with pytest.raises(ConfigError, match="FixSecureMaxHalfOpen: is 7 but 64") as caught:
            await proxy.start()
        assert "one listener has one value" in str(caught.value)
        await proxy.shutdown(0)

    run(main())


def _with(config: Path, line: str) -> None:
    """Add ``line`` to a settings file's [DEFAULT] section."""
    config.write_text(config.read_text().replace("[DEFAULT]\n", f"[DEFAULT]\n{line}\n", 1))


def test_busy_poll_spins_after_traffic_and_stops_one_window_later(tmp_path: Path) -> None:
    topology = write_topology(tmp_path)
    window = 0.3  # wide enough that a slow machine cannot let it lapse before the check
    for config in (topology.bank_cfg, topology.venue_cfg):
        _with(config, f"FixSecureBusyPoll={int(window * 1e6)}")

    async def main() -> None:
        async with proxies(topology) as (bank_proxy, venue_proxy, accepted):
            for proxy in (bank_proxy, venue_proxy):
                assert proxy.busy_poll is not None
                assert proxy.busy_poll.window == window
                assert not proxy.busy_poll.spinning  # nothing read yet: the loop may sleep
            bank, venue = await log_on(topology, accepted)
            orders = [order_message(seq) for seq in range(2, 52)]
            await bank.send(*orders)
            assert [await venue.receive() for _ in orders] == orders  # forwarded byte-exact
            assert bank_proxy.busy_poll is not None
            assert venue_proxy.busy_poll is not None
            assert bank_proxy.busy_poll.spinning
            assert venue_proxy.busy_poll.spinning
            await asyncio.sleep(window * 3)  # a quiet window later, both sleep again
            assert not bank_proxy.busy_poll.spinning
            assert not venue_proxy.busy_poll.spinning

    run(main())


def test_without_busy_poll_there_is_no_poller(tmp_path: Path) -> None:
    topology = write_topology(tmp_path)

    async def main() -> None:
        async with proxies(topology) as (bank_proxy, venue_proxy, _):
            assert bank_proxy.busy_poll is None
            assert venue_proxy.busy_poll is None

    run(main())


def order_message(seq: int) -> bytes:
    return fix_message(
        b"D", seq, b"BANK", b"VENUE", [(11, b"O%d" % seq), (55, b"X")], sending_time=now_stamp()
    )


def test_an_engine_closing_inside_a_message_forwards_none_of_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    topology = write_topology(tmp_path)

    async def main() -> None:
        async with proxies(topology) as (_, _, accepted):
            bank, venue = await log_on(topology, accepted)
            whole, partial = order_message(2), order_message(3)
            await bank.send(whole, partial[:40])
            assert await venue.receive() == whole
            bank.writer.close()
            assert await venue.closed()  # the link ends; the partial message never arrives
            assert venue.framer.buffered == 0

    with caplog.at_level("INFO", logger="fixsecure.proxy"):
        run(main())
    assert "the engine closed inside a message (40 bytes buffered)" in caplog.text


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_proxy_command_runs_on_the_chosen_loop_and_says_so(tmp_path: Path, loop: str) -> None:
    topology = write_topology(tmp_path)
    argv = [sys.executable, "-m", "fixsecure", "proxy", "-c", str(topology.venue_cfg)]
    proc = ManagedProcess("proxy", [*argv, "--loop", loop], tmp_path, {"PYTHONUNBUFFERED": "1"})
    try:
        log = asyncio.run(proc.wait_for_output("fixsecure proxy ready", 20))
        assert f"event loop {loop}, hot path {hotpath.IMPLEMENTATION}, busy poll off" in log
    finally:
        assert proc.stop() == 0  # SIGTERM: drained and exited cleanly


def test_the_messages_before_a_refused_engine_message_still_reach_the_peer(tmp_path: Path) -> None:
    topology = write_topology(tmp_path)

    async def main() -> None:
        async with proxies(topology) as (_, _, accepted):
            bank, venue = await log_on(topology, accepted)
            good = [order_message(seq) for seq in (2, 3)]
            bad = order_message(4)[:-4] + b"999\x01"  # a wrong CheckSum
            await bank.send(*good, bad)
            assert [await venue.receive() for _ in good] == good  # their nonces were spent
            assert await venue.closed()
            assert await bank.closed()

    run(main())


def test_bytes_after_the_logon_in_the_same_write_are_kept(tmp_path: Path) -> None:
    """The engine's Logon and the start of its next message arrive in one read; the rest of that
    message comes after the Logon reply. The initiator proxy hands everything after the Logon to
    the session, which completes the message once the session is established."""
    topology = write_topology(tmp_path)

    async def main() -> None:
        async with proxies(topology) as (_, _, accepted):
            bank = await bank_engine(topology)
            bank_logon, first = logon(b"BANK", b"VENUE"), order_message(2)
            await bank.send(bank_logon + first[:25])
            venue = await asyncio.wait_for(accepted.get(), 5)
            assert await venue.receive() == bank_logon
            await venue.send(logon(b"VENUE", b"BANK"))
            await bank.receive()  # the reply: the session is established
            await bank.send(first[25:])
            assert await venue.receive() == first

    run(main())


def test_an_unauthenticated_peer_cannot_make_busy_poll_spin(tmp_path: Path) -> None:
    topology = write_topology(tmp_path)
    _with(topology.venue_cfg, "FixSecureBusyPoll=300000")

    async def main() -> None:
        async with proxies(topology) as (_, venue_proxy, _):
            assert venue_proxy.busy_poll is not None
            _, writer = await asyncio.open_connection("127.0.0.1", topology.network_port)
            for byte in logon(b"BANK", b"VENUE")[:5]:  # a Logon that never completes
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.02)
                assert not venue_proxy.busy_poll.spinning
            writer.close()

    run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_writev_is_used_only_where_writelines_keeps_flow_control(loop: str) -> None:
    from fixsecure.proxy import _WRITEV  # noqa: PLC0415
    from fixsecure.runtime import run_on_loop  # noqa: PLC0415

    async def transport_kind() -> type:
        running = asyncio.get_running_loop()
        server = await running.create_server(asyncio.Protocol, "127.0.0.1", 0)
        transport, _ = await running.create_connection(
            asyncio.Protocol, *server.sockets[0].getsockname()[:2]
        )
        kind = type(transport)
        transport.close()
        server.close()
        await server.wait_closed()
        return kind

    assert _WRITEV[run_on_loop(transport_kind(), loop)] == (loop == "uvloop")
