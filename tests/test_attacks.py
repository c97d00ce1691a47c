"""The attack catalogue (design brief §5, items 1–8 and 11) against the sans-IO core.

Every test shows the attack is rejected, nothing is delivered, and no state changed that the
attacker could exploit: the anti-replay record, the receiving nonce, the live session. Items 3, 9
and 10 over real sockets are in the connection-level tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fixsecure import wire
from fixsecure.errors import ConfigError, LimitExceeded
from fixsecure.memory import SessionPair, fix_message, format_timestamp
from fixsecure.noise import DH_FUNCTIONS, HandshakeState, KeyPair
from fixsecure.replay import FileReplayStore, MemoryReplayStore
from fixsecure.session import (
    MAX_BYTES,
    MAX_MESSAGES,
    REKEY_INTERVAL,
    AcceptorDirectory,
    ConnectionClosed,
    Event,
    LogonAccepted,
    Session,
    SessionConfig,
)
from fixsecure.sessionid import SessionID
from fixsecure.state import State
from fixsecure.suites import SUITES

ACCEPTOR_ID = SessionID("FIX.4.4", "VENUE", "BANK")


def rejected(session: Session, data: bytes) -> list[Event]:
    """Feed ``data`` then end the stream; assert nothing was delivered and the end is not clean."""
    events = session.receive(data)
    if not failures(events):
        events += session.receive_eof()
    assert delivered(events) == []
    assert failures(events) or any(isinstance(e, ConnectionClosed) and not e.clean for e in events)
    assert session.state is State.CLOSED
    return events


def fresh_acceptor(pair: SessionPair) -> Session:
    """A new connection to the same acceptor endpoint (same sessions, same replay store)."""
    return Session.acceptor(pair.directory, clock=clock)


def replay_record(pair: SessionPair) -> int | None:
    return pair.directory.replay_store.last_logon(ACCEPTOR_ID)


def flipped(data: bytes, index: int, mask: int) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


def every_flip(make: Callable[[], tuple[Session, bytes]]) -> Iterator[tuple[Session, bytes]]:
    """For every byte position and two bit masks: a fresh receiver and its own valid message with
    that bit flipped (the message would be accepted untampered, so only the flip is tested)."""
    length = len(make()[1])
    for index in range(length):
        for mask in (0x01, 0x80):
            receiver, message = make()
            assert len(message) == length
            yield receiver, flipped(message, index, mask)


def reframe(message: bytes, old: bytes, new: bytes) -> bytes:
    """Replace bytes between BodyLength and CheckSum and fix both, as an active attacker would."""
    parts = wire.split(message)
    inner = message[parts[1] : parts[3]].replace(old, new, 1)
    assert inner != message[parts[1] : parts[3]] or old == new
    return wire.assemble(message[: parts[0]], [inner])


# -- 1. tampering -----------------------------------------------------------------------------


def test_flipping_any_bit_of_a_transport_message_is_rejected() -> None:
    def make() -> tuple[Session, bytes]:
        pair = establish(new_pair())
        return pair.acceptor, pair.initiator.send(order(2))

    count = 0
    for acceptor, tampered in every_flip(make):
        rejected(acceptor, tampered)
        assert acceptor._recv is not None
        assert acceptor._recv.cipher.n == 0, "a forgery consumed a nonce"
        count += 1
    assert count == 2 * len(make()[1])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"49=BANK", b"49=BANX"),
        (b"56=VENUE", b"56=VENUF"),
        (b"34=2", b"34=3"),
        (b"52=" + STAMP, b"52=" + STAMP[:-1] + b"1"),
        (b"35=D", b"35=G"),
        (b"\x0190=", b"\x0143=Y\x0190="),  # a header field inserted before 90: AD changes
        (b"\x0190=", b"\x0158=hello\x0190="),  # a body field in clear: layout violation
        (b"\x0156=VENUE\x01", b"\x01"),  # a header field removed
        (b"\x0149=BANK\x0152=", b"\x0152="),
        (b"\x0134=2\x0149=BANK", b"\x0149=BANK\x0134=2"),  # header fields reordered
        (b"8=FIX.4.4", b"8=FIX.4.2"),
    ],
)
def test_changed_clear_header_or_layout_is_rejected(old: bytes, new: bytes) -> None:
    pair = establish(new_pair())
    message = pair.initiator.send(order(2))
    if old.startswith(b"8="):
        tampered = wire.assemble(b"8=FIX.4.2\x01", [message[wire.split(message)[1] : -7]])
    else:
        tampered = reframe(message, old, new)
    rejected(pair.acceptor, tampered)


def test_fields_after_securedata_and_wrong_securedatalen_are_rejected() -> None:
    pair = establish(new_pair())
    message = pair.initiator.send(order(2))
    parts = wire.split(message)
    inner = message[parts[1] : parts[3]]
    length = int(inner.split(b"\x0190=")[1].split(b"\x01")[0])
    variants = [
        inner + b"58=after\x01",
        inner.replace(b"\x0190=%d\x01" % length, b"\x0190=%d\x01" % (length - 1)),
        inner.replace(b"\x0190=%d\x01" % length, b"\x0190=%d\x01" % (length + 1)),
        inner.replace(b"\x0190=%d\x01" % length, b"\x0190=0%d\x01" % length),
        inner.replace(b"\x0190=%d\x01" % length, b"\x01"),  # SecureDataLen stripped
        inner[: inner.index(b"\x0190=") + 1],  # SecureData stripped: plaintext header only
    ]
    for variant in variants:
        fresh = establish(new_pair())
        fresh.initiator.send(order(2))
        rejected(fresh.acceptor, wire.assemble(message[: parts[0]], [variant]))


def test_noncanonical_base64_of_the_same_ciphertext_is_rejected() -> None:
    for _ in range(40):  # until the ciphertext length leaves padding bits to abuse
        pair = establish(new_pair())
        message = pair.initiator.send(order(2, b"O" * (_ % 3 + 1)))
        text = message.split(b"\x0191=")[1].split(b"\x01")[0]
        if text.endswith(b"=") and not text.endswith(b"=="):
            last = text[-2:-1]
            alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            twin = alphabet[alphabet.index(last) | 1 : (alphabet.index(last) | 1) + 1]
            if twin != last:
                forged = message.replace(text, text[:-2] + twin + b"=")
                forged = wire.assemble(
                    forged[: wire.split(forged)[0]], [forged[wire.split(forged)[1] : -7]]
                )
                rejected(pair.acceptor, forged)
                return
    pytest.fail("no padded ciphertext produced")


@pytest.mark.parametrize("suite", SUITES)
def test_flipping_any_bit_of_message_one_is_rejected_before_any_state_change(suite: str) -> None:
    dh = DH_FUNCTIONS["P256" if "P256" in suite else "25519"]
    keys = {"initiator_key": dh.generate_keypair(), "acceptor_key": dh.generate_keypair()}
    pairs: list[SessionPair] = []

    def make() -> tuple[Session, bytes]:
        pair = new_pair(suite, **keys)
        pairs.append(pair)
        return pair.acceptor, pair.initiator.send(logon())

    for acceptor, tampered in every_flip(make):
        rejected(acceptor, tampered)
        assert replay_record(pairs[-1]) is None


def test_flipping_any_bit_of_message_two_is_rejected() -> None:
    def make() -> tuple[Session, bytes]:
        pair = new_pair()
        pair.acceptor.receive(pair.initiator.send(logon()))
        return pair.initiator, pair.acceptor.send(logon(b"VENUE", b"BANK"))

    for initiator, tampered in every_flip(make):
        rejected(initiator, tampered)


def test_message_two_with_a_header_that_differs_from_its_authenticated_copy() -> None:
    pair = new_pair()
    pair.acceptor.receive(pair.initiator.send(logon()))
    message2 = pair.acceptor.send(logon(b"VENUE", b"BANK", seq=1))
    # A router rewrites the clear MsgSeqNum of the Logon reply: the copy inside disagrees.
    events = rejected(pair.initiator, reframe(message2, b"34=1", b"34=5"))
    assert "differs from its authenticated copy" in failures(events)[0].reason


# -- 2. replay, reordering, deletion within a connection --------------------------------------


def test_replayed_reordered_and_deleted_messages_are_rejected() -> None:
    pair = establish(new_pair())
    first, second, third = (pair.initiator.send(order(n)) for n in (2, 3, 4))
    assert delivered(pair.acceptor.receive(first)) == [order(2)]
    rejected(pair.acceptor, first)  # replay

    pair = establish(new_pair())
    first, second = (pair.initiator.send(order(n)) for n in (2, 3))
    rejected(pair.acceptor, second)  # reordered: second before first

    pair = establish(new_pair())
    first, second, third = (pair.initiator.send(order(n)) for n in (2, 3, 4))
    pair.acceptor.receive(first)
    rejected(pair.acceptor, third)  # second deleted
    assert pair.acceptor._recv is not None
    assert pair.acceptor._recv.cipher.n == 1


# -- 3. replay across connections -------------------------------------------------------------


def test_old_transport_messages_fail_in_a_new_connection() -> None:
    first = establish(new_pair())
    old = first.initiator.send(order(2))
    second = establish(
        new_pair(
            initiator_key=first.initiator_config.own_keys[0],
            acceptor_key=first.acceptor_config.own_keys[0],
        )
    )
    rejected(second.acceptor, old)


@pytest.mark.parametrize("session_up", [True, False])
def test_replayed_logon_is_refused_before_dh_and_changes_nothing(
    session_up: bool, dh_calls: list[str]
) -> None:
    pair = new_pair()
    recorded = pair.initiator.send(logon(body=[(98, 0), (108, 30), (141, b"Y")]))
    pair.acceptor.receive(recorded)
    reply = logon(b"VENUE", b"BANK")
    pair.initiator.receive(pair.acceptor.send(reply))
    if not session_up:
        pair.initiator.receive_eof()
        pair.acceptor.receive_eof()
    record = replay_record(pair)
    assert record == NOW
    dh_calls.clear()
    events = rejected(fresh_acceptor(pair), recorded)
    assert dh_calls == []
    assert "not later than the last accepted" in failures(events)[0].reason
    assert replay_record(pair) == record
    if session_up:  # the live session is untouched
        assert delivered(pair.acceptor.receive(pair.initiator.send(order(2)))) == [order(2)]


def test_anti_replay_survives_an_acceptor_restart(tmp_path: Path, dh_calls: list[str]) -> None:
    pair = new_pair(replay_store=FileReplayStore(tmp_path))
    recorded = pair.initiator.send(logon())
    assert delivered(pair.acceptor.receive(recorded)) == [logon()]
    restarted = AcceptorDirectory([pair.acceptor_config], FileReplayStore(tmp_path))
    dh_calls.clear()
    rejected(Session.acceptor(restarted, clock=clock), recorded)
    assert dh_calls == []
    # A genuinely new Logon (later SendingTime) is still accepted after the restart.
    later = NOW + 1_000_000
    fresh = Session.initiator(pair.initiator_config, clock=lambda: later)
    new_logon = logon(sending_time=format_timestamp(later))
    accepted = Session.acceptor(restarted, clock=lambda: later).receive(fresh.send(new_logon))
    assert delivered(accepted) == [new_logon]


def test_logons_outside_the_window_are_refused_even_without_a_record(
    dh_calls: list[str],
) -> None:
    pair = new_pair()
    stale = pair.initiator.send(logon(sending_time=format_timestamp(NOW - 61 * 10**9)))
    future_initiator = Session.initiator(pair.initiator_config, clock=clock)
    future = future_initiator.send(logon(sending_time=format_timestamp(NOW + 11 * 10**9)))
    dh_calls.clear()
    events = rejected(pair.acceptor, stale)
    assert "older than the Logon window" in failures(events)[0].reason
    events = rejected(fresh_acceptor(pair), future)
    assert "too far in the future" in failures(events)[0].reason
    assert dh_calls == []
    assert replay_record(pair) is None


def test_an_old_logon_reply_does_not_complete_a_new_handshake() -> None:
    pair = new_pair()
    pair.acceptor.receive(pair.initiator.send(logon()))
    old_reply = pair.acceptor.send(logon(b"VENUE", b"BANK"))
    later = NOW + 10**9
    new_initiator = Session.initiator(pair.initiator_config, clock=lambda: later)
    new_initiator.send(logon(sending_time=format_timestamp(later)))
    rejected(new_initiator, old_reply)


# -- 4. reflection ----------------------------------------------------------------------------


def test_message_one_reflected_to_the_initiator_is_rejected() -> None:
    pair = new_pair()
    message1 = pair.initiator.send(logon())
    rejected(pair.initiator, message1)


def test_transport_messages_reflected_to_their_sender_are_rejected() -> None:
    pair = establish(new_pair())
    rejected(pair.initiator, pair.initiator.send(order(2)))
    pair = establish(new_pair())
    rejected(pair.acceptor, pair.acceptor.send(order(2, sender=b"VENUE")))


def test_a_logon_reflected_to_the_senders_own_acceptor_is_refused_before_dh(
    dh_calls: list[str],
) -> None:
    pair = new_pair()
    # BANK also runs an acceptor, with the same keys, for sessions where VENUE initiates.
    bank_side = SessionConfig(
        SessionID("FIX.4.4", "BANK", "VENUE"),
        own_keys=pair.initiator_config.own_keys,
        peer_keys=pair.initiator_config.peer_keys,
    )
    bank_acceptor = Session.acceptor(
        AcceptorDirectory([bank_side], MemoryReplayStore()), clock=clock
    )
    message1 = pair.initiator.send(logon())
    dh_calls.clear()
    events = rejected(bank_acceptor, message1)
    assert "unknown session" in failures(events)[0].reason
    assert dh_calls == []


def test_the_same_key_on_both_ends_is_refused_by_configuration() -> None:
    key = DH_FUNCTIONS["25519"].generate_keypair()
    with pytest.raises(ConfigError, match="our own public key"):
        SessionConfig(SessionID("FIX.4.4", "A", "B"), own_keys=(key,), peer_keys=(key.public,))


# -- 5. downgrade ------------------------------------------------------------------------------


def test_a_plaintext_logon_is_refused_where_encryption_is_required(dh_calls: list[str]) -> None:
    pair = new_pair()
    events = rejected(pair.acceptor, logon())
    assert "plaintext Logon" in failures(events)[0].reason
    assert dh_calls == []
    assert replay_record(pair) is None


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"25800=fixsecure/1", b"25800=fixsecure/0", "protocol label"),
        (b"25800=fixsecure/1", b"25800=fixsecure/2", "protocol label"),
        (b"_AESGCM_", b"_ChaChaPoly_", "suite"),
        (b"\x0125800=fixsecure/1", b"", "handshake fields"),
        (b"\x0125801=Noise_KK_25519_AESGCM_SHA256", b"", "handshake fields"),
        (b"\x0198=0", b"", "handshake fields"),
        (b"\x0198=0", b"\x0198=1", "handshake fields"),
    ],
)
def test_handshake_fields_stripped_or_changed_are_refused_before_dh(
    old: bytes, new: bytes, reason: str, dh_calls: list[str]
) -> None:
    pair = new_pair()
    tampered = reframe(pair.initiator.send(logon()), old, new)
    dh_calls.clear()
    events = rejected(pair.acceptor, tampered)
    assert reason in failures(events)[0].reason
    assert dh_calls == []


def test_a_suite_label_changed_to_the_acceptors_suite_fails_authentication() -> None:
    chacha = "Noise_KK_25519_ChaChaPoly_SHA256"
    pair = new_pair()  # the initiator speaks AESGCM
    acceptor_config = SessionConfig(
        ACCEPTOR_ID,
        chacha,
        own_keys=pair.acceptor_config.own_keys,
        peer_keys=pair.acceptor_config.peer_keys,
    )
    acceptor = Session.acceptor(
        AcceptorDirectory([acceptor_config], MemoryReplayStore()), clock=clock
    )
    tampered = reframe(pair.initiator.send(logon()), b"_AESGCM_", b"_ChaChaPoly_")
    events = rejected(acceptor, tampered)
    assert "failed authentication" in failures(events)[0].reason


def test_a_plaintext_message_after_the_handshake_is_rejected() -> None:
    pair = establish(new_pair())
    injected_logout = fix_message(b"5", 2, b"BANK", b"VENUE", sending_time=STAMP)
    rejected(pair.acceptor, injected_logout)
    assert not pair.acceptor.logout_received


# -- 6. identity misbinding --------------------------------------------------------------------


def test_a_logon_claiming_another_partys_compids_fails() -> None:
    dh = DH_FUNCTIONS["25519"]
    venue, bank, broker = dh.generate_keypair(), dh.generate_keypair(), dh.generate_keypair()
    directory = AcceptorDirectory(
        [
            SessionConfig(
                SessionID("FIX.4.4", "VENUE", "BANK"), own_keys=(venue,), peer_keys=(bank.public,)
            ),
            SessionConfig(
                SessionID("FIX.4.4", "VENUE", "BROKER"),
                own_keys=(venue,),
                peer_keys=(broker.public,),
            ),
        ],
        MemoryReplayStore(),
    )
    # BROKER, with its own key, claims to be BANK.
    impostor = Session.initiator(
        SessionConfig(
            SessionID("FIX.4.4", "BANK", "VENUE"), own_keys=(broker,), peer_keys=(venue.public,)
        ),
        clock=clock,
    )
    events = rejected(Session.acceptor(directory, clock=clock), impostor.send(logon()))
    assert "failed authentication" in failures(events)[0].reason
    assert directory.replay_store.last_logon(SessionID("FIX.4.4", "VENUE", "BANK")) is None


# -- 7. invalid public keys --------------------------------------------------------------------


def _with_ephemeral(message1: bytes, ephemeral: bytes, publen: int) -> bytes:
    parts = wire.split(message1)
    noise = wire.secure_data(message1, parts, message1.index(b"\x0190=") + 1)
    forged = ephemeral + noise[publen:]
    header_and_fields = message1[parts[1] : message1.index(b"\x0190=") + 1]
    text = wire.b64encode(forged)
    return wire.assemble(
        message1[: parts[0]], [header_and_fields, b"90=%d\x0191=%s\x01" % (len(text), text)]
    )


X25519_BAD = [
    bytes(32),
    bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000000"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


@pytest.mark.parametrize("point", X25519_BAD, ids=lambda p: p.hex()[:8])
def test_invalid_x25519_ephemeral_keys_are_rejected(point: bytes) -> None:
    pair = new_pair()
    events = rejected(pair.acceptor, _with_ephemeral(pair.initiator.send(logon()), point, 32))
    assert replay_record(pair) is None
    assert "failed authentication" in failures(events)[0].reason


def _p256_bad() -> dict[str, bytes]:
    good = DH_FUNCTIONS["P256"].generate_keypair().public
    compressed = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), good).public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    return {
        "compressed": compressed + bytes(32),  # 33 bytes + filler where the rest of e would be
        "infinity": b"\x00" * 65,
        "off-curve": good[:-1] + bytes([good[-1] ^ 1]),
        "hybrid": b"\x07" + good[1:],
    }


@pytest.mark.parametrize("label", list(_p256_bad()))
def test_invalid_p256_ephemeral_keys_are_rejected(label: str) -> None:
    pair = new_pair("Noise_KK_P256_AESGCM_SHA256")
    forged = _with_ephemeral(pair.initiator.send(logon()), _p256_bad()[label], 65)
    rejected(pair.acceptor, forged)
    assert replay_record(pair) is None


def test_a_truncated_ephemeral_key_is_rejected() -> None:
    pair = new_pair("Noise_KK_P256_AESGCM_SHA256")
    message1 = pair.initiator.send(logon())
    parts = wire.split(message1)
    text = wire.b64encode(b"\x04" + bytes(20))
    head = message1[parts[1] : message1.index(b"\x0190=") + 1]
    short = wire.assemble(message1[: parts[0]], [head, b"90=%d\x0191=%s\x01" % (len(text), text)])
    rejected(pair.acceptor, short)


# -- 8. key-compromise impersonation -----------------------------------------------------------


def test_kci_forged_logon_cannot_complete_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the acceptor's private key an attacker can forge message 1 (the residual risk the spec
    documents: one Logon reaches the engine) but cannot read message 2 or send anything valid."""
    real = new_pair()
    stolen = real.acceptor_config.own_keys[0]
    initiator_public = real.initiator_config.own_keys[0].public
    dh = DH_FUNCTIONS["25519"]

    class Forger(HandshakeState):
        def _dh_token(self, token: str) -> bytes:  # type: ignore[override]
            if token == "ss":  # DH(s_i, S_r) == DH(s_r, S_i): computable with the stolen key
                return dh.dh(stolen, initiator_public)
            if token == "se":  # needs s_i or e_r: the attacker has neither, so it guesses
                assert self.e is not None
                assert self.re is not None
                return dh.dh(self.e, self.re)
            return super()._dh_token(token)  # type: ignore[arg-type]

    fake_static = KeyPair(dh.generate_keypair().private, initiator_public)
    monkeypatch.setattr("fixsecure.session.HandshakeState", Forger)
    # The attacker runs modified code: its "own key" claims the victim's public key, which a
    # genuine SessionConfig refuses, so the forged configuration is patched in after the fact.
    forged_config = SessionConfig(
        real.initiator_config.session_id,
        own_keys=(dh.generate_keypair(),),
        peer_keys=real.initiator_config.peer_keys,
    )
    object.__setattr__(forged_config, "own_keys", (fake_static,))
    attacker = Session.initiator(forged_config, clock=clock)
    forged_logon = logon(body=[(98, 0), (108, 30), (141, b"Y")])
    forged_message1 = attacker.send(forged_logon)
    monkeypatch.undo()  # only the attacker's handshake is forged; the acceptor's is genuine
    acceptor_events = real.acceptor.receive(forged_message1)
    # The documented residual: the forged Logon is accepted and delivered.
    assert isinstance(acceptor_events[0], LogonAccepted)
    assert delivered(acceptor_events) == [forged_logon]
    # The attacker cannot read message 2.
    message2 = real.acceptor.send(logon(b"VENUE", b"BANK"))
    attacker_events = attacker.receive(message2)
    assert delivered(attacker_events) == []
    assert failures(attacker_events)
    # Nor derive the transport keys: everything it could send next is rejected.
    guess = Forger(
        real.initiator_config.protocol,
        initiator=True,
        prologue=b"",
        s=fake_static,
        rs=real.initiator_config.peer_keys[0],
    )
    guess_sender, _ = guess.symmetric_state.split()
    body = b"11=FORGED\x0155=X\x0154=1\x0138=1\x0140=1\x01"
    header = b"35=D\x0134=2\x0149=BANK\x0152=" + STAMP + b"\x0156=VENUE\x01"
    sealed = guess_sender.encrypt_with_ad(b"8=FIX.4.4\x01" + header, body)
    rejected(real.acceptor, wire.protected(b"8=FIX.4.4\x01", header, b"", sealed))
    # And the same forged Logon cannot be replayed either: the next must be later still.
    events = rejected(fresh_acceptor(real), forged_message1)
    assert "not later than the last accepted" in failures(events)[0].reason


