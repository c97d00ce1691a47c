"""Shared helpers for the core tests: a fixed clock, messages, established session pairs, a
bounded event loop and a Diffie-Hellman counter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import pytest

from fixsecure.memory import SessionPair, fix_message, format_timestamp, session_pair
from fixsecure.noise import P256, X25519, KeyPair
from fixsecure.session import ConnectionFailed, Event, MessageReceived, Session
from fixsecure.suites import SUITES

#: 2026-11-25 16:00:00 UTC: every core test runs at this instant.
NOW = 1_795_622_400_000_000_000
STAMP = format_timestamp(NOW)


def clock() -> int:
    return NOW


def logon(
    sender: bytes = b"BANK",
    target: bytes = b"VENUE",
    seq: int = 1,
    *,
    body: Iterable[tuple[int, bytes | str | int]] = ((98, 0), (108, 30), (141, b"Y")),
    sending_time: bytes = STAMP,
    begin: bytes = b"FIX.4.4",
) -> bytes:
    return fix_message(b"A", seq, sender, target, body, sending_time=sending_time, begin=begin)


def order(seq: int, clordid: bytes = b"ORD-1", sender: bytes = b"BANK") -> bytes:
    target = b"VENUE" if sender == b"BANK" else b"BANK"
    return fix_message(
        b"D",
        seq,
        sender,
        target,
        [(11, clordid), (55, b"EUR/USD"), (54, 1), (38, 1_000_000), (40, 2), (44, b"1.085")],
        sending_time=STAMP,
    )


def delivered(events: Iterable[Event]) -> list[bytes]:
    return [event.message for event in events if isinstance(event, MessageReceived)]


def failures(events: Iterable[Event]) -> list[ConnectionFailed]:
    return [event for event in events if isinstance(event, ConnectionFailed)]


def establish(pair: SessionPair) -> SessionPair:
    """Run the Logon handshake on a fresh pair; returns it ready for transport."""
    assert delivered(pair.acceptor.receive(pair.initiator.send(logon()))) == [logon()]
    reply = logon(b"VENUE", b"BANK")
    assert delivered(pair.initiator.receive(pair.acceptor.send(reply))) == [reply]
    return pair


def new_pair(suite: str = SUITES[0], **kwargs: Any) -> SessionPair:
    kwargs.setdefault("clock", clock)
    return session_pair(suite, **kwargs)


def receiver_of(pair: SessionPair, sender: Session) -> Session:
    return pair.acceptor if sender is pair.initiator else pair.initiator


@pytest.fixture(params=SUITES)
def suite(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def pair(suite: str) -> SessionPair:
    return establish(new_pair(suite))


def run(coro: Awaitable[None], timeout: float = 60) -> None:
    """Run ``coro`` on a fresh event loop, cancelled after ``timeout`` seconds."""
    asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def dh_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts every Diffie-Hellman operation in this process (both curves), to prove that cheap
    checks come before the expensive ones."""
    calls: list[str] = []
    for cls in (X25519, P256):
        original = cls.dh

        def counting(
            self: object, keypair: KeyPair, public: bytes, _o: Callable[..., bytes] = original
        ) -> bytes:
            calls.append(type(self).__name__)
            return _o(self, keypair, public)

        monkeypatch.setattr(cls, "dh", counting)
    return calls


@pytest.fixture
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test during which asyncio logged an error: what it cannot raise (a failed
    callback, an unretrieved task exception). Modules use it with ``pytestmark``."""
    yield
    # caplog.records alone would be this teardown's records only: read every phase so far.
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    errors = [r for r in records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
