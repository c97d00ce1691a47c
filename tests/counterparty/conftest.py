"""Helpers for the counterparty tests, modelled on QuickFIX's acceptance-test harness.

A :class:`Peer` scripts the other side of a session and builds its messages with simplefix; every
message the engine sends is parsed back with simplefix (:func:`sent`) and its framing checked
independently (:func:`check_framing`), so the engine's own parser and encoder are not their own
oracle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import simplefix

from fixsecure.counterparty.engine import (
    Action,
    Deliver,
    Disconnect,
    LoggedOn,
    LoggedOut,
    Role,
    Send,
    Session,
    SessionConfig,
    SessionEvent,
)
from fixsecure.counterparty.fields import format_utc_timestamp
from fixsecure.counterparty.store import MemoryStore, MessageStore

T0: Final = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
HEADER_ORDER: Final = (34, 43, 49, 50, 52, 56, 57, 97, 115, 122, 128, 142, 143)


def stamp(now: float) -> str:
    return format_utc_timestamp(now).decode()


def frame(begin: str, fields: Iterable[tuple[int, str | bytes]]) -> bytes:
    """A message with exactly these fields between BodyLength and CheckSum (to malform)."""
    body = b"".join(
        b"%d=%s\x01" % (tag, value if isinstance(value, bytes) else value.encode())
        for tag, value in fields
    )
    message = b"8=%s\x019=%d\x01" % (begin.encode(), len(body)) + body
    return message + b"10=%03d\x01" % (sum(message) % 256)


def check_framing(data: bytes) -> None:
    """BodyLength, CheckSum and field order of one message, computed independently."""
    assert data.startswith(b"8=FIX.4.")
    assert data.endswith(b"\x01")
    body_start = data.index(b"\x01", data.index(b"\x019=") + 1) + 1
    checksum_at = data.rindex(b"\x0110=") + 1
    length = int(data[data.index(b"\x019=") + 3 : body_start - 1])
    assert length == checksum_at - body_start
    assert int(data[checksum_at + 3 : -1]) == sum(data[:checksum_at]) % 256
    tags = [int(f.split(b"=", 1)[0]) for f in data[:-1].split(b"\x01")]
    assert tags[:3] == [8, 9, 35]
    header = [t for t in tags[3:] if t in HEADER_ORDER]
    assert tags[3 : 3 + len(header)] == header, "header fields must precede the body"
    assert header == sorted(header), "QuickFIX writes header fields in ascending tag order"


def sent(actions: Iterable[Action]) -> list[simplefix.FixMessage]:
    """Every message the actions send, parsed by simplefix (one message per Send)."""
    messages = []
    for action in actions:
        if isinstance(action, Send):
            check_framing(action.data)
            parser = simplefix.FixParser()
            parser.append_buffer(action.data)
            message = parser.get_message()
            assert message is not None
            assert parser.get_message() is None
            messages.append(message)
    return messages


def fields(message: simplefix.FixMessage) -> dict[int, str]:
    """Tag -> value (first occurrence) of a simplefix message."""
    out: dict[int, str] = {}
    for tag, value in message:
        out.setdefault(int(tag), value.decode())
    return out


def types(actions: Iterable[Action]) -> list[str]:
    """MsgTypes of the messages sent, as parsed by simplefix."""
    return [fields(m)[35] for m in sent(actions)]


def delivered(actions: Iterable[Action]) -> list[str]:
    """ClOrdID (or MsgSeqNum) of each delivered application message."""
    return [
        a.message.get_str(11) or a.message.get_str(34) for a in actions if isinstance(a, Deliver)
    ]


def disconnected(actions: Sequence[Action]) -> bool:
    """True if the actions end the connection (Disconnect is always the last action)."""
    return bool(actions) and isinstance(actions[-1], Disconnect)


def events(actions: Iterable[Action]) -> list[str]:
    return [a.text for a in actions if isinstance(a, SessionEvent)]


def logged_on(actions: Iterable[Action]) -> list[LoggedOn]:
    return [a for a in actions if isinstance(a, LoggedOn)]


def logged_out(actions: Iterable[Action]) -> list[LoggedOut]:
    return [a for a in actions if isinstance(a, LoggedOut)]


class Peer:
    """The scripted other side: TW talking to ISLD, as in QuickFIX's acceptance tests."""

    def __init__(self, begin: str = "FIX.4.4", sender: str = "TW", target: str = "ISLD") -> None:
        self.begin = begin
        self.sender = sender
        self.target = target
        self.next_seq = 1

    def build(
        self,
        msg_type: str,
        body: Iterable[tuple[int, str | int]] = (),
        *,
        now: float = T0,
        seq: int | None = None,
        poss_dup: bool = False,
        orig_sending_time: float | None = None,
        sending_time: str | None = None,
        sender: str | None = None,
        target: str | None = None,
        begin: str | None = None,
    ) -> bytes:
        """A message built by simplefix; ``seq`` None takes (and advances) the next number."""
        if seq is None:
            seq = self.next_seq
            self.next_seq += 1
        m = simplefix.FixMessage()
        m.append_pair(8, begin or self.begin, header=True)
        m.append_pair(35, msg_type, header=True)
        m.append_pair(34, seq, header=True)
        if poss_dup:
            m.append_pair(43, "Y", header=True)
        m.append_pair(49, sender or self.sender, header=True)
        m.append_pair(52, sending_time or stamp(now), header=True)
        m.append_pair(56, target or self.target, header=True)
        if orig_sending_time is not None:
            m.append_pair(122, stamp(orig_sending_time), header=True)
        for tag, value in body:
            m.append_pair(tag, value)
        data: bytes = m.encode()
        return data

    def logon(
        self,
        *,
        now: float = T0,
        heart_bt_int: int = 30,
        reset: bool = False,
        next_expected: int | None = None,
        **kw: object,
    ) -> bytes:
        body: list[tuple[int, str | int]] = [(98, 0), (108, heart_bt_int)]
        if reset:
            body.append((141, "Y"))
        if next_expected is not None:
            body.append((789, next_expected))
        return self.build("A", body, now=now, **kw)  # type: ignore[arg-type]

    def order(self, cl_ord_id: str, *, now: float = T0, **kw: object) -> bytes:
        body: list[tuple[int, str | int]] = [
            (11, cl_ord_id),
            (21, 1),
            (55, "INTC"),
            (54, 1),
            (60, stamp(now)),
            (38, 100),
            (40, 2),
            (44, "10.5"),
        ]
        return self.build("D", body, now=now, **kw)  # type: ignore[arg-type]