# -- 11. limits --------------------------------------------------------------------------------


def test_implicit_rekey_every_2_20_messages_keeps_both_sides_in_step() -> None:
    pair = establish(new_pair())
    assert pair.initiator._send is not None
    assert pair.acceptor._recv is not None
    for direction in (pair.initiator._send, pair.acceptor._recv):
        direction.cipher.set_nonce(REKEY_INTERVAL - 2)
    key_before = pair.initiator._send.cipher._key
    for seq in range(2, 7):  # crosses the boundary
        assert delivered(pair.acceptor.receive(pair.initiator.send(order(seq)))) == [order(seq)]
    assert pair.initiator._send.cipher._key != key_before
    assert pair.initiator._send.cipher._key == pair.acceptor._recv.cipher._key
    assert pair.initiator._send.cipher.n == REKEY_INTERVAL + 3


def test_a_receiver_that_did_not_rekey_rejects_the_next_message() -> None:
    pair = establish(new_pair())
    assert pair.initiator._send is not None
    assert pair.acceptor._recv is not None
    pair.initiator._send.cipher.set_nonce(REKEY_INTERVAL - 1)
    pair.initiator.send(order(2))  # the sender rekeys after this one; the receiver never sees it
    pair.acceptor._recv.cipher.set_nonce(REKEY_INTERVAL)  # in step on the nonce, not on the key
    rejected(pair.acceptor, pair.initiator.send(order(3)))


