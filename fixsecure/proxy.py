"""The sidecar proxy: unchanged FIX engines speak plain FIX to it, the proxies speak fixsecure.

It reads the **engine's own** QuickFIX-format settings file (``specs/fixsecure-v1.md`` §12):

- initiator sessions: the proxy listens where the engine's ``SocketConnectHost/SocketConnectPort``
  point and, for each engine connection, connects onward to ``FixSecureConnectHost/Port``;
- acceptor sessions: the proxy listens on ``FixSecureAcceptHost/FixSecureAcceptPort`` (one port
  serves every session that names it; the Logon's CompIDs choose the session) and delivers to the
  engine's ``SocketAcceptHost`` (default 127.0.0.1) / ``SocketAcceptPort``.

Every engine connection is a fresh handshake. The proxy never invents or swallows a FIX message: it
forwards complete messages byte-exact, and when either side ends it closes the other, leaving
sequence numbers and gap recovery to the engines. Nothing of a connection whose Logon fails any
check reaches an engine. Back-pressure holds in both directions: each side is read only as fast as
the other side's socket drains, and buffers are bounded by the read size and the message limit.

Signals: SIGTERM/SIGINT stop accepting and give sessions ``FixSecureDrainTimeout`` seconds to finish
before closing them; SIGHUP reloads the settings file's keys (new connections use them; a reload
that fails is logged and the old keys stay). Logs name the session and never contain secrets or
message contents.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, cast

from fixsecure import hotpath, wire
from fixsecure.admission import Admission
from fixsecure.asyncio import describe_error, describe_logon, peer_address, peer_name
from fixsecure.endpoint import acceptor_directory, listener_admission, session_config
from fixsecure.errors import (
    ConfigError,
    FramingError,
    LimitExceeded,
    LocalProtocolError,
)
from fixsecure.framing import Framer
from fixsecure.session import (
    AcceptorDirectory,
    Clock,
    ConnectionClosed,
    ConnectionFailed,
    Event,
    LogonAccepted,
    MessageReceived,
    MessagesReceived,
    Session,
    SessionConfig,
)
from fixsecure.sessionid import SessionID
from fixsecure.settings import SessionSettings, Settings, load_settings

__all__ = ["Proxy", "ProxyStats", "run_proxy"]

log = logging.getLogger("fixsecure.proxy")

_ENGINE_LOGON_TIMEOUT: Final = 30.0
_FLUSH_TIMEOUT: Final = 2.0
# Listen queue: Python's default (100) overflows in a reconnect storm, and the SYN retransmits
# that follow add seconds; a connection storm is bounded by FixSecureMaxHalfOpen instead.
_BACKLOG: Final = 1024


@dataclass
class ProxyStats:
    """Counters since start; one line of them is logged every ``FixSecureStatsInterval``."""

    engine_connections: int = 0
    network_connections: int = 0
    active: int = 0
    handshakes_ok: int = 0
    handshakes_failed: int = 0
    messages_to_network: int = 0
    messages_from_network: int = 0
    bytes_to_network: int = 0
    bytes_from_network: int = 0

    def line(self) -> str:
        return " ".join(f"{name}={value}" for name, value in asdict(self).items())


class Proxy:
    """All listeners and connections of one ``fixsecure proxy -c FILE`` process."""

    def __init__(self, path: Path | str, *, clock: Clock = time.time_ns) -> None:
        self.path = Path(path)
        self._clock = clock
        self.settings: Settings = load_settings(self.path)
        self.stats = ProxyStats()
        self._servers: list[asyncio.Server] = []
        self.links: set[_Link] = set()
        self._initiators: dict[SessionID, tuple[SessionSettings, SessionConfig]] = {}
        self._directories: list[tuple[AcceptorDirectory, _AcceptorListener]] = []
        self._closing: set[_Link] = set()  # closed links whose sockets may still be flushing
        self.busy_poll: _BusyPoll | None = None  # made in start(), with the running loop
        self._load_initiators(self.settings.initiators())
        self._check_acceptors(self.settings.acceptors())
        if not self.settings.initiators() and not self.settings.acceptors():
            raise ConfigError("no [SESSION] to proxy", path=self.path)

    # -- configuration ----------------------------------------------------------------------------

    def _load_initiators(self, sessions: Iterable[SessionSettings]) -> None:
        loaded: dict[SessionID, tuple[SessionSettings, SessionConfig]] = {}
        for settings in sessions:
            secure = settings.secure
            if secure.connect_host is None or secure.connect_port is None:
                raise settings.error(
                    "FixSecureConnectHost",
                    "an initiator session needs FixSecureConnectHost and FixSecureConnectPort: "
                    "where the proxy connects onward",
                )
            if settings.get_int("SocketConnectPort") is None:
                raise settings.error(
                    "SocketConnectPort", "is where the engine connects to the proxy; it must be set"
                )
            loaded[settings.session_id] = (settings, session_config(settings))
        self._initiators = loaded

    @staticmethod
    def _check_acceptors(sessions: Iterable[SessionSettings]) -> None:
        for settings in sessions:
            if settings.secure.accept_port is None:
                raise settings.error(
                    "FixSecureAcceptPort",
                    "an acceptor session needs FixSecureAcceptPort: where the proxy listens",
                )
            if settings.get_int("SocketAcceptPort") is None:
                raise settings.error(
                    "SocketAcceptPort", "is where the proxy delivers to the engine; it must be set"
                )

    def reload(self) -> None:
        """SIGHUP: re-read the settings file and its key files for new connections.

        Listening addresses and listener limits are not changed by a reload (restart for that);
        sessions are matched by identity. A reload that fails leaves everything as it was.
        """
        try:
            fresh = load_settings(self.path)
            by_id = {s.session_id: s for s in fresh.acceptors()}
            updated = []
            for directory, listener in self._directories:
                replaced = [by_id.get(sid, settings) for sid, settings in listener.engines.items()]
                self._check_acceptors(replaced)
                updated.append((directory, listener, replaced, acceptor_directory(replaced)))
            initiators = {s.session_id: s for s in fresh.initiators()}
            self._load_initiators(
                initiators.get(sid, settings) for sid, (settings, _) in self._initiators.items()
            )
        except ConfigError as exc:
            log.error("reload failed, keeping the current keys: %s", exc)
            return
        for directory, listener, replaced, rebuilt in updated:
            directory.update(rebuilt.sessions)
            listener.engines = {s.session_id: s for s in replaced}
        log.info("reloaded keys from %s", self.path)

    # -- start and stop -------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every listener; raises ConfigError with the address and setting on failure."""
        window = max((s.secure.busy_poll for s in self.settings.sessions), default=0.0)
        if window > 0:
            self.busy_poll = _BusyPoll(asyncio.get_running_loop(), window)
        try:
            await self._start_initiator_listeners()
            await self._start_acceptor_listeners()
        except BaseException:
            await self._close_servers()
            raise

    async def _listen(
        self,
        factory: Callable[[], asyncio.Protocol],
        host: str,
        port: int,
        what: str,
        settings: SessionSettings,
        *,
        backlog: int = _BACKLOG,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(factory, host, port, backlog=backlog)
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise settings.error(what, f"cannot listen on {host}:{port}: {reason or exc}") from None
        self._servers.append(server)

    async def _start_initiator_listeners(self) -> None:
        groups: dict[tuple[str, int], list[SessionSettings]] = {}
        for settings, _ in self._initiators.values():
            host = settings.get("SocketConnectHost") or "127.0.0.1"
            port = settings.get_int("SocketConnectPort")
            assert port is not None
            groups.setdefault((host, port), []).append(settings)
        for (host, port), sessions in groups.items():
            ids = frozenset(s.session_id for s in sessions)

            def engine_side(_ids: frozenset[SessionID] = ids) -> asyncio.Protocol:
                return _Side(_InitiatorLink(self, _ids), ENGINE)

            await self._listen(engine_side, host, port, "SocketConnectPort", sessions[0])
            log.info(
                "listening on %s:%d for initiator engine(s): %s",
                host,
                port,
                ", ".join(str(s.session_id) for s in sessions),
            )

    async def _start_acceptor_listeners(self) -> None:
        groups: dict[tuple[str, int], list[SessionSettings]] = {}
        for settings in self.settings.acceptors():
            port = settings.secure.accept_port
            assert port is not None  # _check_acceptors
            groups.setdefault((settings.secure.accept_host, port), []).append(settings)
        for (host, port), sessions in groups.items():
            admission = listener_admission(sessions, f"{host}:{port}")
            directory = acceptor_directory(sessions, admit=admission.admit_session)
            first = sessions[0].secure
            listener = _AcceptorListener(
                directory, admission, {s.session_id: s for s in sessions}, first.handshake_timeout
            )
            self._directories.append((directory, listener))

            def network_side(_listener: _AcceptorListener = listener) -> asyncio.Protocol:
                return _Side(_AcceptorLink(self, _listener), NETWORK)

            await self._listen(
                network_side,
                host,
                port,
                "FixSecureAcceptPort",
                sessions[0],
                backlog=max(_BACKLOG, first.max_half_open),
            )
            log.info(
                "listening on %s:%d for %d acceptor session(s): %s",
                host,
                port,
                len(sessions),
                ", ".join(str(s.session_id) for s in sessions),
            )

    async def _close_servers(self) -> None:
        """Stop accepting. (``wait_closed`` comes last: since Python 3.12.1 it also waits for
        every accepted connection.)"""
        for server in self._servers:
            server.close()

    async def shutdown(self, drain_timeout: float | None = None) -> None:
        """Stop accepting; give live sessions ``drain_timeout`` seconds to end by themselves (the
        engines logging out); then close them, flushing what was already protected; abort what
        is still open a little later."""
        await self._close_servers()
        if drain_timeout is None:
            drain_timeout = max(
                (s.secure.drain_timeout for s in self.settings.sessions), default=5.0
            )
        if self.links:
            log.info("draining %d connection(s) for up to %.1f s", len(self.links), drain_timeout)
            await asyncio.wait([link.done for link in self.links], timeout=drain_timeout)
        flushing = [link.flushed for link in self.links]
        for link in list(self.links):
            link.close("the proxy is shutting down")
        if flushing:
            await asyncio.wait(flushing, timeout=_FLUSH_TIMEOUT)
        for link in self._closing:
            link.abort_transports()
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), _FLUSH_TIMEOUT)
        self._servers.clear()
        log.info("stopped; %s", self.stats.line())