def acceptor(
    begin: str = "FIX.4.4", store: MessageStore | None = None, **config: object
) -> Session:
    """An acceptor ISLD expecting TW, connected (not yet logged on)."""
    session = Session(
        SessionConfig(begin, "ISLD", "TW", Role.ACCEPTOR, **config),  # type: ignore[arg-type]
        store if store is not None else MemoryStore(T0),
    )
    session.connection_made(T0)
    return session


def logged_on_acceptor(begin: str = "FIX.4.4", **config: object) -> tuple[Session, Peer]:
    """An acceptor after a plain Logon from TW with HeartBtInt 30."""
    session = acceptor(begin, None, **config)
    peer = Peer(begin)
    actions = session.receive(peer.logon(), T0)
    assert types(actions) == ["A"]
    assert session.is_logged_on
    return session, peer


def pump(
    source: Iterable[Action], destination: Session, now: float, drop: set[int] | None = None
) -> list[Action]:
    """Deliver every Send of ``source`` to ``destination``; new messages in ``drop`` get lost."""
    out: list[Action] = []
    for action in source:
        if isinstance(action, Send) and not (
            drop and action.seq_num in drop and not action.poss_dup
        ):
            out += destination.receive(action.data, now)
    return out


def converse(
    a: Session, b: Session, actions_of_a: list[Action], now: float, limit: int = 50
) -> None:
    """Let two sessions answer each other until neither has anything left to send."""
    pending: list[tuple[Session, list[Action]]] = [(b, actions_of_a)]
    for _ in range(limit):
        if not pending:
            return
        destination, actions = pending.pop(0)
        replies = pump(actions, destination, now)
        if any(isinstance(x, Send) for x in replies):
            pending.append((a if destination is b else b, replies))
    raise AssertionError("the sessions kept talking")