def test_the_message_cap_refuses_to_send_and_to_receive() -> None:
    pair = establish(new_pair())
    assert pair.initiator._send is not None
    pair.initiator._send.cipher.set_nonce(MAX_MESSAGES)
    with pytest.raises(LimitExceeded, match="messages under one handshake"):
        pair.initiator.send(order(2))
    assert pair.initiator.state is State.CLOSED

    pair = establish(new_pair())
    assert pair.initiator._send is not None
    assert pair.acceptor._recv is not None
    pair.initiator._send.cipher.set_nonce(MAX_MESSAGES - 1)
    pair.acceptor._recv.cipher.set_nonce(MAX_MESSAGES - 1)
    last = pair.initiator.send(order(2))
    assert delivered(pair.acceptor.receive(last)) == [order(2)]
    pair.initiator._send.cipher.set_nonce(MAX_MESSAGES - 1)  # a peer that ignores the cap
    events = rejected(pair.acceptor, pair.initiator.send(order(3)))
    assert "messages under one handshake" in failures(events)[0].reason


def test_the_byte_cap_refuses_to_send() -> None:
    pair = establish(new_pair())
    assert pair.initiator._send is not None
    pair.initiator._send.bytes = MAX_BYTES - 10
    with pytest.raises(LimitExceeded, match="bytes under one handshake"):
        pair.initiator.send(order(2))
    assert pair.initiator.state is State.CLOSED


