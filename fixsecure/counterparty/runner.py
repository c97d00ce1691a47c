"""The counterparty on the network: the sans-IO :class:`Counterparty` over fixsecure connections.

``fixsecure counterparty -c FILE`` runs one counterparty per ``[SESSION]`` of a QuickFIX-format
settings file, with fixsecure built in through :mod:`fixsecure.asyncio` (no proxy):

- acceptor sessions listen on ``SocketAcceptHost`` (default 0.0.0.0) / ``SocketAcceptPort``.
  Sessions naming the same address share one listener and one
  :class:`~fixsecure.session.AcceptorDirectory`; the Logon's CompIDs pick the session. A session
  is encrypted unless the file says ``FixSecureRequired=N`` - and even then only a plaintext
  Logon makes it plaintext, so the same program is its own plaintext baseline;
- initiator sessions connect to ``SocketConnectHost/SocketConnectPort``, log on, and connect
  again ``ReconnectInterval`` seconds after every disconnect until stopped.

Settings beyond the ``FixSecure*`` keys of the spec (§12), with QuickFIX's names and defaults:

================================================  ============  ====================================
Key                                               Default       Meaning
================================================  ============  ====================================
BeginString                                       -             FIX.4.2 or FIX.4.4
SocketAcceptHost / SocketAcceptPort               0.0.0.0 / -   acceptor: where to listen
SocketConnectHost / SocketConnectPort             -             initiator: where to connect
HeartBtInt                                        30            initiator: the HeartBtInt it sends
ReconnectInterval                                 30            initiator: seconds, fractions ok
LogonTimeout / LogoutTimeout                      10 / 2        seconds
ResetOnLogon / ResetOnLogout / ResetOnDisconnect  N             reset sequence numbers then
EnableNextExpectedMsgSeqNum                       N             789 in the Logon (FIX.4.4)
CheckLatency / MaxLatency                         Y / 120       SendingTime within MaxLatency s
CheckCompID / PersistMessages                     Y / Y
TimestampPrecision                                3             0, 3, 6 or 9 digits of the second
FileStorePath                                     (memory)      directory of the message stores
FileStoreSync                                     N             Y: fsync per record; N: per read
StartTime / EndTime                               (always on)   HH:MM:SS UTC, a daily window
NonStopSession                                    N             Y: no window even if StartTime set
CounterpartyFillParts                             1             fills per order, at least 1
CounterpartyFillInterval                          0             seconds between fills (0: at once)
CounterpartyMarketPrice                           100           fill price of market orders
================================================  ============  ====================================

``FileStorePath`` is relative to the settings file, like fixsecure's own paths; without it the
store lives in memory and every start is a new session. ``FileStoreSync=N`` is the default here
because it costs no safety the counterparty needs: the session commits its store (one fsync) at the
end of every call, before it hands back anything to send, so nothing the peer saw can be
forgotten even by a power failure - N only stops paying an fsync per record (Y was 5 to 10 times
slower here with one read carrying hundreds of orders). ``FixSecureHandshakeTimeout``,
``FixSecureMaxHalfOpen`` and ``FixSecureLogonRate*`` apply as in the proxy;
``FixSecureDrainTimeout`` bounds the Logout exchange on SIGTERM; ``FixSecureStatsInterval`` logs a
status line per session. The proxy's ``FixSecureConnect*``/``FixSecureAccept*`` keys are refused:
the counterparty is the endpoint and uses the engine's own socket keys. ``StartDay``, ``EndDay``,
``TimeZone`` and ``UseLocalTime=Y`` are refused too rather than ignored: the window is daily, UTC.

StartTime/EndTime follow QuickFIX: outside the window an initiator does not connect and an
acceptor closes the connection of any Logon; a store created before the current window started is
reset (and the order book emptied) before the first connection of the window; at the end of the
window the session logs out. As in QuickFIX the EndTime second is still inside the window, and
StartTime = EndTime means always in session, with a new session every day at StartTime.

Logs name the session and carry session events (logon, logout, gaps, resends, rejects, why a
connection ended, fixsecure's handshake results); never message contents, which may hold a
Password(554).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import signal
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, NamedTuple

from fixsecure.admission import Admission
from fixsecure.asyncio import FixConnection, connect, describe_error, serve
from fixsecure.counterparty.engine import (
    Action,
    Deliver,
    Disconnect,
    LoggedOn,
    LoggedOut,
    Role,
    Send,
    Session,
    SessionApplication,
    SessionConfig,
    SessionEvent,
    State,
)
from fixsecure.counterparty.fields import BEGIN_STRINGS, FIX44, MsgType, OutboundMessage
from fixsecure.counterparty.orders import Counterparty, OrderSimulator, SimulatorConfig
from fixsecure.counterparty.store import (
    FileStore,
    FsyncPolicy,
    MemoryStore,
    MessageStore,
    store_name,
)
from fixsecure.endpoint import acceptor_directory, listener_admission, session_config
from fixsecure.errors import ConfigError, ConnectionEnded, LimitExceeded, LocalProtocolError
from fixsecure.session import AcceptorDirectory
from fixsecure.session import SessionConfig as SecureConfig
from fixsecure.sessionid import SessionID
from fixsecure.settings import SessionSettings, check_listener, load_settings

__all__ = [
    "CounterpartyRunner",
    "CounterpartySession",
    "Schedule",
    "SessionDriver",
    "SessionStatus",
    "counterparty_session",
    "load_counterparty_sessions",
    "run_counterparty",
]

log = logging.getLogger("fixsecure.counterparty")

Clock = Callable[[], float]

_DAY: Final = 86_400
_MAX_WAIT: Final = 1.0  # the timer loop wakes at least this often (s)
_MIN_WAIT: Final = 0.001  # and never spins: a deadline already handled waits this long
_CANCEL_GRACE: Final = 5.0  # seconds cancelled tasks get to run their cleanup
#: A peer that reads nothing for this long is disconnected: while a write waits for the socket
#: buffer to drain, the connection's timers cannot run, so the wait itself must be bounded.
_WRITE_TIMEOUT: Final = 30.0
_TIME_OF_DAY: Final = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})")
_DECIMAL: Final = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_PROXY_KEYS: Final = (
    "FixSecureConnectHost",
    "FixSecureConnectPort",
    "FixSecureAcceptHost",
    "FixSecureAcceptPort",
)
_LEVELS: Final = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SHUTDOWN_TEXT: Final = "Counterparty shutting down"


# --- settings -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    """A daily session window in UTC, QuickFIX's StartTime/EndTime, in seconds after midnight.

    ``start < end``: each day from start through the end second. ``start > end``: overnight, from
    start until the end second of the next day. ``start == end``: always in session, a new session
    beginning every day at start.
    """

    start: int
    end: int

    def window(self, now: float) -> tuple[float, float] | None:
        """(start, end) of the window containing ``now`` (end exclusive), or None outside."""
        day = math.floor(now / _DAY) * _DAY
        second = math.floor(now - day)
        start, end = self.start, self.end
        if start == end:
            begin = day + start if second >= start else day - _DAY + start
            return (begin, begin + _DAY)
        if start < end:
            return (day + start, day + end + 1) if start <= second <= end else None
        if second >= start:
            return (day + start, day + _DAY + end + 1)
        if second <= end:
            return (day - _DAY + start, day + end + 1)
        return None

    def next_start(self, now: float) -> float:
        """The first window start after ``now``."""
        begin = math.floor(now / _DAY) * _DAY + self.start
        return begin if begin > now else begin + _DAY

    def __str__(self) -> str:
        return f"{_hms(self.start)}-{_hms(self.end)} UTC"


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass(frozen=True, slots=True)
class CounterpartySession:
    """One ``[SESSION]`` of a counterparty file, checked and mapped to the engine's configs."""

    settings: SessionSettings
    engine: SessionConfig
    simulator: SimulatorConfig
    host: str
    port: int
    reconnect_interval: float
    store_path: Path | None
    fsync: FsyncPolicy
    schedule: Schedule | None

    @property
    def session_id(self) -> SessionID:
        return self.settings.session_id

    @property
    def role(self) -> Role:
        return self.engine.role

    @property
    def handshake_timeout(self) -> float:
        return self.settings.secure.handshake_timeout

    @property
    def store_file_name(self) -> str:
        """The name of the session's files under FileStorePath (QuickFIX style, made safe)."""
        engine, qualifier = self.engine, self.session_id.qualifier
        target = f"{engine.target_comp_id}-{qualifier}" if qualifier else engine.target_comp_id
        return store_name(engine.begin_string, engine.sender_comp_id, target)

    def open_store(self, now: float) -> MessageStore:
        """The session's message store: a :class:`FileStore` under FileStorePath, else memory."""
        if self.store_path is None:
            return MemoryStore(now)
        try:
            return FileStore.open(self.store_path, self.store_file_name, now, fsync=self.fsync)
        except ConfigError as exc:  # in use by another process, not a message store
            raise self.settings.error("FileStorePath", str(exc)) from None
        except OSError as exc:
            raise self.settings.error(
                "FileStorePath", f"cannot open the message store: {exc.strerror or exc}"
            ) from None


