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
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from fixsecure import wire
from fixsecure.admission import Admission
from fixsecure.asyncio import READ_SIZE, FixConnection, connect, serve
from fixsecure.endpoint import PerSessionReplayStore, session_config
from fixsecure.errors import (
    ConfigError,
    ConnectionEnded,
    FramingError,
    LimitExceeded,
    LocalProtocolError,
)
from fixsecure.framing import Framer
from fixsecure.replay import FileReplayStore, ReplayStore
from fixsecure.session import AcceptorDirectory, Clock, SessionConfig
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
        self._tasks: set[asyncio.Task[None]] = set()
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

    async def _bind(
        self,
        handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        host: str,
        port: int,
        what: str,
        settings: SessionSettings,
    ) -> None:
        try:
            server = await asyncio.start_server(
                handler, host, port, limit=READ_SIZE, backlog=_BACKLOG
            )
        except OSError as exc:
            raise ConfigError(_listen_error(exc, host, port, what, settings)) from None
        self._servers.append(server)
        log.info("listening on %s:%d for %s", host, port, what)

    async def _start_initiator_listeners(self) -> None:
        groups: dict[tuple[str, int], list[SessionSettings]] = {}
        for settings, _ in self._initiators.values():
            host = settings.get("SocketConnectHost") or "127.0.0.1"
            port = settings.get_int("SocketConnectPort")
            assert port is not None
            groups.setdefault((host, port), []).append(settings)
        for (host, port), sessions in groups.items():

            async def on_engine(
                reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter,
                _ids: frozenset[SessionID] = frozenset(s.session_id for s in sessions),
            ) -> None:
                await self._track(self._initiator_connection(_ids, reader, writer))

            await self._bind(on_engine, host, port, "initiator engines", sessions[0])

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
            engines = {s.session_id: s for s in sessions}

            async def on_logon(
                conn: FixConnection, _engines: dict[SessionID, SessionSettings] = engines
            ) -> None:
                await self._track(self._acceptor_connection(conn, _engines))

            try:
                server = await serve(
                    directory,
                    on_logon,
                    host,
                    port,
                    admission=admission,
                    clock=self._clock,
                    handshake_timeout=first.handshake_timeout,
                    backlog=max(_BACKLOG, first.max_half_open),
                )
            except OSError as exc:
                raise ConfigError(
                    _listen_error(exc, host, port, "FixSecureAcceptPort", sessions[0])
                ) from None
            self._servers.append(server)
            log.info(
                "listening on %s:%d for %d acceptor session(s): %s",
                host,
                port,
                len(sessions),
                ", ".join(str(s.session_id) for s in sessions),
            )

    async def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        self.stats.active += 1
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            self.stats.active -= 1

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
        tasks = set(self._tasks)
        if tasks:
            log.info("draining %d connection(s) for up to %.1f s", len(tasks), drain_timeout)
            _, pending = await asyncio.wait(tasks, timeout=drain_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        log.info("stopped; %s", self.stats.line())

    # -- connections ----------------------------------------------------------------------------

    async def _initiator_connection(
        self,
        session_ids: frozenset[SessionID],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.stats.engine_connections += 1
        engine = _peer(writer)
        framer = Framer(max(c.max_message_size for _, c in self._initiators.values()))
        try:
            logon = await asyncio.wait_for(_first_message(reader, framer), _ENGINE_LOGON_TIMEOUT)
        except (TimeoutError, ConnectionEnded, FramingError, OSError) as exc:
            log.warning("engine %s: no valid first message: %s", engine, _why(exc))
            writer.close()
            return
        sid = _engine_session(logon, session_ids)
        found = self._initiators.get(sid) if sid else None
        if found is None:
            log.error(
                "engine %s logged on as %s, which no initiator session on this port describes",
                engine,
                sid or "an unreadable identity",
            )
            writer.close()
            return
        settings, config = found
        host, port = settings.secure.connect_host, settings.secure.connect_port
        assert host is not None
        assert port is not None
        try:
            conn = await connect(
                config,
                host,
                port,
                clock=self._clock,
                handshake_timeout=settings.secure.handshake_timeout,
                connect_timeout=settings.secure.handshake_timeout,
            )
        except (OSError, TimeoutError) as exc:
            log.error("%s: cannot reach %s:%d: %s", sid, host, port, _why(exc))
            writer.close()
            return
        self.stats.network_connections += 1
        log.info("%s: engine %s connected; handshake with %s:%d", sid, engine, host, port)
        try:
            await conn.send(logon)
        except (LocalProtocolError, ConnectionEnded) as exc:
            log.error("%s: engine Logon refused: %s", sid, _why(exc))
            self.stats.handshakes_failed += 1
            writer.close()
            await conn.close()
            return
        await self._pump(config.session_id, conn, reader, writer, framer, initiator=True)

    async def _acceptor_connection(
        self, conn: FixConnection, engines: dict[SessionID, SessionSettings]
    ) -> None:
        self.stats.network_connections += 1
        sid = conn.session_id
        assert sid is not None
        settings = engines[sid]
        logon = await conn.receive()
        self.stats.handshakes_ok += 1
        host = settings.get("SocketAcceptHost") or "127.0.0.1"
        port = settings.get_int("SocketAcceptPort")
        assert port is not None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=READ_SIZE),
                settings.secure.handshake_timeout,
            )
        except (OSError, TimeoutError) as exc:
            log.error("%s: engine at %s:%d unreachable: %s", sid, host, port, _why(exc))
            await conn.close()
            return
        self.stats.engine_connections += 1
        writer.write(logon)
        framer = Framer(settings.secure.max_message_size)
        await self._pump(sid, conn, reader, writer, framer, initiator=False)

    async def _pump(
        self,
        sid: SessionID,
        conn: FixConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        framer: Framer,
        *,
        initiator: bool,
    ) -> None:
        """Move messages both ways until either side ends; then close the other."""

        async def engine_to_network() -> str:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    framer.close()
                    return "the engine closed its connection"
                framer.feed(data)
                batch = []
                while (message := framer.next_message()) is not None:
                    batch.append(message)
                if batch:
                    await conn.send_batch(batch)

        async def network_to_engine() -> str:
            handshaking = initiator
            while True:
                batch = await conn.receive_batch()
                if handshaking:
                    self.stats.handshakes_ok += 1
                    handshaking = False
                writer.write(b"".join(batch))
                await writer.drain()

        to_network = asyncio.ensure_future(engine_to_network())
        to_engine = asyncio.ensure_future(network_to_engine())
        outcome = "cancelled"
        try:
            done, _ = await asyncio.wait(
                {to_network, to_engine}, return_when=asyncio.FIRST_COMPLETED
            )
            finished = done.pop()
            try:
                outcome = finished.result()
            except ConnectionEnded as exc:
                how = "clean" if exc.clean else "abnormal"
                outcome = f"network side ended ({how}): {exc.reason}"
                if initiator and conn.session.handshake_hash is None:
                    self.stats.handshakes_failed += 1
            except (FramingError, LocalProtocolError, LimitExceeded) as exc:
                outcome = f"engine side error: {exc}"
                log.error("%s: %s", sid, outcome)
            except (ConnectionError, OSError) as exc:
                outcome = f"connection error: {_why(exc)}"
        finally:
            for task in (to_network, to_engine):
                task.cancel()
            await asyncio.gather(to_network, to_engine, return_exceptions=True)
            writer.close()
            await conn.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            self.stats.messages_to_network += conn.messages_out
            self.stats.messages_from_network += conn.messages_in
            self.stats.bytes_to_network += conn.bytes_out
            self.stats.bytes_from_network += conn.bytes_in
            log.info(
                "%s: closed (%s); %d messages out, %d in",
                sid,
                outcome,
                conn.messages_out,
                conn.messages_in,
            )


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def _why(exc: BaseException) -> str:
    text = str(exc)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


async def _first_message(reader: asyncio.StreamReader, framer: Framer) -> bytes:
    while True:
        message = framer.next_message()
        if message is not None:
            return message
        data = await reader.read(READ_SIZE)
        if not data:
            raise ConnectionEnded(False, "the engine closed before sending a Logon")
        framer.feed(data)


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
