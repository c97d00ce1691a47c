"""fixsecure.asyncio over real loopback sockets: handshake, byte-exact delivery, how connections
end, handshake timeout, admission limits, replayed Logons, and back-pressure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from conftest import STAMP, clock, logon, order, run

from fixsecure.admission import Admission
from fixsecure.asyncio import FixConnection, connect, serve
from fixsecure.errors import ConnectionEnded, LocalProtocolError
from fixsecure.memory import SessionPair, fix_message, session_pair

Handler = Callable[[FixConnection], Awaitable[None]]


@asynccontextmanager
async def server(
    handler: Handler, *, admission: Admission | None = None, timeout: float = 5.0
) -> AsyncIterator[tuple[SessionPair, int]]:
    pair = session_pair(clock=clock)
    if admission is not None:
        pair.directory.admit = admission.admit_session
    srv = await serve(
        pair.directory,
        handler,
        "127.0.0.1",
        0,
        admission=admission,
        clock=clock,
        handshake_timeout=timeout,
    )
    port = srv.sockets[0].getsockname()[1]
    try:
        yield pair, port
    finally:
        srv.close()
        await srv.wait_closed()


async def echo_venue(conn: FixConnection) -> None:
    """Answers the Logon, fills each order with the order's own bytes as a marker, logs out."""
    assert await conn.receive() == logon()
    await conn.send(logon(b"VENUE", b"BANK"))
    seq = 2
    async for message in conn:
        if b"\x0135=5\x01" in message:
            await conn.send(fix_message(b"5", seq, b"VENUE", b"BANK", sending_time=STAMP))
            return
        await conn.send(
            fix_message(b"8", seq, b"VENUE", b"BANK", [(58, message[-40:-8])], sending_time=STAMP)
        )
        seq += 1


def test_a_session_over_loopback_is_byte_exact_and_ends_cleanly() -> None:
    async def main() -> None:
        async with server(echo_venue) as (pair, port):
            conn = await connect(pair.initiator_config, "127.0.0.1", port, clock=clock)
            await conn.send(logon())
            assert await conn.receive() == logon(b"VENUE", b"BANK")
            assert conn.encrypted
            orders = [order(seq, b"ORD-%d" % seq) for seq in range(2, 52)]
            await conn.send_batch(orders)
            for seq, sent in zip(range(2, 52), orders, strict=True):
                report = await conn.receive()
                assert report == fix_message(
                    b"8", seq, b"VENUE", b"BANK", [(58, sent[-40:-8])], sending_time=STAMP
                )
            await conn.send(fix_message(b"5", 52, b"BANK", b"VENUE", sending_time=STAMP))
            assert b"\x0135=5\x01" in await conn.receive()
            with pytest.raises(ConnectionEnded) as ended:
                await conn.receive()
            assert ended.value.clean
            assert conn.messages_out == 52
            assert conn.messages_in == 52
            await conn.close()

    run(main(), 30)


def test_a_dropped_connection_is_reported_as_abnormal() -> None:
    async def venue(conn: FixConnection) -> None:
        await conn.receive()
        await conn.send(logon(b"VENUE", b"BANK"))
        await conn.receive()
        # no Logout: just close

    async def main() -> None:
        async with server(venue) as (pair, port):
            conn = await connect(pair.initiator_config, "127.0.0.1", port, clock=clock)
            await conn.send(logon())
            await conn.receive()
            await conn.send(order(2))
            with pytest.raises(ConnectionEnded) as ended:
                await conn.receive()
            assert not ended.value.clean
            assert "without a Logout" in ended.value.reason

    run(main(), 30)


def test_silent_clients_time_out_and_release_their_half_open_slot() -> None:
    admission = Admission.create(max_half_open=1, per_source_per_minute=0)
    called: list[FixConnection] = []

    async def venue(conn: FixConnection) -> None:
        called.append(conn)

    async def main() -> None:
        async with server(venue, admission=admission, timeout=0.3) as (_, port):
            _, silent_writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.sleep(0.05)
            assert admission.half_open == 1
            # A second connection while the first is half-open is refused at once.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert admission.refused["half_open"] == 1
            writer.close()
            await asyncio.sleep(0.5)  # past the handshake timeout
            assert admission.half_open == 0
            silent_writer.close()
        assert called == []

    run(main(), 30)


def test_per_source_rate_limit_refuses_before_reading() -> None:
    admission = Admission.create(max_half_open=100, per_source_per_minute=2)

    async def venue(conn: FixConnection) -> None:
        await conn.receive()

    async def main() -> None:
        async with server(venue, admission=admission, timeout=0.5) as (_, port):
            results = []
            for _ in range(4):
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                results.append(writer)
            await asyncio.sleep(0.1)
            assert admission.refused["source"] == 2
            for writer in results:
                writer.close()

    run(main(), 30)