def counterparty_session(settings: SessionSettings) -> CounterpartySession:
    """Check one session's settings and map them (see the module docstring for every key)."""
    sid = settings.session_id
    if sid.begin_string not in BEGIN_STRINGS:
        raise settings.error(
            "BeginString",
            f"the counterparty speaks {' and '.join(BEGIN_STRINGS)}, not {sid.begin_string}",
        )
    for key in _PROXY_KEYS:
        if settings.get(key) is not None:
            raise settings.error(
                key,
                "is a proxy setting; the counterparty has fixsecure built in and uses the "
                "engine's own SocketAcceptHost/Port or SocketConnectHost/Port",
            )
    if settings.connection_type == "acceptor":
        role = Role.ACCEPTOR
        host = settings.get("SocketAcceptHost") or "0.0.0.0"  # noqa: S104 - the QuickFIX default
        port = settings.get_int("SocketAcceptPort")
        if port is None:
            raise settings.error("SocketAcceptPort", "is required: where the counterparty listens")
    else:
        role = Role.INITIATOR
        host = settings.get("SocketConnectHost") or ""
        if not host:
            raise settings.error(
                "SocketConnectHost", "is required: where the counterparty connects"
            )
        port = settings.get_int("SocketConnectPort")
        if port is None:
            raise settings.error(
                "SocketConnectPort", "is required: where the counterparty connects"
            )
    precision = settings.get_int("TimestampPrecision", 3)
    if precision not in (0, 3, 6, 9):
        raise settings.error(
            "TimestampPrecision", f"must be 0, 3, 6 or 9 (digits of the second), not {precision}"
        )
    next_expected = settings.get_bool("EnableNextExpectedMsgSeqNum", False)
    if next_expected and sid.begin_string != FIX44:
        raise settings.error(
            "EnableNextExpectedMsgSeqNum", "NextExpectedMsgSeqNum(789) exists in FIX.4.4 only"
        )
    try:
        engine = SessionConfig(
            begin_string=sid.begin_string,
            sender_comp_id=sid.sender_comp_id,
            target_comp_id=sid.target_comp_id,
            role=role,
            heart_bt_int=settings.get_int("HeartBtInt", 30, minimum=0),
            sender_sub_id=sid.sender_sub_id,
            target_sub_id=sid.target_sub_id,
            sender_location_id=sid.sender_location_id,
            target_location_id=sid.target_location_id,
            reset_on_logon=settings.get_bool("ResetOnLogon", False),
            reset_on_logout=settings.get_bool("ResetOnLogout", False),
            reset_on_disconnect=settings.get_bool("ResetOnDisconnect", False),
            send_next_expected_msg_seq_num=next_expected,
            logon_timeout=settings.get_float("LogonTimeout", 10.0, above=0.0),
            logout_timeout=settings.get_float("LogoutTimeout", 2.0, above=0.0),
            check_latency=settings.get_bool("CheckLatency", True),
            max_latency=settings.get_float("MaxLatency", 120.0, above=0.0),
            check_comp_id=settings.get_bool("CheckCompID", True),
            persist_messages=settings.get_bool("PersistMessages", True),
            timestamp_precision=precision,
        )
        simulator = SimulatorConfig(
            begin_string=sid.begin_string,
            fill_parts=settings.get_int("CounterpartyFillParts", 1, minimum=1),
            fill_interval=settings.get_float("CounterpartyFillInterval", 0.0, minimum=0.0),
            market_price=_market_price(settings),
        )
    except ValueError as exc:  # anything the engine refuses that the checks above let through
        raise ConfigError(str(exc), path=settings.path, section=settings.section) from None
    return CounterpartySession(
        settings=settings,
        engine=engine,
        simulator=simulator,
        host=host,
        port=port,
        reconnect_interval=settings.get_float("ReconnectInterval", 30.0, above=0.0),
        store_path=_store_path(settings),
        fsync="always" if settings.get_bool("FileStoreSync", False) else "commit",
        schedule=_schedule(settings),
    )


