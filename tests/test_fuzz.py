"""Fuzz targets for the network side: the transport decoder and both handshake messages.

Hypothesis drives them (no atheris needed). By default each target runs a short search, a few
seconds for the whole file; with ``FIXSECURE_FUZZ_SECONDS=N`` (``make fuzz``) each target keeps
searching, with fresh random seeds, for its share of N seconds.

Everything is deterministic: fixed static and ephemeral keys and a fixed clock, so a fresh session
pair accepts exactly the wire bytes recorded once in :func:`world`. That makes the oracle precise:
the peer's bytes are delivered if and only if the mutated stream still starts with them, since the
wire form of a protected message is unique (§8.2) and everything else is authenticated.

Mutations are byte-level (flips, insertions, deletions, truncation, shuffled and duplicated chunks)
and field-level (duplicated, dropped, swapped and rewritten fields), optionally re-framed (9, 10 and
90 recomputed) so that they get past the framer to the layers behind it.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixsecure import wire
from fixsecure.framing import Framer
from fixsecure.memory import SessionPair, fix_message, format_timestamp, session_pair
from fixsecure.noise import DHFunctions, KeyPair, parse_protocol_name
from fixsecure.session import (
    ConnectionClosed,
    ConnectionFailed,
    Event,
    HandshakeComplete,
    LogonAccepted,
    MessageReceived,
    Session,
)
from fixsecure.state import State
from fixsecure.suites import SUITES

SOH = b"\x01"
FUZZ_SECONDS = float(os.environ.get("FIXSECURE_FUZZ_SECONDS") or 0)
FUZZ_TARGETS = 5  # the tests that share FUZZ_SECONDS

FUZZ = settings(
    max_examples=1000 if FUZZ_SECONDS else 150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


def run_fuzz(target: Callable[[], None]) -> None:
    """Run a hypothesis target once; under FIXSECURE_FUZZ_SECONDS, again until its share of the
    budget is spent (each run draws a fresh seed, so the search keeps going)."""
    target()
    if FUZZ_SECONDS:
        stop = time.monotonic() + FUZZ_SECONDS / FUZZ_TARGETS
        while time.monotonic() < stop:  # bounded by the clock
            target()


# --------------------------------------------------------------------------------------------
# A deterministic world: the same keys, ephemerals and clock for every pair

CLOCK_NS = 1_800_000_000_000_000_000
STAMP = format_timestamp(CLOCK_NS)


def _key(dh: DHFunctions, seed: int) -> KeyPair:
    return dh.keypair_from_private_bytes(bytes([seed]) * 32)  # < n for P-256 as well


@dataclass(frozen=True)
class World:
    suite: str
    keys: tuple[KeyPair, KeyPair, KeyPair, KeyPair]  # initiator, acceptor statics; ephemerals
    logon: bytes
    message_1: bytes
    reply: bytes
    message_2: bytes
    handshake_hash: bytes
    plaintexts: tuple[bytes, ...]  # initiator -> acceptor, after the handshake
    wires: tuple[bytes, ...]

    def pair(self) -> SessionPair:
        initiator_key, acceptor_key, initiator_ephemeral, acceptor_ephemeral = self.keys
        return session_pair(
            self.suite,
            initiator_key=initiator_key,
            acceptor_key=acceptor_key,
            clock=lambda: CLOCK_NS,
            ephemeral=lambda _: initiator_ephemeral,
            acceptor_ephemeral=lambda _: acceptor_ephemeral,
        )

    def established(self) -> SessionPair:
        pair = self.pair()
        assert pair.transfer(pair.initiator, self.logon) == [self.logon]
        assert pair.initiator.receive(pair.acceptor.send(self.reply))[1:] == [
            MessageReceived(self.reply, b"A")
        ]
        return pair


def _body_size(message: bytes) -> int:
    parts = wire.parse(message, 1 << 20)
    return parts[3] - parts[2]


def _plaintexts() -> tuple[bytes, ...]:
    def app(msg_type: bytes, seq: int, body: list[tuple[int, bytes]]) -> bytes:
        return fix_message(msg_type, seq, b"BANK", b"VENUE", body, sending_time=STAMP)

    # A TestRequest whose SecureData needs no base64 padding (body + 16-byte tag = 0 mod 3), as a
    # third of real messages do: padding edits then meet a whole last quantum.
    test_request = next(
        message
        for size in range(1, 4)
        if (_body_size(message := app(b"1", 4, [(112, b"T" * size)])) + 16) % 3 == 0
    )
    return (
        app(b"D", 2, [(11, b"ORD-1"), (55, b"EUR/USD"), (54, b"1"), (38, b"1000000"),
                      (40, b"2"), (44, b"1.0850"), (95, b"4"), (96, b"\x01=\x01=")]),
        app(b"0", 3, []),
        test_request,
        fix_message(b"D", 2, b"BANK", b"VENUE", [(11, b"ORD-1")], sending_time=STAMP,
                    extra_header=[(43, b"Y"), (122, STAMP)]),
        app(b"5", 5, [(58, b"bye")]),  # a Logout last: a clean end when everything arrives
    )


@functools.cache
def world(suite: str) -> World:
    dh = parse_protocol_name(suite).dh
    keys = (_key(dh, 1), _key(dh, 2), _key(dh, 3), _key(dh, 4))
    # Message 1 without base64 padding: e (32 or 65 bytes) + body + 16 = 0 mod 3 for both curves.
    logon = next(
        message
        for size in range(6, 9)
        if _body_size(
            message := fix_message(b"A", 1, b"BANK", b"VENUE", [(98, b"0"), (108, b"30"),
                                   (553, b"trader"), (554, b"s" * size)], sending_time=STAMP)
        ) % 3 == 0
    )
    reply = fix_message(b"A", 1, b"VENUE", b"BANK", [(98, b"0"), (108, b"30")],
                        sending_time=STAMP)
    partial = World(suite, keys, logon, b"", reply, b"", b"", (), ())
    pair = partial.pair()
    message_1 = pair.initiator.send(logon)
    assert pair.acceptor.receive(message_1)[1:] == [MessageReceived(logon, b"A")]
    message_2 = pair.acceptor.send(reply)
    complete = pair.initiator.receive(message_2)[0]
    assert isinstance(complete, HandshakeComplete)
    plaintexts = _plaintexts()
    wires = tuple(pair.initiator.send(p) for p in plaintexts)
    return World(suite, keys, logon, message_1, reply, message_2, complete.handshake_hash,
                 plaintexts, wires)


@pytest.mark.parametrize("suite", SUITES)
def test_world_is_reproducible(suite: str) -> None:
    """The oracle's premise: a fresh pair produces and accepts exactly the recorded bytes."""
    w = world(suite)
    pair = w.pair()
    assert pair.initiator.send(w.logon) == w.message_1
    events = pair.acceptor.receive(w.message_1)
    assert events == [
        LogonAccepted(pair.acceptor_config.session_id, encrypted=True),
        MessageReceived(w.logon, b"A"),
    ]
    assert pair.acceptor.send(w.reply) == w.message_2
    events = pair.initiator.receive(w.message_2)
    assert events == [
        HandshakeComplete(pair.initiator_config.session_id, suite, w.handshake_hash),
        MessageReceived(w.reply, b"A"),
    ]
    assert [pair.initiator.send(p) for p in w.plaintexts] == list(w.wires)
    fresh = w.established()
    events = fresh.acceptor.receive(b"".join(w.wires))
    assert events == [MessageReceived(p, wire.split(p)[4]) for p in w.plaintexts]
    assert fresh.acceptor.receive_eof() == [ConnectionClosed(True, "the peer logged out")]


