"""One fixsecure connection, sans-IO: plaintext FIX from the local side, wire bytes from the net.

::

    session = Session.initiator(config)            # or Session.acceptor(directory)
    wire = session.send(plaintext_message)         # one complete FIX message -> bytes for the peer
    for event in session.receive(network_bytes):   # bytes from the peer -> events
        ...                                        # MessageReceived, HandshakeComplete, ...
    session.receive_eof()                          # the peer closed: ConnectionClosed(clean=...)

No sockets, no threads, and no clock or randomness it is not given (``clock`` returns nanoseconds
since the epoch; ``ephemeral`` makes the handshake's ephemeral key pairs). States and transitions
live in :mod:`fixsecure.state`; byte layouts in :mod:`fixsecure.wire`; Noise in
:mod:`fixsecure.noise`. Section numbers below refer to the protocol, ``specs/fixsecure-v1.md``.

Errors: a bad local message raises :class:`LocalProtocolError` (nothing is sent for it; the session
stays usable). A bad network message ends the session with a :class:`ConnectionFailed` event whose
``reason`` is for the local log only: the adapter closes the connection without sending anything.
Messages that arrived before the bad one are still delivered.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Final

from fixsecure import hotpath, wire
from fixsecure.errors import (
    ConfigError,
    FramingError,
    LimitExceeded,
    LocalProtocolError,
    NoiseError,
)
from fixsecure.framing import DEFAULT_MAX_MESSAGE_SIZE, Framer, iter_fields
from fixsecure.noise import (
    CipherState,
    DHFunctions,
    HandshakeState,
    KeyPair,
    NoiseProtocol,
    parse_protocol_name,
)
from fixsecure.replay import ReplayStore
from fixsecure.sessionid import SessionID
from fixsecure.state import Input, Role, State, next_state
from fixsecure.suites import DEFAULT_SUITE, is_suite
from fixsecure.wire import WireError

__all__ = [
    "MAX_BYTES",
    "MAX_MESSAGES",
    "REKEY_INTERVAL",
    "AcceptorDirectory",
    "ConnectionClosed",
    "ConnectionFailed",
    "Event",
    "HandshakeComplete",
    "LogonAccepted",
    "MessageReceived",
    "MessagesReceived",
    "Session",
    "SessionConfig",
    "fresh_ephemeral",
]

REKEY_INTERVAL: Final = 1 << 20  # implicit Rekey() after every 2^20 messages per direction
MAX_MESSAGES: Final = 1 << 24  # per direction of a connection (§8.3)
MAX_BYTES: Final = 1 << 36  # plaintext body bytes per direction of a connection
_REKEY_MASK: Final = REKEY_INTERVAL - 1
MAX_MESSAGE_SIZE_LIMIT: Final = 64 << 20  # a configured limit beyond this is a mistake
_NS: Final = 1_000_000_000
_HANDSHAKE_FIELDS: Final = [98, wire.TAG_PROTOCOL, wire.TAG_SUITE, 90, 91]
_MARKERS: Final = frozenset(_HANDSHAKE_FIELDS[1:])  # any of these makes it a fixsecure Logon

Clock = Callable[[], int]
Ephemeral = Callable[[DHFunctions], KeyPair]


def fresh_ephemeral(dh: DHFunctions) -> KeyPair:
    """The default ephemeral key source: a fresh key pair from the OS CSPRNG."""
    return dh.generate_keypair()


# ------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class SessionConfig:
    """What one side knows about one session: identity, suite, keys and limits.

    ``own_keys`` and ``peer_keys`` hold one entry each, or (acceptor, during key rotation) two.
    A session without keys can only run in plaintext, and only if ``required`` is False.
    """

    session_id: SessionID
    suite: str = DEFAULT_SUITE
    own_keys: tuple[KeyPair, ...] = ()
    peer_keys: tuple[bytes, ...] = ()
    required: bool = True
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    logon_window: float = 60.0
    logon_future_skew: float = 10.0
    protocol: NoiseProtocol = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = str(self.session_id)
        if not is_suite(self.suite):
            raise ConfigError(f"unknown suite {self.suite!r}", section=where)
        protocol = parse_protocol_name(self.suite)
        object.__setattr__(self, "protocol", protocol)
        if len(self.own_keys) > 2 or len(self.peer_keys) > 2:
            raise ConfigError("at most two own keys and two peer keys", section=where)
        if bool(self.own_keys) != bool(self.peer_keys):
            raise ConfigError("own and peer keys must be given together", section=where)
        if self.required and not self.own_keys:
            raise ConfigError("encryption is required but the session has no keys", section=where)
        for pair in self.own_keys:
            try:
                derived = protocol.dh.keypair(pair.private)
            except TypeError as exc:
                raise ConfigError(
                    f"own key does not fit {self.suite}: {exc}", section=where
                ) from None
            if derived.public != pair.public:
                raise ConfigError("an own key pair's public half does not match", section=where)
        own_publics = {pair.public for pair in self.own_keys}
        for public in self.peer_keys:
            try:
                protocol.dh.validate_public(public)
            except NoiseError as exc:
                raise ConfigError(f"peer key unusable: {exc}", section=where) from None
            if public in own_publics:
                raise ConfigError(
                    "the pinned peer key is our own public key (same key on both ends)",
                    section=where,
                )
        if not 256 <= self.max_message_size <= MAX_MESSAGE_SIZE_LIMIT:
            raise ConfigError(
                f"max_message_size must be 256 to {MAX_MESSAGE_SIZE_LIMIT} bytes", section=where
            )
        for name, value in (("logon_window", self.logon_window),
                            ("logon_future_skew", self.logon_future_skew)):
            if not 0 <= value <= 86_400:  # also refuses nan and inf
                raise ConfigError(f"{name} must be 0 to 86400 seconds", section=where)

    @property
    def secure(self) -> bool:
        return bool(self.own_keys)


class AcceptorDirectory:
    """Every session one acceptor endpoint serves, found by the CompIDs of an incoming Logon.

    Shared by all of an endpoint's connections, with the anti-replay store and an optional
    ``admit(session_id, peer)`` hook called after the cheap checks and before any DH (rate
    limits; ``peer`` is what the adapter passed to :meth:`Session.acceptor`, e.g. its address).
    """

    def __init__(
        self,
        sessions: Iterable[SessionConfig],
        replay_store: ReplayStore,
        *,
        admit: Callable[[SessionID, Hashable], bool] | None = None,
    ) -> None:
        self._by_ids: dict[tuple[str, str, str], SessionConfig] = {}
        self.update(sessions)
        self.replay_store = replay_store
        self.admit = admit

    def update(self, sessions: Iterable[SessionConfig]) -> None:
        """Replace the sessions (e.g. new pinned keys after a reload); connections already past
        their Logon keep the configuration they started with."""
        by_ids: dict[tuple[str, str, str], SessionConfig] = {}
        for config in sessions:
            sid = config.session_id
            key = (sid.begin_string, sid.sender_comp_id, sid.target_comp_id)
            if key in by_ids:
                raise ConfigError(
                    f"two acceptor sessions for {sid}: one port cannot tell them apart"
                )
            by_ids[key] = config
        self._by_ids = by_ids
        self.max_wire_size = max(
            (wire.wire_limit(c.max_message_size) for c in by_ids.values()),
            default=wire.wire_limit(DEFAULT_MAX_MESSAGE_SIZE),
        )

    @property
    def sessions(self) -> tuple[SessionConfig, ...]:
        return tuple(self._by_ids.values())

    def lookup(self, begin: bytes, header: dict[int, bytes]) -> SessionConfig | None:
        """The session a Logon addresses: its 49 is our target, its 56 our sender (§6 step 4)."""
        try:
            key = (begin.decode(), header[56].decode(), header[49].decode())
        except (KeyError, UnicodeDecodeError):
            return None
        config = self._by_ids.get(key)
        if config is None:
            return None
        sid = config.session_id
        for ours, tag in (
            (sid.sender_sub_id, 57),
            (sid.sender_location_id, 143),
            (sid.target_sub_id, 50),
            (sid.target_location_id, 142),
        ):
            if ours and header.get(tag, b"").decode(errors="replace") != ours:
                return None
        return config


# ------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True)
class LogonAccepted:
    """Acceptor: a Logon passed every check (§6) and is being delivered to the engine."""

    session_id: SessionID
    encrypted: bool
    own_key_index: int = 0
    peer_key_index: int = 0


@dataclass(frozen=True)
class HandshakeComplete:
    """Initiator: message 2 authenticated; transport keys are in place."""

    session_id: SessionID
    suite: str
    handshake_hash: bytes = field(repr=False)


@dataclass(frozen=True)
class MessageReceived:
    """A plaintext FIX message from the peer, byte-exact, for the local engine."""

    message: bytes = field(repr=False)
    msg_type: bytes

    def __repr__(self) -> str:
        return f"MessageReceived(msg_type={self.msg_type!r}, {len(self.message)} bytes)"


@dataclass(frozen=True)
class MessagesReceived:
    """Consecutive plaintext FIX messages from the peer, byte-exact, decoded in one run
    (:meth:`Session.receive_batch`; :meth:`Session.receive` gives one MessageReceived each):
    ``data`` holds them back to back, ``ends`` where each one ends in it."""

    data: bytes = field(repr=False)
    ends: tuple[int, ...] = field(repr=False)

    @property
    def messages(self) -> list[bytes]:
        data, ends = self.data, self.ends
        return [data[start:end] for start, end in zip((0, *ends), ends, strict=False)]

    def __repr__(self) -> str:
        return f"MessagesReceived({len(self.ends)} messages, {len(self.data)} bytes)"


@dataclass(frozen=True)
class ConnectionClosed:
    """The network side ended. ``clean`` only if a verified Logout came from the peer first."""

    clean: bool
    reason: str


@dataclass(frozen=True)
class ConnectionFailed:
    """The peer broke the protocol; close the connection, sending nothing. ``reason`` is local."""

    reason: str


Event = (
    LogonAccepted
    | HandshakeComplete
    | MessageReceived
    | MessagesReceived
    | ConnectionClosed
    | ConnectionFailed
)


# ------------------------------------------------------------------------------------------
# One direction of transport


class _Direction:
    """A transport CipherState with the implicit rekey schedule and the caps of §8.3, one message
    at a time (:meth:`seal`, :meth:`open`) or in runs (:meth:`seal_run`, :meth:`open_run`,
    ``specs/hot-path.md``) with a runner made for each key."""

    __slots__ = ("bytes", "cipher", "runner")

    def __init__(self, cipher: CipherState) -> None:
        self.cipher = cipher
        self.bytes = 0
        self.runner = self._new_runner()

    def _new_runner(self) -> hotpath.Runner:
        aead = self.cipher.aead
        assert aead is not None
        return hotpath.runner_class(
            aead, self.cipher.functions.little_endian, hotpath.HEADER_TAGS
        )

    def _rekey(self) -> None:
        self.cipher.rekey()
        self.runner = self._new_runner()

    def _refuse(self) -> LimitExceeded:
        if self.cipher.n >= MAX_MESSAGES:
            return LimitExceeded(f"{MAX_MESSAGES} messages under one handshake: reconnect")
        return LimitExceeded(f"{MAX_BYTES} bytes under one handshake: reconnect")

    def seal(self, ad: bytes, body: bytes) -> bytes:
        cipher = self.cipher
        size = len(body)
        if cipher.n >= MAX_MESSAGES or self.bytes + size > MAX_BYTES:
            raise self._refuse()
        sealed = cipher.encrypt_with_ad(ad, body)
        self.bytes += size
        if not cipher.n & _REKEY_MASK:
            self._rekey()
        return sealed

    def open(self, ad: bytes, sealed: bytes) -> bytes:
        cipher = self.cipher
        if cipher.n >= MAX_MESSAGES or self.bytes + len(sealed) - 16 > MAX_BYTES:
            raise self._refuse()
        body = cipher.decrypt_with_ad(ad, sealed)
        self.bytes += len(body)
        if not cipher.n & _REKEY_MASK:
            self._rekey()
        return body

    # A run stops at the next Rekey and at the caps, so every message in it is treated exactly as
    # seal()/open() would treat it; the loops commit each run, rekey, and go on.

    def _commit(self, count: int, body_bytes: int) -> bool:
        """Advance past a run of ``count`` messages; True if that reached the next Rekey (done
        now, so the next run may go on under the new key)."""
        cipher = self.cipher
        cipher.n += count  # SetNonce: the run used the nonces before this one
        self.bytes += body_bytes
        if cipher.n & _REKEY_MASK:
            return False
        self._rekey()
        return True

    def seal_run(
        self, buf: bytes, start: int, max_size: int
    ) -> tuple[int, list[bytes], int, bool]:
        """Protect the run of plaintext messages at ``buf[start:]``: (end, wire parts, messages,
        whether one was a Logout)."""
        cipher = self.cipher
        out: list[bytes] = []
        pos, total = start, 0
        logout = False
        while (allowed := _allowed(cipher.n)) > 0:
            end, protected, sealed, body_bytes, saw_logout = self.runner.seal(
                buf, pos, cipher.n, allowed, MAX_BYTES - self.bytes, max_size
            )
            if not sealed:
                break
            _check_run(allowed, pos, sealed, end)
            out.append(protected)
            total += sealed
            logout = logout or saw_logout
            pos = end
            if not self._commit(sealed, body_bytes):
                break
        return pos, out, total, logout

    def open_run(
        self, buf: bytes, start: int, max_wire: int, max_size: int
    ) -> tuple[int, bytes, list[int], bool]:
        """Open the run of transport messages at ``buf[start:]``: (end, the plaintexts back to
        back, where each ends, whether one was a Logout)."""
        cipher = self.cipher
        data = b""
        ends: list[int] = []
        pos = start
        logout = False
        while (allowed := _allowed(cipher.n)) > 0:
            end, plain, plain_ends, body_bytes, saw_logout = self.runner.open(
                buf, pos, cipher.n, allowed, MAX_BYTES - self.bytes, max_wire, max_size
            )
            if not plain_ends:
                break
            _check_run(allowed, pos, len(plain_ends), end)
            if ends:  # a run after a Rekey: append it
                ends += [len(data) + at for at in plain_ends]
                data += plain
            else:
                data, ends = plain, plain_ends
            logout = logout or saw_logout
            pos = end
            if not self._commit(len(plain_ends), body_bytes):
                break
        return pos, data, ends, logout


def _check_run(allowed: int, start: int, count: int, end: int) -> None:
    """A runner that took more messages than allowed (skipping a Rekey or a cap) or went
    backwards broke its contract: raise, and the session fails closed."""
    if count > allowed or end <= start:
        raise RuntimeError(f"the hot path runner broke its contract ({count} of {allowed})")


def _allowed(n: int) -> int:
    """Messages a run from nonce ``n`` may take: up to the next Rekey, never past the cap."""
    return min(REKEY_INTERVAL - (n & _REKEY_MASK), MAX_MESSAGES - n)


def _complete_split(framer: Framer, data: bytes) -> tuple[bytes | None, int]:
    """The message ``framer`` holds the start of, completed from the head of ``data`` when
    ``data`` has the rest: (message, where the rest of data starts). Otherwise (None, 0)."""
    needed = framer.needed(data)
    if needed is None or not 0 < needed <= len(data):
        return None, 0
    framer.feed(data[:needed])
    return framer.next_message(), needed


class _Refused(Exception):
    """Internal: the peer's message must end the connection (reason for the local log)."""