def load_counterparty_sessions(path: Path | str) -> tuple[CounterpartySession, ...]:
    """Every session of a counterparty settings file; the first problem raises ConfigError."""
    settings = load_settings(path)
    sessions = tuple(counterparty_session(s) for s in settings.sessions)
    _check_shared_listeners(sessions)
    stores: dict[tuple[Path, str], CounterpartySession] = {}
    for session in sessions:
        if session.store_path is None:
            continue
        earlier = stores.setdefault((session.store_path, session.store_file_name), session)
        if earlier is not session:
            raise session.settings.error(
                "FileStorePath",
                f"{earlier.settings.section} keeps the same session's store there; give one of "
                "them another FileStorePath or a SessionQualifier",
            )
    return sessions


#: Settings of one listener, not of one session: sessions sharing an address must agree on them.
def _check_shared_listeners(sessions: Iterable[CounterpartySession]) -> None:
    for (host, port), group in _acceptor_groups(sessions).items():
        check_listener([s.settings for s in group], f"{host}:{port}")


def _acceptor_groups(
    sessions: Iterable[CounterpartySession],
) -> dict[tuple[str, int], list[CounterpartySession]]:
    """Acceptor sessions by listening address (one listener each), in file order."""
    groups: dict[tuple[str, int], list[CounterpartySession]] = {}
    for session in sessions:
        if session.role is Role.ACCEPTOR:
            groups.setdefault((session.host, session.port), []).append(session)
    return groups


def _market_price(settings: SessionSettings) -> Decimal:
    key = "CounterpartyMarketPrice"
    text = settings.get(key)
    if text is None:
        return Decimal(100)
    price = Decimal(text) if _DECIMAL.fullmatch(text) else None  # the pattern: no InvalidOperation
    if price is None or price <= 0:
        raise settings.error(key, f"must be a positive decimal such as 101.25, not {text!r}")
    return price


def _store_path(settings: SessionSettings) -> Path | None:
    text = settings.get("FileStorePath")
    if text is None:
        return None
    if not text:
        raise settings.error(
            "FileStorePath", "is empty; remove the line to keep the store in memory"
        )
    path = Path(text)
    return path if path.is_absolute() else settings.path.absolute().parent / path