# --------------------------------------------------------------------------------------------
# Mutations

TOKENS = (
    SOH, b"=", b"0", b"9", b"A", b"===", b"\xff", b"\x00",
    b"10=000\x01", b"8=FIX.4.4\x01", b"9=0\x01", b"35=A\x01", b"98=0\x01", b"90=4\x0191=QUI=\x01",
    b"9" * 5000 + b"=x\x01", b"95=" + b"9" * 5000 + b"\x0196=x\x01",  # beyond int()'s digit limit
)
KINDS = (
    "flip", "byte", "insert", "delete", "truncate", "shuffle", "duplicate_chunk",
    "duplicate_field", "drop_field", "swap_fields", "set_field", "secure_text",
)
# Edits of SecureData's base64 text: padding added or removed, the last character replaced by
# another (an alias when only padding bits change), characters from outside the alphabet.
SECURE_TEXT_EDITS = ("append", "drop_last", "replace_last", "strip_padding")
SECURE_TEXT_TOKENS = (b"=", b"==", b"===", b"A", b"AA", b"AAAA", b"-", b"_", b" ", b"\n", b"\x00")
base64_texts = st.binary(max_size=48).map(wire.b64encode)
timestamps = st.one_of(
    st.integers(-120, 120).map(lambda s: format_timestamp(CLOCK_NS + s * 1_000_000_000)),
    st.builds(
        lambda y, mo, d, h, mi, s, f: b"%04d%02d%02d-%02d:%02d:%02d%s" % (y, mo, d, h, mi, s, f),
        st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
        st.integers(0, 61), st.integers(0, 61),
        st.sampled_from([b"", b".000", b".5", b".123456", b".123456789"]),
    ),
)
FIELD_VALUES: dict[int, st.SearchStrategy[bytes]] = {
    8: st.sampled_from([b"FIX.4.2", b"FIX.4.4", b"FIXT.1.1", b""]),
    35: st.sampled_from([b"A", b"0", b"5", b"D", b""]),
    34: st.integers(0, 10).map(b"%d".__mod__),
    49: st.sampled_from([b"BANK", b"VENUE", b"BANK2", b""]),
    56: st.sampled_from([b"BANK", b"VENUE", b"VENUE2", b""]),
    52: timestamps,
    98: st.sampled_from([b"0", b"1", b"00", b""]),
    25800: st.sampled_from([b"fixsecure/1", b"fixsecure/2", b"FIXSECURE/1", b""]),
    25801: st.sampled_from([*(s.encode() for s in SUITES), b"Noise_KK_448_AESGCM_SHA512", b""]),
    90: st.integers(0, 400).map(b"%d".__mod__) | st.sampled_from([b"01", b"-1", b"+4", b""]),
    91: base64_texts,
}


