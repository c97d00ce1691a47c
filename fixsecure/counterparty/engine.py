"""One FIX 4.2/4.4 session, sans-IO: bytes and clock readings in, actions out.

The :class:`Session` owns the FIX session layer (Logon, heartbeats, sequence numbers, gap recovery,
session-level Rejects, Logout) and nothing else: no sockets, no threads, no clock. The runner feeds
it complete inbound messages (framing, BodyLength and CheckSum already checked by the transport),
the current time, and local requests, and carries out the actions it returns, in order:

- :class:`Send` write these bytes to the peer (already persisted in the store);
- :class:`Deliver` hand this application message to the application (in sequence, once);
- :class:`LoggedOn` / :class:`LoggedOut` the session came up / went down;
- :class:`Disconnect` close the transport now (after writing the Sends before it);
- :class:`SessionEvent` a line for the session log.

Time is POSIX seconds (``time.time()``) passed to every call; :meth:`Session.tick` drives the
timers and :meth:`Session.next_deadline` says when it next needs to run. Everything a call sends
is in the store before the call returns; :meth:`Session.receive_many` handles one socket read
under a single store commit.

Behaviour follows QuickFIX (the engine users point at the counterparty, and the model of its
tests). Deliberate departures, each closer to the FIX specification: a ResendRequest ahead of
sequence is answered and also queued (so its number is accounted for); one too low without
PossDupFlag is fatal like any other message; OrigSendingTime is checked on every PossDup message,
not only duplicates; a Logon with ResetSeqNumFlag=Y must carry MsgSeqNum 1; NextExpectedMsgSeqNum
(789) is supported as QuickFIX/J does, the ResendRequest being suppressed only when the peer's
Logon carried 789 too. As in QuickFIX, a bad first message (not a Logon, wrong CompIDs, bad
SendingTime) closes the connection without a reply: no Reject can be sent before a Logon.

States (per role, one table, :data:`TRANSITIONS`)::

    initiator  DISCONNECTED -connect-> CONNECTED -logon()-> LOGON_SENT -Logon-> ACTIVE
    acceptor   DISCONNECTED -connect-> CONNECTED -Logon (replied)-> ACTIVE
    both       ACTIVE -logout()/fatal-but-polite-> LOGOUT_SENT -Logout-> DISCONNECTED
               ACTIVE -Logout (replied)-> DISCONNECTED
               any connected state -close (timeout, fatal error, transport lost)-> DISCONNECTED

Within ACTIVE two substates are plain fields: a pending ResendRequest range (messages above it are
queued until the gap is filled) and the number of unanswered TestRequests.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from fixsecure.counterparty.fields import (
    ADMIN_MSG_TYPES,
    BEGIN_STRINGS,
    FIX44,
    HEADER_TAGS,
    SOH,
    TRAILER_TAGS,
    FixMessage,
    GarbledMessage,
    MsgType,
    OutboundMessage,
    Problem,
    RejectReason,
    Tag,
    check_message,
    encode,
    format_utc_timestamp,
    parse,
    parse_utc_timestamp,
    split_outbound,
)
from fixsecure.counterparty.store import MessageStore
from fixsecure.errors import LocalProtocolError

__all__ = [
    "TRANSITIONS",
    "Action",
    "Deliver",
    "Disconnect",
    "Input",
    "LoggedOn",
    "LoggedOut",
    "Role",
    "Send",
    "Session",
    "SessionApplication",
    "SessionConfig",
    "SessionEvent",
    "State",
]


class Role(enum.Enum):
    INITIATOR = "initiator"
    ACCEPTOR = "acceptor"


class State(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTED = "connected"  # transport up, no Logon exchanged yet
    LOGON_SENT = "logon sent"  # initiator: waiting for the Logon reply
    ACTIVE = "active"
    LOGOUT_SENT = "logout sent"  # waiting for the Logout reply


class Input(enum.Enum):
    CONNECT = "connect"
    SEND_LOGON = "send Logon"
    LOGON_ACCEPTED = "Logon accepted"
    SEND_LOGOUT = "send Logout"
    LOGOUT_RECEIVED = "Logout received"
    CLOSE = "close"


_D, _C, _LS, _A, _LO = (
    State.DISCONNECTED,
    State.CONNECTED,
    State.LOGON_SENT,
    State.ACTIVE,
    State.LOGOUT_SENT,
)
_COMMON: Final[Mapping[tuple[State, Input], State]] = {
    (_D, Input.CONNECT): _C,
    (_A, Input.LOGON_ACCEPTED): _A,  # in-session reset: the peer's Logon with ResetSeqNumFlag=Y
    (_A, Input.SEND_LOGOUT): _LO,
    (_A, Input.LOGOUT_RECEIVED): _D,  # after sending our Logout in reply
    (_LO, Input.LOGOUT_RECEIVED): _D,
    (_C, Input.CLOSE): _D,
    (_LS, Input.CLOSE): _D,
    (_A, Input.CLOSE): _D,
    (_LO, Input.CLOSE): _D,
}
#: Every legal move of the session, per role: (state, input) -> next state.
TRANSITIONS: Final[Mapping[Role, Mapping[tuple[State, Input], State]]] = {
    Role.INITIATOR: {
        **_COMMON,
        (_C, Input.SEND_LOGON): _LS,
        (_LS, Input.LOGON_ACCEPTED): _A,
        (_LS, Input.LOGOUT_RECEIVED): _D,  # the acceptor refused our Logon
    },
    Role.ACCEPTOR: {
        **_COMMON,
        (_C, Input.LOGON_ACCEPTED): _A,
    },
}


# --- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` to the peer. It is already in the store (resends and GapFills excepted)."""

    data: bytes
    msg_type: bytes
    seq_num: int
    poss_dup: bool = False