def _schedule(settings: SessionSettings) -> Schedule | None:
    for key in ("StartDay", "EndDay", "TimeZone"):
        if settings.get(key) is not None:
            raise settings.error(
                key, "is not supported by the counterparty: its StartTime/EndTime are daily, in UTC"
            )
    if settings.get_bool("UseLocalTime", False):
        raise settings.error(
            "UseLocalTime", "must be N for the counterparty: StartTime/EndTime are in UTC"
        )
    if settings.get_bool("NonStopSession", False):
        return None
    start, end = settings.get("StartTime"), settings.get("EndTime")
    if start is None and end is None:
        return None
    if start is None or end is None:
        missing, present = ("StartTime", "EndTime") if start is None else ("EndTime", "StartTime")
        raise settings.error(missing, f"is not set but {present} is; a window needs both")
    return Schedule(
        _time_of_day(settings, "StartTime", start), _time_of_day(settings, "EndTime", end)
    )


def _time_of_day(settings: SessionSettings, key: str, text: str) -> int:
    match = _TIME_OF_DAY.fullmatch(text)
    if match is None or int(match[1]) > 23 or int(match[2]) > 59 or int(match[3]) > 59:
        raise settings.error(key, f"must be a UTC time of day HH:MM:SS, not {text!r}")
    return int(match[1]) * 3600 + int(match[2]) * 60 + int(match[3])


# --- one session over successive connections ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionStatus:
    """A snapshot of one session: state, how it last ended, and counters since start.

    ``orders_received`` counts NewOrderSingles delivered to the simulator, ``fills_sent`` the
    ExecutionReports with LastQty > 0 sent for the first time (resends excluded),
    ``reports_received`` the ExecutionReports delivered to us; ``messages_*`` count every FIX
    message, admin included. ``encrypted`` is of the current or last connection.
    """

    session_id: SessionID
    role: str
    state: str
    logged_on: bool
    connected: bool
    encrypted: bool
    connections: int
    logons: int
    orders_received: int
    fills_sent: int
    reports_received: int
    messages_received: int
    messages_sent: int
    next_sender_seq: int
    next_target_seq: int
    last_disconnect: str

    def line(self) -> str:
        """One log line of the counters (no message contents)."""
        return (
            f"{self.session_id}: {self.state}{' encrypted' if self.encrypted else ''} "
            f"connections={self.connections} logons={self.logons} "
            f"orders_received={self.orders_received} fills_sent={self.fills_sent} "
            f"reports_received={self.reports_received} messages_in={self.messages_received} "
            f"messages_out={self.messages_sent} next_sender_seq={self.next_sender_seq} "
            f"next_target_seq={self.next_target_seq}"
        )


Observer = Callable[[SessionID, str, bytes], None]
"""Sees every plaintext FIX message of a session: ``(session_id, "received" | "sent", bytes)``.

For the demo and the tests, which show or compare what the engine wrote and what it received."""