def _field_spans(data: bytes | bytearray) -> list[tuple[int, int]]:
    """(start, end) of every SOH-terminated field; base64 SecureData has no SOH inside."""
    spans: list[tuple[int, int]] = []
    start = 0
    for index, byte in enumerate(data):
        if byte == 1:
            spans.append((start, index + 1))
            start = index + 1
    return spans


def reframe(data: bytes) -> bytes:
    """Recompute 90 from 91's length, then 9 and 10, so a mutation gets past framing and layout
    checks and reaches base64, the prologue and the AEAD. Unchanged if it does not look framed."""
    begin_end = data.find(SOH) + 1
    if not data.startswith(b"8=") or not data.startswith(b"9=", begin_end):
        return data
    length_end = data.find(SOH, begin_end) + 1
    trailer = data.rfind(b"\x0110=") + 1
    if trailer <= length_end:
        return data
    body = data[length_end:trailer]
    secure_len = body.find(b"\x0190=") + 1
    secure = body.find(b"\x0191=", secure_len) + 1
    if 0 < secure_len < secure:
        text = body[secure + 3 : -1]
        body = body[:secure_len] + b"90=%d\x01" % len(text) + body[secure:]
    head = data[:begin_end] + b"9=%d\x01" % len(body) + body
    return head + b"10=%03d\x01" % (sum(head) % 256)


FIELD_KINDS = ("duplicate_field", "drop_field", "swap_fields", "set_field", "secure_text")


