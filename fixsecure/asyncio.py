"""asyncio transport: plaintext FIX messages in and out, the fixsecure protocol on the wire.

For Python FIX engines that embed fixsecure instead of running the proxy::

    conn = await connect(config, "venue.example", 9443)        # initiator
    await conn.send(logon)                                      # becomes handshake message 1
    reply = await conn.receive()                                # the decrypted Logon reply
    ...
    server = await serve(directory, handler, "0.0.0.0", 9443)  # acceptor: handler(conn) per Logon

The sans-IO :class:`~fixsecure.session.Session` does all protocol work; this module only moves
bytes, applies back-pressure (a connection reads only when its owner asks for messages; ``send``
waits for the socket buffer to drain), enforces the handshake timeout and admission limits, and
reports how a connection ended: :class:`~fixsecure.errors.ConnectionEnded` with ``clean`` True only
after a verified Logout from the peer. Protocol failures close the socket without sending anything
and are logged locally with their reason; message contents are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

from fixsecure.admission import Admission
from fixsecure.errors import ConnectionEnded, LimitExceeded
from fixsecure.session import (
    AcceptorDirectory,
    Clock,
    ConnectionClosed,
    ConnectionFailed,
    Event,
    HandshakeComplete,
    LogonAccepted,
    MessageReceived,
    MessagesReceived,
    Session,
    SessionConfig,
)
from fixsecure.sessionid import SessionID
from fixsecure.state import State

__all__ = [
    "READ_SIZE",
    "FixConnection",
    "Handler",
    "connect",
    "describe_error",
    "describe_logon",
    "peer_address",
    "peer_name",
    "serve",
]

log = logging.getLogger("fixsecure.asyncio")

READ_SIZE: Final = 1 << 16
_HANDSHAKE_STATES: Final = (State.AWAIT_LOGON, State.HANDSHAKE_SENT, State.LOGON_RECEIVED)


def describe_logon(event: LogonAccepted) -> str:
    """How a Logon was accepted, for the log: the key pair that matched tells rotations apart."""
    if not event.encrypted:
        return "PLAINTEXT"
    return f"encrypted, own key #{event.own_key_index + 1}, peer key #{event.peer_key_index + 1}"


def describe_error(exc: BaseException) -> str:
    """An exception as one log-friendly phrase: its class, and its text if it has one."""
    text = str(exc)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def peer_address(writer: asyncio.BaseTransport | asyncio.StreamWriter) -> str:
    """The host of a connection's peer: the per-source key of the admission limits."""
    peer = writer.get_extra_info("peername")
    return peer[0] if isinstance(peer, tuple) else str(peer)


