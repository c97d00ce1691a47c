"""fixsecure.session: byte-exact round trips, events, close semantics, plaintext mode, local errors.

Attacks (brief §5) are in test_attacks.py.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
import simplefix
from conftest import (
    NOW,
    STAMP,
    clock,
    delivered,
    establish,
    failures,
    logon,
    new_pair,
    order,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixsecure import wire
from fixsecure.errors import ConfigError, LimitExceeded, LocalProtocolError
from fixsecure.memory import SessionPair, fix_message, session_pair
from fixsecure.noise import DH_FUNCTIONS
from fixsecure.replay import MemoryReplayStore
from fixsecure.session import (
    MAX_BYTES,
    MAX_MESSAGES,
    REKEY_INTERVAL,
    AcceptorDirectory,
    ConnectionClosed,
    HandshakeComplete,
    LogonAccepted,
    MessageReceived,
    MessagesReceived,
    Session,
    SessionConfig,
)
from fixsecure.sessionid import SessionID
from fixsecure.state import State
from fixsecure.suites import SUITES
from fixsecure.wire import assemble

SOH = b"\x01"


def raw(begin: bytes, *fields: tuple[int, bytes]) -> bytes:
    """A framed message with fields exactly as given (any order, any tags)."""
    return assemble(b"8=" + begin + SOH, [b"%d=%s\x01" % (tag, value) for tag, value in fields])


# -- handshake --------------------------------------------------------------------------------


def test_handshake_events_and_states(suite: str) -> None:
    pair = new_pair(suite)
    assert pair.initiator.state is State.AWAIT_LOGON
    assert pair.acceptor.session_id is None
    events = pair.acceptor.receive(pair.initiator.send(logon()))
    assert pair.initiator.state is State.HANDSHAKE_SENT
    assert pair.acceptor.state is State.LOGON_RECEIVED
    accepted = events[0]
    assert isinstance(accepted, LogonAccepted)
    assert accepted.encrypted
    assert accepted.session_id == SessionID("FIX.4.4", "VENUE", "BANK")
    assert pair.acceptor.session_id == accepted.session_id
    assert delivered(events) == [logon()]
    events = pair.initiator.receive(pair.acceptor.send(logon(b"VENUE", b"BANK")))
    complete = events[0]
    assert isinstance(complete, HandshakeComplete)
    assert complete.suite == suite
    assert complete.handshake_hash == pair.acceptor.handshake_hash
    assert pair.initiator.state is pair.acceptor.state is State.ESTABLISHED
    assert pair.initiator.encrypted
    assert pair.acceptor.encrypted


def test_the_logon_body_is_not_on_the_wire() -> None:
    pair = new_pair()
    secret_logon = logon(body=[(98, 0), (108, 30), (553, b"trader7"), (554, b"hunter2-secret")])
    message1 = pair.initiator.send(secret_logon)
    for secret in (b"trader7", b"hunter2-secret", b"108=30", b"553=", b"554="):
        assert secret not in message1
    # The clear part is exactly the header, EncryptMethod, the protocol label and the suite.
    assert message1.startswith(secret_logon[: wire.split(secret_logon)[2]][:9])
    assert b"\x0198=0\x0125800=fixsecure/1\x0125801=Noise_KK_25519_AESGCM_SHA256\x0190=" in message1
    assert delivered(pair.acceptor.receive(message1)) == [secret_logon]


def test_message_two_may_be_a_logout_and_the_session_then_ends_cleanly() -> None:
    pair = new_pair()
    pair.acceptor.receive(pair.initiator.send(logon()))
    refusal = fix_message(b"5", 1, b"VENUE", b"BANK", [(58, b"bad password")], sending_time=STAMP)
    message2 = pair.acceptor.send(refusal)
    assert b"98=0" not in message2  # EncryptMethod is only added to Logons
    assert b"bad password" not in message2
    assert delivered(pair.initiator.receive(message2)) == [refusal]
    assert pair.initiator.logout_received
    assert pair.initiator.receive_eof() == [ConnectionClosed(True, "the peer logged out")]


# -- byte-exact round trips -------------------------------------------------------------------

QUICKFIX_ORDER = [(35, b"D"), (34, b"7"), (49, b"BANK"), (52, STAMP), (56, b"VENUE")]
OTHER_ORDER = [(35, b"D"), (49, b"BANK"), (56, b"VENUE"), (34, b"7"), (52, STAMP)]
BODY = [(11, b"ORD-7"), (55, b"EUR/USD"), (54, b"1"), (38, b"100"), (40, b"1")]


def _round_trip(pair: SessionPair, message: bytes) -> None:
    for sender, receiver in ((pair.initiator, pair.acceptor), (pair.acceptor, pair.initiator)):
        wire_bytes = sender.send(message)
        assert delivered(receiver.receive(wire_bytes)) == [message]


@pytest.mark.parametrize("begin", [b"FIX.4.2", b"FIX.4.4", b"FIXT.1.1"])
@pytest.mark.parametrize("header", [QUICKFIX_ORDER, OTHER_ORDER], ids=["quickfix", "other"])
def test_round_trip_versions_and_header_orders(
    pair: SessionPair, begin: bytes, header: list[tuple[int, bytes]]
) -> None:
    message = raw(begin, *header, *BODY)
    wire_bytes = pair.initiator.send(message)
    clear = message[wire.split(message)[1] : wire.split(message)[2]]
    assert clear == b"".join(b"%d=%s\x01" % f for f in header)
    assert wire_bytes[wire.split(wire_bytes)[1] : wire.split(wire_bytes)[2]] == clear
    assert delivered(pair.acceptor.receive(wire_bytes)) == [message]
    _round_trip(pair, message)


OPTIONAL_HEADERS = {
    "on behalf of / deliver to": [(115, b"CLIENT"), (128, b"DESK"), (116, b"S"), (129, b"T")],
    "possdup resend": [(43, b"Y"), (97, b"Y"), (122, STAMP)],
    "sub and location ids": [(50, b"SUB"), (142, b"LDN"), (57, b"TSUB"), (143, b"NYC")],
    "fixt appl ver": [(1128, b"9"), (1129, b"custom"), (1156, b"1")],
    "hops": [(627, b"2"), (628, b"R1"), (629, STAMP), (630, b"7"), (628, b"R2"), (630, b"8")],
    "last processed and encoding": [(369, b"6"), (347, b"UTF-8")],
}


@pytest.mark.parametrize("extra", list(OPTIONAL_HEADERS.values()), ids=list(OPTIONAL_HEADERS))
def test_optional_header_fields_stay_clear_and_round_trip(
    pair: SessionPair, extra: list[tuple[int, bytes]]
) -> None:
    message = raw(b"FIX.4.4", *QUICKFIX_ORDER, *extra, *BODY)
    wire_bytes = pair.initiator.send(message)
    for tag, value in extra:
        assert b"\x01%d=%s\x01" % (tag, value) in wire_bytes
    assert delivered(pair.acceptor.receive(wire_bytes)) == [message]


def test_repeating_groups_data_fields_with_soh_and_trailer_fields(pair: SessionPair) -> None:
    raw_data = b"sig\x01with=soh\x01inside"
    encoded = b"\xe2\x82\xac text\x01"
    message = raw(
        b"FIX.4.4",
        *QUICKFIX_ORDER,
        (11, b"ORD-9"),
        (453, b"2"),
        (448, b"P1"),
        (447, b"D"),
        (452, b"1"),
        (448, b"P2"),
        (447, b"D"),
        (452, b"3"),
        (95, b"%d" % len(raw_data)),
        (96, raw_data),
        (354, b"%d" % len(encoded)),
        (355, encoded),
        (93, b"3"),
        (89, b"s\x01g"),
    )
    _round_trip(pair, message)


def test_header_fields_after_the_body_start_and_empty_values_are_encrypted(
    pair: SessionPair,
) -> None:
    message = raw(b"FIX.4.4", (35, b"D"), (34, b"3"), (49, b"BANK"), (11, b"X"), (56, b"VENUE"))
    wire_bytes = pair.initiator.send(message)
    assert b"56=VENUE" not in wire_bytes  # after a body field: it is body, so encrypted
    assert delivered(pair.acceptor.receive(wire_bytes)) == [message]
    xml = b"<a>\x01</a>"
    odd = raw(
        b"FIX.4.4", (35, b"0"), (34, b"4"), (49, b"BANK"), (212, b"%d" % len(xml)), (213, xml)
    )
    wire_bytes = pair.initiator.send(odd)
    assert b"<a>" not in wire_bytes
    assert delivered(pair.acceptor.receive(wire_bytes)) == [odd]


def test_messages_without_a_body_round_trip(pair: SessionPair) -> None:
    heartbeat = raw(b"FIX.4.4", (35, b"0"), (34, b"9"), (49, b"BANK"), (52, STAMP), (56, b"VENUE"))
    _round_trip(pair, heartbeat)


def test_simplefix_reads_the_wire_header(pair: SessionPair) -> None:
    wire_bytes = pair.initiator.send(order(2))
    parser = simplefix.FixParser()
    parser.append_buffer(wire_bytes)
    parsed = parser.get_message()
    assert parsed.get(35) == b"D"
    assert parsed.get(49) == b"BANK"
    assert parsed.get(56) == b"VENUE"
    assert parsed.get(34) == b"2"
    assert int(parsed.get(90)) == len(parsed.get(91))
    assert parsed.get(11) is None


_values = st.binary(min_size=1, max_size=24).filter(lambda v: SOH not in v)
_body_fields = st.lists(
    st.tuples(st.integers(min_value=1, max_value=9999), _values).filter(
        lambda f: (
            f[0] not in wire.CLEAR_HEADER_TAGS
            and f[0] not in (8, 9, 10)
            and f[0] not in (90, 91, 95, 96, 212, 213, 93, 89, 354, 355)
        )
    ),
    max_size=12,
)
_optional_header = st.lists(
    st.sampled_from([(43, b"Y"), (97, b"N"), (115, b"OBO"), (128, b"DTC"), (50, b"S1")]),
    unique=True,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    begin=st.sampled_from([b"FIX.4.2", b"FIX.4.4", b"FIXT.1.1"]),
    quickfix=st.booleans(),
    extra=_optional_header,
    body=_body_fields,
    data=st.binary(max_size=40),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_hypothesis_round_trips_in_random_chunks(
    begin: bytes,
    quickfix: bool,
    extra: list[tuple[int, bytes]],
    body: list[tuple[int, bytes]],
    data: bytes,
    seed: int,
) -> None:
    pair = establish(new_pair())
    header = QUICKFIX_ORDER if quickfix else OTHER_ORDER
    fields = [*header, *extra, *body]
    if data:
        fields += [(95, b"%d" % len(data)), (96, data)]
    message = raw(begin, *fields)
    stream = b"".join(pair.initiator.send(message) for _ in range(3))
    rng = random.Random(seed)
    got: list[bytes] = []
    position = 0
    while position < len(stream):
        step = rng.choice([1, 2, 7, 64, 300])
        got += delivered(pair.acceptor.receive(stream[position : position + step]))
        position += step
    assert got == [message] * 3


def test_one_byte_at_a_time_through_the_handshake_and_transport(suite: str) -> None:
    pair = new_pair(suite)
    events = []
    for byte in pair.initiator.send(logon()):
        events += pair.acceptor.receive(bytes([byte]))
    assert delivered(events) == [logon()]
    reply = logon(b"VENUE", b"BANK")
    events = []
    for byte in pair.acceptor.send(reply):
        events += pair.initiator.receive(bytes([byte]))
    assert delivered(events) == [reply]
    message = order(2)
    events = []
    for byte in pair.initiator.send(message):
        events += pair.acceptor.receive(bytes([byte]))
    assert delivered(events) == [message]


def test_many_messages_in_one_read_all_delivered_in_order(pair: SessionPair) -> None:
    messages = [order(seq, b"ORD-%d" % seq) for seq in range(2, 202)]
    stream = b"".join(pair.initiator.send(m) for m in messages)
    assert delivered(pair.acceptor.receive(stream)) == messages


def test_messages_before_a_bad_one_in_the_same_read_are_delivered(pair: SessionPair) -> None:
    good = [pair.initiator.send(order(seq)) for seq in (2, 3)]
    bad = bytearray(pair.initiator.send(order(4)))
    bad[-20] ^= 0x01
    events = pair.acceptor.receive(b"".join(good) + bytes(bad))
    assert delivered(events) == [order(2), order(3)]
    assert len(failures(events)) == 1
    assert pair.acceptor.state is State.CLOSED


# -- closing ----------------------------------------------------------------------------------


def test_clean_close_needs_a_verified_logout_from_the_peer(pair: SessionPair) -> None:
    logout = fix_message(b"5", 2, b"BANK", b"VENUE", sending_time=STAMP)
    pair.acceptor.receive(pair.initiator.send(logout))
    assert pair.initiator.logout_sent
    assert pair.acceptor.logout_received
    reply = fix_message(b"5", 2, b"VENUE", b"BANK", sending_time=STAMP)
    pair.initiator.receive(pair.acceptor.send(reply))
    assert pair.initiator.receive_eof() == [ConnectionClosed(True, "the peer logged out")]
    assert pair.acceptor.receive_eof() == [ConnectionClosed(True, "the peer logged out")]
    assert pair.initiator.state is State.CLOSED
    assert pair.initiator.receive_eof() == []


def test_close_without_logout_is_abnormal(pair: SessionPair) -> None:
    (closed,) = pair.acceptor.receive_eof()
    assert isinstance(closed, ConnectionClosed)
    assert not closed.clean
    assert "without a Logout" in closed.reason


def test_close_inside_a_message_is_abnormal_and_says_so(pair: SessionPair) -> None:
    logout = pair.initiator.send(fix_message(b"5", 2, b"BANK", b"VENUE", sending_time=STAMP))
    pair.acceptor.receive(logout[:-3])
    (closed,) = pair.acceptor.receive_eof()
    assert isinstance(closed, ConnectionClosed)
    assert not closed.clean
    assert "stream ended inside a message" in closed.reason


def test_close_during_the_handshake_is_abnormal() -> None:
    pair = new_pair()
    pair.acceptor.receive(pair.initiator.send(logon()))
    (closed,) = pair.initiator.receive_eof()
    assert isinstance(closed, ConnectionClosed)
    assert not closed.clean
    assert "HANDSHAKE_SENT" in closed.reason


def test_a_closed_session_refuses_everything(pair: SessionPair) -> None:
    pair.initiator.abort()
    assert pair.initiator.closed
    with pytest.raises(LocalProtocolError, match="closed"):
        pair.initiator.send(order(2))
    with pytest.raises(LocalProtocolError, match="closed"):
        pair.initiator.receive(b"8=")


# -- plaintext sessions -----------------------------------------------------------------------


def _plaintext_pair() -> SessionPair:
    sid = SessionID("FIX.4.4", "BANK", "VENUE")
    iconfig = SessionConfig(sid, required=False)
    aconfig = SessionConfig(sid.reversed(), required=False)
    directory = AcceptorDirectory([aconfig], MemoryReplayStore())
    return SessionPair(
        Session.initiator(iconfig, clock=clock),
        Session.acceptor(directory, clock=clock),
        iconfig,
        aconfig,
        directory,
    )


def test_plaintext_session_passes_messages_through_unchanged() -> None:
    pair = _plaintext_pair()
    assert pair.initiator.send(logon()) == logon()
    events = pair.acceptor.receive(logon())
    assert events[0] == LogonAccepted(SessionID("FIX.4.4", "VENUE", "BANK"), encrypted=False)
    assert delivered(events) == [logon()]
    assert pair.acceptor.send(logon(b"VENUE", b"BANK")) == logon(b"VENUE", b"BANK")
    assert pair.initiator.state is pair.acceptor.state is State.PLAINTEXT
    assert pair.initiator.send(order(2)) == order(2)
    assert delivered(pair.acceptor.receive(order(2))) == [order(2)]
    assert not pair.acceptor.encrypted


def test_an_initiator_with_keys_never_falls_back_to_plaintext() -> None:
    dh = DH_FUNCTIONS["25519"]
    own, peer = dh.generate_keypair(), dh.generate_keypair()
    config = SessionConfig(
        SessionID("FIX.4.4", "BANK", "VENUE"),
        own_keys=(own,),
        peer_keys=(peer.public,),
        required=False,
    )
    initiator = Session.initiator(config, clock=clock)
    assert b"25800=fixsecure/1" in initiator.send(logon())
    events = initiator.receive(logon(b"VENUE", b"BANK"))  # a plaintext reply
    assert delivered(events) == []
    assert len(failures(events)) == 1
    assert initiator.state is State.CLOSED


def test_session_config_validation() -> None:
    dh = DH_FUNCTIONS["25519"]
    own, peer = dh.generate_keypair(), dh.generate_keypair()
    sid = SessionID("FIX.4.4", "A", "B")
    with pytest.raises(ConfigError, match="no keys"):
        SessionConfig(sid)
    with pytest.raises(ConfigError, match="unknown suite"):
        SessionConfig(sid, suite="Noise_XX_25519_AESGCM_SHA256", own_keys=(own,), peer_keys=(b"",))
    with pytest.raises(ConfigError, match="together"):
        SessionConfig(sid, own_keys=(own,), required=False)
    with pytest.raises(ConfigError, match="does not fit"):
        SessionConfig(
            sid,
            suite="Noise_KK_P256_AESGCM_SHA256",
            own_keys=(own,),
            peer_keys=(DH_FUNCTIONS["P256"].generate_keypair().public,),
        )
    with pytest.raises(ConfigError, match="peer key unusable"):
        SessionConfig(sid, own_keys=(own,), peer_keys=(bytes(31),))
    with pytest.raises(ConfigError, match="at most two"):
        SessionConfig(sid, own_keys=(own,), peer_keys=(peer.public,) * 3)
    config = SessionConfig(sid, own_keys=(own,), peer_keys=(peer.public,))
    with pytest.raises(ConfigError, match="one port cannot tell them apart"):
        AcceptorDirectory([config, config], MemoryReplayStore())


# -- local errors: refused with a reason, session still usable ---------------------------------


def test_the_first_local_message_must_be_a_logon() -> None:
    pair = new_pair()
    with pytest.raises(LocalProtocolError, match=r"first message must be a Logon \(35=A\)"):
        pair.initiator.send(order(1))
    assert pair.initiator.state is State.AWAIT_LOGON
    pair.initiator.send(logon())  # still usable


def test_logon_without_sending_time_or_with_old_encryption_is_refused() -> None:
    pair = new_pair()
    no_time = raw(b"FIX.4.4", (35, b"A"), (34, b"1"), (49, b"BANK"), (56, b"VENUE"), (98, b"0"))
    with pytest.raises(LocalProtocolError, match=r"SendingTime\(52\)"):
        pair.initiator.send(no_time)
    with pytest.raises(LocalProtocolError, match=r"EncryptMethod\(98\)=b'2'"):
        pair.initiator.send(logon(body=[(98, 2), (108, 30)]))
    assert pair.initiator.state is State.AWAIT_LOGON


def test_nothing_may_be_sent_before_the_logon_reply() -> None:
    pair = new_pair()
    pair.initiator.send(logon())
    with pytest.raises(LocalProtocolError, match="before the Logon reply"):
        pair.initiator.send(order(2))
    acceptor = Session.acceptor(pair.directory, clock=clock)
    with pytest.raises(LocalProtocolError, match="AWAIT_LOGON"):
        acceptor.send(logon(b"VENUE", b"BANK"))


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda m: m[:-4] + b"000\x01", "CheckSum"),
        (lambda m: m.replace(b"9=", b"9=0", 1), "BodyLength"),
        (lambda m: m + m, "more than one"),
        (lambda m: m[:-1], "incomplete"),
        (lambda m: b"garbage" + m, "BeginString"),
        (lambda m: raw(b"FIX.4.4", (34, b"2"), (49, b"BANK")), "MsgType"),
    ],
)
def test_malformed_local_messages_are_refused_precisely(
    pair: SessionPair, mangle: object, reason: str
) -> None:
    bad = mangle(order(2))  # type: ignore[operator]
    with pytest.raises(LocalProtocolError, match=reason):
        pair.initiator.send(bad)
    assert pair.initiator.state is State.ESTABLISHED
    assert delivered(pair.acceptor.receive(pair.initiator.send(order(2)))) == [order(2)]


def test_local_messages_over_the_size_limit_are_refused() -> None:
    pair = establish(new_pair(max_message_size=512))
    big = fix_message(b"D", 2, b"BANK", b"VENUE", [(58, b"x" * 600)], sending_time=STAMP)
    with pytest.raises(LocalProtocolError, match="exceeds the limit of 512"):
        pair.initiator.send(big)
    assert pair.initiator.state is State.ESTABLISHED


# -- key rotation -----------------------------------------------------------------------------


@pytest.mark.parametrize("own_index", [0, 1])
@pytest.mark.parametrize("peer_index", [0, 1])
def test_acceptor_rotation_accepts_either_key_pair(own_index: int, peer_index: int) -> None:
    dh = DH_FUNCTIONS["25519"]
    acceptor_keys = (dh.generate_keypair(), dh.generate_keypair())
    initiator_keys = (dh.generate_keypair(), dh.generate_keypair())
    sid = SessionID("FIX.4.4", "BANK", "VENUE")
    aconfig = SessionConfig(
        sid.reversed(), own_keys=acceptor_keys, peer_keys=tuple(k.public for k in initiator_keys)
    )
    iconfig = SessionConfig(
        sid, own_keys=(initiator_keys[peer_index],), peer_keys=(acceptor_keys[own_index].public,)
    )
    acceptor = Session.acceptor(AcceptorDirectory([aconfig], MemoryReplayStore()), clock=clock)
    initiator = Session.initiator(iconfig, clock=clock)
    events = acceptor.receive(initiator.send(logon()))
    assert events[0] == LogonAccepted(
        sid.reversed(), encrypted=True, own_key_index=own_index, peer_key_index=peer_index
    )
    reply = logon(b"VENUE", b"BANK")
    assert delivered(initiator.receive(acceptor.send(reply))) == [reply]


# -- reprs ------------------------------------------------------------------------------------


def test_event_and_session_reprs_hide_message_bodies(pair: SessionPair) -> None:
    message = fix_message(b"D", 2, b"BANK", b"VENUE", [(11, b"SECRET-ORDER")], sending_time=STAMP)
    (event,) = pair.acceptor.receive(pair.initiator.send(message))
    assert isinstance(event, MessageReceived)
    assert b"SECRET-ORDER" in event.message
    for text in (repr(event), str(event), repr(pair.acceptor), repr(pair.initiator_config)):
        assert "SECRET-ORDER" not in text
    assert "msg_type=b'D'" in repr(event)


def test_session_pair_builds_matching_configs() -> None:
    pair = session_pair(SUITES[2])
    assert pair.initiator_config.session_id.reversed() == pair.acceptor_config.session_id
    assert pair.initiator_config.peer_keys == (pair.acceptor_config.own_keys[0].public,)
    assert NOW > 0


def test_failure_offsets_are_stream_positions_across_the_fast_path() -> None:
    """Whole messages take the one-regex fast path; the first bad one falls back to the framer,
    whose error must still name the byte's position in the connection's stream."""
    pair = new_pair()
    message1 = pair.initiator.send(logon())
    pair.acceptor.receive(message1)
    pair.initiator.receive(pair.acceptor.send(logon(b"VENUE", b"BANK")))
    good = [pair.initiator.send(order(seq)) for seq in (2, 3)]
    bad = bytearray(pair.initiator.send(order(4)))
    bad[-2] = ord("9") if bad[-2] != ord("9") else ord("8")  # a wrong CheckSum digit
    stream = b"".join(good) + bytes(bad)
    events = pair.acceptor.receive(stream)
    assert delivered(events) == [order(2), order(3)]
    (failure,) = failures(events)
    position = len(message1) + len(stream) - 7
    assert f"CheckSum(10) does not match (at byte {position})" in failure.reason


# -- batches: send_data and receive_batch (specs/hot-path.md) -------------------------------------


def twin_pairs(suite: str = SUITES[0]) -> tuple[SessionPair, SessionPair]:
    """Two established pairs with the same static and ephemeral keys and clock: the same messages
    give the same wire bytes in both, whichever API sent them."""
    dh = SessionConfig(SessionID("FIX.4.4", "BANK", "VENUE"), suite, required=False).protocol.dh
    keys = [dh.generate_keypair() for _ in range(4)]
    made = [
        new_pair(
            suite,
            initiator_key=keys[0],
            acceptor_key=keys[1],
            ephemeral=lambda _dh: keys[2],
            acceptor_ephemeral=lambda _dh: keys[3],
        )
        for _ in range(2)
    ]
    first, second = (establish(pair) for pair in made)
    assert first.initiator.handshake_hash == second.initiator.handshake_hash
    return first, second


def flattened(events: list[Any]) -> list[bytes]:
    """Every message of a receive_batch() result, runs and single messages alike."""
    out: list[bytes] = []
    for event in events:
        if isinstance(event, MessagesReceived):
            out += event.messages
        elif isinstance(event, MessageReceived):
            out.append(event.message)
    return out


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


batch_messages = st.lists(
    st.builds(
        lambda seq, clordid, kind: fix_message(
            kind, seq, b"BANK", b"VENUE", [(11, clordid), (58, b"x" * (seq % 300))],
            sending_time=STAMP,
        ),
        st.integers(2, 10**6),
        st.binary(min_size=1, max_size=8).filter(lambda v: b"\x01" not in v),
        st.sampled_from([b"D", b"F", b"0", b"1", b"2", b"4", b"5"]),
    ),
    min_size=1,
    max_size=40,
)


any_chunking = given(
    messages=batch_messages,
    cuts=st.lists(st.integers(0, 10**6), max_size=12),
    suite=st.sampled_from(SUITES),
    nonce=st.sampled_from([0, 12_345, REKEY_INTERVAL - 3, 5 * REKEY_INTERVAL - 1]),
)


def at_nonce(pairs: tuple[SessionPair, SessionPair], nonce: int) -> tuple[SessionPair, ...]:
    """Both pairs with both directions' counters moved to ``nonce`` (as after that many
    messages): runs then start anywhere, rekey boundaries included."""
    for pair in pairs:
        for direction in (pair.initiator._send, pair.acceptor._recv):
            assert direction is not None
            direction.cipher.set_nonce(nonce)
    return pairs


@settings(max_examples=60, deadline=None)
@any_chunking
def test_send_data_in_any_chunking_gives_the_bytes_of_send(
    messages: list[bytes], cuts: list[int], suite: str, nonce: int
) -> None:
    by_message, by_stream = at_nonce(twin_pairs(suite), nonce)
    expected = b"".join(by_message.initiator.send(m) for m in messages)
    got = b"".join(by_stream.initiator.send_data(c) for c in chunked(b"".join(messages), cuts))
    assert got == expected
    assert by_stream.initiator.messages_sent == by_message.initiator.messages_sent
    assert by_stream.initiator.local_buffered == 0
    assert by_stream.initiator.logout_sent == (any(wire.msg_type(m) == b"5" for m in messages))
    assert by_stream.initiator._send.cipher.n == by_message.initiator._send.cipher.n


@settings(max_examples=60, deadline=None)
@any_chunking
def test_receive_batch_in_any_chunking_delivers_what_receive_does(
    messages: list[bytes], cuts: list[int], suite: str, nonce: int
) -> None:
    one, other = at_nonce(twin_pairs(suite), nonce)
    data = b"".join(one.initiator.send(m) for m in messages)
    assert data == b"".join(other.initiator.send(m) for m in messages)
    singles = [e for c in chunked(data, cuts) for e in one.acceptor.receive(c)]
    batches = [e for c in chunked(data, cuts) for e in other.acceptor.receive_batch(c)]
    assert delivered(singles) == flattened(batches) == messages
    assert [e.msg_type for e in singles if isinstance(e, MessageReceived)] == [
        wire.msg_type(m) for m in messages
    ]
    assert one.acceptor.logout_received == other.acceptor.logout_received
    assert one.acceptor._recv.cipher.n == other.acceptor._recv.cipher.n == nonce + len(messages)


def test_a_whole_read_is_one_run_event(pair: SessionPair) -> None:
    messages = [order(seq, b"C%d" % seq) for seq in range(2, 202)]
    events = pair.acceptor.receive_batch(pair.initiator.send_data(b"".join(messages)))
    assert len(events) == 1
    run = events[0]
    assert isinstance(run, MessagesReceived)
    assert run.data == b"".join(messages)
    assert run.messages == messages
    assert run.ends[-1] == len(run.data)
    assert repr(run) == f"MessagesReceived(200 messages, {len(run.data)} bytes)"


def test_runs_cross_the_rekey_boundary_like_single_messages(suite: str) -> None:
    one, other = twin_pairs(suite)
    for pair in (one, other):
        pair.initiator._send.cipher.set_nonce(REKEY_INTERVAL - 3)
        pair.acceptor._recv.cipher.set_nonce(REKEY_INTERVAL - 3)
    messages = [order(seq) for seq in range(2, 12)]
    expected = b"".join(one.initiator.send(m) for m in messages)
    assert other.initiator.send_data(b"".join(messages)) == expected
    assert flattened(other.acceptor.receive_batch(expected)) == messages
    for pair in (one, other):
        assert pair.initiator._send.cipher.n == REKEY_INTERVAL + 7
    assert other.acceptor._recv.cipher.n == REKEY_INTERVAL + 7
    rekeyed = other.initiator._send.cipher._key
    assert rekeyed == one.initiator._send.cipher._key == other.acceptor._recv.cipher._key
    # The runner follows the key: a run after the boundary opens under the new key too.
    again = other.initiator.send_data(order(12))
    assert flattened(other.acceptor.receive_batch(again)) == [order(12)]


def test_send_data_stops_at_the_message_cap_and_hands_over_what_went_before(
    pair: SessionPair,
) -> None:
    pair.initiator._send.cipher.set_nonce(MAX_MESSAGES - 2)
    pair.acceptor._recv.cipher.set_nonce(MAX_MESSAGES - 2)
    with pytest.raises(LimitExceeded) as raised:
        pair.initiator.send_data(b"".join(order(seq) for seq in range(2, 6)))
    assert flattened(pair.acceptor.receive_batch(raised.value.wire)) == [order(2), order(3)]
    assert pair.initiator.state is State.CLOSED
    assert pair.initiator._send.cipher.n == MAX_MESSAGES  # no nonce beyond the cap


def test_send_data_stops_at_the_byte_cap(pair: SessionPair) -> None:
    body = len(order(2)) - wire.parse(order(2), 4096)[2] - 7
    pair.initiator._send.bytes = MAX_BYTES - body  # room for exactly one more body
    with pytest.raises(LimitExceeded) as raised:
        pair.initiator.send_data(order(2) + order(3))
    assert flattened(pair.acceptor.receive_batch(raised.value.wire)) == [order(2)]
    assert pair.initiator._send.bytes == MAX_BYTES


def test_a_malformed_engine_message_keeps_the_good_ones_before_it(pair: SessionPair) -> None:
    bad = order(4)[:-4] + b"999\x01"  # a wrong CheckSum
    with pytest.raises(LocalProtocolError, match="CheckSum") as raised:
        pair.initiator.send_data(order(2) + order(3) + bad + order(5))
    assert flattened(pair.acceptor.receive_batch(raised.value.wire)) == [order(2), order(3)]
    with pytest.raises(LocalProtocolError, match="CheckSum"):  # the stream cannot resynchronise
        pair.initiator.send_data(order(6))


def test_send_data_before_the_logon_reply_is_refused_like_send() -> None:
    pair = new_pair()
    first = pair.initiator.send_data(logon())
    assert delivered(pair.acceptor.receive(first)) == [logon()]
    with pytest.raises(LocalProtocolError, match="before the Logon reply"):
        pair.initiator.send_data(order(2))


def test_a_partial_engine_message_waits_and_is_reported(pair: SessionPair) -> None:
    message = order(2)
    assert message[:12] == b"8=FIX.4.4\x019="
    assert pair.initiator.send_data(message[:12]) == b""  # not even its BodyLength yet
    assert pair.initiator.local_buffered == 12
    protected = pair.initiator.send_data(message[12:] + order(3))
    assert pair.initiator.local_buffered == 0
    assert flattened(pair.acceptor.receive_batch(protected)) == [message, order(3)]


class FailingRunner:
    """A runner that fails the way only a broken machine would (out of memory)."""

    def seal(self, *args: object) -> Any:
        raise MemoryError

    def open(self, *args: object) -> Any:
        raise MemoryError


def test_a_run_that_raises_fails_the_session_closed(pair: SessionPair) -> None:
    """specs/hot-path.md §5: after an unexpected error in a run nothing may be sent any more,
    because nonces may have been spent on output that was lost."""
    pair.initiator._send.runner = FailingRunner()
    with pytest.raises(MemoryError):
        pair.initiator.send_data(order(2))
    assert pair.initiator.state is State.CLOSED
    with pytest.raises(LocalProtocolError, match="closed"):
        pair.initiator.send(order(3))
    pair.acceptor._recv.runner = FailingRunner()
    with pytest.raises(MemoryError):
        pair.acceptor.receive_batch(b"8=FIX.4.4\x01")
    assert pair.acceptor.state is State.CLOSED


def test_a_logout_in_a_run_makes_the_end_clean(pair: SessionPair) -> None:
    logout = fix_message(b"5", 3, b"BANK", b"VENUE", sending_time=STAMP)
    protected = pair.initiator.send_data(order(2) + logout)
    assert pair.initiator.logout_sent
    assert flattened(pair.acceptor.receive_batch(protected)) == [order(2), logout]
    assert pair.acceptor.logout_received
    assert pair.acceptor.receive_eof() == [ConnectionClosed(True, "the peer logged out")]


def test_a_single_message_across_the_rekey_boundary_gives_the_run_the_new_key(
    pair: SessionPair,
) -> None:
    """The message that crosses the boundary is split across reads on both sides, so it goes
    through the per-message seal and open (whose Rekey must renew the runner too); the run after
    it is under the new key on both sides."""
    pair.initiator._send.cipher.set_nonce(REKEY_INTERVAL - 1)
    pair.acceptor._recv.cipher.set_nonce(REKEY_INTERVAL - 1)
    first, rest = order(2), [order(seq) for seq in range(3, 9)]
    wire_bytes = pair.initiator.send_data(first[:40])
    wire_bytes += pair.initiator.send_data(first[40:] + b"".join(rest))
    assert pair.initiator._send.cipher.n == REKEY_INTERVAL + 6
    events = pair.acceptor.receive_batch(wire_bytes[:60])
    events += pair.acceptor.receive_batch(wire_bytes[60:])
    assert flattened(events) == [first, *rest]
    assert not failures(events)


def test_error_offsets_count_the_whole_stream_after_a_split_and_a_run(suite: str) -> None:
    pair = new_pair(suite)
    message1 = pair.initiator.send(logon())  # the acceptor's stream starts with it
    pair.acceptor.receive(message1)
    pair.initiator.receive(pair.acceptor.send(logon(b"VENUE", b"BANK")))
    messages = [order(seq) for seq in range(2, 6)]
    stream = pair.initiator.send_data(b"".join(messages))
    garbage_at = len(message1) + len(stream)
    cut = 30  # inside the first message: completed, then a run, then garbage
    assert not failures(pair.acceptor.receive_batch(stream[:cut]))
    events = pair.acceptor.receive_batch(stream[cut:] + b"garbage")
    assert flattened(events) == messages
    (failed,) = failures(events)
    assert f"(at byte {garbage_at})" in failed.reason
    # The same on the engine side: a split message, a run, then bytes that are not FIX; the
    # engine's stream so far is the orders above and these.
    plain = b"".join(order(seq) for seq in range(6, 10))
    assert pair.initiator.send_data(plain[:30]) == b""
    engine_garbage_at = len(b"".join(messages)) + len(plain)
    with pytest.raises(LocalProtocolError, match=rf"\(at byte {engine_garbage_at}\)"):
        pair.initiator.send_data(plain[30:] + b"garbage")


def test_the_receive_run_counts_the_byte_cap_too(pair: SessionPair) -> None:
    body = len(order(2)) - wire.parse(order(2), 4096)[2] - 7
    stream = pair.initiator.send_data(order(2) + order(3))
    pair.acceptor._recv.bytes = MAX_BYTES - body  # room for exactly one more body
    events = pair.acceptor.receive_batch(stream)
    assert flattened(events) == [order(2)]
    (failed,) = failures(events)
    assert "bytes under one handshake" in failed.reason
    assert pair.acceptor._recv.bytes == MAX_BYTES


def test_a_refused_split_message_keeps_the_rest_of_the_read(pair: SessionPair) -> None:
    """A well-framed message the session cannot send (35 is not the third field) completes a
    split; the messages after it in the same read are kept and go out with the next call."""
    bad = raw(b"FIX.4.4", (49, b"BANK"), (35, b"D"), (56, b"VENUE"), (34, b"3"))
    stream = order(2) + bad + order(4) + order(5)
    cut = len(order(2)) + 10  # inside the refused message
    first = pair.initiator.send_data(stream[:cut])
    with pytest.raises(LocalProtocolError, match="MsgType") as raised:
        pair.initiator.send_data(stream[cut:])
    assert raised.value.wire == b""
    later = pair.initiator.send_data(order(6))
    assert flattened(pair.acceptor.receive_batch(first + later)) == [
        order(2), order(4), order(5), order(6)
    ]
