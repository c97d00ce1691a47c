"""The session state machine, as one table (``specs/fixsecure-v1.md`` §9).

Every legal move of both roles is a row of :data:`TRANSITIONS`. A (role, state, input) that is not
in the table is refused: as a local error for local inputs, as a failure that ends the connection
for network inputs. ``END`` (end of stream) and ``FAIL`` lead to CLOSED from any other state.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["TRANSITIONS", "Input", "Role", "State", "next_state"]


class Role(enum.Enum):
    INITIATOR = "initiator"
    ACCEPTOR = "acceptor"


class State(enum.Enum):
    AWAIT_LOGON = "AWAIT_LOGON"
    HANDSHAKE_SENT = "HANDSHAKE_SENT"
    LOGON_RECEIVED = "LOGON_RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    PLAINTEXT = "PLAINTEXT"
    CLOSED = "CLOSED"


class Input(enum.Enum):
    SEND_HANDSHAKE_LOGON = "local Logon, session has keys"
    SEND_PLAINTEXT_LOGON = "local Logon, plaintext session"
    SEND = "local message"
    RECEIVE_HANDSHAKE_LOGON = "network message 1, authenticated"
    RECEIVE_PLAINTEXT_LOGON = "network plaintext Logon, encryption not required"
    RECEIVE_HANDSHAKE_REPLY = "network message 2, authenticated"
    RECEIVE = "network message"
    END = "network end of stream"
    FAIL = "failure or cap reached"


_I, _A = Role.INITIATOR, Role.ACCEPTOR
_S = State

TRANSITIONS: Final[dict[tuple[Role, State, Input], State]] = {
    (_I, _S.AWAIT_LOGON, Input.SEND_HANDSHAKE_LOGON): _S.HANDSHAKE_SENT,
    (_I, _S.AWAIT_LOGON, Input.SEND_PLAINTEXT_LOGON): _S.PLAINTEXT,
    (_I, _S.HANDSHAKE_SENT, Input.RECEIVE_HANDSHAKE_REPLY): _S.ESTABLISHED,
    (_A, _S.AWAIT_LOGON, Input.RECEIVE_HANDSHAKE_LOGON): _S.LOGON_RECEIVED,
    (_A, _S.AWAIT_LOGON, Input.RECEIVE_PLAINTEXT_LOGON): _S.PLAINTEXT,
    (_A, _S.LOGON_RECEIVED, Input.SEND): _S.ESTABLISHED,
    **{
        (role, state, move): state
        for role in Role
        for state in (_S.ESTABLISHED, _S.PLAINTEXT)
        for move in (Input.SEND, Input.RECEIVE)
    },
    **{
        (role, state, move): _S.CLOSED
        for role in Role
        for state in State
        if state is not _S.CLOSED
        for move in (Input.END, Input.FAIL)
    },
}

del _I, _A, _S


def next_state(role: Role, state: State, move: Input) -> State | None:
    """The state after ``move``, or None if the table has no such row."""
    return TRANSITIONS.get((role, state, move))