@st.composite
def mutations(
    draw: st.DrawFn, original: bytes, *, rounds: int = 3, kinds: Sequence[str] = KINDS
) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, rounds))):
        kind = draw(st.sampled_from(kinds))
        size = len(data)
        spans = _field_spans(data)
        if kind == "flip" and size:
            data[draw(st.integers(0, size - 1))] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and size:
            data[draw(st.integers(0, size - 1))] = draw(st.integers(0, 255))
        elif kind == "insert":
            token = draw(st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=8))
            data[draw(st.integers(0, size)) : 0] = token
        elif kind == "delete" and size:
            start = draw(st.integers(0, size - 1))
            del data[start : start + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[draw(st.integers(0, size)) :]
        elif kind == "shuffle":
            cuts = sorted(draw(st.lists(st.integers(0, size), min_size=1, max_size=4)))
            pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, size], strict=True)]
            order = draw(st.permutations(range(len(pieces))))
            data = bytearray(b"".join(pieces[i] for i in order))
        elif kind == "duplicate_chunk" and size:
            start = draw(st.integers(0, size - 1))
            chunk = data[start : draw(st.integers(start + 1, size))]
            data[draw(st.integers(0, size)) : 0] = chunk
        elif kind in ("duplicate_field", "drop_field", "swap_fields") and len(spans) > 1:
            index = draw(st.integers(0, len(spans) - 2))
            (a, b), (c, d) = spans[index], spans[index + 1]
            field, following = bytes(data[a:b]), bytes(data[c:d])
            replacement = {
                "duplicate_field": field + field,
                "drop_field": b"",
                "swap_fields": following + field,
            }[kind]
            data[a : d if kind == "swap_fields" else b] = replacement
        elif kind == "set_field" and spans:
            a, b = spans[draw(st.integers(0, len(spans) - 1))]
            tag, _, _ = bytes(data[a:b]).partition(b"=")
            if tag.isdigit() and len(tag) < 6 and int(tag) in FIELD_VALUES:
                data[a:b] = tag + b"=" + draw(FIELD_VALUES[int(tag)]) + SOH
        elif kind == "secure_text" and b"\x0191=" in data:
            start = data.index(b"\x0191=") + 4
            end = data.find(SOH, start)
            end = len(data) if end < 0 else end
            text = bytes(data[start:end])
            edit = draw(st.sampled_from(SECURE_TEXT_EDITS))
            if edit == "append":
                text += draw(st.sampled_from(SECURE_TEXT_TOKENS))
            elif edit == "drop_last":
                text = text[:-1]
            elif edit == "replace_last" and text.rstrip(b"="):
                data_end = len(text.rstrip(b"="))
                char = draw(st.sampled_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                            b"0123456789+/=-_"))
                text = text[: data_end - 1] + bytes([char]) + text[data_end:]
            elif edit == "strip_padding":
                text = text.rstrip(b"=")
            data[start:end] = text
    mutated = bytes(data)
    if kinds is FIELD_KINDS or draw(st.booleans()):
        mutated = reframe(mutated)
    return mutated


def message_mutations(original: bytes) -> st.SearchStrategy[bytes]:
    """A third each: any mutation; field-level ones, re-framed so that they reach the checks
    behind framing (layout, session, suite, SendingTime, base64, Noise); arbitrary input."""
    return st.one_of(
        mutations(original),
        mutations(original, rounds=2, kinds=FIELD_KINDS),
        arbitrary_inputs,
    )


chunk_sizes = st.just([1]) | st.lists(st.integers(1, 200), min_size=1, max_size=8)


def feed(session: Session, data: bytes, sizes: Sequence[int]) -> list[Event]:
    """Give ``data`` to ``session`` in chunks; stop when it closes (it then refuses input)."""
    events: list[Event] = []
    pos = 0
    chunk = 0
    while pos < len(data) and not session.closed:  # advances at least one byte per round
        size = sizes[chunk % len(sizes)]
        chunk += 1
        events.extend(session.receive(data[pos : pos + size]))
        pos += size
    return events


def _intact_prefix(data: bytes, messages: Sequence[bytes]) -> int:
    """How many of ``messages`` ``data`` starts with, whole and in order."""
    count = 0
    pos = 0
    while count < len(messages) and data.startswith(messages[count], pos):
        pos += len(messages[count])
        count += 1
    return count


def check_failure_or_waiting(
    session: Session, events: Sequence[Event], rest: bytes, waiting: State
) -> None:
    """After the part of the input that was accepted: either one ConnectionFailed, last, and the
    session closed; or nothing more, the session still ``waiting`` with ``rest`` buffered."""
    failures = [e for e in events if isinstance(e, ConnectionFailed)]
    if failures:
        assert failures == [events[-1]]
        assert session.closed
        assert rest, "a failure needs bytes beyond the accepted ones"
        return
    assert session.state is waiting
    (closed,) = session.receive_eof()
    assert isinstance(closed, ConnectionClosed)
    assert ("stream ended inside a message" in closed.reason) == bool(rest)
    assert session.closed


# --------------------------------------------------------------------------------------------
# The transport decoder


