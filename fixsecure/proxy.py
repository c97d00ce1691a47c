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
from typing import Final, cast

from fixsecure import wire
from fixsecure.admission import Admission
from fixsecure.endpoint import PerSessionReplayStore, session_config
from fixsecure.errors import (
    ConfigError,
    FramingError,
    LimitExceeded,
    LocalProtocolError,
)
from fixsecure.framing import Framer
from fixsecure.replay import FileReplayStore, ReplayStore
from fixsecure.session import (
    AcceptorDirectory,
    Clock,
    ConnectionClosed,
    ConnectionFailed,
    Event,
    HandshakeComplete,
    LogonAccepted,
    MessageReceived,
    Session,
    SessionConfig,
)
from fixsecure.sessionid import SessionID
from fixsecure.settings import SessionSettings, Settings, load_settings

__all__ = ["Proxy", "ProxyStats", "run_proxy"]

log = logging.getLogger("fixsecure.proxy")

_ENGINE_LOGON_TIMEOUT: Final = 30.0
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


def _listen_error(exc: OSError, host: str, port: int, what: str, settings: SessionSettings) -> str:
    reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
    where = f"{what} of {settings.section} in {settings.path}"
    return f"cannot listen on {host}:{port} ({where}): {reason}"


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
        self._directories: list[tuple[AcceptorDirectory, list[SessionSettings]]] = []
        self._stopping = False
        self._load_initiators(self.settings.initiators())
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

    def _acceptor_configs(self, sessions: Iterable[SessionSettings]) -> list[SessionConfig]:
        configs = []
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
            configs.append(session_config(settings))
        return configs

    def reload(self) -> None:
        """SIGHUP: re-read the settings file and its key files for new connections.

        Listening addresses are not changed by a reload (restart for that); sessions are matched
        by identity. A reload that fails leaves everything as it was.
        """
        try:
            fresh = load_settings(self.path)
            initiators = {s.session_id: s for s in fresh.initiators()}
            updated: list[tuple[AcceptorDirectory, list[SessionConfig]]] = []
            for directory, sessions in self._directories:
                by_id = {s.session_id: s for s in fresh.acceptors()}
                replaced = [by_id.get(s.session_id, s) for s in sessions]
                updated.append((directory, self._acceptor_configs(replaced)))
            old_initiators = self._initiators
            self._load_initiators(
                initiators.get(sid, settings) for sid, (settings, _) in old_initiators.items()
            )
        except ConfigError as exc:
            log.error("reload failed, keeping the current keys: %s", exc)
            return
        for directory, configs in updated:
            directory.update(configs)
        log.info("reloaded keys from %s", self.path)

    # -- start and stop -------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every listener; raises ConfigError with the address and setting on failure."""
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
            raise ConfigError(_listen_error(exc, host, port, what, settings)) from None
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
            if port is None:
                raise settings.error("FixSecureAcceptPort", "must be set for the proxy")
            groups.setdefault((settings.secure.accept_host, port), []).append(settings)
        for (host, port), sessions in groups.items():
            first = sessions[0].secure
            admission = Admission.create(
                max_half_open=first.max_half_open,
                per_source_per_minute=first.logon_rate_per_source,
                per_session_per_minute=first.logon_rate_per_session,
            )
            stores: dict[SessionID, ReplayStore] = {}
            by_path: dict[Path, FileReplayStore] = {}
            for settings in sessions:
                if settings.secure.state_path is not None:
                    stores[settings.session_id] = by_path.setdefault(
                        settings.secure.state_path, FileReplayStore(settings.secure.state_path)
                    )
            directory = AcceptorDirectory(
                self._acceptor_configs(sessions),
                PerSessionReplayStore(stores),
                admit=admission.admit_session,
            )
            self._directories.append((directory, sessions))
            listener = _AcceptorListener(
                directory, admission, {s.session_id: s for s in sessions}, first.handshake_timeout
            )

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
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def shutdown(self, drain_timeout: float | None = None) -> None:
        """Stop accepting, give live sessions ``drain_timeout`` seconds, then close them."""
        self._stopping = True
        await self._close_servers()
        if drain_timeout is None:
            drain_timeout = max(
                (s.secure.drain_timeout for s in self.settings.sessions), default=5.0
            )
        links = list(self.links)
        if links:
            log.info("draining %d connection(s) for up to %.1f s", len(links), drain_timeout)
            await asyncio.wait([link.done for link in links], timeout=drain_timeout)
            for link in list(self.links):
                link.close("the proxy is shutting down", abort=True)
            if self.links:
                await asyncio.wait([link.done for link in self.links], timeout=5)
        log.info("stopped; %s", self.stats.line())


# -- one proxied connection -------------------------------------------------------------------

ENGINE: Final = "engine"
NETWORK: Final = "network"


