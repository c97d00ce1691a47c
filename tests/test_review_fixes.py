"""Regressions for findings of the code review: each test fails on the code before its fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import STAMP, clock, delivered, establish, failures, logon, new_pair, order

from fixsecure import wire
from fixsecure.errors import ConfigError, LocalProtocolError
from fixsecure.memory import fix_message
from fixsecure.noise import DH_FUNCTIONS, KeyPair
from fixsecure.replay import FileReplayStore, MemoryReplayStore, ReplayStateError
from fixsecure.session import AcceptorDirectory, Session, SessionConfig
from fixsecure.sessionid import SessionID
from fixsecure.state import State

ACCEPTOR_ID = SessionID("FIX.4.4", "VENUE", "BANK")


def test_the_handshake_state_is_dropped_once_split() -> None:
    """The ephemeral private key and chaining key must not outlive the handshake (forward
    secrecy within a long connection)."""
    pair = establish(new_pair())
    for side in (pair.initiator, pair.acceptor):
        assert side._handshake is None
        assert side.encrypted
        assert side.handshake_hash is not None


def test_a_logon_repeating_an_identity_field_is_refused() -> None:
    pair = new_pair()
    message1 = pair.initiator.send(logon())
    parts = wire.split(message1)
    doubled = message1[parts[1] : parts[3]].replace(
        b"\x0156=VENUE\x01", b"\x0156=VENUE\x0149=X\x01"
    )
    events = pair.acceptor.receive(wire.assemble(message1[: parts[0]], [doubled]))
    assert delivered(events) == []
    assert "repeats identity field(s) [49]" in failures(events)[0].reason
    assert pair.directory.replay_store.last_logon(ACCEPTOR_ID) is None
    with pytest.raises(LocalProtocolError, match=r"repeats header field\(s\) \[49\]"):
        new_pair().initiator.send(
            fix_message(
                b"A",
                1,
                b"BANK",
                b"VENUE",
                [(98, 0)],
                sending_time=STAMP,
                extra_header=[(49, b"OTHER")],
            )
        )


def test_a_logon_body_carrying_routing_fields_is_refused_before_any_state_change() -> None:
    pair = new_pair()
    body = [(98, 0), (108, 30), (49, b"OTHERBANK")]  # an engine would read this 49 as sender
    events = pair.acceptor.receive(pair.initiator.send(logon(body=body)))
    assert delivered(events) == []
    assert "routing field(s) [49] in the Logon body" in failures(events)[0].reason
    assert pair.directory.replay_store.last_logon(ACCEPTOR_ID) is None


def test_an_invalid_sending_time_is_refused_locally() -> None:
    with pytest.raises(LocalProtocolError, match="not a FIX UTCTimestamp"):
        new_pair().initiator.send(logon(sending_time=b"yesterday"))


def test_a_plaintext_message_gets_its_own_error() -> None:
    pair = establish(new_pair())
    events = pair.acceptor.receive(order(2))
    assert "a plaintext message where a protected one is required" in failures(events)[0].reason


def test_decrypted_messages_beyond_the_limit_are_refused() -> None:
    """A peer with the keys could send more than the sender side allows; the receiver checks."""
    pair = establish(new_pair(max_message_size=300))
    big = fix_message(b"D", 2, b"BANK", b"VENUE", [(58, b"x" * 400)], sending_time=STAMP)
    pair.initiator._limit = 10_000  # a sender that ignores the shared limit
    events = pair.acceptor.receive(pair.initiator.send(big))
    assert delivered(events) == []
    assert "exceeds the limit of 300" in failures(events)[0].reason


def test_a_plaintext_session_frames_at_the_plaintext_limit() -> None:
    sid = SessionID("FIX.4.4", "BANK", "VENUE")
    acceptor = Session.acceptor(
        AcceptorDirectory(
            [SessionConfig(sid.reversed(), required=False, max_message_size=300)],
            MemoryReplayStore(),
        ),
        clock=clock,
    )
    acceptor.receive(logon())
    assert acceptor.state is State.PLAINTEXT
    assert acceptor._framer.max_message_size == 300


def test_session_config_refuses_mismatched_pairs_and_unbounded_values() -> None:
    dh = DH_FUNCTIONS["25519"]
    sid = SessionID("FIX.4.4", "A", "B")
    peer = dh.generate_keypair().public
    mismatched = KeyPair(dh.generate_keypair().private, dh.generate_keypair().public)
    with pytest.raises(ConfigError, match="public half does not match"):
        SessionConfig(sid, own_keys=(mismatched,), peer_keys=(peer,))
    own = (dh.generate_keypair(),)
    for field, value in (
        ("logon_window", float("inf")),
        ("logon_future_skew", float("nan")),
        ("logon_window", 1e300),
    ):
        with pytest.raises(ConfigError, match="0 to 86400 seconds"):
            SessionConfig(sid, own_keys=own, peer_keys=(peer,), **{field: value})
    with pytest.raises(ConfigError, match="max_message_size must be 256 to"):
        SessionConfig(sid, own_keys=own, peer_keys=(peer,), max_message_size=1 << 40)


def test_anti_replay_file_names_do_not_collide(tmp_path: Path) -> None:
    store = FileReplayStore(tmp_path)
    ambiguous = [
        SessionID("FIX.4.4", "A/B", "C"),
        SessionID("FIX.4.4", "A", "C", sender_sub_id="B"),
        SessionID("FIX.4.4", "A", "C", sender_location_id="B"),
    ]
    assert len({str(s) for s in ambiguous}) < 3  # their printed names do collide
    assert len({store._path(s) for s in ambiguous}) == 3
    assert store.advance(ambiguous[0], 10)
    assert store.last_logon(ambiguous[1]) is None


def test_the_state_directory_is_private_and_temp_files_are_not_followed(tmp_path: Path) -> None:
    store = FileReplayStore(tmp_path / "state")
    assert store.advance(ACCEPTOR_ID, 10)
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    # A link where an old implementation put its temporary file: never written through.
    path = store._path(ACCEPTOR_ID)
    os.symlink(victim, path.with_suffix(f".tmp{os.getpid()}"))
    assert store.advance(ACCEPTOR_ID, 11)
    assert victim.read_text() == "precious\n"
    assert store.last_logon(ACCEPTOR_ID) == 11
    assert not [p for p in (tmp_path / "state").iterdir() if p.name.endswith(".tmp")]


def test_a_failing_state_store_fails_the_connection_not_the_caller(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    store = FileReplayStore(blocked / "state")
    with pytest.raises(ReplayStateError, match="cannot record the Logon"):
        store.advance(ACCEPTOR_ID, 1)
    pair = new_pair(replay_store=store)
    events = pair.acceptor.receive(pair.initiator.send(logon()))  # must not raise
    assert delivered(events) == []
    assert "anti-replay state" in failures(events)[0].reason
    assert pair.acceptor.state is State.CLOSED


class _BrokenDisk(MemoryReplayStore):
    def advance(self, session: SessionID, sending_time: int) -> bool:
        raise OSError(5, "Input/output error")


def test_a_store_failing_after_authentication_fails_the_connection() -> None:
    pair = new_pair(replay_store=_BrokenDisk())
    events = pair.acceptor.receive(pair.initiator.send(logon()))
    assert delivered(events) == []
    assert "anti-replay state unavailable: OSError" in failures(events)[0].reason
    assert pair.acceptor.state is State.CLOSED
