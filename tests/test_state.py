"""fixsecure.state: the table is complete, closed, and matches the spec's rows."""

from __future__ import annotations

from pathlib import Path

from fixsecure.state import TRANSITIONS, Input, Role, State, next_state


def test_closed_is_final() -> None:
    for role in Role:
        for move in Input:
            assert next_state(role, State.CLOSED, move) is None


def test_every_other_state_can_end_or_fail() -> None:
    for role in Role:
        for state in State:
            if state is not State.CLOSED:
                assert next_state(role, state, Input.END) is State.CLOSED
                assert next_state(role, state, Input.FAIL) is State.CLOSED


def test_roles_only_take_their_own_handshake_steps() -> None:
    assert next_state(Role.INITIATOR, State.AWAIT_LOGON, Input.RECEIVE_HANDSHAKE_LOGON) is None
    assert next_state(Role.ACCEPTOR, State.AWAIT_LOGON, Input.SEND_HANDSHAKE_LOGON) is None
    assert next_state(Role.INITIATOR, State.HANDSHAKE_SENT, Input.SEND) is None
    assert next_state(Role.ACCEPTOR, State.LOGON_RECEIVED, Input.RECEIVE) is None
    assert next_state(Role.INITIATOR, State.AWAIT_LOGON, Input.RECEIVE) is None


def test_the_table_has_exactly_the_spec_rows() -> None:
    handshake_rows = {
        (Role.INITIATOR, State.AWAIT_LOGON, Input.SEND_HANDSHAKE_LOGON): State.HANDSHAKE_SENT,
        (Role.INITIATOR, State.AWAIT_LOGON, Input.SEND_PLAINTEXT_LOGON): State.PLAINTEXT,
        (Role.INITIATOR, State.HANDSHAKE_SENT, Input.RECEIVE_HANDSHAKE_REPLY): State.ESTABLISHED,
        (Role.ACCEPTOR, State.AWAIT_LOGON, Input.RECEIVE_HANDSHAKE_LOGON): State.LOGON_RECEIVED,
        (Role.ACCEPTOR, State.AWAIT_LOGON, Input.RECEIVE_PLAINTEXT_LOGON): State.PLAINTEXT,
        (Role.ACCEPTOR, State.LOGON_RECEIVED, Input.SEND): State.ESTABLISHED,
    }
    steady = {
        (role, state, move): state
        for role in Role
        for state in (State.ESTABLISHED, State.PLAINTEXT)
        for move in (Input.SEND, Input.RECEIVE)
    }
    ends = {
        (role, state, move): State.CLOSED
        for role in Role
        for state in State
        if state is not State.CLOSED
        for move in (Input.END, Input.FAIL)
    }
    assert {**handshake_rows, **steady, **ends} == TRANSITIONS


def test_the_spec_documents_every_state() -> None:
    spec = (Path(__file__).resolve().parent.parent / "specs" / "fixsecure-v1.md").read_text()
    for state in State:
        assert state.value in spec