class SessionDriver:
    """Runs one engine session over successive :class:`FixConnection` objects.

    Both roles share the connection loop: every frame of one read goes to
    ``app.receive_many`` (one store commit per read), the timers run at the engine's next deadline
    (checked at least every second), and the actions are carried out in order - one
    ``send_batch`` per call, so the encrypted writes keep the engine's sequence order even when
    another task (a local send, a logout) calls the engine between reads.
    """

    def __init__(
        self,
        config: CounterpartySession,
        app: SessionApplication,
        *,
        secure: SecureConfig | None = None,
        clock: Clock = time.time,
        reset_first_logon: bool = False,
        observer: Observer | None = None,
    ) -> None:
        self.config = config
        self.observer = observer
        self.app = app
        self.session = app.session
        self.secure = secure
        self.name = str(config.session_id)
        self._clock = clock
        self._reset_next_logon = reset_first_logon
        self._conn: FixConnection | None = None
        self._changed: asyncio.Event | None = None
        self._wake = asyncio.Event()
        self._window_end: float | None = None
        self._window_logout_sent = False
        self._outside_logged = False
        self.encrypted = False
        self.connections = 0
        self.logons = 0
        self.orders_received = 0
        self.fills_sent = 0
        self.reports_received = 0
        self.messages_received = 0
        self.messages_sent = 0
        self.last_disconnect = ""

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def status(self) -> SessionStatus:
        session = self.session
        return SessionStatus(
            session_id=self.config.session_id,
            role=self.config.role.value,
            state=session.state.value,
            logged_on=session.is_logged_on,
            connected=self._conn is not None,
            encrypted=self.encrypted,
            connections=self.connections,
            logons=self.logons,
            orders_received=self.orders_received,
            fills_sent=self.fills_sent,
            reports_received=self.reports_received,
            messages_received=self.messages_received,
            messages_sent=self.messages_sent,
            next_sender_seq=session.next_sender_seq,
            next_target_seq=session.next_target_seq,
            last_disconnect=self.last_disconnect,
        )

    # --- the session window ---------------------------------------------------------------

    def prepare(self, now: float) -> bool:
        """Before a connection: False outside the window; resets a store older than the window."""
        schedule = self.config.schedule
        if schedule is None:
            self._window_end = None
            return True
        window = schedule.window(now)
        if window is None:
            return False
        start, end = window
        self._window_end = end
        self._window_logout_sent = False
        store = self.session.store
        if store.creation_time < start and self.session.state is State.DISCONNECTED:
            log.info("%s: new session window (%s): resetting the session", self.name, schedule)
            self._log_only(self.app.reset(now))
        return True

    # --- local requests -------------------------------------------------------------------

    async def execute(self, call: Callable[[float], list[Action]]) -> None:
        """Call the engine now (e.g. ``session.send``) and carry out what it returns."""
        await self._carry_out(call(self._clock()))
        self._wake.set()  # the engine's next deadline may have changed

    async def send(self, message: OutboundMessage) -> None:
        """An application message; while not logged on it is stored for the peer's resend."""
        await self.execute(lambda now: self.session.send(message, now))

    async def logout(self, text: str, timeout: float) -> None:
        """Start the Logout exchange and wait (at most ``timeout`` s) for the connection to end."""
        if self._conn is None:
            return
        await self.execute(lambda now: self.app.logout(now, text))
        try:
            await self.wait_for(lambda: self._conn is None, timeout)
        except TimeoutError:
            log.warning("%s: no end of the Logout exchange within %.1f s", self.name, timeout)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until ``predicate()`` holds (checked whenever the session changes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():  # each pass waits for a change; the deadline bounds them all
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: condition not met within {timeout:g} s")
            if self._changed is None:
                self._changed = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # --- connections ----------------------------------------------------------------------

    async def run_initiator(self, stopping: asyncio.Event) -> None:
        """Connect, run the connection, wait ReconnectInterval, again - until ``stopping``.

        Each pass is bounded (connect and handshake timeouts, then the engine's own timers)
        and waits at least ReconnectInterval, so attempts are rate-limited; ``stopping`` ends
        the loop between passes and cancelling the task ends it anywhere.
        """
        schedule = self.config.schedule
        while not stopping.is_set():
            now = self._clock()
            try:
                in_window = self.prepare(now)
                if in_window:
                    await self._connect_once()
            except Exception:  # a store error or a bug must not end the loop silently
                log.exception("%s: connection attempt failed", self.name)
                in_window = True
            if stopping.is_set():
                break
            if in_window:
                self._outside_logged = False
                await _wait(stopping, self.config.reconnect_interval)
                continue
            assert schedule is not None
            start = schedule.next_start(now)
            if not self._outside_logged:
                log.info(
                    "%s: outside the session window (%s); next one starts in %.0f s",
                    self.name,
                    schedule,
                    start - now,
                )
                self._outside_logged = True
            await _wait(stopping, min(max(start - now, _MIN_WAIT), 60.0))

    async def _connect_once(self) -> None:
        config, secure = self.config, self.secure
        assert secure is not None, "an initiator needs its fixsecure configuration"
        try:
            conn = await connect(
                secure,
                config.host,
                config.port,
                handshake_timeout=config.handshake_timeout,
                connect_timeout=config.handshake_timeout,
            )
        except (OSError, TimeoutError) as exc:
            self.last_disconnect = f"cannot connect: {describe_error(exc)}"
            log.warning(
                "%s: cannot connect to %s:%d: %s",
                self.name,
                config.host,
                config.port,
                describe_error(exc),
            )
            self._notify()
            return
        log.info(
            "%s: connected to %s (%s)",
            self.name,
            conn.peer,
            secure.suite if secure.secure else "PLAINTEXT",
        )
        await self.run_connection(conn)

    def claim(self, conn: FixConnection) -> bool:
        """Reserve the session for ``conn`` before its task starts; False if it has one."""
        if self._conn is not None:
            return False
        self._conn = conn
        return True

    def release(self, conn: FixConnection) -> None:
        """Undo :meth:`claim` for a connection that is not going to run."""
        if self._conn is conn:
            self._conn = None

    async def run_connection(self, conn: FixConnection) -> None:
        """Run the engine over one connection until it ends (either role)."""
        if not self.claim(conn) and self._conn is not conn:
            raise LocalProtocolError(f"{self.name} is already connected")
        self.connections += 1
        self.encrypted = conn.encrypted
        read: asyncio.Task[list[bytes]] | None = None
        wake: asyncio.Task[bool] | None = None
        try:
            now = self._clock()
            actions = self.app.connection_made(now)
            if self.config.role is Role.INITIATOR:
                actions += self.app.logon(now, reset=self._reset_next_logon)
                self._reset_next_logon = False
            closed = await self._carry_out(actions)
            while not closed:  # ends with the connection; every pass waits <= _MAX_WAIT
                if read is None:
                    read = asyncio.create_task(conn.receive_batch())
                if wake is None:
                    wake = asyncio.create_task(self._wake.wait())
                waiting: tuple[asyncio.Task[Any], ...] = (read, wake)
                await asyncio.wait(
                    waiting, timeout=self._timeout(now), return_when=asyncio.FIRST_COMPLETED
                )
                now = self._clock()
                actions = []
                if wake.done():
                    self._wake.clear()
                    wake = None
                if read.done():
                    batch = read.result()  # ConnectionEnded at the end
                    read = None
                    self.messages_received += len(batch)
                    if self.observer is not None:
                        for message in batch:
                            self.observer(self.config.session_id, "received", message)
                    actions = self.app.receive_many(batch, now)
                deadline = self.app.next_deadline()
                if deadline is not None and deadline <= now:
                    actions += self.app.tick(now)
                actions += self._window_actions(now)
                if actions:
                    closed = await self._carry_out(actions)
        except ConnectionEnded:  # the normal way out; _connection_ended logs the reason
            log.debug("%s: connection ended while reading", self.name)
        except OSError as exc:
            log.error("%s: message store failed, closing the connection: %s", self.name, exc)
        finally:
            await cancel_tasks(read, wake)
            await _close(conn)
            self._conn = None
            self._connection_ended(conn)

    def _connection_ended(self, conn: FixConnection) -> None:
        ended = conn.ended
        reason = ended.reason if ended is not None else "closed"
        clean = ended is not None and ended.clean
        self.last_disconnect = reason
        log.log(
            logging.INFO if clean else logging.WARNING,
            "%s: connection with %s ended (%s): %s",
            self.name,
            conn.peer,
            "clean" if clean else "abnormal",
            _printable(reason),
        )
        try:
            self._log_only(self.app.connection_lost(self._clock()))
        except OSError as exc:  # ResetOnDisconnect writes the store
            log.error("%s: message store failed: %s", self.name, exc)
        self._notify()

    def _timeout(self, now: float) -> float:
        deadline = self.app.next_deadline()
        end = self._window_end
        if end is not None and not self._window_logout_sent:
            deadline = end if deadline is None else min(deadline, end)
        if deadline is None:
            return _MAX_WAIT
        return min(max(deadline - now, _MIN_WAIT), _MAX_WAIT)

    def _window_actions(self, now: float) -> list[Action]:
        end = self._window_end
        if end is None or self._window_logout_sent or now < end:
            return []
        self._window_logout_sent = True
        log.info("%s: end of the session window: logging out", self.name)
        return self.app.logout(now, "End of session window")

    # --- actions --------------------------------------------------------------------------

    async def _carry_out(self, actions: list[Action]) -> bool:
        """Carry out the engine's actions in order; True once the connection is being closed."""
        data: list[bytes] = []
        closing: str | None = None
        for action in actions:
            if isinstance(action, Send):
                data.append(action.data)
                if action.msg_type == MsgType.EXECUTION_REPORT and not action.poss_dup:
                    self.fills_sent += _is_fill(action.data)
            elif isinstance(action, Disconnect):
                closing = action.reason
                break  # always the last action
            else:
                self._note(action)
        conn = self._conn
        if conn is not None and data:
            try:
                async with asyncio.timeout(_WRITE_TIMEOUT):
                    await conn.send_batch(data)
                self.messages_sent += len(data)
                if self.observer is not None:
                    for message in data:
                        self.observer(self.config.session_id, "sent", message)
            except ConnectionEnded as exc:
                closing = closing or f"connection lost while sending: {exc.reason}"
            except TimeoutError:
                closing = closing or f"the peer read nothing for {_WRITE_TIMEOUT:g} s"
            except (LocalProtocolError, LimitExceeded) as exc:
                log.error("%s: fixsecure refused to send: %s", self.name, exc)
                closing = closing or str(exc)
        if closing is not None and conn is not None:
            log.info("%s: disconnecting: %s", self.name, _printable(closing))
            await _close(conn)
        self._notify()
        return closing is not None

    def _log_only(self, actions: list[Action]) -> None:
        """Actions of a call made while disconnected: nothing to send, only to record."""
        for action in actions:
            if not isinstance(action, Send | Disconnect):
                self._note(action)

    def _note(self, action: Action) -> None:
        name = self.name
        if isinstance(action, Deliver):
            msg_type = action.message.msg_type
            if msg_type == MsgType.NEW_ORDER_SINGLE:
                self.orders_received += 1
            elif msg_type == MsgType.EXECUTION_REPORT:
                self.reports_received += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s: application message 35=%s MsgSeqNum %s",
                    name,
                    _printable(msg_type.decode("ascii", "replace")),
                    _printable(action.message.get_str(34)),
                )
        elif isinstance(action, SessionEvent):
            log.log(
                _LEVELS.get(action.level, logging.INFO), "%s: %s", name, _printable(action.text)
            )
        elif isinstance(action, LoggedOn):
            self.logons += 1
            conn = self._conn
            self.encrypted = conn is not None and conn.encrypted
            log.info(
                "%s: logged on (%s, HeartBtInt %d%s)",
                name,
                "encrypted" if self.encrypted else "PLAINTEXT",
                action.heart_bt_int,
                ", sequence numbers reset" if action.reset else "",
            )
        elif isinstance(action, LoggedOut):
            log.log(
                logging.INFO if action.clean else logging.WARNING,
                "%s: logged out (%s): %s",
                name,
                "clean" if action.clean else "abnormal",
                _printable(action.reason),
            )


