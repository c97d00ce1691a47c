"""Reproducible protocol transcripts: the worked examples of ``specs/fixsecure-v1.md`` §14.

Fixed static and ephemeral keys and a fixed clock make every byte deterministic, so
``specs/vectors/transcript-<suite>.json`` can be checked byte for byte by the tests and used by
other implementations. Regenerate (only when the protocol changes on purpose) with::

    python -m fixsecure.transcript specs/vectors

FIX messages are stored as JSON strings (FIX is ASCII; SOH appears as ``\\u0001``); binary values
as lowercase hex.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fixsecure import wire
from fixsecure.memory import (
    fix_message,
    format_timestamp,
    order_fields,
    session_pair,
)
from fixsecure.noise import DHFunctions, KeyPair, parse_protocol_name
from fixsecure.session import MessageReceived, Session
from fixsecure.suites import SUITES

__all__ = ["generate", "transcript_path", "write_all"]

#: 2026-11-25 16:00:00 UTC, the fixed clock of every transcript.
CLOCK_NS = 1_795_622_400_000_000_000


def _key(dh: DHFunctions, label: str) -> KeyPair:
    """A deterministic key pair: the private scalar is SHA-256 of a public label."""
    return dh.keypair_from_private_bytes(hashlib.sha256(label.encode()).digest())


def transcript_path(directory: Path, suite: str) -> Path:
    return directory / f"transcript-{suite}.json"


def _text(message: bytes) -> str:
    return message.decode("ascii")


def generate(suite: str) -> dict[str, Any]:
    """The complete transcript of one session for ``suite``, as a JSON-ready dict."""
    dh = parse_protocol_name(suite).dh
    ikey = _key(dh, "fixsecure transcript initiator static")
    akey = _key(dh, "fixsecure transcript acceptor static")
    iephemeral = _key(dh, "fixsecure transcript initiator ephemeral")
    aephemeral = _key(dh, "fixsecure transcript acceptor ephemeral")
    pair = session_pair(
        suite,
        initiator_key=ikey,
        acceptor_key=akey,
        clock=lambda: CLOCK_NS,
        ephemeral=lambda _: iephemeral,
        acceptor_ephemeral=lambda _: aephemeral,
    )
    stamp = format_timestamp(CLOCK_NS)
    bank, venue = b"BANK", b"VENUE"

    logon = fix_message(
        b"A",
        1,
        bank,
        venue,
        [(98, 0), (108, 30), (141, b"Y"), (553, b"bank-trader"), (554, b"example-password")],
        sending_time=stamp,
    )
    message1 = pair.initiator.send(logon)
    parts1 = wire.split(message1)
    fields1 = wire.clear_fields(message1, parts1)
    rest1 = wire.rest_fields(message1, parts1)
    prologue = wire.prologue(suite, [*fields1, *rest1[:3]])
    delivered = _deliver(pair.acceptor, message1)

    reply = fix_message(
        b"A", 1, venue, bank, [(98, 0), (108, 30), (141, b"Y")], sending_time=stamp
    )
    message2 = pair.acceptor.send(reply)
    parts2 = wire.split(message2)
    copy = [*wire.clear_fields(message2, parts2), (98, b"0")]
    reply_body = reply[wire.split(reply)[2] : -7]
    delivered2 = _deliver(pair.initiator, message2)
    assert pair.initiator.handshake_hash == pair.acceptor.handshake_hash

    order = order_fields(b"ORD-0001", stamp)
    flow: list[tuple[Session, bytes]] = [
        (pair.initiator, fix_message(b"D", 2, bank, venue, order, sending_time=stamp)),
        (
            pair.acceptor,
            fix_message(
                b"8",
                2,
                venue,
                bank,
                [
                    *[(37, b"V-1"), (11, b"ORD-0001"), (17, b"E-1"), (150, b"0"), (39, b"0")],
                    *[(55, b"EUR/USD"), (54, b"1"), (38, b"1000000"), (151, b"1000000")],
                    *[(14, b"0"), (6, b"0")],
                ],
                sending_time=stamp,
            ),
        ),
        (
            pair.acceptor,
            fix_message(
                b"8",
                3,
                venue,
                bank,
                [
                    *[(37, b"V-1"), (11, b"ORD-0001"), (17, b"E-2"), (150, b"F"), (39, b"2")],
                    *[(55, b"EUR/USD"), (54, b"1"), (38, b"1000000"), (32, b"1000000")],
                    *[(31, b"1.08500"), (151, b"0"), (14, b"1000000"), (6, b"1.08500")],
                ],
                sending_time=stamp,
            ),
        ),
        (pair.acceptor, fix_message(b"1", 4, venue, bank, [(112, b"TEST-1")], sending_time=stamp)),
        (pair.initiator, fix_message(b"0", 3, bank, venue, [(112, b"TEST-1")], sending_time=stamp)),
        # A resend of the order: same MsgSeqNum, PossDupFlag and OrigSendingTime in the clear
        # header, encrypted afresh under the next nonce.
        (
            pair.initiator,
            fix_message(
                b"D",
                2,
                bank,
                venue,
                order,
                sending_time=stamp,
                extra_header=[(43, b"Y"), (122, stamp)],
            ),
        ),
        (pair.initiator, fix_message(b"5", 4, bank, venue, [], sending_time=stamp)),
        (pair.acceptor, fix_message(b"5", 5, venue, bank, [], sending_time=stamp)),
    ]
    transport = []
    nonces = {"initiator": 0, "acceptor": 0}
    for sender, plaintext in flow:
        side = "initiator" if sender is pair.initiator else "acceptor"
        receiver = pair.acceptor if sender is pair.initiator else pair.initiator
        wire_bytes = sender.send(plaintext)
        parts = wire.split(plaintext)
        received = _deliver(receiver, wire_bytes)
        assert received == plaintext, "transport round trip must be byte-exact"
        transport.append(
            {
                "direction": f"{side}->{'acceptor' if side == 'initiator' else 'initiator'}",
                "nonce": nonces[side],
                "plaintext": _text(plaintext),
                "ad": _text(wire.associated_data(plaintext, parts)),
                "sealed": wire.transport(wire_bytes)[1].hex(),
                "wire": _text(wire_bytes),
            }
        )
        nonces[side] += 1
    assert delivered == logon
    assert delivered2 == reply
    assert pair.initiator.handshake_hash is not None
    return {
        "protocol": "fixsecure/1",
        "suite": suite,
        "description": "Generated by fixsecure/transcript.py with fixed keys and clock; every "
        "byte must be reproduced by a conforming implementation.",
        "clock_ns": CLOCK_NS,
        "keys": {
            "initiator_static_private": _private_hex(ikey),
            "initiator_static_public": ikey.public.hex(),
            "acceptor_static_private": _private_hex(akey),
            "acceptor_static_public": akey.public.hex(),
            "initiator_ephemeral_private": _private_hex(iephemeral),
            "acceptor_ephemeral_private": _private_hex(aephemeral),
        },
        "handshake": {
            "message1": {
                "plaintext": _text(logon),
                "prologue": prologue.hex(),
                "noise_message": wire.secure_data(
                    message1, parts1, message1.index(b"\x0190=") + 1
                ).hex(),
                "wire": _text(message1),
            },
            "message2": {
                "plaintext": _text(reply),
                "payload": (wire.encode_field_list(copy) + reply_body).hex(),
                "noise_message": wire.secure_data(
                    message2, parts2, message2.index(b"\x0190=") + 1
                ).hex(),
                "wire": _text(message2),
            },
            "handshake_hash": pair.initiator.handshake_hash.hex(),
        },
        "transport": transport,
    }


def _private_hex(pair: KeyPair) -> str:
    """The raw private scalar, for the record (these keys are public test keys)."""
    private = pair.private
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return f"{private.private_numbers().private_value:064x}"
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return raw.hex()


def _deliver(receiver: Session, data: bytes) -> bytes:
    messages = [e.message for e in receiver.receive(data) if isinstance(e, MessageReceived)]
    assert len(messages) == 1, "exactly one message must be delivered"
    return messages[0]


def render(transcript: dict[str, Any]) -> str:
    return json.dumps(transcript, indent=2) + "\n"


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for suite in SUITES:
        path = transcript_path(directory, suite)
        path.write_text(render(generate(suite)), encoding="ascii")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    for written_path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "specs/vectors")):
        print(written_path)