@dataclass(frozen=True, slots=True)
class Deliver:
    """An application message, in sequence, for the application (the order simulator)."""

    message: FixMessage


@dataclass(frozen=True, slots=True)
class LoggedOn:
    """The session is up. ``reset``: both sequence numbers restarted at 1."""

    heart_bt_int: int
    reset: bool


@dataclass(frozen=True, slots=True)
class LoggedOut:
    """The session is down. ``clean``: the Logout handshake completed."""

    reason: str
    clean: bool


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the transport now, after writing any Send that precedes this action."""

    reason: str


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """A line for the session log (``level`` is "info", "warning" or "error")."""

    text: str
    level: str = "info"


Action = Send | Deliver | LoggedOn | LoggedOut | Disconnect | SessionEvent


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Everything a session needs; each field names the QuickFIX setting it corresponds to.

    ``heart_bt_int`` (HeartBtInt) is what an initiator sends; an acceptor uses the peer's value.
    ``reset_on_*`` (ResetOnLogon/ResetOnLogout/ResetOnDisconnect) follow QuickFIX: an initiator
    with any of them set sends ResetSeqNumFlag=Y when both sequence numbers are 1.
    ``send_next_expected_msg_seq_num`` (EnableNextExpectedMsgSeqNum in QuickFIX/J) adds
    NextExpectedMsgSeqNum(789) to our Logons (FIX 4.4 only); a received 789 is always honoured.
    ``test_request_delay``: a TestRequest after this many HeartBtInts of silence, disconnect
    after twice as many (QuickFIX: 1.2 and 2.4).
    """

    begin_string: str
    sender_comp_id: str
    target_comp_id: str
    role: Role
    heart_bt_int: int = 30
    sender_sub_id: str = ""
    target_sub_id: str = ""
    sender_location_id: str = ""
    target_location_id: str = ""
    reset_on_logon: bool = False
    reset_on_logout: bool = False
    reset_on_disconnect: bool = False
    send_next_expected_msg_seq_num: bool = False
    logon_timeout: float = 10.0
    logout_timeout: float = 2.0
    check_latency: bool = True
    max_latency: float = 120.0
    check_comp_id: bool = True
    persist_messages: bool = True
    timestamp_precision: int = 3
    test_request_delay: float = 1.2
    max_queued_messages: int = 10_000

    def __post_init__(self) -> None:
        if self.begin_string not in BEGIN_STRINGS:
            raise ValueError(f"BeginString must be one of {BEGIN_STRINGS}: {self.begin_string!r}")
        if not self.sender_comp_id or not self.target_comp_id:
            raise ValueError("SenderCompID and TargetCompID are required")
        if self.heart_bt_int < 0:
            raise ValueError("HeartBtInt must be >= 0")
        if self.send_next_expected_msg_seq_num and self.begin_string != FIX44:
            raise ValueError("NextExpectedMsgSeqNum(789) exists in FIX 4.4 only")
        if self.timestamp_precision not in (0, 3, 6, 9):
            raise ValueError("timestamp precision must be 0, 3, 6 or 9")
        if min(self.logon_timeout, self.logout_timeout, self.max_latency) <= 0:
            raise ValueError("timeouts and MaxLatency must be positive")
        if self.test_request_delay <= 0 or self.max_queued_messages <= 0:
            raise ValueError("test_request_delay and max_queued_messages must be positive")

    @property
    def resets_sequence_numbers(self) -> bool:
        """Whether any ``reset_on_*`` is set: sequence numbers start over at some point."""
        return self.reset_on_logon or self.reset_on_logout or self.reset_on_disconnect


# --- the session -------------------------------------------------------------------------------

_LOGGED_ON: Final = frozenset((State.ACTIVE, State.LOGOUT_SENT))