def _is_fill(data: bytes) -> bool:
    """An ExecutionReport that trades: LastQty(32) above zero (New, status and cancel have 0)."""
    start = data.find(b"\x0132=")
    if start < 0:
        return False
    start += 4
    value = data[start : data.find(b"\x01", start)]
    return bool(value.strip(b"0.")) and not value.startswith(b"-")


def _printable(text: str) -> str:
    """Peer-supplied text (a Logout's Text) with control characters escaped: one line per event."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _protection(config: CounterpartySession) -> str:
    return "encrypted" if config.settings.secure.required else "plaintext allowed"


# asyncio.timeout rather than asyncio.wait_for throughout: in Python 3.11 wait_for can swallow a
# cancellation that arrives as its inner call completes, and stop() relies on cancellation.


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``event`` is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


async def _close(conn: FixConnection) -> None:
    """Close within a bound: closing waits for the socket buffer, which a peer can keep full."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_CANCEL_GRACE):
            await conn.close()


async def cancel_tasks(*futures: asyncio.Future[Any] | None) -> None:
    """Cancel ``futures`` (``None`` skipped) and give them a grace period to clean up; a
    failure they ended with is retrieved, since its task has reported it already."""
    pending = [f for f in futures if f is not None]
    for future in pending:
        future.cancel()
    if pending:
        await asyncio.wait(pending, timeout=_CANCEL_GRACE)
        for future in pending:
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a ConnectionEnded here is already reported