# -- one proxied connection -------------------------------------------------------------------

ENGINE: Final = "engine"
NETWORK: Final = "network"


class _BusyPoll:
    """``FixSecureBusyPoll``: after each read the event loop keeps polling, without sleeping,
    until ``window`` seconds pass with no read (a callback that re-queues itself makes every loop
    iteration a non-blocking poll). A reply within the window then meets a running process instead
    of one the kernel must wake, at the price of a busy core while traffic flows. Bounded by
    construction: the spin ends one window after the last read."""

    def __init__(self, loop: asyncio.AbstractEventLoop, window: float) -> None:
        self._loop = loop
        self._window = window
        self._until = 0.0
        self._spinning = False

    @property
    def window(self) -> float:
        return self._window

    @property
    def spinning(self) -> bool:
        """True while the loop is kept polling (until one window after the last read)."""
        return self._spinning

    def touch(self) -> None:
        # time.monotonic, not loop.time(): uvloop's is cached per iteration, to the millisecond.
        self._until = time.monotonic() + self._window
        if not self._spinning:
            self._spinning = True
            self._loop.call_soon(self._spin)

    def _spin(self) -> None:
        if time.monotonic() < self._until:
            self._loop.call_soon(self._spin)
        else:
            self._spinning = False


class _Side(asyncio.Protocol):
    """One TCP connection of a link (the engine's or the network's); all logic is in the link.

    Every callback is guarded: an exception escaping here would leave the link half-closed."""

    def __init__(self, link: _Link, name: str) -> None:
        self.link = link
        self.name = name
        self.forward = link.from_engine if name == ENGINE else link.from_network
        self.poll = link.proxy.busy_poll

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses, hence no isinstance).
        self.link.guarded(self.link.attached, self.name, cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        if self.poll is not None and self.link.established:  # peers must log on to make it spin
            self.poll.touch()
        try:  # guarded like the other callbacks, without a call in between: this is per read
            self.forward(data)
        except Exception as exc:
            self.link.internal_error(exc)

    def eof_received(self) -> bool:
        self.link.guarded(self.link.ended, self.name)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.guarded(self.link.lost, self.name, exc)

    def pause_writing(self) -> None:
        self.link.flow(self.name, paused=True)

    def resume_writing(self) -> None:
        self.link.flow(self.name, paused=False)


class _Link:
    """One proxied connection: the engine's TCP connection, the network's, and the sans-IO
    :class:`Session` between them. Callbacks run in the event loop: bytes in, bytes out, no task
    switch per message. Each side's reading pauses while the other side's write buffer is full.

    The handshake timer runs from the first byte until the session is usable: for an encrypted
    session until message 2 has gone through, for a plaintext one until the Logon reply has."""

    role = "?"

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.session: Session | None = None
        self.sid: SessionID | None = None
        self.transports: dict[str, asyncio.Transport] = {}
        self.pending: dict[str, list[bytes]] = {ENGINE: [], NETWORK: []}
        self.timer: asyncio.TimerHandle | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.closed = False
        self.established = False
        self.done: asyncio.Future[None] = self.loop.create_future()  # closed
        self.flushed: asyncio.Future[None] = self.loop.create_future()  # both sockets gone
        self.messages_out = self.messages_in = 0
        self.peer = "?"
        proxy.links.add(self)
        proxy.stats.active += 1

    @property
    def name(self) -> str:
        return str(self.sid) if self.sid is not None else f"{self.role} link from {self.peer}"

    def guarded(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception as exc:
            self.internal_error(exc)

    def internal_error(self, exc: Exception) -> None:
        """Nothing of a failure is forwarded; the link just ends."""
        log.error("%s: internal error", self.name, exc_info=exc)
        self.close(f"internal error: {describe_error(exc)}", abort=True)

    # -- transport callbacks --------------------------------------------------------------------

    def attached(self, side: str, transport: asyncio.Transport) -> None:
        if self.closed:
            transport.abort()
            return
        self.transports[side] = transport
        _nodelay(transport)
        if side == NETWORK:
            self.proxy.stats.network_connections += 1
        else:
            self.proxy.stats.engine_connections += 1
        waiting, self.pending[side] = self.pending[side], []
        if waiting:
            self.write_parts(side, waiting)


    def ended(self, side: str) -> None:
        if self.closed:
            return
        if side == NETWORK and self.session is not None:
            self.network_events(self.session.receive_eof())
            return
        pending = self.engine_buffered()
        if pending:
            self.close(f"the {side} closed inside a message ({pending} bytes buffered)")
        else:
            self.close(f"the {side} closed its connection")

    def lost(self, side: str, exc: Exception | None) -> None:
        self.transports.pop(side, None)
        if not self.transports and self.closed and not self.flushed.done():
            self.flushed.set_result(None)
            self.proxy._closing.discard(self)
        if self.closed:
            return
        if side == NETWORK and self.session is not None:
            if exc is None:  # closed without an EOF first: the session says how it ended
                self.network_events(self.session.receive_eof())
            else:
                self.close(f"network side ended (abnormal): connection lost: {describe_error(exc)}")
        why = f": {describe_error(exc)}" if exc is not None else ""
        self.close(f"the {side} connection was lost{why}")

    def flow(self, side: str, *, paused: bool) -> None:
        """``side``'s write buffer is full (or drained): stop (or restart) reading the other."""
        other = self.transports.get(NETWORK if side == ENGINE else ENGINE)
        if other is None or other.is_closing():
            return
        if paused:
            other.pause_reading()
        else:
            other.resume_reading()

    # -- moving messages ------------------------------------------------------------------------

    def write_parts(self, side: str, parts: list[bytes]) -> None:
        """Write ``parts`` in order: on uvloop in one writev, without joining them into a copy;
        elsewhere joined (asyncio's writelines skips flow control in some CPython releases,
        gh-127655)."""
        transport = self.transports.get(side)
        if transport is None:
            self.pending[side] += parts
            return
        if side == NETWORK:
            self.proxy.stats.bytes_to_network += sum(map(len, parts))
        if len(parts) == 1:
            transport.write(parts[0])
        elif _WRITEV[type(transport)]:
            transport.writelines(parts)
        else:
            transport.write(b"".join(parts))

    def from_engine(self, data: bytes) -> None:
        """Engine bytes: protect every message they complete, write them to the network in one
        go (the session frames the engine's stream and keeps a partial message for later)."""
        if self.closed:
            return
        starting = self.session is None
        if starting:  # the initiator's Logon identifies the session
            stream = self.identify(data)
            if stream is None:
                return
            data = stream  # from the Logon on: the session frames all of the engine's stream
        session = self.session
        assert session is not None
        sent = session.messages_sent
        try:
            protected = session.send_data(data)
        except (LocalProtocolError, LimitExceeded) as exc:
            self.to_network(exc.wire, session.messages_sent - sent)  # their nonces are spent
            self.engine_failed(exc)
            return
        self.to_network(protected, session.messages_sent - sent)
        if starting:
            self.session_started()
        elif protected and self.role == "acceptor":  # the engine's reply went out: message 2
            self.handshake_done()

    def engine_failed(self, exc: Exception) -> None:
        log.error("%s: engine side: %s", self.name, exc)
        self.close(f"engine side error: {exc}")

    def from_network(self, data: bytes) -> None:
        """Network bytes: what the session makes of them, delivered to the engine in one go."""
        if self.closed:
            return
        self.proxy.stats.bytes_from_network += len(data)
        assert self.session is not None
        events = self.session.receive_batch(data)
        if self.established and len(events) == 1 and isinstance(events[0], MessagesReceived):
            run = events[0]  # the usual read: one run of messages, nothing else
            self.deliver([run.data], len(run.ends))
        else:
            self.network_events(events)

    def to_network(self, protected: bytes, count: int) -> None:
        if protected:
            self.messages_out += count
            self.proxy.stats.messages_to_network += count
            self.write_parts(NETWORK, [protected])

    def network_events(self, events: list[Event]) -> None:
        out: list[bytes] = []
        count = 0
        for event in events:
            if isinstance(event, MessagesReceived):
                out.append(event.data)
                count += len(event.ends)
            elif isinstance(event, MessageReceived):
                out.append(event.message)
                count += 1
            elif isinstance(event, LogonAccepted):
                self.logon_accepted(event)
            elif isinstance(event, ConnectionFailed | ConnectionClosed):
                self.deliver(out, count)
                out = []
                if isinstance(event, ConnectionFailed):
                    log.warning(
                        "%s: connection from %s rejected: %s", self.name, self.peer, event.reason
                    )
                    self.close(f"protocol failure: {event.reason}")
                else:
                    how = "clean" if event.clean else "abnormal"
                    self.close(f"network side ended ({how}): {event.reason}")
                return
        self.deliver(out, count)
        if out and self.role == "initiator":  # the peer's reply came through
            self.handshake_done()

    def deliver(self, data: list[bytes], count: int) -> None:
        """``count`` plaintext messages, held back to back in ``data``, to the engine."""
        if count:
            self.messages_in += count
            self.proxy.stats.messages_from_network += count
            self.write_parts(ENGINE, data)

    # -- role hooks -----------------------------------------------------------------------------

    def identify(self, data: bytes) -> bytes | None:
        """Initiator side: engine bytes before the session is known. Once the engine's Logon
        has chosen it, returns the engine's stream from the Logon on (None: not yet, or the link
        is closed)."""
        return None

    def session_started(self) -> None:
        """Initiator side: message 1 is on its way; connect onward."""

    def engine_buffered(self) -> int:
        """Bytes of an incomplete engine message held for the link."""
        return self.session.local_buffered if self.session is not None else 0

    def logon_accepted(self, event: LogonAccepted) -> None:
        """Acceptor side: the peer's Logon passed every check; connect to the engine."""

    def handshake_done(self) -> None:
        if self.established or self.session is None:
            return
        self.established = True
        self.proxy.stats.handshakes_ok += 1
        self.cancel_timer()
        network = self.transports.get(NETWORK)
        if self.session.encrypted:
            assert self.session.config is not None
            log.info(
                "%s: handshake complete with %s (%s)",
                self.name,
                peer_name(network) if network is not None else "?",
                self.session.config.suite,
            )
        else:
            log.warning(
                "%s: PLAINTEXT session with %s (FixSecureRequired=N)",
                self.name,
                peer_name(network) if network is not None else "?",
            )

    # -- timers, connecting, closing ------------------------------------------------------------

    def start_timer(self, seconds: float, reason: str) -> None:
        self.cancel_timer()
        self.timer = self.loop.call_later(seconds, self.expired, reason)

    def expired(self, reason: str) -> None:
        self.timer = None
        log.warning("%s: %s (peer %s)", self.name, reason, self.peer)
        self.close(reason)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def connect(self, side: str, host: str, port: int, timeout: float) -> None:
        async def open_connection() -> None:
            try:
                await asyncio.wait_for(
                    self.loop.create_connection(lambda: _Side(self, side), host, port), timeout
                )
            except (OSError, TimeoutError) as exc:
                if not self.closed:
                    log.error(
                        "%s: cannot reach the %s at %s:%d: %s",
                        self.name,
                        "engine" if side == ENGINE else "peer",
                        host,
                        port,
                        describe_error(exc),
                    )
                    self.close(f"cannot reach {host}:{port}")

        self.connecting = self.loop.create_task(open_connection())

    def close(self, reason: str, *, abort: bool = False) -> None:
        """End both connections (flushing what is already written, unless ``abort``)."""
        if self.closed:
            return
        self.closed = True
        self.cancel_timer()
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        if self.session is not None:
            self.session.abort()
        if not self.established and self.session is not None:
            self.proxy.stats.handshakes_failed += 1
        if abort:
            self.abort_transports()
        else:
            for transport in list(self.transports.values()):
                transport.close()
        if self.transports:
            self.proxy._closing.add(self)
        elif not self.flushed.done():
            self.flushed.set_result(None)
        self.proxy.stats.active -= 1
        self.release()
        log.info(
            "%s: closed (%s); %d messages out, %d in",
            self.name,
            reason,
            self.messages_out,
            self.messages_in,
        )
        self.proxy.links.discard(self)
        if not self.done.done():
            self.done.set_result(None)

    def abort_transports(self) -> None:
        for transport in list(self.transports.values()):
            transport.abort()

    def release(self) -> None:
        """Give back what the link holds from its listener (the acceptor's half-open slot)."""


class _InitiatorLink(_Link):
    """Engine connected to us; we connect onward once its Logon says which session it is."""

    role = "initiator"

    def __init__(self, proxy: Proxy, session_ids: frozenset[SessionID]) -> None:
        super().__init__(proxy)
        self.session_ids = session_ids
        self.settings: SessionSettings | None = None  # the session's, once the Logon names it
        self.framer = Framer(max(proxy._initiators[sid][1].max_message_size for sid in session_ids))

    def attached(self, side: str, transport: asyncio.Transport) -> None:
        if side == ENGINE:
            self.peer = peer_name(transport)
            self.start_timer(_ENGINE_LOGON_TIMEOUT, "the engine sent no Logon in time")
        super().attached(side, transport)

    def engine_buffered(self) -> int:
        return self.framer.buffered if self.session is None else super().engine_buffered()

    def identify(self, data: bytes) -> bytes | None:
        self.framer.feed(data)
        try:
            logon = self.framer.next_message()
        except FramingError as exc:
            self.engine_failed(exc)
            return None
        if logon is None or not self.start_session(logon):
            return None
        return logon + self.framer.take()

    def start_session(self, logon: bytes) -> bool:
        """Pick the session the engine's Logon names (False: none, and the link is closed)."""
        sid = _engine_session(logon, self.session_ids)
        found = self.proxy._initiators.get(sid) if sid is not None else None
        if found is None:
            log.error(
                "engine %s logged on as %s, which no initiator session on this port describes",
                self.peer,
                _claimed_session(logon),
            )
            self.close("unknown session")
            return False
        self.settings, config = found
        self.sid = config.session_id
        self.session = Session.initiator(config, clock=self.proxy._clock)
        return True

    def session_started(self) -> None:
        assert self.session is not None
        assert self.settings is not None
        secure = self.settings.secure
        assert secure.connect_host is not None
        assert secure.connect_port is not None
        log.info(
            "%s: engine %s connected; %s with %s:%d",
            self.sid,
            self.peer,
            "handshake" if self.session.encrypted else "PLAINTEXT session",
            secure.connect_host,
            secure.connect_port,
        )
        self.start_timer(secure.handshake_timeout, "handshake not complete in time")
        self.connect(NETWORK, secure.connect_host, secure.connect_port, secure.handshake_timeout)


@dataclass
class _AcceptorListener:
    """What every connection to one acceptor port shares."""

    directory: AcceptorDirectory
    admission: Admission
    engines: dict[SessionID, SessionSettings]
    handshake_timeout: float


class _AcceptorLink(_Link):
    """A peer connected to us; once its Logon passes every check we connect to the engine."""

    role = "acceptor"

    def __init__(self, proxy: Proxy, listener: _AcceptorListener) -> None:
        super().__init__(proxy)
        self.listener = listener
        self.half_open = False

    def attached(self, side: str, transport: asyncio.Transport) -> None:
        if side == NETWORK:
            self.peer = peer_name(transport)
            address = peer_address(transport)
            if not self.listener.admission.open_connection(address):
                log.warning("connection from %s refused by the admission limits", self.peer)
                super().attached(side, transport)
                self.close("refused by the admission limits", abort=True)
                return
            self.half_open = True
            self.session = Session.acceptor(
                self.listener.directory, clock=self.proxy._clock, peer=address
            )
            self.start_timer(self.listener.handshake_timeout, "handshake not complete in time")
        super().attached(side, transport)

    def logon_accepted(self, event: LogonAccepted) -> None:
        self.release()
        self.sid = event.session_id
        settings = self.listener.engines[event.session_id]
        log.info("%s: Logon accepted from %s (%s)", self.sid, self.peer, describe_logon(event))
        port = settings.get_int("SocketAcceptPort")
        assert port is not None
        self.connect(
            ENGINE,
            settings.get("SocketAcceptHost") or "127.0.0.1",
            port,
            settings.secure.handshake_timeout,
        )

    def release(self) -> None:
        if self.half_open:
            self.half_open = False
            self.listener.admission.handshake_done()


class _WritevTransports(dict[type, bool]):
    """Transport class -> whether its writelines is uvloop's (writev with flow control)."""

    def __missing__(self, kind: type) -> bool:
        self[kind] = kind.__module__.startswith("uvloop")
        return self[kind]


_WRITEV: Final = _WritevTransports()


def _nodelay(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _engine_session(logon: bytes, candidates: frozenset[SessionID]) -> SessionID | None:
    """The initiator session of this listening port that an engine's Logon names (its 49 is our
    sender), or None: an engine cannot reach a session configured for another port."""
    try:
        parts = wire.split(logon)
    except wire.WireError:
        return None
    header = dict(reversed(wire.header_fields(logon, parts)))
    claimed = (logon[2 : parts[0] - 1], header.get(49, b""), header.get(56, b""))
    matches = [
        sid
        for sid in candidates
        if claimed
        == tuple(v.encode() for v in (sid.begin_string, sid.sender_comp_id, sid.target_comp_id))
        and all(
            not ours or header.get(tag, b"") == ours.encode()
            for ours, tag in (
                (sid.sender_sub_id, 50),
                (sid.sender_location_id, 142),
                (sid.target_sub_id, 57),
                (sid.target_location_id, 143),
            )
        )
    ]
    return matches[0] if len(matches) == 1 else None


def _claimed_session(logon: bytes) -> str:
    """What an unknown engine Logon claims to be, for the error message (header only)."""
    try:
        parts = wire.split(logon)
    except wire.WireError:
        return "an unreadable identity"
    header = dict(reversed(wire.header_fields(logon, parts)))
    fields = (logon[2 : parts[0] - 1], header.get(49, b"?"), header.get(56, b"?"))
    begin, sender, target = (v[:32].decode(errors="replace") for v in fields)
    return f"{begin}:{sender}->{target}"


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``, for the start-up line."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


async def run_proxy(path: Path | str, *, stats_interval: float | None = None) -> int:
    """``fixsecure proxy``: run until SIGTERM/SIGINT; SIGHUP reloads keys. Returns the exit code.

    The signal handlers are in place before the listeners open and until the drain is over, so a
    reload or a stop at any moment does what it says rather than killing the process."""
    proxy = Proxy(path)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, proxy.reload)
    try:
        await proxy.start()
        interval = stats_interval
        if interval is None:
            interval = max((s.secure.stats_interval for s in proxy.settings.sessions), default=0.0)
        log.info(
            "fixsecure proxy ready (%s; event loop %s, hot path %s, busy poll %s)",
            path,
            loop_name(loop),
            hotpath.IMPLEMENTATION,
            f"{proxy.busy_poll.window * 1e6:.0f} µs" if proxy.busy_poll else "off",
        )
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval if interval > 0 else None)
            except TimeoutError:
                log.info("stats %s", proxy.stats.line())
        await proxy.shutdown()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    return 0