def test_a_replayed_logon_never_reaches_the_handler() -> None:
    handled: list[bytes] = []

    async def venue(conn: FixConnection) -> None:
        handled.append(await conn.receive())
        await conn.send(logon(b"VENUE", b"BANK"))
        with pytest.raises(ConnectionEnded):
            await conn.receive()

    async def main() -> None:
        async with server(venue) as (pair, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            message1 = pair.initiator.send(logon())
            writer.write(message1)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(4096), 5)  # the Logon reply
            writer.close()
            # Replay the recorded message 1 on a new connection.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(message1)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(4096), 5) == b""  # closed, nothing sent
            writer.close()
        assert handled == [logon()]

    run(main(), 30)


def test_send_waits_while_the_peer_does_not_read() -> None:
    release = asyncio.Event()

    async def slow_venue(conn: FixConnection) -> None:
        await conn.receive()
        await conn.send(logon(b"VENUE", b"BANK"))
        await release.wait()
        while True:
            batch = await conn.receive_batch()
            if any(b"\x0135=5\x01" in m for m in batch):
                return

    async def main() -> None:
        async with server(slow_venue) as (pair, port):
            conn = await connect(pair.initiator_config, "127.0.0.1", port, clock=clock)
            await conn.send(logon())
            await conn.receive()
            big = fix_message(b"D", 2, b"BANK", b"VENUE", [(58, b"x" * 8000)], sending_time=STAMP)
            blocked = False
            for _ in range(2000):  # at most ~16 MB: far beyond any loopback socket buffer
                try:
                    await asyncio.wait_for(conn.send_batch([big] * 8), 0.5)
                except TimeoutError:
                    blocked = True
                    break
            assert blocked, "send never waited although the peer was not reading"
            release.set()
            await conn.send(fix_message(b"5", 3, b"BANK", b"VENUE", sending_time=STAMP))
            await conn.close()

    run(main(), 30)


def test_iterating_a_connection_stops_at_the_end() -> None:
    async def venue(conn: FixConnection) -> None:
        await conn.receive()
        await conn.send(logon(b"VENUE", b"BANK"))
        for seq in range(2, 5):
            await conn.send(order(seq, sender=b"VENUE"))
        await conn.send(fix_message(b"5", 5, b"VENUE", b"BANK", sending_time=STAMP))

    async def main() -> None:
        async with server(venue) as (pair, port):
            async with await connect(pair.initiator_config, "127.0.0.1", port, clock=clock) as c:
                await c.send(logon())
                got = [message async for message in c]
            assert len(got) == 5
            assert c.ended is not None
            assert c.ended.clean

    run(main(), 30)


def test_initiator_handshake_timeout() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(2)
        writer.close()

    async def main() -> None:
        srv = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        pair = session_pair(clock=clock)
        conn = await connect(
            pair.initiator_config, "127.0.0.1", port, clock=clock, handshake_timeout=0.3
        )
        await conn.send(logon())
        with pytest.raises(ConnectionEnded, match="handshake not complete in time"):
            await conn.receive()
        srv.close()
        await srv.wait_closed()

    run(main(), 30)


def test_the_acceptor_handshake_timer_covers_waiting_for_the_engine_reply() -> None:
    """The handler has the Logon but never answers: message 2 never goes out, and the timer
    ends the connection even though nobody is reading (spec §8.5)."""
    finished: list[float] = []

    async def stalled_venue(conn: FixConnection) -> None:
        await conn.receive()
        started = asyncio.get_running_loop().time()
        await asyncio.sleep(3)  # an engine that never replies
        finished.append(asyncio.get_running_loop().time() - started)

    async def main() -> None:
        async with server(stalled_venue, timeout=0.5) as (pair, port):
            conn = await connect(pair.initiator_config, "127.0.0.1", port, clock=clock)
            await conn.send(logon())
            started = asyncio.get_running_loop().time()
            with pytest.raises(ConnectionEnded) as ended:
                await conn.receive()
            assert asyncio.get_running_loop().time() - started < 2
            assert not ended.value.clean

    run(main(), 30)


def test_send_batch_writes_what_it_protected_before_a_refused_message() -> None:
    got: list[bytes] = []

    async def venue(conn: FixConnection) -> None:
        await conn.receive()
        await conn.send(logon(b"VENUE", b"BANK"))
        got.extend([await conn.receive(), await conn.receive()])

    async def main() -> None:
        async with server(venue) as (pair, port):
            conn = await connect(pair.initiator_config, "127.0.0.1", port, clock=clock)
            await conn.send(logon())
            await conn.receive()
            with pytest.raises(LocalProtocolError):
                await conn.send_batch([order(2), b"not FIX", order(3)])
            await conn.send(order(3))  # the nonces stay in step: this one is accepted
            for _ in range(100):
                if len(got) == 2:
                    break
                await asyncio.sleep(0.02)
            assert got == [order(2), order(3)]
            assert conn.messages_out == 3  # the Logon and the two orders written
            await conn.close()

    run(main(), 30)