def check_transport(w: World, data: bytes, sizes: Sequence[int]) -> None:
    pair = w.established()
    acceptor = pair.acceptor
    events = feed(acceptor, data, sizes)  # must not raise
    intact = _intact_prefix(data, w.wires)
    rest = data[sum(len(m) for m in w.wires[:intact]) :]
    delivered = [e for e in events if isinstance(e, MessageReceived)]
    # Exactly the messages that arrived intact, in order; nothing of the first damaged one or of
    # anything after it (a later intact message fails too: its nonce is no longer the next one).
    assert [e.message for e in delivered] == list(w.plaintexts[:intact])
    assert events[: len(delivered)] == delivered
    if intact == len(w.wires) and not rest and not acceptor.closed:
        assert acceptor.receive_eof() == [ConnectionClosed(True, "the peer logged out")]
        return
    check_failure_or_waiting(acceptor, events[len(delivered) :], rest, State.ESTABLISHED)


@st.composite
def transport_streams(draw: st.DrawFn, w: World) -> bytes:
    messages = list(w.wires)
    index = draw(st.integers(0, len(messages) - 1))
    if draw(st.booleans()):
        messages[index] = draw(message_mutations(messages[index]))
    stream = b"".join(messages)
    if draw(st.booleans()):
        stream = draw(mutations(stream, rounds=2))
    return stream


def test_fuzz_transport_decoder_with_mutated_messages() -> None:
    @FUZZ
    @given(st.sampled_from(SUITES), st.data(), chunk_sizes)
    def target(suite: str, data: st.DataObject, sizes: list[int]) -> None:
        w = world(suite)
        stream = data.draw(transport_streams(w), label="stream")
        check_transport(w, stream, sizes)

    run_fuzz(target)


def _framed_garbage(fields: list[tuple[int, bytes]], secure: bytes | None) -> bytes:
    parts = [b"%d=%s\x01" % f for f in fields]
    if secure is not None:
        text = wire.b64encode(secure)
        parts.append(b"90=%d\x0191=%s\x01" % (len(text), text))
    return wire.assemble(b"8=FIX.4.4\x01", parts)


garbage_fields = st.lists(
    st.tuples(
        st.sampled_from([35, 34, 49, 52, 56, 43, 122, 98, 58, 90, 91, 10, 9, 8]) | st.integers(1),
        st.binary(max_size=12).map(lambda b: b.replace(SOH, b"")),
    ),
    max_size=6,
)
arbitrary_inputs = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=100).map(lambda b: b"8=FIX.4.4\x019=" + b),
    st.builds(_framed_garbage, garbage_fields, st.none() | st.binary(max_size=64)),
    st.builds(
        _framed_garbage,
        st.just([(35, b"D"), (34, b"2"), (49, b"BANK"), (52, STAMP), (56, b"VENUE")]),
        st.binary(min_size=16, max_size=80),
    ),
)


def test_fuzz_transport_decoder_with_arbitrary_bytes() -> None:
    @FUZZ
    @given(st.sampled_from(SUITES), st.lists(arbitrary_inputs, min_size=1, max_size=3), chunk_sizes)
    def target(suite: str, inputs: list[bytes], sizes: list[int]) -> None:
        stream = b"".join(inputs)
        check_transport(world(suite), stream, sizes)

    run_fuzz(target)


# --------------------------------------------------------------------------------------------
# The handshake


def check_message_1(w: World, data: bytes, sizes: Sequence[int]) -> None:
    pair = w.pair()
    acceptor = pair.acceptor
    sid = pair.acceptor_config.session_id
    store = pair.directory.replay_store
    events = feed(acceptor, data, sizes)  # must not raise
    if data.startswith(w.message_1):
        assert events[:2] == [LogonAccepted(sid, encrypted=True), MessageReceived(w.logon, b"A")]
        assert store.last_logon(sid) == CLOCK_NS
        # Whatever follows is a network message where the acceptor's engine must speak first.
        check_failure_or_waiting(
            acceptor, events[2:], data[len(w.message_1) :], State.LOGON_RECEIVED
        )
        return
    assert not [e for e in events if isinstance(e, LogonAccepted | MessageReceived)]
    assert store.last_logon(sid) is None  # the anti-replay record only moves on success
    check_failure_or_waiting(acceptor, events, data, State.AWAIT_LOGON)
    assert store.last_logon(sid) is None