# --- the runner -----------------------------------------------------------------------------------


class _Listener(NamedTuple):
    sessions: tuple[CounterpartySession, ...]
    directory: AcceptorDirectory
    admission: Admission


class CounterpartyRunner:
    """Every session of one counterparty settings file, on the network.

    ``await start()`` opens the stores (restoring the order book from each), binds the listeners
    and starts the initiators; ``await stop()`` logs every session out and closes everything;
    ``stop(logout=False)`` drops the connections without a Logout, like a crash. Also an async
    context manager.
    """

    def __init__(
        self, path: Path | str, *, clock: Clock = time.time, observer: Observer | None = None
    ) -> None:
        self.path = Path(path)
        self.sessions = load_counterparty_sessions(self.path)
        self._clock = clock
        self._observer = observer
        self._drivers: dict[SessionID, SessionDriver] = {}
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._started = False
        self._stopped = False

    async def __aenter__(self) -> CounterpartyRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- inspection -----------------------------------------------------------------------

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        """The (host, port) of every listening socket."""
        return tuple(
            sock.getsockname()[:2] for server in self._servers for sock in server.sockets or ()
        )

    @property
    def drain_timeout(self) -> float:
        """How long :meth:`stop` waits for the Logout exchanges (FixSecureDrainTimeout)."""
        return max((s.settings.secure.drain_timeout for s in self.sessions), default=5.0)

    def driver(self, session_id: SessionID) -> SessionDriver:
        try:
            return self._drivers[session_id]
        except KeyError:
            raise LocalProtocolError(f"no running session {session_id}") from None

    def status(self, session_id: SessionID) -> SessionStatus:
        return self.driver(session_id).status()

    def statuses(self) -> tuple[SessionStatus, ...]:
        return tuple(driver.status() for driver in self._drivers.values())

    def counterparty(self, session_id: SessionID) -> Counterparty:
        """The session's sans-IO counterparty (its ``simulator.orders`` is the order book)."""
        app = self.driver(session_id).app
        assert isinstance(app, Counterparty)
        return app

    async def send(self, session_id: SessionID, message: OutboundMessage) -> None:
        """Send an application message of our own on a session (stored while not logged on)."""
        await self.driver(session_id).send(message)

    async def wait_for(
        self,
        session_id: SessionID,
        predicate: Callable[[SessionStatus], bool],
        timeout: float = 10.0,
    ) -> SessionStatus:
        """Wait until ``predicate(status)`` holds; TimeoutError after ``timeout`` seconds."""
        driver = self.driver(session_id)
        await driver.wait_for(lambda: predicate(driver.status()), timeout)
        return driver.status()

    # --- start and stop -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the key files, open the stores, bind the listeners, start the initiators.

        Key files come first: a file that cannot start leaves no store behind.
        """
        if self._started:
            raise LocalProtocolError("the runner was started already")
        self._started = True
        try:
            secure = {
                c.session_id: session_config(c.settings)
                for c in self.sessions
                if c.role is Role.INITIATOR
            }
            listeners = self._listeners()
            now = self._clock()
            for config in self.sessions:
                sid = config.session_id
                self._drivers[sid] = self._open(config, now, secure.get(sid))
            await self._listen(listeners)
            for driver in self._drivers.values():
                if driver.config.role is Role.INITIATOR:
                    self._spawn(driver.run_initiator(self._stopping))
        except BaseException:
            await self.stop(logout=False)
            raise
        log.info("counterparty running %d session(s) from %s", len(self._drivers), self.path)

    def _open(
        self, config: CounterpartySession, now: float, secure: SecureConfig | None
    ) -> SessionDriver:
        store = config.open_store(now)
        try:
            session = Session(config.engine, store)
            simulator = OrderSimulator(config.simulator, start_time=now)
            restored = simulator.restore(
                (data for _, data in store.get(1, store.next_sender_seq - 1)), now
            )
        except BaseException:
            store.close()
            raise
        driver = SessionDriver(
            config,
            Counterparty(session, simulator),
            secure=secure,
            clock=self._clock,
            observer=self._observer,
        )
        log.info(
            "%s: %s, %s store: next sender seq %d, next target seq %d, %d order(s) restored",
            driver.name,
            config.role.value,
            "memory" if config.store_path is None else f"file ({config.store_path})",
            store.next_sender_seq,
            store.next_target_seq,
            restored,
        )
        driver.prepare(now)
        return driver

    def _listeners(self) -> list[_Listener]:
        """One listener per acceptor address, its directory loading the sessions' key files."""
        listeners = []
        for (host, port), group in _acceptor_groups(self.sessions).items():
            admission = listener_admission([c.settings for c in group], f"{host}:{port}")
            directory = acceptor_directory(
                (c.settings for c in group), admit=admission.admit_session
            )
            listeners.append(_Listener(tuple(group), directory, admission))
        return listeners

    async def _listen(self, listeners: Iterable[_Listener]) -> None:
        for group, directory, admission in listeners:
            host, port = group[0].host, group[0].port
            first = group[0].settings.secure
            try:
                server = await serve(
                    directory,
                    self._on_logon,
                    host,
                    port,
                    admission=admission,
                    handshake_timeout=first.handshake_timeout,
                )
            except OSError as exc:
                raise group[0].settings.error(
                    "SocketAcceptPort", f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                ) from None
            self._servers.append(server)
            log.info(
                "listening on %s:%d for %s",
                host,
                port,
                ", ".join(f"{c.session_id} ({_protection(c)})" for c in group),
            )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session task failed", exc_info=task.exception())

    async def _on_logon(self, conn: FixConnection) -> None:
        """serve()'s handler: a Logon passed fixsecure's checks; hand it to its session."""
        sid = conn.session_id
        driver = self._drivers.get(sid) if sid is not None else None
        if driver is None or self._stopping.is_set():
            return
        if not driver.claim(conn):
            log.warning(
                "%s: second connection from %s refused: the session is already connected",
                driver.name,
                conn.peer,
            )
            return
        if not driver.prepare(self._clock()):
            driver.release(conn)
            log.warning(
                "%s: Logon from %s refused: outside the session window (%s)",
                driver.name,
                conn.peer,
                driver.config.schedule,
            )
            return
        log.info("%s: connection from %s", driver.name, conn.peer)
        # A task of our own, so that stop() can cancel it: the server's task must end normally
        # (asyncio 3.11 logs an "unhandled exception" for a cancelled client_connected_cb).
        await asyncio.wait((self._spawn(driver.run_connection(conn)),))

    async def stop(self, *, logout: bool = True, timeout: float | None = None) -> None:
        """Log every session out (at most ``timeout`` s, default FixSecureDrainTimeout) and close.

        ``logout=False`` closes the connections without a Logout, as a crash would (the stores
        are closed too, so a new runner can open them).
        """
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        for server in self._servers:
            server.close()
        if logout:
            connected = [d for d in self._drivers.values() if d.connected]
            if connected:
                wait = self.drain_timeout if timeout is None else timeout
                log.info("logging out %d session(s), waiting up to %.1f s", len(connected), wait)
                await asyncio.gather(*(d.logout(_SHUTDOWN_TEXT, wait) for d in connected))
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=_CANCEL_GRACE)
            if pending:
                log.error("%d task(s) did not end within %.0f s", len(pending), _CANCEL_GRACE)
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CANCEL_GRACE):
                    await server.wait_closed()
        for driver in self._drivers.values():
            try:
                driver.session.store.close()
            except OSError as exc:
                log.error("%s: closing the message store failed: %s", driver.name, exc)
        log.info("counterparty stopped")


async def run_counterparty(path: Path | str, *, stats_interval: float | None = None) -> int:
    """``fixsecure counterparty``: run until SIGTERM/SIGINT, then log out; returns the exit code."""
    runner = CounterpartyRunner(path)
    await runner.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    interval = stats_interval
    if interval is None:
        interval = max((s.settings.secure.stats_interval for s in runner.sessions), default=0.0)
    log.info("counterparty ready (%s)", ", ".join(f"{h}:{p}" for h, p in runner.addresses) or path)
    try:
        while not stop.is_set():  # one pass per stats interval; the signal ends it
            try:
                async with asyncio.timeout(interval if interval > 0 else None):
                    await stop.wait()
            except TimeoutError:
                for status in runner.statuses():
                    log.info("stats %s", status.line())
        log.info("signal received: logging out")
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        await runner.stop()
    return 0