def test_oversized_wire_messages_are_refused_before_they_are_buffered() -> None:
    pair = establish(new_pair(max_message_size=1024))
    limit = wire.wire_limit(1024)
    header = b"8=FIX.4.4\x019=%d\x0135=D\x01" % (limit * 4)
    events = pair.acceptor.receive(header)
    assert failures(events)
    assert "exceeds the limit" in failures(events)[0].reason
    assert pair.acceptor._framer.buffered < 64


def test_unknown_sessions_and_bad_times_cost_no_dh(dh_calls: list[str]) -> None:
    pair = new_pair()
    stranger = fix_message(b"A", 1, b"WHO", b"VENUE", [(98, 0)], sending_time=STAMP)
    forged = reframe(pair.initiator.send(logon()), b"49=BANK", b"49=WHO")
    dh_calls.clear()
    rejected(fresh_acceptor(pair), forged)
    rejected(fresh_acceptor(pair), stranger)
    assert dh_calls == []


def test_the_admission_hook_runs_before_dh(dh_calls: list[str]) -> None:
    pair = new_pair()
    asked: list[SessionID] = []

    def admit(session_id: SessionID, peer: object) -> bool:
        asked.append(session_id)
        assert peer == "192.0.2.7"
        return False

    directory = AcceptorDirectory([pair.acceptor_config], MemoryReplayStore(), admit=admit)
    message1 = pair.initiator.send(logon())
    dh_calls.clear()
    events = rejected(Session.acceptor(directory, clock=clock, peer="192.0.2.7"), message1)
    assert asked == [ACCEPTOR_ID]
    assert dh_calls == []
    assert "admission" in failures(events)[0].reason


def test_garbage_on_an_established_connection_changes_nothing_persistent() -> None:
    pair = establish(new_pair())
    before = replay_record(pair)
    rejected(pair.acceptor, b"garbage that is not FIX")
    assert replay_record(pair) == before