# ------------------------------------------------------------------------------------------
# The session


class Session:
    """One connection, one role. Build it with :meth:`initiator` or :meth:`acceptor`."""

    def __init__(
        self,
        role: Role,
        *,
        config: SessionConfig | None = None,
        directory: AcceptorDirectory | None = None,
        clock: Clock = time.time_ns,
        ephemeral: Ephemeral = fresh_ephemeral,
        peer: Hashable = None,
    ) -> None:
        self.role = role
        self.state = State.AWAIT_LOGON
        self.config = config
        self._directory = directory
        self._clock = clock
        self._ephemeral = ephemeral
        self._limit = config.max_message_size if config else DEFAULT_MAX_MESSAGE_SIZE
        wire_max = directory.max_wire_size if directory else wire.wire_limit(self._limit)
        self._framer = Framer(wire_max)
        self._local_framer = Framer(self._limit)  # the engine's stream, for send_data()
        self._handshake: HandshakeState | None = None  # only until Split(): then dropped
        self._encrypted = False
        self._peer = peer
        self._send: _Direction | None = None
        self._recv: _Direction | None = None
        self.handshake_hash: bytes | None = None
        self.logout_sent = False
        self.logout_received = False
        self.messages_sent = 0  # messages from the local side that went out

    @classmethod
    def initiator(
        cls,
        config: SessionConfig,
        *,
        clock: Clock = time.time_ns,
        ephemeral: Ephemeral = fresh_ephemeral,
    ) -> Session:
        return cls(Role.INITIATOR, config=config, clock=clock, ephemeral=ephemeral)

    @classmethod
    def acceptor(
        cls,
        directory: AcceptorDirectory,
        *,
        clock: Clock = time.time_ns,
        ephemeral: Ephemeral = fresh_ephemeral,
        peer: Hashable = None,
    ) -> Session:
        """``peer`` (e.g. the source address) is handed to the directory's ``admit`` hook."""
        return cls(
            Role.ACCEPTOR, directory=directory, clock=clock, ephemeral=ephemeral, peer=peer
        )

    def __repr__(self) -> str:
        sid = self.config.session_id if self.config else "?"
        return f"<Session {self.role.value} {sid} {self.state.value}>"

    @property
    def session_id(self) -> SessionID | None:
        """The session's identity; for an acceptor, known once the Logon is accepted."""
        return self.config.session_id if self.config else None

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def encrypted(self) -> bool:
        """True once a handshake has started on this connection (it never falls back)."""
        return self._encrypted

    # -- state table ------------------------------------------------------------------------

    def _move(self, move: Input) -> None:
        after = next_state(self.role, self.state, move)
        if after is None:
            raise _Refused(f"{move.value} is not allowed in state {self.state.value}")
        self.state = after

    def abort(self) -> None:
        """The adapter gave up on the connection (timeout, local close): nothing more happens."""
        if self.state is not State.CLOSED:
            self._move(Input.FAIL)

    # -- local side -------------------------------------------------------------------------

    def send(self, message: bytes) -> bytes:
        """Protect one complete plaintext FIX message from the local engine; return wire bytes."""
        data = self._send_one(message)
        self.messages_sent += 1
        return data

    def _send_one(self, message: bytes) -> bytes:
        parts = self._local_parts(message)
        length_start, header_start, header_end, trailer, msg_type = parts
        if self.state is State.ESTABLISHED:  # the hot path first
            assert self._send is not None
            try:
                sealed = self._send.seal(
                    wire.associated_data(message, parts), message[header_end:trailer]
                )
            except LimitExceeded:
                self._move(Input.FAIL)
                raise
            self._note_sent(msg_type)
            return wire.protected(
                message[: length_start],
                message[header_start : header_end],
                b"",
                sealed,
            )
        if self.state is State.CLOSED:
            raise LocalProtocolError("the session is closed")
        if self.state is State.PLAINTEXT:
            self._note_sent(msg_type)
            return message
        if self.role is Role.INITIATOR and self.state is State.AWAIT_LOGON:
            return self._write_logon(message, parts)
        if self.role is Role.ACCEPTOR and self.state is State.LOGON_RECEIVED:
            return self._write_reply(message, parts)
        if self.state is State.HANDSHAKE_SENT:
            raise LocalProtocolError(
                f"the engine sent 35={msg_type!r} before the Logon reply arrived"
            )
        raise LocalProtocolError(f"the engine cannot send in state {self.state.value}")

    def send_data(self, data: bytes) -> bytes:
        """Protect the local engine's byte stream, in any chunking: every message that ``data``
        completes is handled as :meth:`send` handles it, and the wire bytes of all of them are
        returned; an incomplete message at the end waits for the next call.

        Established sessions protect whole runs of messages per call (``specs/hot-path.md``).
        The first message that cannot be sent raises :class:`LocalProtocolError` (or
        :class:`LimitExceeded`) like :meth:`send`; its ``wire`` attribute holds the protected
        bytes of the messages before it, which must still be sent. The bytes after it stay
        buffered and go out with the next call (if the session is still open). A stream that is
        not FIX cannot be resynchronised: after a framing error every later call raises it
        again.
        """
        framer = self._local_framer
        out: list[bytes] = []
        start = 0  # where the bytes not yet handled begin; a read is never sliced before a run
        try:
            if self.state is State.ESTABLISHED:
                buffered = framer.buffered
                if buffered:  # a message split across reads: complete it, then the fast path
                    message, start = _complete_split(framer, data)
                    if message is not None:
                        try:
                            out.append(self.send(message))
                        except (LocalProtocolError, LimitExceeded):
                            framer.feed(data[start:])  # the rest waits, as after any refusal
                            raise
                    buffered = framer.buffered
                if start < len(data) and not buffered:
                    assert self._send is not None
                    try:
                        pos, protected, count, logout = self._send.seal_run(
                            data, start, self._limit
                        )
                    except BaseException:
                        self._fail_closed()
                        raise
                    out += protected
                    self.messages_sent += count
                    if logout:
                        self.logout_sent = True
                    if pos > start:
                        framer.skip(pos - start)
                        if pos == len(data):
                            return b"".join(out)
                        start = pos
            if start < len(data):
                framer.feed(data[start:] if start else data)
            while (message := framer.next_message()) is not None:
                out.append(self.send(message))
        except FramingError as exc:
            error = LocalProtocolError(f"malformed FIX message from the engine: {exc}")
            error.wire = b"".join(out)
            raise error from None
        except (LocalProtocolError, LimitExceeded) as exc:
            exc.wire = b"".join(out)
            raise
        return b"".join(out)

    @property
    def local_buffered(self) -> int:
        """Bytes of an incomplete engine message that :meth:`send_data` holds."""
        return self._local_framer.buffered

    def _fail_closed(self) -> None:
        """A run raised (``specs/hot-path.md`` §5): it may have spent nonces on output that is now
        lost, so nothing may be sent under them again."""
        self.abort()

    def _local_parts(self, message: bytes) -> wire.Parts:
        try:
            return wire.parse(message, self._limit)
        except FramingError as exc:
            raise LocalProtocolError(f"malformed FIX message from the engine: {exc}") from None
        except WireError as exc:
            raise LocalProtocolError(f"FIX message from the engine: {exc}") from None

    def _note_sent(self, msg_type: bytes) -> None:
        if msg_type == b"5":
            self.logout_sent = True

    def _note_received(self, msg_type: bytes) -> None:
        if msg_type == b"5":
            self.logout_received = True

    def _write_logon(self, message: bytes, parts: wire.Parts) -> bytes:
        length_start, header_start, header_end, trailer, msg_type = parts
        config = self.config
        assert config is not None
        if msg_type != b"A":
            raise LocalProtocolError(
                f"the engine's first message must be a Logon (35=A), not 35={msg_type!r}"
            )
        if not config.secure:
            self._move(Input.SEND_PLAINTEXT_LOGON)
            return message
        clear_header = wire.clear_fields(message, parts)
        sending_time = dict(clear_header).get(52)
        if sending_time is None:
            raise LocalProtocolError("the engine's Logon has no SendingTime(52) in its header")
        try:
            wire.sending_time_ns(sending_time)  # the acceptor would refuse it silently
            rest = wire.rest_fields(message, parts)
        except WireError as exc:
            raise LocalProtocolError(f"the engine's Logon: {exc}") from None
        repeated = wire.repeated_tags(clear_header, wire.IDENTITY_TAGS)
        if repeated:
            raise LocalProtocolError(
                f"the engine's Logon repeats header field(s) {sorted(repeated)}"
            )
        for tag, value in rest:
            if tag == 98 and value != b"0":
                raise LocalProtocolError(
                    f"the engine's Logon has EncryptMethod(98)={value!r}; fixsecure replaces FIX's "
                    "obsolete encryption: configure the engine with EncryptMethod 0"
                )
        begin = message[: length_start]
        suite = config.suite.encode("ascii")
        handshake_fields = [
            (98, b"0"),
            (wire.TAG_PROTOCOL, wire.PROTOCOL_LABEL),
            (wire.TAG_SUITE, suite),
        ]
        clear = [*clear_header, *handshake_fields]
        protocol = config.protocol
        handshake = HandshakeState(
            protocol,
            initiator=True,
            prologue=wire.prologue(config.suite, clear),
            s=config.own_keys[0],
            rs=config.peer_keys[0],
            e=self._ephemeral(protocol.dh),
        )
        sealed = handshake.write_message(message[header_end:trailer])
        self._handshake = handshake
        self._encrypted = True
        self._move(Input.SEND_HANDSHAKE_LOGON)
        extra = b"".join(b"%d=%s\x01" % field for field in handshake_fields)
        return wire.protected(begin, message[header_start:header_end], extra, sealed)

    def _write_reply(self, message: bytes, parts: wire.Parts) -> bytes:
        length_start, header_start, header_end, trailer, msg_type = parts
        handshake = self._handshake
        assert handshake is not None
        begin = message[:length_start]
        is_logon = msg_type == b"A"
        clear = wire.clear_fields(message, parts)
        if is_logon:
            clear.append((98, b"0"))
        payload = wire.encode_field_list(clear) + message[header_end : trailer]
        sealed = handshake.write_message(payload)
        self._finish_handshake(handshake)
        self._move(Input.SEND)
        self._note_sent(msg_type)
        return wire.protected(
            begin,
            message[header_start : header_end],
            b"98=0\x01" if is_logon else b"",
            sealed,
        )

    def _finish_handshake(self, handshake: HandshakeState) -> None:
        """Split() into the transport keys, then drop the handshake: its ephemeral private key
        and chaining key must not outlive it, or a memory dump late in a trading day would undo
        the forward secrecy of everything sent since the Logon."""
        initiator_to_acceptor, acceptor_to_initiator = handshake.split()
        self._handshake = None
        if self.role is Role.INITIATOR:
            self._send = _Direction(initiator_to_acceptor)
            self._recv = _Direction(acceptor_to_initiator)
        else:
            self._send = _Direction(acceptor_to_initiator)
            self._recv = _Direction(initiator_to_acceptor)
        self.handshake_hash = handshake.get_handshake_hash()

    # -- network side -----------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """Bytes from the network; returns the events they complete, in order, with one
        :class:`MessageReceived` per message."""
        events = self.receive_batch(data)
        if not any(isinstance(event, MessagesReceived) for event in events):
            return events
        single: list[Event] = []
        for event in events:
            if isinstance(event, MessagesReceived):
                single += (MessageReceived(m, wire.msg_type(m)) for m in event.messages)
            else:
                single.append(event)
        return single

    def receive_batch(self, data: bytes) -> list[Event]:
        """Like :meth:`receive`, but the messages an established session decodes in one run
        come as one :class:`MessagesReceived` (adapters forward them without an event each)."""
        if self.state is State.CLOSED:
            raise LocalProtocolError("the session is closed")
        framer = self._framer
        events: list[Event] = []
        append = events.append
        try:
            if self.state is State.ESTABLISHED:
                buffered = framer.buffered
                start = 0  # where the bytes not yet handled begin; the read is not sliced
                if buffered:
                    # A message split across reads: complete it from the head of this read, so
                    # the rest of the read can take the hot path again.
                    framed, start = _complete_split(framer, data)
                    if framed is not None:
                        append(self._open(framed, *wire.transport(framed)))
                    buffered = framer.buffered
                if start < len(data) and not buffered and self.state is State.ESTABLISHED:
                    # The hot path: runs of whole transport messages straight from the read. What
                    # a run stops at (a partial message, anything malformed) is left to the
                    # framer below, which waits for more bytes or names the problem exactly.
                    assert self._recv is not None
                    try:
                        pos, plain, ends, logout = self._recv.open_run(
                            data, start, framer.max_message_size, self._limit
                        )
                    except BaseException:
                        self._fail_closed()
                        raise
                    if ends:
                        append(MessagesReceived(plain, tuple(ends)))
                        if logout:
                            self.logout_received = True
                    if pos > start:
                        framer.skip(pos - start)
                        if pos == len(data):
                            return events
                        start = pos
                if start:
                    data = data[start:]
            framer.feed(data)
            while not self.closed and (framed := framer.next_message()) is not None:
                if self.state is State.ESTABLISHED:
                    append(self._open(framed, *wire.transport(framed)))
                else:
                    events.extend(self._receive_other(framed))
        except (_Refused, FramingError, NoiseError, LimitExceeded, ConfigError) as exc:
            append(self._fail(str(exc)))
        except ValueError as exc:  # WireError, and any other malformed value: still an event
            append(self._fail(f"malformed message: {exc}"))
        except OSError as exc:  # the anti-replay store failed: refuse rather than guess
            append(self._fail(f"anti-replay state unavailable: {exc.__class__.__name__}"))
        return events

    def _open(self, message: bytes, parts: wire.Parts, sealed: bytes) -> MessageReceived:
        """Authenticate and decrypt one transport message; rebuild the engine's original."""
        assert self._recv is not None
        # The AD of wire.associated_data, spelled out: this runs once per message received.
        body = self._recv.open(message[: parts[0]] + message[parts[1] : parts[2]], sealed)
        rebuilt = wire.rebuild(message, parts, body)
        if len(rebuilt) > self._limit:  # the peer's sender would have refused it (§8.4)
            raise _Refused(f"a message of {len(rebuilt)} bytes exceeds the limit of {self._limit}")
        if parts[4] == b"5":
            self.logout_received = True
        return MessageReceived(rebuilt, parts[4])

    def receive_eof(self) -> list[Event]:
        """The network side closed. Reports whether the session ended cleanly (§9)."""
        if self.state is State.CLOSED:
            return []
        try:
            self._framer.close()
            truncated = ""
        except FramingError as exc:
            truncated = f"; {exc}"
        clean = self.logout_received and not truncated
        if clean:
            reason = "the peer logged out"
        elif self.state in (State.ESTABLISHED, State.PLAINTEXT):
            reason = "connection ended without a Logout from the peer" + truncated
        else:
            reason = f"connection ended in state {self.state.value}" + truncated
        self._move(Input.END)
        return [ConnectionClosed(clean, reason)]

    def _fail(self, reason: str) -> ConnectionFailed:
        self._move(Input.FAIL)
        return ConnectionFailed(reason)

    def _receive_other(self, message: bytes) -> list[Event]:
        if self.state is State.PLAINTEXT:
            msg_type = b""
            with contextlib.suppress(WireError):  # plaintext passes any framed message through
                msg_type = wire.split(message)[4]
            self._move(Input.RECEIVE)
            self._note_received(msg_type)
            return [MessageReceived(message, msg_type)]
        if self.role is Role.ACCEPTOR and self.state is State.AWAIT_LOGON:
            return self._read_logon(message)
        if self.role is Role.INITIATOR and self.state is State.HANDSHAKE_SENT:
            return self._read_reply(message)
        raise _Refused(f"network message in state {self.state.value}")

    def _read_logon(self, message: bytes) -> list[Event]:
        """Acceptor, message 1: the checks of §6 in order, DH last, state changed only after."""
        directory = self._directory
        assert directory is not None
        parts = wire.split(message)
        msg_type = parts[4]
        if msg_type != b"A":
            raise _Refused(f"first message is 35={msg_type[:8]!r}, not a Logon")
        clear_header = wire.clear_fields(message, parts)
        repeated = wire.repeated_tags(clear_header, wire.IDENTITY_TAGS)
        if repeated:
            raise _Refused(f"Logon repeats identity field(s) {sorted(repeated)} in its header")
        header = dict(clear_header)
        config = directory.lookup(header[8], header)
        if config is None:
            raise _Refused(
                f"Logon for an unknown session {header[8][:16]!r} "
                f"{header.get(49, b'')[:32]!r}->{header.get(56, b'')[:32]!r}"
            )
        sid = config.session_id
        if len(message) > wire.wire_limit(config.max_message_size):
            raise _Refused(f"{sid}: Logon of {len(message)} bytes exceeds the session's limit")
        rest = wire.rest_fields(message, parts)
        tags = [tag for tag, _ in rest]
        if not _MARKERS.intersection(tags):
            if config.required:
                raise _Refused(f"{sid}: plaintext Logon, but the session requires encryption")
            self._identified(config)
            self._move(Input.RECEIVE_PLAINTEXT_LOGON)
            return [LogonAccepted(sid, encrypted=False), MessageReceived(message, b"A")]
        if tags != _HANDSHAKE_FIELDS or rest[0][1] != b"0":
            raise _Refused(f"{sid}: Logon handshake fields are not 98=0, 25800, 25801, 90, 91")
        if rest[1][1] != wire.PROTOCOL_LABEL:
            raise _Refused(f"{sid}: protocol label {rest[1][1][:32]!r} is not fixsecure/1")
        if rest[2][1] != config.suite.encode("ascii"):
            raise _Refused(f"{sid}: suite {rest[2][1][:64]!r} is not the configured {config.suite}")
        if not config.secure:
            raise _Refused(f"{sid}: handshake Logon for a session without keys")
        sending_time = self._check_sending_time(sid, config, header.get(52))
        if directory.admit is not None and not directory.admit(sid, self._peer):
            raise _Refused(f"{sid}: Logon refused by the admission limits")
        offset = message.index(b"\x0190=", parts[2] - 1) + 1
        sealed = wire.secure_data(message, parts, offset)
        prologue = wire.prologue(config.suite, [*clear_header, *rest[:3]])
        handshake, payload, indexes = self._try_keys(config, prologue, sealed)
        try:
            routing = {tag for tag, _ in iter_fields(payload)} & wire.ROUTING_TAGS
        except FramingError as exc:
            raise _Refused(f"{sid}: the encrypted Logon body is not FIX fields: {exc}") from None
        if routing:  # an engine would read them as the sender's identity
            raise _Refused(f"{sid}: routing field(s) {sorted(routing)} in the Logon body")
        try:
            advanced = directory.replay_store.advance(sid, sending_time)
        except ConfigError as exc:
            raise _Refused(f"{sid}: {exc}") from None
        if not advanced:
            raise _Refused(f"{sid}: a later Logon was accepted concurrently")
        handshake.e = self._ephemeral(config.protocol.dh)
        self._handshake = handshake
        self._encrypted = True
        self._identified(config)
        self._move(Input.RECEIVE_HANDSHAKE_LOGON)
        return [
            LogonAccepted(sid, encrypted=True, own_key_index=indexes[0], peer_key_index=indexes[1]),
            MessageReceived(wire.rebuild(message, parts, payload), b"A"),
        ]

    def _identified(self, config: SessionConfig) -> None:
        """The session is known: its own size limit applies from now on (§8.4)."""
        self.config = config
        self._limit = config.max_message_size
        self._local_framer.max_message_size = config.max_message_size
        self._framer.max_message_size = (
            wire.wire_limit(config.max_message_size) if config.secure else config.max_message_size
        )

    def _check_sending_time(
        self, sid: SessionID, config: SessionConfig, value: bytes | None
    ) -> int:
        if value is None:
            raise _Refused(f"{sid}: Logon without SendingTime(52)")
        sending_time = wire.sending_time_ns(value)
        now = self._clock()
        if sending_time < now - int(config.logon_window * _NS):
            raise _Refused(f"{sid}: Logon SendingTime {value!r} is older than the Logon window")
        if sending_time > now + int(config.logon_future_skew * _NS):
            raise _Refused(f"{sid}: Logon SendingTime {value!r} is too far in the future")
        assert self._directory is not None
        try:
            last = self._directory.replay_store.last_logon(sid)
        except ConfigError as exc:
            raise _Refused(f"{sid}: {exc}") from None
        if last is not None and sending_time <= last:
            raise _Refused(
                f"{sid}: Logon SendingTime {value!r} is not later than the last accepted"
            )
        return sending_time

    def _try_keys(
        self, config: SessionConfig, prologue: bytes, sealed: bytes
    ) -> tuple[HandshakeState, bytes, tuple[int, int]]:
        """ReadMessage(M1) with each own/peer key combination (at most four, §11.3)."""
        for own_index, own in enumerate(config.own_keys):
            for peer_index, peer in enumerate(config.peer_keys):
                handshake = HandshakeState(
                    config.protocol, initiator=False, prologue=prologue, s=own, rs=peer
                )
                try:
                    payload = handshake.read_message(sealed)
                except NoiseError:
                    continue
                return handshake, payload, (own_index, peer_index)
        raise _Refused(f"{config.session_id}: Logon failed authentication with every pinned key")

    def _read_reply(self, message: bytes) -> list[Event]:
        """Initiator, message 2: decrypt, compare the authenticated header copy (§5.2)."""
        handshake = self._handshake
        config = self.config
        assert handshake is not None
        assert config is not None
        parts = wire.split(message)
        msg_type = parts[4]
        offset = parts[2]
        clear = wire.clear_fields(message, parts)
        if msg_type == b"A":
            if message[offset : offset + 5] != b"98=0\x01":
                raise _Refused("Logon reply without its clear EncryptMethod(98)=0")
            offset += 5
            clear.append((98, b"0"))
        payload = handshake.read_message(wire.secure_data(message, parts, offset))
        copy, body = wire.decode_field_list(payload)
        if copy != clear:
            raise _Refused("message 2's clear header differs from its authenticated copy")
        self._finish_handshake(handshake)
        self._move(Input.RECEIVE_HANDSHAKE_REPLY)
        self._note_received(msg_type)
        assert self.handshake_hash is not None
        return [
            HandshakeComplete(config.session_id, config.suite, self.handshake_hash),
            MessageReceived(wire.rebuild(message, parts, body), msg_type),
        ]