class _Side(asyncio.Protocol):
    """One TCP connection of a link (the engine's or the network's); all logic is in the link."""

    def __init__(self, link: _Link, name: str) -> None:
        self.link = link
        self.name = name

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses, hence no isinstance).
        self.link.attached(self.name, cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        self.link.received(self.name, data)

    def eof_received(self) -> bool:
        self.link.ended(self.name)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.lost(self.name, exc)

    def pause_writing(self) -> None:
        self.link.flow(self.name, paused=True)

    def resume_writing(self) -> None:
        self.link.flow(self.name, paused=False)


class _Link:
    """One proxied connection: the engine's TCP connection, the network's, and the sans-IO
    :class:`Session` between them. Callbacks run in the event loop: bytes in, bytes out, no task
    switch per message. Each side's reading pauses while the other side's write buffer is full."""

    role = "?"

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.session: Session | None = None
        self.sid: SessionID | None = None
        self.transports: dict[str, asyncio.Transport] = {}
        self.pending: dict[str, list[bytes]] = {ENGINE: [], NETWORK: []}
        self.framer: Framer = Framer()
        self.timer: asyncio.TimerHandle | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.closed = False
        self.established = False
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.messages_out = self.messages_in = 0
        self.peer = "?"
        proxy.links.add(self)
        proxy.stats.active += 1

    @property
    def name(self) -> str:
        return str(self.sid) if self.sid is not None else f"{self.role} link from {self.peer}"

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
            transport.write(b"".join(waiting))

    def received(self, side: str, data: bytes) -> None:
        if self.closed:
            return
        try:
            if side == ENGINE:
                self.from_engine(data)
            else:
                self.from_network(data)
        except Exception as exc:  # a callback must not leak; nothing of a failure is forwarded
            log.exception("%s: internal error", self.name)
            self.close(f"internal error: {_why(exc)}", abort=True)

    def ended(self, side: str) -> None:
        if self.closed:
            return
        if side == NETWORK and self.session is not None:
            self.network_events(self.session.receive_eof())
        else:
            try:
                self.framer.close()
                self.close(f"the {side} closed its connection")
            except FramingError as exc:
                self.close(f"the {side} closed inside a message: {exc}")

    def lost(self, side: str, exc: Exception | None) -> None:
        self.transports.pop(side, None)
        if self.closed:
            return
        if side == NETWORK and self.session is not None:
            if exc is None:  # closed without an EOF first: the session says how it ended
                self.network_events(self.session.receive_eof())
            else:
                self.close(f"network side ended (abnormal): connection lost: {_why(exc)}")
        why = f": {_why(exc)}" if exc is not None else ""
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

    def write(self, side: str, data: bytes) -> None:
        transport = self.transports.get(side)
        if transport is None:
            self.pending[side].append(data)
        else:
            transport.write(data)

    def from_engine(self, data: bytes) -> None:
        """Engine bytes: frame, protect each message, write them to the network in one go."""
        framer = self.framer
        framer.feed(data)
        session = self.session
        out = []
        try:
            while (message := framer.next_message()) is not None:
                if session is None:  # the initiator's Logon identifies the session
                    session = self.identify(message)
                    if session is None:
                        return
                    continue
                out.append(session.send(message))
        except (FramingError, LocalProtocolError, LimitExceeded) as exc:
            if out:
                self.write(NETWORK, b"".join(out))
                self.messages_out += len(out)
            log.error("%s: engine side: %s", self.name, exc)
            self.close(f"engine side error: {exc}")
            return
        if out:
            self.messages_out += len(out)
            self.write(NETWORK, b"".join(out))
            if not self.established and session is not None and session.encrypted:
                self.handshake_done(session)

    def from_network(self, data: bytes) -> None:
        assert self.session is not None
        self.network_events(self.session.receive(data))

    def network_events(self, events: list[Event]) -> None:
        out = []
        for event in events:
            if isinstance(event, MessageReceived):
                out.append(event.message)
            elif isinstance(event, LogonAccepted):
                self.logon_accepted(event)
            elif isinstance(event, HandshakeComplete):
                self.handshake_done(self.session)
            elif isinstance(event, ConnectionFailed):
                if out:
                    self.deliver(out)
                    out = []
                if not self.established:
                    self.proxy.stats.handshakes_failed += 1
                log.warning(
                    "%s: connection from %s rejected: %s", self.name, self.peer, event.reason
                )
                self.close(f"protocol failure: {event.reason}")
                return
            elif isinstance(event, ConnectionClosed):
                if out:
                    self.deliver(out)
                    out = []
                how = "clean" if event.clean else "abnormal"
                self.close(f"network side ended ({how}): {event.reason}")
                return
        if out:
            self.deliver(out)

    def deliver(self, messages: list[bytes]) -> None:
        self.messages_in += len(messages)
        self.write(ENGINE, b"".join(messages))

    # -- role hooks -----------------------------------------------------------------------------

    def identify(self, logon: bytes) -> Session | None:
        raise LocalProtocolError("only an initiator link identifies its session from the engine")

    def logon_accepted(self, event: LogonAccepted) -> None:
        raise LocalProtocolError("only an acceptor link accepts Logons")

    def handshake_done(self, session: Session | None) -> None:
        if self.established or session is None:
            return
        self.established = True
        self.proxy.stats.handshakes_ok += 1
        self.cancel_timer()
        network = self.transports.get(NETWORK)
        log.info(
            "%s: handshake complete with %s (%s)",
            self.name,
            _peer(network) if network is not None else "?",
            session.config.suite if session.config else "?",
        )

    # -- timers, connecting, closing ------------------------------------------------------------

    def start_timer(self, seconds: float, reason: str) -> None:
        self.cancel_timer()
        self.timer = self.loop.call_later(seconds, self.close, reason)

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
                        _why(exc),
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
        for transport in list(self.transports.values()):
            if abort:
                transport.abort()
            else:
                transport.close()
        stats = self.proxy.stats
        stats.active -= 1
        stats.messages_to_network += self.messages_out
        stats.messages_from_network += self.messages_in
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

    def release(self) -> None:
        """Give back what the link holds from its listener (the acceptor's half-open slot)."""


class _InitiatorLink(_Link):
    """Engine connected to us; we connect onward once its Logon says which session it is."""

    role = "initiator"

    def __init__(self, proxy: Proxy, session_ids: frozenset[SessionID]) -> None:
        super().__init__(proxy)
        self.session_ids = session_ids
        self.framer = Framer(max(c.max_message_size for _, c in proxy._initiators.values()))

    def attached(self, side: str, transport: asyncio.Transport) -> None:
        if side == ENGINE:
            self.peer = _peer(transport)
            self.start_timer(_ENGINE_LOGON_TIMEOUT, "the engine sent no Logon in time")
        super().attached(side, transport)

    def identify(self, logon: bytes) -> Session | None:
        sid = _engine_session(logon, self.session_ids)
        found = self.proxy._initiators.get(sid) if sid else None
        if found is None:
            log.error(
                "engine %s logged on as %s, which no initiator session on this port describes",
                self.peer,
                sid or "an unreadable identity",
            )
            self.close("unknown session")
            return None
        settings, config = found
        self.sid = config.session_id
        secure = settings.secure
        session = Session.initiator(config, clock=self.proxy._clock)
        message1 = session.send(logon)  # LocalProtocolError: handled by from_engine
        self.session = session
        self.framer.max_message_size = config.max_message_size
        assert secure.connect_host is not None
        assert secure.connect_port is not None
        log.info(
            "%s: engine %s connected; handshake with %s:%d",
            self.sid,
            self.peer,
            secure.connect_host,
            secure.connect_port,
        )
        self.write(NETWORK, message1)
        self.messages_out += 1
        self.start_timer(secure.handshake_timeout, "handshake not complete in time")
        self.connect(NETWORK, secure.connect_host, secure.connect_port, secure.handshake_timeout)
        return session


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
            self.peer = _peer(transport)
            source = transport.get_extra_info("peername")
            address = source[0] if isinstance(source, tuple) else str(source)
            if not self.listener.admission.open_connection(address):
                log.warning("connection from %s refused by the admission limits", self.peer)
                super().attached(side, transport)
                self.close("refused by the admission limits", abort=True)
                return
            self.half_open = True
            self.session = Session.acceptor(self.listener.directory, clock=self.proxy._clock)
            self.start_timer(self.listener.handshake_timeout, "handshake not complete in time")
        super().attached(side, transport)

    def logon_accepted(self, event: LogonAccepted) -> None:
        self.release()
        self.sid = event.session_id
        settings = self.listener.engines[event.session_id]
        self.framer.max_message_size = settings.secure.max_message_size
        log.info(
            "%s: Logon accepted from %s (%s, own key #%d, peer key #%d)",
            self.sid,
            self.peer,
            "encrypted" if event.encrypted else "PLAINTEXT",
            event.own_key_index + 1,
            event.peer_key_index + 1,
        )
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


def _nodelay(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return str(peer)


def _why(exc: BaseException) -> str:
    text = str(exc)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _engine_session(logon: bytes, candidates: frozenset[SessionID]) -> SessionID | None:
    """The initiator session an engine's Logon belongs to (its 49 is our sender)."""
    try:
        parts = wire.split(logon)
    except wire.WireError:
        return None
    header = dict(reversed(wire.header_fields(logon, parts)))
    begin = logon[2 : parts[0] - 1].decode(errors="replace")
    sender = header.get(49, b"").decode(errors="replace")
    target = header.get(56, b"").decode(errors="replace")
    for sid in candidates:
        if (sid.begin_string, sid.sender_comp_id, sid.target_comp_id) == (begin, sender, target):
            return sid
    return SessionID(begin, sender, target)


async def run_proxy(path: Path | str, *, stats_interval: float | None = None) -> int:
    """``fixsecure proxy``: run until SIGTERM/SIGINT; SIGHUP reloads keys. Returns the exit code."""
    proxy = Proxy(path)
    await proxy.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, proxy.reload)
    interval = stats_interval
    if interval is None:
        interval = max((s.secure.stats_interval for s in proxy.settings.sessions), default=0.0)
    log.info("fixsecure proxy ready (%s)", path)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval if interval > 0 else None)
            except TimeoutError:
                log.info("stats %s", proxy.stats.line())
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        await proxy.shutdown()
    return 0
