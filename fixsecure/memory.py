"""Two sessions wired together in memory: for the demo, benchmarks, transcripts and tests.

Nothing here touches the network or the disk. :func:`session_pair` generates (or takes) static
keys, builds both sides' :class:`~fixsecure.session.SessionConfig` and returns a connected pair
ready for the Logon; :func:`fix_message` writes plaintext FIX messages the way QuickFIX does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from fixsecure.framing import DEFAULT_MAX_MESSAGE_SIZE
from fixsecure.noise import KeyPair, parse_protocol_name
from fixsecure.replay import MemoryReplayStore, ReplayStore
from fixsecure.session import (
    AcceptorDirectory,
    Clock,
    Ephemeral,
    MessageReceived,
    Session,
    SessionConfig,
    fresh_ephemeral,
)
from fixsecure.sessionid import SessionID
from fixsecure.suites import DEFAULT_SUITE
from fixsecure.wire import assemble

__all__ = ["SessionPair", "fix_message", "format_timestamp", "order_fields", "session_pair"]


def format_timestamp(ns: int) -> bytes:
    """A FIX UTCTimestamp with milliseconds, as QuickFIX writes SendingTime by default."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(seconds)).encode() + b".%03d" % (
        rest // 1_000_000
    )


def fix_message(
    msg_type: bytes,
    seq: int,
    sender: bytes,
    target: bytes,
    body: Iterable[tuple[int, bytes | str | int]] = (),
    *,
    sending_time: bytes | None = None,
    begin: bytes = b"FIX.4.4",
    extra_header: Iterable[tuple[int, bytes]] = (),
) -> bytes:
    """A framed FIX message with QuickFIX's header order (35, 34, 49, 52, 56, then extras)."""
    stamp = sending_time if sending_time is not None else format_timestamp(time.time_ns())
    header = [(35, msg_type), (34, b"%d" % seq), (49, sender), (52, stamp), (56, target)]
    fields = [*header, *extra_header, *body]
    encoded = [
        b"%d=%s\x01"
        % (tag, value if isinstance(value, bytes) else str(value).encode())
        for tag, value in fields
    ]
    return assemble(b"8=" + begin + b"\x01", encoded)


def order_fields(cl_ord_id: bytes, transact_time: bytes) -> list[tuple[int, bytes]]:
    """The body of a typical NewOrderSingle: EUR/USD, buy 1,000,000 at 1.085, day order."""
    return [
        (11, cl_ord_id),
        (1, b"ACCOUNT1"),
        (21, b"1"),
        (55, b"EUR/USD"),
        (54, b"1"),
        (60, transact_time),
        (38, b"1000000"),
        (40, b"2"),
        (44, b"1.08500"),
        (59, b"0"),
    ]


@dataclass
class SessionPair:
    """An initiator and an acceptor session that trust each other's static keys."""

    initiator: Session
    acceptor: Session
    initiator_config: SessionConfig
    acceptor_config: SessionConfig
    directory: AcceptorDirectory

    def transfer(self, sender: Session, message: bytes) -> list[bytes]:
        """``sender`` sends one plaintext message; return what the other side delivers."""
        receiver = self.acceptor if sender is self.initiator else self.initiator
        return [
            event.message
            for event in receiver.receive(sender.send(message))
            if isinstance(event, MessageReceived)
        ]


def session_pair(
    suite: str = DEFAULT_SUITE,
    *,
    begin: str = "FIX.4.4",
    initiator_id: str = "BANK",
    acceptor_id: str = "VENUE",
    initiator_key: KeyPair | None = None,
    acceptor_key: KeyPair | None = None,
    replay_store: ReplayStore | None = None,
    clock: Clock = time.time_ns,
    ephemeral: Ephemeral = fresh_ephemeral,
    acceptor_ephemeral: Ephemeral | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> SessionPair:
    """A fresh pair ready for the Logon; keys are generated unless given. ``ephemeral`` serves
    both sides unless ``acceptor_ephemeral`` is given (fixed keys per side, for vectors)."""
    dh = parse_protocol_name(suite).dh
    ikey = initiator_key or dh.generate_keypair()
    akey = acceptor_key or dh.generate_keypair()
    sid = SessionID(begin, initiator_id, acceptor_id)
    iconfig = SessionConfig(
        sid, suite, (ikey,), (akey.public,), max_message_size=max_message_size
    )
    aconfig = SessionConfig(
        sid.reversed(), suite, (akey,), (ikey.public,), max_message_size=max_message_size
    )
    directory = AcceptorDirectory([aconfig], replay_store or MemoryReplayStore())
    return SessionPair(
        Session.initiator(iconfig, clock=clock, ephemeral=ephemeral),
        Session.acceptor(directory, clock=clock, ephemeral=acceptor_ephemeral or ephemeral),
        iconfig,
        aconfig,
        directory,
    )