def check_message_2(w: World, data: bytes, sizes: Sequence[int]) -> None:
    pair = w.pair()
    initiator = pair.initiator
    assert initiator.send(w.logon) == w.message_1
    events = feed(initiator, data, sizes)  # must not raise
    if data.startswith(w.message_2):
        assert events[:2] == [
            HandshakeComplete(pair.initiator_config.session_id, w.suite, w.handshake_hash),
            MessageReceived(w.reply, b"A"),
        ]
        check_failure_or_waiting(
            initiator, events[2:], data[len(w.message_2) :], State.ESTABLISHED
        )
        return
    assert not [e for e in events if isinstance(e, HandshakeComplete | MessageReceived)]
    assert initiator.handshake_hash is None
    check_failure_or_waiting(initiator, events, data, State.HANDSHAKE_SENT)


def test_fuzz_handshake_message_1() -> None:
    @FUZZ
    @given(st.sampled_from(SUITES), st.data(), chunk_sizes)
    def target(suite: str, data: st.DataObject, sizes: list[int]) -> None:
        w = world(suite)
        mutated = data.draw(message_mutations(w.message_1), label="message_1")
        check_message_1(w, mutated, sizes)

    run_fuzz(target)


def test_fuzz_handshake_message_2() -> None:
    @FUZZ
    @given(st.sampled_from(SUITES), st.data(), chunk_sizes)
    def target(suite: str, data: st.DataObject, sizes: list[int]) -> None:
        w = world(suite)
        mutated = data.draw(message_mutations(w.message_2), label="message_2")
        check_message_2(w, mutated, sizes)

    run_fuzz(target)


def test_fuzz_handshake_cross_suite_and_replay() -> None:
    """Message 1 or 2 of another suite, or of this suite but another run, or replayed twice."""

    @FUZZ
    @given(
        st.sampled_from(SUITES),
        st.sampled_from(SUITES),
        st.sampled_from(["message_1", "message_2"]),
        st.integers(1, 2),
        chunk_sizes,
    )
    def target(suite: str, other: str, which: str, copies: int, sizes: list[int]) -> None:
        w, source = world(suite), world(other)
        data = getattr(source, which) * copies
        if which == "message_1":
            check_message_1(w, data, sizes)
        else:
            check_message_2(w, data, sizes)

    run_fuzz(target)


# --------------------------------------------------------------------------------------------
# Targeted cases: the mutations above are mostly ordinary; these are the interesting ones.


@pytest.mark.parametrize("suite", SUITES)
def test_reframed_mutations_reach_the_aead(suite: str) -> None:
    """Sanity of the fuzzer itself: reframe() makes a flipped SecureData byte pass framing and
    layout, so it is the AEAD (or base64) that refuses it."""
    w = world(suite)
    original = w.wires[0]
    secure = original.index(b"\x0191=") + 4
    for pos in range(secure, secure + 8):
        flipped = bytearray(original)
        flipped[pos] = ord("A") if flipped[pos] != ord("A") else ord("B")
        data = reframe(bytes(flipped))
        framer = Framer()
        framer.feed(data)
        assert framer.next_message() == data  # framing is fine
        pair = w.established()
        (failed,) = pair.acceptor.receive(data)
        assert isinstance(failed, ConnectionFailed)
        assert failed.reason.endswith(
            ("authentication failed", "SecureData(91) is not canonical base64")
        )


def test_merged_frames_fail_at_the_session_layer() -> None:
    """FIX's CheckSum cannot catch a BodyLength digit change that makes a message swallow the
    next one when the bytes happen to sum right (see test_framing.py); the framer then yields one
    merged frame. The session must refuse it, delivering nothing of either message."""
    w = world(SUITES[0])
    pair = w.established()

    def order(seq: int, text_size: int) -> bytes:
        return fix_message(b"D", seq, b"BANK", b"VENUE", [(58, b"t" * text_size)],
                           sending_time=STAMP)

    def wire_size(plain: bytes) -> int:  # known before encryption: the ciphertext adds 16 bytes
        parts = wire.parse(plain, 1 << 20)
        sealed = bytes(parts[3] - parts[2] + 16)
        return len(wire.protected(plain[: parts[0]], plain[parts[1] : parts[2]], b"", sealed))

    # The swallowed message: a wire size of exactly 200 (base64 moves in steps of 4 bytes, so the
    # header's length, here MsgSeqNum's digits, picks the residue).
    candidates = (order(seq, size) for seq in (9, 99, 999, 9999) for size in range(100))
    second_plain = next((p for p in candidates if wire_size(p) == 200), b"")
    assert second_plain, "no plaintext gives a 200-byte wire message"
    merged = b""
    for seq in range(2, 3000):  # about 1 in 256 candidates collides
        first = pair.initiator.send(order(seq, 20))
        digits = first.index(b"\x019=") + 3
        assert first[digits + 3] == 1, "a BodyLength of three digits"
        assert first[digits] in b"1234567", "a BodyLength that +200 keeps at three digits"
        flipped = first[:digits] + bytes([first[digits] + 2]) + first[digits + 1 :]  # +200
        if sum(flipped) % 256 == 0:
            second = pair.initiator.send(second_plain)
            assert len(second) == 200
            merged = flipped + second
            break
        assert pair.acceptor.receive(first) == [MessageReceived(order(seq, 20), b"D")]
    assert merged, "no colliding message found"
    framer = Framer()
    framer.feed(merged)
    assert framer.next_message() == merged  # one frame, CheckSum and all
    events = pair.acceptor.receive(merged)
    assert len(events) == 1
    assert isinstance(events[0], ConnectionFailed)
    assert pair.acceptor.closed