def peer_name(writer: asyncio.BaseTransport | asyncio.StreamWriter) -> str:
    """``host:port`` (``[v6]:port``) of a connection's peer, for logs."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return str(peer)


class FixConnection:
    """One TCP connection carrying plaintext FIX messages through a fixsecure :class:`Session`."""

    def __init__(
        self,
        session: Session,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        handshake_timeout: float | None = 10.0,
    ) -> None:
        self.session = session
        self._reader = reader
        self._writer = writer
        self._inbox: deque[bytes] = deque()
        self._ended: ConnectionEnded | None = None
        # A timer, not a read timeout: an acceptor also waits for its own engine's reply
        # (message 2), whether or not anybody is reading at that moment (spec §8.5).
        self._timer: asyncio.TimerHandle | None = None
        if handshake_timeout is not None:
            self._timer = asyncio.get_running_loop().call_later(
                handshake_timeout, self._handshake_expired
            )
        self.peer = peer_name(writer)
        self.messages_in = self.messages_out = self.bytes_in = self.bytes_out = 0

    def __repr__(self) -> str:
        return f"<FixConnection {self.session_id or '?'} {self.peer} {self.session.state.value}>"

    @property
    def session_id(self) -> SessionID | None:
        return self.session.session_id

    @property
    def encrypted(self) -> bool:
        return self.session.encrypted

    @property
    def ended(self) -> ConnectionEnded | None:
        """How the connection ended, once it has."""
        return self._ended

    # -- receiving ------------------------------------------------------------------------------

    async def receive(self) -> bytes:
        """The next complete plaintext message; raises :class:`ConnectionEnded` at the end."""
        while not self._inbox:
            await self._read_more()
        return self._inbox.popleft()

    async def receive_batch(self) -> list[bytes]:
        """Every message available after at most one read (at least one, or ConnectionEnded)."""
        while not self._inbox:
            await self._read_more()
        batch = list(self._inbox)
        self._inbox.clear()
        return batch

    def __aiter__(self) -> FixConnection:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.receive()
        except ConnectionEnded:
            raise StopAsyncIteration from None

    async def _read_more(self) -> None:
        if self._ended is not None:
            raise self._ended
        try:
            data = await self._reader.read(READ_SIZE)
        except (ConnectionError, OSError) as exc:
            raise self._end(False, f"connection lost: {exc.__class__.__name__}") from None
        if data:
            self.bytes_in += len(data)
            self._handle(self.session.receive_batch(data))
        else:
            self._handle(self.session.receive_eof())
        ended = self.ended  # _handle (or the handshake timer) may have ended the connection
        if ended is not None and not self._inbox:
            raise ended

    def _handshake_expired(self) -> None:
        self._timer = None
        state = self.session.state
        if self._ended is None and state in _HANDSHAKE_STATES:
            log.warning(
                "%s: handshake with %s not complete in time (%s)",
                self.session_id or "unidentified session",
                self.peer,
                state.value,
            )
            self._end(False, f"handshake not complete in time ({state.value})")

    def _handle(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, MessagesReceived):
                self._inbox.extend(event.messages)
                self.messages_in += len(event.ends)
            elif isinstance(event, MessageReceived):
                self._inbox.append(event.message)
                self.messages_in += 1
            elif isinstance(event, LogonAccepted):
                log.info("%s: Logon accepted from %s (%s)", event.session_id, self.peer,
                         describe_logon(event))
            elif isinstance(event, HandshakeComplete):
                log.info(
                    "%s: handshake complete with %s (%s)", event.session_id, self.peer, event.suite
                )
            elif isinstance(event, ConnectionFailed):
                if self.session_id is None:  # the reason names the claimed session, if any
                    log.warning("connection from %s rejected: %s", self.peer, event.reason)
                else:
                    log.warning(
                        "%s: connection from %s rejected: %s",
                        self.session_id,
                        self.peer,
                        event.reason,
                    )
                self._end(False, f"protocol failure: {event.reason}")
            elif isinstance(event, ConnectionClosed):
                self._end(event.clean, event.reason)

    def _end(self, clean: bool, reason: str) -> ConnectionEnded:
        """Record how the connection ended (the first reason wins) and close the socket."""
        if self._ended is None:
            self._ended = ConnectionEnded(clean, reason)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.session.abort()
            self._writer.close()
        return self._ended

    # -- sending --------------------------------------------------------------------------------

    def _protect(self, message: bytes) -> bytes:
        if self._ended is not None:
            raise self._ended
        data = self.session.send(message)
        self.messages_out += 1
        self.bytes_out += len(data)
        return data

    async def send(self, message: bytes) -> None:
        """Protect and send one complete plaintext FIX message; waits while the socket is full."""
        await self.send_batch((message,))

    async def send_batch(self, messages: Iterable[bytes]) -> None:
        """Protect and send several messages with a single wait for the socket buffer.

        If one message is refused (a malformed engine message, a key-usage cap), the ones before
        it are still written: their nonces are spent, so the peer must receive them.
        """
        protected: list[bytes] = []
        try:
            for message in messages:
                protected.append(self._protect(message))
        except LimitExceeded as exc:
            self._writer.write(b"".join(protected))
            log.warning("%s: %s; closing so the engines reconnect", self.session_id, exc)
            self._end(False, str(exc))
            raise
        except BaseException:
            self._writer.write(b"".join(protected))
            raise
        self._writer.write(b"".join(protected))
        await self._drain()

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise self._end(False, f"connection lost: {exc.__class__.__name__}") from None

    # -- closing --------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the socket (after the FIX Logout exchange, if the caller did one)."""
        if self._ended is None:
            clean = self.session.logout_received
            self._end(clean, "closed locally" + (" after the peer's Logout" if clean else ""))
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> FixConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _await_logon(self) -> None:
        """Acceptor: read until the peer's Logon has passed every check (or the end)."""
        while not self._inbox:
            await self._read_more()


async def connect(
    config: SessionConfig,
    host: str,
    port: int,
    *,
    clock: Clock = time.time_ns,
    handshake_timeout: float | None = 10.0,
    connect_timeout: float = 10.0,
    **kwargs: Any,
) -> FixConnection:
    """Open an initiator connection. The caller's first :meth:`FixConnection.send` must be the
    engine's Logon, which becomes handshake message 1."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, limit=READ_SIZE, **kwargs), connect_timeout
    )
    return FixConnection(
        Session.initiator(config, clock=clock), reader, writer, handshake_timeout=handshake_timeout
    )


Handler = Callable[[FixConnection], Awaitable[None]]


async def serve(
    directory: AcceptorDirectory,
    handler: Handler,
    host: str | None,
    port: int,
    *,
    admission: Admission | None = None,
    clock: Clock = time.time_ns,
    handshake_timeout: float = 10.0,
    **kwargs: Any,
) -> asyncio.Server:
    """Listen for initiators. ``handler(conn)`` runs once a Logon passed every check; its first
    :meth:`~FixConnection.receive` returns that Logon. The connection is closed when it returns."""

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = peer_address(writer)
        if admission is not None and not admission.open_connection(address):
            log.warning("connection from %s refused by the admission limits", peer_name(writer))
            writer.close()
            return
        conn = FixConnection(
            Session.acceptor(directory, clock=clock, peer=address),
            reader,
            writer,
            handshake_timeout=handshake_timeout,
        )
        try:
            await conn._await_logon()
        except ConnectionEnded as exc:
            log.info(
                "connection from %s ended before a Logon was accepted: %s", conn.peer, exc.reason
            )
            await conn.close()
            return
        finally:
            if admission is not None:
                admission.handshake_done()
        try:
            await handler(conn)
        except (ConnectionEnded, asyncio.CancelledError):
            # The connection's end is logged where it happens; a cancel is the server closing.
            # Either way this top-level connection task ends here, quietly.
            log.debug("%s: connection from %s done", conn.session_id, conn.peer)
        except Exception:
            log.exception("%s: handler failed", conn.session_id)
        finally:
            await conn.close()

    return await asyncio.start_server(accept, host, port, limit=READ_SIZE, **kwargs)
