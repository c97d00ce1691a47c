"""The worked examples in specs/vectors/ are reproduced byte for byte, and their intermediate
values are consistent with a Noise handshake run directly on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixsecure import wire
from fixsecure.noise import HandshakeState, parse_protocol_name
from fixsecure.suites import SUITES
from fixsecure.transcript import generate, render, transcript_path

VECTORS = Path(__file__).resolve().parent.parent / "specs" / "vectors"


@pytest.mark.parametrize("suite", SUITES)
def test_transcript_file_is_reproduced_byte_for_byte(suite: str) -> None:
    stored = transcript_path(VECTORS, suite).read_text(encoding="ascii")
    assert render(generate(suite)) == stored


@pytest.mark.parametrize("suite", SUITES)
def test_transcript_intermediate_values_are_consistent(suite: str) -> None:
    data = json.loads(transcript_path(VECTORS, suite).read_text(encoding="ascii"))
    protocol = parse_protocol_name(suite)
    keys = {name: bytes.fromhex(value) for name, value in data["keys"].items()}
    dh = protocol.dh
    one = data["handshake"]["message1"]
    two = data["handshake"]["message2"]
    initiator = HandshakeState(
        protocol,
        initiator=True,
        prologue=bytes.fromhex(one["prologue"]),
        s=dh.keypair_from_private_bytes(keys["initiator_static_private"]),
        e=dh.keypair_from_private_bytes(keys["initiator_ephemeral_private"]),
        rs=keys["acceptor_static_public"],
    )
    responder = HandshakeState(
        protocol,
        initiator=False,
        prologue=bytes.fromhex(one["prologue"]),
        s=dh.keypair_from_private_bytes(keys["acceptor_static_private"]),
        e=dh.keypair_from_private_bytes(keys["acceptor_ephemeral_private"]),
        rs=keys["initiator_static_public"],
    )
    logon = one["plaintext"].encode()
    body = logon[wire.split(logon)[2] : -7]
    noise1 = initiator.write_message(body)
    assert noise1.hex() == one["noise_message"]
    assert responder.read_message(noise1) == body
    noise2 = responder.write_message(bytes.fromhex(two["payload"]))
    assert noise2.hex() == two["noise_message"]
    assert initiator.read_message(noise2).hex() == two["payload"]
    assert initiator.get_handshake_hash().hex() == data["handshake"]["handshake_hash"]
    # Transport: the recorded sealed bytes decrypt with the Split() keys, nonces in order.
    send_i, send_a = initiator.split()
    ciphers = {"initiator->acceptor": send_i, "acceptor->initiator": send_a}
    for entry in data["transport"]:
        cipher = ciphers[entry["direction"]]
        assert cipher.n == entry["nonce"]
        plaintext = entry["plaintext"].encode()
        sealed = cipher.encrypt_with_ad(
            entry["ad"].encode(), plaintext[wire.split(plaintext)[2] : -7]
        )
        assert sealed.hex() == entry["sealed"]


def test_the_resend_is_encrypted_afresh() -> None:
    data = json.loads(transcript_path(VECTORS, SUITES[0]).read_text(encoding="ascii"))
    orders = [e for e in data["transport"] if "\x0135=D\x01" in e["plaintext"]]
    original, resend = orders
    assert "\x0143=Y\x01" in resend["plaintext"]
    assert original["sealed"] != resend["sealed"]
    assert resend["nonce"] == original["nonce"] + 2  # the Heartbeat came in between