def test_logon_with_year_zero_fails_the_connection() -> None:
    """Regression: SendingTime year 0000 raised ValueError out of Session.receive."""
    w = world(SUITES[0])
    pair = w.pair()
    # The initiator refuses such a Logon itself now, so the attacker's bytes are made directly.
    genuine = pair.initiator.send(w.logon)
    message_1 = reframe(genuine.replace(STAMP, b"00000101-00:00:00"))
    events = pair.acceptor.receive(message_1)
    assert len(events) == 1
    assert isinstance(events[0], ConnectionFailed)
    assert pair.directory.replay_store.last_logon(pair.acceptor_config.session_id) is None


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize(
    "field", [b"9" * 5000 + b"=x\x01", b"95=" + b"9" * 5000 + b"\x0196=x\x01"]
)
def test_logon_with_a_huge_tag_or_length_fails_the_connection(suite: str, field: bytes) -> None:
    """Regression: tags and data lengths beyond int()'s 4300-digit limit raised ValueError out of
    Session.receive (message 1's fields after the clear header go through iter_fields)."""
    w = world(suite)
    header_end = w.message_1.index(b"\x0198=0\x01") + 1
    data = reframe(w.message_1[:header_end] + field + w.message_1[header_end:])
    check_message_1(w, data, [len(data)])
    pair = w.pair()
    (failed,) = pair.acceptor.receive(data)
    assert isinstance(failed, ConnectionFailed)
    assert len(failed.reason) < 200  # the huge value is not copied into the log line


def _with_secure_text(message: bytes, text: bytes) -> bytes:
    start = message.index(b"\x0191=") + 4
    end = len(message) - 8
    return reframe(message[:start] + text + message[end:])


def test_excess_base64_padding_fails_the_connection() -> None:
    """Regression: '===' after a whole base64 quantum raised KeyError out of Session.receive."""
    w = world(SUITES[0])
    mutated = _with_secure_text(w.wires[0], b"QUJD" * 10 + b"===")
    pair = w.established()
    events = pair.acceptor.receive(mutated)
    assert len(events) == 1
    assert isinstance(events[0], ConnectionFailed)


def test_a_second_wire_form_of_a_transport_message_is_refused() -> None:
    """Regression: '=' after a whole base64 quantum was accepted, so a transport message had a
    second wire form that was delivered (against §8.2)."""
    w = world(SUITES[0])
    found = None
    for size in range(64):  # find a message whose SecureData is whole quanta ending in 0 bits
        plain = fix_message(b"0", 2, b"BANK", b"VENUE", [(112, b"x" * size)], sending_time=STAMP)
        pair = w.established()
        sent = pair.initiator.send(plain)
        text = sent[sent.index(b"\x0191=") + 4 : len(sent) - 8]
        if not text.endswith(b"=") and wire.b64decode(text)[-1] & 0x03 == 0:
            found = (pair, plain, sent, text)
            break
    assert found is not None
    pair, plain, sent, text = found
    mutated = _with_secure_text(sent, text + b"=")
    assert mutated != sent
    events = pair.acceptor.receive(mutated)
    assert MessageReceived(plain, b"0") not in events
    assert len(events) == 1
    assert isinstance(events[0], ConnectionFailed)