class Session:
    """One FIX session (one BeginString/SenderCompID/TargetCompID) over successive connections.

    Every public method takes ``now`` and returns the list of actions to carry out. Methods that
    a role or state does not allow raise :class:`~fixsecure.errors.LocalProtocolError`; input
    after a :class:`Disconnect` is ignored until :meth:`connection_made`. Store I/O errors
    (``OSError``) propagate: the runner should close the connection.
    """

    def __init__(self, config: SessionConfig, store: MessageStore) -> None:
        self.config = config
        self.store = store
        self._state = State.DISCONNECTED
        self._table = TRANSITIONS[config.role]
        self._begin = config.begin_string.encode()
        self._is44 = config.begin_string == FIX44
        self._peer_sender = config.target_comp_id.encode()
        self._peer_target = config.sender_comp_id.encode()
        self._ids_before_52 = [(Tag.SENDER_COMP_ID, config.sender_comp_id.encode())]
        if config.sender_sub_id:
            self._ids_before_52.append((Tag.SENDER_SUB_ID, config.sender_sub_id.encode()))
        self._ids_after_52 = [(Tag.TARGET_COMP_ID, config.target_comp_id.encode())]
        if config.target_sub_id:
            self._ids_after_52.append((Tag.TARGET_SUB_ID, config.target_sub_id.encode()))
        self._ids_after_122: list[tuple[int, bytes]] = []
        if config.sender_location_id:
            self._ids_after_122.append((Tag.SENDER_LOCATION_ID, config.sender_location_id.encode()))
        if config.target_location_id:
            self._ids_after_122.append((Tag.TARGET_LOCATION_ID, config.target_location_id.encode()))
        self._out: list[Action] = []
        self._now = 0.0
        self._batch_depth = 0
        self._clear_connection(0.0)

    def _clear_connection(self, now: float) -> None:
        self._hbi = self.config.heart_bt_int
        self._connected_at = now
        self._last_sent = now
        self._last_received = now
        self._logon_sent_at = now
        self._logout_sent_at = now
        self._test_requests = 0
        self._queue: dict[int, FixMessage] = {}
        self._resend_range: tuple[int, int] | None = None
        self._sent_reset = False
        self._sent_789 = False
        self._logon_seq = 0

    # --- introspection ---------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def is_logged_on(self) -> bool:
        return self._state in _LOGGED_ON

    @property
    def heart_bt_int(self) -> int:
        """The HeartBtInt in force (the peer's, for an acceptor)."""
        return self._hbi

    @property
    def next_sender_seq(self) -> int:
        return self.store.next_sender_seq

    @property
    def next_target_seq(self) -> int:
        return self.store.next_target_seq

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` has something to do, or None (nothing pending)."""
        state = self._state
        if state is State.CONNECTED:
            if self.config.role is Role.ACCEPTOR:
                return self._connected_at + self.config.logon_timeout
            return None
        if state is State.LOGON_SENT:
            return self._logon_sent_at + self.config.logon_timeout
        if state is State.LOGOUT_SENT:
            return self._logout_sent_at + self.config.logout_timeout
        if state is State.ACTIVE and self._hbi > 0:
            delay = self.config.test_request_delay * self._hbi
            deadline = min(
                self._last_received + delay * (self._test_requests + 1),
                self._last_received + 2 * delay,
            )
            if self._test_requests == 0:
                deadline = min(deadline, self._last_sent + self._hbi)
            return deadline
        return None

    # --- inputs ----------------------------------------------------------------------------

    def connection_made(self, now: float) -> list[Action]:
        """The transport is up. An initiator then calls :meth:`logon`; an acceptor waits."""
        self._begin_call(now)
        self._move(Input.CONNECT)
        self._clear_connection(now)
        self._event(f"Connected ({self.config.role.value})")
        return self._end_call()

    def logon(self, now: float, reset: bool = False) -> list[Action]:
        """Send the initiator's Logon. ``reset`` forces ResetSeqNumFlag=Y (both numbers to 1)."""
        self._begin_call(now)
        if self.config.role is not Role.INITIATOR:
            raise LocalProtocolError("only an initiator sends the first Logon")
        self._move(Input.SEND_LOGON)
        config = self.config
        if reset or config.reset_on_logon:
            self.store.reset(now)
        send_reset = reset or (
            config.resets_sequence_numbers
            and self.store.next_sender_seq == 1
            and self.store.next_target_seq == 1
        )
        self._sent_reset = send_reset
        self._logon_sent_at = now
        self._send_logon(now, reset=send_reset, next_expected=self.store.next_target_seq)
        self._event("Initiated logon request")
        return self._end_call()

    def receive(self, data: bytes, now: float) -> list[Action]:
        """One complete inbound message (framing, BodyLength and CheckSum already verified)."""
        self._begin_call(now)
        if self._state is State.DISCONNECTED:
            return self._end_call()
        try:
            msg = parse(data)
        except GarbledMessage as exc:
            if self._state in _LOGGED_ON:
                self._event(f"Garbled message ignored: {exc}", "warning")
            else:
                self._close(f"Garbled message before Logon: {exc}")
            return self._end_call()
        self._last_received = now
        self._test_requests = 0
        self._process(msg)
        self._drain_queue()
        return self._end_call()

    def receive_many(self, messages: Iterable[bytes], now: float) -> list[Action]:
        """:meth:`receive` for every message of one read, under a single store commit."""
        with self.batch():
            return [action for data in messages for action in self.receive(data, now)]

    def send(self, message: OutboundMessage, now: float) -> list[Action]:
        """Send an application message; sequenced and persisted first.

        While not logged on the message is only persisted (the peer recovers it by gap fill, as
        with QuickFIX), unless a configured reset would discard it anyway: then it is dropped.
        """
        self._begin_call(now)
        if message.msg_type in ADMIN_MSG_TYPES:
            raise LocalProtocolError("admin messages are generated by the session itself")
        try:
            header, body = split_outbound(message.fields)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        if self._state in _LOGGED_ON:
            self._emit(message.msg_type, body, header)
        elif self.config.resets_sequence_numbers:
            self._event("Not logged on: application message dropped (reset pending)", "warning")
        else:
            self._emit(message.msg_type, body, header, transmit=False)
            self._event("Not logged on: application message stored for resend", "warning")
        return self._end_call()

    def logout(self, now: float, text: str = "") -> list[Action]:
        """Start the Logout handshake (or just disconnect if no Logon was completed)."""
        self._begin_call(now)
        if self._state is State.ACTIVE:
            self._start_logout(text)
        elif self._state in (State.CONNECTED, State.LOGON_SENT):
            self._close(text or "Logout requested before Logon completed")
        return self._end_call()

    def tick(self, now: float) -> list[Action]:
        """Drive the timers: logon/logout timeouts, Heartbeat, TestRequest, silence timeout."""
        self._begin_call(now)
        state = self._state
        config = self.config
        if state is State.CONNECTED:
            if config.role is Role.ACCEPTOR and now - self._connected_at >= config.logon_timeout:
                self._close("Timed out waiting for Logon")
        elif state is State.LOGON_SENT:
            if now - self._logon_sent_at >= config.logon_timeout:
                self._close("Timed out waiting for logon response")
        elif state is State.LOGOUT_SENT:
            if now - self._logout_sent_at >= config.logout_timeout:
                self._close("Timed out waiting for logout response")
        elif state is State.ACTIVE and self._hbi > 0:
            delay = config.test_request_delay * self._hbi
            silent = now - self._last_received
            if silent >= 2 * delay:
                self._close("Timed out waiting for heartbeat")
            elif silent >= delay * (self._test_requests + 1):
                self._test_requests += 1
                test_req_id = b"TEST%d" % self.store.next_sender_seq
                self._emit(MsgType.TEST_REQUEST, [(Tag.TEST_REQ_ID, test_req_id)])
                self._event(f"Sent test request {test_req_id.decode()}")
            elif self._test_requests == 0 and now - self._last_sent >= self._hbi:
                self._emit(MsgType.HEARTBEAT, [])
        return self._end_call()

    def connection_lost(self, now: float) -> list[Action]:
        """The transport closed (by the peer, or after our :class:`Disconnect`)."""
        self._begin_call(now)
        if self._state is not State.DISCONNECTED:
            was_logged_on = self._state in _LOGGED_ON
            self._cleanup()
            self._event("Connection lost", "warning")
            if was_logged_on:
                self._out.append(LoggedOut("connection lost without Logout", clean=False))
        return self._end_call()

    def reset(self, now: float) -> list[Action]:
        """Reset both sequence numbers and the store (e.g. at the start of a session period)."""
        self._begin_call(now)
        if self._state is not State.DISCONNECTED:
            raise LocalProtocolError("reset the store only while disconnected")
        self.store.reset(now)
        self._event("Session reset: sequence numbers back to 1")
        return self._end_call()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group several calls under one store commit, made when the outermost batch ends.

        Nothing returned inside the batch may be sent before the ``with`` block is left.
        """
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0:
                self.store.commit()

    # --- call bracket and state table ------------------------------------------------------

    def _begin_call(self, now: float) -> None:
        self._now = now
        self._out = []

    def _end_call(self) -> list[Action]:
        if not self._batch_depth:
            self.store.commit()  # before anything is handed out to be sent
        out, self._out = self._out, []
        return out

    def _move(self, event: Input) -> None:
        try:
            self._state = self._table[(self._state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"{event.value!r} is not allowed in state {self._state.value!r} "
                f"for an {self.config.role.value}"
            ) from None

    def _event(self, text: str, level: str = "info") -> None:
        self._out.append(SessionEvent(text, level))

    # --- inbound processing ----------------------------------------------------------------

    def _process(self, msg: FixMessage) -> None:
        msg_type = msg.msg_type
        if self._state not in _LOGGED_ON:
            self._process_before_logon(msg)
            return
        if msg.get(Tag.BEGIN_STRING) != self._begin:
            self._wrong_begin_string(msg)
            return
        problem = check_message(msg, self.config.begin_string)
        if problem is not None:
            if msg_type == MsgType.LOGON:
                self._close(f"Invalid Logon: {problem.text} ({problem.tag})")
            else:
                self._reject(msg, problem)
            return
        if msg_type in ADMIN_MSG_TYPES:
            self._process_admin(msg, msg_type)
        elif self._verify(msg):
            self._advance_target()
            self._out.append(Deliver(msg))

    def _process_before_logon(self, msg: FixMessage) -> None:
        msg_type = msg.msg_type
        if self._state is State.LOGON_SENT and msg_type == MsgType.LOGOUT:
            reason = f"Logon refused by peer: {msg.get_str(Tag.TEXT)}"
            self._event(reason, "error")
            self._send_logout("")
            self._advance_target_if(msg)
            self._move(Input.LOGOUT_RECEIVED)
            self._cleanup()
            self._out.append(Disconnect(reason))
            return
        if msg_type != MsgType.LOGON:
            self._close(f"First message is not a Logon (MsgType={msg_type.decode()!r})")
            return
        if self._state is State.CONNECTED and self.config.role is Role.INITIATOR:
            self._close("Received logon response before sending request")
            return
        if msg.get(Tag.BEGIN_STRING) != self._begin:
            self._close(f"Logon with BeginString {msg.get_str(Tag.BEGIN_STRING)!r}")
            return
        problem = check_message(msg, self.config.begin_string)
        if problem is not None:
            self._close(f"Invalid Logon: {problem.text} ({problem.tag})")
            return
        self._on_logon(msg)

    def _wrong_begin_string(self, msg: FixMessage) -> None:
        """QuickFIX: a Logout is still honoured; anything else gets a Logout and waits."""
        if msg.msg_type == MsgType.LOGOUT:
            self._on_logout(msg)
            return
        self._advance_target_if(msg)
        self._start_logout("Incorrect BeginString")

    def _process_admin(self, msg: FixMessage, msg_type: bytes) -> None:
        if msg_type == MsgType.HEARTBEAT:
            if self._verify(msg):
                self._advance_target()
        elif msg_type == MsgType.TEST_REQUEST:
            if self._verify(msg):
                self._emit(MsgType.HEARTBEAT, [(Tag.TEST_REQ_ID, msg.index[Tag.TEST_REQ_ID])])
                self._advance_target()
        elif msg_type == MsgType.RESEND_REQUEST:
            self._on_resend_request(msg)
        elif msg_type == MsgType.REJECT:
            if self._verify(msg):
                reason = msg.get_str(Tag.SESSION_REJECT_REASON)  # a code, not free text
                self._event(
                    f"Peer rejected our message {msg.get_str(Tag.REF_SEQ_NUM)}"
                    + (f" (SessionRejectReason {reason})" if reason else ""),
                    "warning",
                )
                self._advance_target()
        elif msg_type == MsgType.SEQUENCE_RESET:
            self._on_sequence_reset(msg)
        elif msg_type == MsgType.LOGOUT:
            self._on_logout(msg)
        else:
            self._on_logon(msg)

    def _verify(
        self, msg: FixMessage, check_too_high: bool = True, check_too_low: bool = True
    ) -> bool:
        """CompIDs, SendingTime and sequence number of a logged-on message (QuickFIX's verify).

        False means the message was dealt with here (rejected, queued or ignored as duplicate).
        """
        if not self._comp_ids_ok(msg):
            self._reject(msg, Problem(RejectReason.COMPID_PROBLEM))
            self._start_logout("")
            return False
        if not self._sending_time_ok(msg):
            self._reject(msg, Problem(RejectReason.SENDING_TIME_ACCURACY_PROBLEM))
            self._start_logout("")
            return False
        seq = _seq_of(msg)
        expected = self.store.next_target_seq
        if check_too_high and seq > expected:
            self._on_too_high(msg, seq)
            return False
        poss_dup = msg.flag(Tag.POSS_DUP_FLAG)
        if check_too_low and seq < expected:
            if not poss_dup:
                self._logout_and_close(
                    f"MsgSeqNum too low, expecting {expected} but received {seq}"
                )
            elif self._poss_dup_ok(msg):
                self._event(f"Duplicate message {seq} ignored (PossDupFlag=Y)")
            return False
        return not poss_dup or self._poss_dup_ok(msg)

    def _comp_ids_ok(self, msg: FixMessage) -> bool:
        index = msg.index
        return not self.config.check_comp_id or (
            index.get(Tag.SENDER_COMP_ID) == self._peer_sender
            and index.get(Tag.TARGET_COMP_ID) == self._peer_target
        )

    def _sending_time_ok(self, msg: FixMessage) -> bool:
        if not self.config.check_latency:
            return True
        sent = parse_utc_timestamp(msg.index.get(Tag.SENDING_TIME, b""))
        return sent is not None and abs(self._now - sent) <= self.config.max_latency

    def _poss_dup_ok(self, msg: FixMessage) -> bool:
        """A PossDup message needs OrigSendingTime no later than SendingTime (not SequenceReset)."""
        if msg.msg_type == MsgType.SEQUENCE_RESET:
            return True
        orig = msg.get(Tag.ORIG_SENDING_TIME)
        if orig is None:
            self._reject(msg, Problem(RejectReason.REQUIRED_TAG_MISSING, Tag.ORIG_SENDING_TIME))
            return False
        orig_time = parse_utc_timestamp(orig)
        sending_time = parse_utc_timestamp(msg.index[Tag.SENDING_TIME])
        if orig_time is None or sending_time is None or orig_time > sending_time:
            self._reject(msg, Problem(RejectReason.SENDING_TIME_ACCURACY_PROBLEM))
            self._start_logout("")
            return False
        return True

    def _on_too_high(self, msg: FixMessage, seq: int) -> None:
        expected = self.store.next_target_seq
        self._event(f"MsgSeqNum too high, expecting {expected} but received {seq}")
        if len(self._queue) >= self.config.max_queued_messages:
            self._logout_and_close("Too many messages queued while waiting for a resend")
            return
        self._queue[seq] = msg
        pending = self._resend_range
        if pending is not None and seq >= pending[0]:
            self._event(
                f"Already sent ResendRequest FROM: {pending[0]} TO: {pending[1]}. "
                "Not sending another."
            )
            return
        self._send_resend_request(expected, seq - 1)

    def _drain_queue(self) -> None:
        """Process queued messages now next in sequence; forget a resend range once filled."""
        queue = self._queue
        for _ in range(len(queue)):
            if not queue or self._state not in _LOGGED_ON:
                break
            expected = self.store.next_target_seq
            msg = queue.pop(expected, None)
            if msg is None:
                break
            self._event(f"Processing QUEUED message: {expected}")
            if msg.msg_type in (MsgType.LOGON, MsgType.RESEND_REQUEST):
                self._advance_target()  # already acted upon when it arrived
            else:
                self._process(msg)
        expected = self.store.next_target_seq
        if queue:
            for stale in [seq for seq in queue if seq < expected]:
                del queue[stale]  # skipped by a SequenceReset
        if self._resend_range is not None and expected > self._resend_range[1]:
            begin, end = self._resend_range
            self._event(f"ResendRequest for messages FROM: {begin} TO: {end} has been satisfied.")
            self._resend_range = None

    def _advance_target(self) -> None:
        self.store.set_next_target_seq(self.store.next_target_seq + 1)

    def _advance_target_if(self, msg: FixMessage) -> None:
        """Count a message that is processed whatever its number, if it is the expected one."""
        if msg.get_int(Tag.MSG_SEQ_NUM) == self.store.next_target_seq:
            self._advance_target()

    # --- admin messages --------------------------------------------------------------------

    def _on_logon(self, msg: FixMessage) -> None:
        state = self._state
        reset = msg.flag(Tag.RESET_SEQ_NUM_FLAG)
        if state is State.LOGOUT_SENT or (state is State.ACTIVE and not reset):
            self._close("Received Logon while already logged on")
            return
        if msg.get(Tag.ENCRYPT_METHOD) != b"0":
            self._close(f"Logon with EncryptMethod {msg.get_str(Tag.ENCRYPT_METHOD)}: must be 0")
            return
        heart_bt_int = msg.get_int(Tag.HEART_BT_INT)
        if heart_bt_int is None or heart_bt_int < 0:
            self._close("Logon with a negative HeartBtInt")
            return
        if not self._comp_ids_ok(msg):
            self._close(
                f"Logon CompID problem: SenderCompID={msg.get_str(Tag.SENDER_COMP_ID)!r} "
                f"TargetCompID={msg.get_str(Tag.TARGET_COMP_ID)!r}"
            )
            return
        if not self._sending_time_ok(msg):
            self._close(f"Logon SendingTime accuracy problem: {msg.get_str(Tag.SENDING_TIME)}")
            return
        seq = _seq_of(msg)
        if reset and seq != 1:
            self._close(f"Logon with ResetSeqNumFlag=Y must have MsgSeqNum 1, not {seq}")
            return
        responding = state is not State.LOGON_SENT or (reset and not self._sent_reset)
        if reset:
            if not self._sent_reset:
                self._event("Logon contains ResetSeqNumFlag=Y, resetting sequence numbers to 1")
                self.store.reset(self._now)
                self._queue.clear()
                self._resend_range = None
        elif state is State.CONNECTED and self.config.reset_on_logon:
            self.store.reset(self._now)
        expected = self.store.next_target_seq
        if seq < expected:
            self._logout_and_close(f"MsgSeqNum too low, expecting {expected} but received {seq}")
            return
        peer_expects = msg.get_int(Tag.NEXT_EXPECTED_MSG_SEQ_NUM) if self._is44 else None
        if peer_expects is not None and peer_expects > self.store.next_sender_seq:
            self._logout_and_close(
                f"NextExpectedMsgSeqNum {peer_expects} is higher than our next sender "
                f"sequence number {self.store.next_sender_seq}"
            )
            return
        # Our messages the peer may have missed: all before the Logon we answer with, or all but
        # the Logon it answers (an initiator may have stored messages after it, never sent).
        last = self.store.next_sender_seq - 1
        missed = (
            [(1, last)] if responding else [(1, self._logon_seq - 1), (self._logon_seq + 1, last)]
        )
        in_sequence = reset or seq == expected
        self._move(Input.LOGON_ACCEPTED)
        if responding:
            self._hbi = heart_bt_int
            self._event(
                "Received logon request"
                if state is not State.ACTIVE
                else "Received in-session reset request"
            )
            self._send_logon(
                self._now, reset=reset, next_expected=seq + 1 if in_sequence else expected
            )
            self._event("Responding to logon request")
        else:
            self._event("Received logon response")
        self._sent_reset = False
        if peer_expects is not None:
            for begin, end in missed:
                if max(begin, peer_expects) <= end:
                    self._event(f"NextExpectedMsgSeqNum {peer_expects}: resending up to {end}")
                    self._resend(max(begin, peer_expects), end)
        if in_sequence:
            self.store.set_next_target_seq(seq + 1)
        elif self._sent_789 and peer_expects is not None:
            # Both sides use 789: the peer resends what we told it we miss, unasked (QuickFIX/J).
            self._queue[seq] = msg
            self._resend_range = (expected, seq - 1)
            self._event(
                f"MsgSeqNum too high, expecting {expected} but received {seq}; "
                "ResendRequest suppressed, NextExpectedMsgSeqNum sent"
            )
        else:
            self._on_too_high(msg, seq)
        if state is not State.ACTIVE:
            self._out.append(LoggedOn(self._hbi, reset))

    def _send_logon(self, now: float, reset: bool, next_expected: int) -> None:
        body = [(Tag.ENCRYPT_METHOD, b"0"), (Tag.HEART_BT_INT, b"%d" % self._hbi)]
        if reset:
            body.append((Tag.RESET_SEQ_NUM_FLAG, b"Y"))
        self._sent_789 = self.config.send_next_expected_msg_seq_num
        if self._sent_789:
            body.append((Tag.NEXT_EXPECTED_MSG_SEQ_NUM, b"%d" % next_expected))
        self._logon_seq = self.store.next_sender_seq
        self._emit(MsgType.LOGON, body)

    def _on_logout(self, msg: FixMessage) -> None:
        if not self._verify(msg, check_too_high=False, check_too_low=False):
            return
        text = msg.get_str(Tag.TEXT)
        initiated_by_peer = self._state is State.ACTIVE
        if initiated_by_peer:
            # The peer's Text(58) is message content: logged by its size only.
            detail = f" ({len(text)}-character Text)" if text else ""
            self._event(f"Received logout request{detail}")
            self._send_logout("")
            self._event("Sending logout response")
        else:
            self._event("Received logout response")
        self._advance_target_if(msg)
        self._move(Input.LOGOUT_RECEIVED)
        if self.config.reset_on_logout:
            self.store.reset(self._now)
        reason = f"Logout by peer{': ' + text if text else ''}" if initiated_by_peer else "Logout"
        self._cleanup()
        self._out.append(LoggedOut(reason, clean=True))
        self._out.append(Disconnect(reason))

    def _on_resend_request(self, msg: FixMessage) -> None:
        """Answer at once, even when the request is ahead of sequence (both sides may resend)."""
        if not self._verify(msg, check_too_high=False, check_too_low=True):
            return
        begin = msg.get_int(Tag.BEGIN_SEQ_NO)
        end = msg.get_int(Tag.END_SEQ_NO)
        assert begin is not None  # checked by check_message
        assert end is not None
        if begin < 1:
            self._reject(msg, Problem(RejectReason.VALUE_IS_INCORRECT, Tag.BEGIN_SEQ_NO))
            return
        self._event(f"Received ResendRequest FROM: {begin} TO: {end}")
        last_sent = self.store.next_sender_seq - 1
        if end == 0 or end > last_sent:
            end = last_sent
        if begin <= end:
            self._resend(begin, end)
        else:
            self._event(f"Nothing to resend: last message sent was {last_sent}", "warning")
        seq = _seq_of(msg)
        if seq > self.store.next_target_seq:
            self._on_too_high(msg, seq)
        else:
            self._advance_target()

    def _on_sequence_reset(self, msg: FixMessage) -> None:
        gap_fill = msg.flag(Tag.GAP_FILL_FLAG)
        if not self._verify(msg, check_too_high=gap_fill, check_too_low=gap_fill):
            return
        new_seq = msg.get_int(Tag.NEW_SEQ_NO)
        assert new_seq is not None  # checked by check_message
        expected = self.store.next_target_seq
        self._event(f"Received SequenceReset FROM: {expected} TO: {new_seq}")
        if new_seq > expected:
            self.store.set_next_target_seq(new_seq)
        elif new_seq < expected:
            self._reject(msg, Problem(RejectReason.VALUE_IS_INCORRECT, Tag.NEW_SEQ_NO))

    # --- outbound --------------------------------------------------------------------------

    def _header(
        self, seq: int, sending_time: bytes, orig_sending_time: bytes | None
    ) -> list[tuple[int, bytes]]:
        """Header fields after 35 in ascending tag order, as QuickFIX writes them."""
        header = [(Tag.MSG_SEQ_NUM, b"%d" % seq)]
        if orig_sending_time is not None:
            header.append((Tag.POSS_DUP_FLAG, b"Y"))
        header += self._ids_before_52
        header.append((Tag.SENDING_TIME, sending_time))
        header += self._ids_after_52
        if orig_sending_time is not None:
            header.append((Tag.ORIG_SENDING_TIME, orig_sending_time))
        header += self._ids_after_122
        return header

    def _timestamp(self) -> bytes:
        return format_utc_timestamp(self._now, self.config.timestamp_precision)

    def _emit(
        self,
        msg_type: bytes,
        body: list[tuple[int, bytes]],
        extra_header: list[tuple[int, bytes]] | None = None,
        transmit: bool = True,
    ) -> None:
        """Sequence, persist, then (if ``transmit``) hand out one new message."""
        seq = self.store.next_sender_seq
        header = self._header(seq, self._timestamp(), None)
        if extra_header:
            header = sorted(header + extra_header)
        data = encode(self._begin, msg_type, header, body)
        if self.config.persist_messages:
            self.store.save(seq, data)
        else:
            self.store.set_next_sender_seq(seq + 1)
        if transmit:
            self._transmit(Send(data, msg_type, seq))

    def _transmit(self, send: Send) -> None:
        """Queue ``send``; every message sent restarts the heartbeat interval."""
        self._out.append(send)
        self._last_sent = self._now

    def _send_logout(self, text: str) -> None:
        self._emit(MsgType.LOGOUT, [(Tag.TEXT, text.encode())] if text else [])

    def _start_logout(self, text: str) -> None:
        """Send Logout and wait for the reply (or the logout timeout)."""
        if self._state is State.ACTIVE:
            self._send_logout(text)
            self._move(Input.SEND_LOGOUT)
            self._logout_sent_at = self._now

    def _logout_and_close(self, text: str) -> None:
        """A fatal error the peer should hear about: Logout with the reason, then disconnect."""
        self._send_logout(text)
        self._close(text)

    def _close(self, reason: str) -> None:
        was_logged_on = self._state in _LOGGED_ON
        self._event(reason, "error")
        self._cleanup()
        if was_logged_on:
            self._out.append(LoggedOut(reason, clean=False))
        self._out.append(Disconnect(reason))

    def _cleanup(self) -> None:
        if self._state is not State.DISCONNECTED:
            self._move(Input.CLOSE)
        self._queue.clear()
        self._resend_range = None
        self._test_requests = 0
        self._sent_reset = False
        if self.config.reset_on_disconnect:
            self.store.reset(self._now)

    def _send_resend_request(self, begin: int, end: int) -> None:
        self._emit(
            MsgType.RESEND_REQUEST, [(Tag.BEGIN_SEQ_NO, b"%d" % begin), (Tag.END_SEQ_NO, b"0")]
        )
        self._resend_range = (begin, end)
        self._event(f"Sent ResendRequest FROM: {begin} TO: 0")

    def _reject(self, msg: FixMessage, problem: Problem) -> None:
        """Session-level Reject; the rejected message uses up its number if it was expected."""
        seq = msg.get_int(Tag.MSG_SEQ_NUM)
        msg_type = msg.msg_type
        body: list[tuple[int, bytes]] = []
        if seq is not None:
            body.append((Tag.REF_SEQ_NUM, b"%d" % seq))
        body.append((Tag.TEXT, problem.text.encode()))
        if problem.tag is not None:
            body.append((Tag.REF_TAG_ID, b"%d" % problem.tag))
        if msg_type:
            body.append((Tag.REF_MSG_TYPE, msg_type))
        if self._is44 or problem.reason <= RejectReason.MAX_FIX42:
            body.append((Tag.SESSION_REJECT_REASON, b"%d" % problem.reason))
        self._emit(MsgType.REJECT, body)
        self._event(
            f"Message {seq} Rejected: {problem.text}"
            + (f":{problem.tag}" if problem.tag is not None else ""),
            "warning",
        )
        if (
            seq is not None
            and seq == self.store.next_target_seq
            and msg_type not in (MsgType.LOGON, MsgType.SEQUENCE_RESET)
        ):
            self._advance_target()

    def _resend(self, begin: int, end: int) -> None:
        """Resend application messages begin..end; gap-fill admin messages and holes, collapsed."""
        stored = self.store.get(begin, end) if self.config.persist_messages else []
        gap_start = begin
        for seq, data in stored:
            if _msg_type_of(data) in ADMIN_MSG_TYPES:
                continue
            if seq > gap_start:
                self._send_gap_fill(gap_start, seq)
            self._send_poss_dup(seq, data)
            gap_start = seq + 1
        if gap_start <= end:
            self._send_gap_fill(gap_start, end + 1)

    def _send_gap_fill(self, seq: int, new_seq: int) -> None:
        now = self._timestamp()
        data = encode(
            self._begin,
            MsgType.SEQUENCE_RESET,
            self._header(seq, now, now),
            [(Tag.NEW_SEQ_NO, b"%d" % new_seq), (Tag.GAP_FILL_FLAG, b"Y")],
        )
        self._transmit(Send(data, MsgType.SEQUENCE_RESET, seq, poss_dup=True))
        self._event(f"Sent SequenceReset TO: {new_seq}")

    def _send_poss_dup(self, seq: int, stored: bytes) -> None:
        """The stored message again: PossDupFlag=Y, OrigSendingTime=its SendingTime, new 52."""
        original = parse(stored)
        header: list[tuple[int, bytes]] = [
            (Tag.POSS_DUP_FLAG, b"Y"),
            (Tag.SENDING_TIME, self._timestamp()),
        ]
        body: list[tuple[int, bytes]] = []
        for tag, value in original.fields[3:]:
            if tag in _REPLACED_ON_RESEND or tag in TRAILER_TAGS:
                continue
            (header if tag in HEADER_TAGS else body).append((tag, value))
        header.append((Tag.ORIG_SENDING_TIME, original.index.get(Tag.SENDING_TIME, b"")))
        header.sort()
        data = encode(self._begin, original.msg_type, header, body)
        self._transmit(Send(data, original.msg_type, seq, poss_dup=True))
        self._event(f"Resending Message: {seq}")


_REPLACED_ON_RESEND: Final = frozenset(
    (Tag.POSS_DUP_FLAG, Tag.SENDING_TIME, Tag.ORIG_SENDING_TIME, Tag.POSS_RESEND)
)


def _seq_of(msg: FixMessage) -> int:
    """MsgSeqNum of a message that passed :func:`check_message` (present and an integer)."""
    return int(msg.index[Tag.MSG_SEQ_NUM])


def _msg_type_of(data: bytes) -> bytes:
    start = data.find(b"\x0135=") + 4
    return data[start : data.find(SOH, start)]


class SessionApplication:
    """An application on top of a :class:`Session`: every call goes straight to the session
    unless a subclass adds its part (the counterparty answers orders and starts a new book on a
    reset, the client books fills). This is what the network runner drives."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def connection_made(self, now: float) -> list[Action]:
        return self.session.connection_made(now)

    def logon(self, now: float, reset: bool = False) -> list[Action]:
        return self.session.logon(now, reset)

    def logout(self, now: float, text: str = "") -> list[Action]:
        return self.session.logout(now, text)

    def connection_lost(self, now: float) -> list[Action]:
        return self.session.connection_lost(now)

    def reset(self, now: float) -> list[Action]:
        return self.session.reset(now)

    def receive_many(self, messages: Iterable[bytes], now: float) -> list[Action]:
        return self.session.receive_many(messages, now)

    def tick(self, now: float) -> list[Action]:
        return self.session.tick(now)

    def next_deadline(self) -> float | None:
        return self.session.next_deadline()
