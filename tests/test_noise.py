"""fixsecure.noise: every shared vector, the P256 definition, invalid keys, nonces and rekey."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fixsecure.errors import DecryptError, InvalidPublicKey, NoiseError, NonceExhausted
from fixsecure.noise import (
    AESGCM_FUNCTIONS,
    CHACHAPOLY_FUNCTIONS,
    DH_FUNCTIONS,
    MAX_NONCE,
    CipherState,
    HandshakeState,
    KeyPair,
    parse_protocol_name,
)
from fixsecure.vectors import run_vector

# A copy of ../shared/vectors (public domain, from cacophony) lives in the repository so a clean
# checkout tests itself; when the shared original sits beside the checkout it must be identical.
SHARED = Path(__file__).resolve().parent / "vectors" / "noise-cacophony-subset.json"
ORIGINAL = Path(__file__).resolve().parents[2] / "shared" / "vectors" / SHARED.name


def _vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(SHARED.read_text())["vectors"]
    return vectors


def test_the_repository_copy_matches_the_shared_original() -> None:
    if ORIGINAL.exists():
        assert ORIGINAL.read_bytes() == SHARED.read_bytes()
    assert SHARED.stat().st_size > 40_000


def test_the_shared_vector_file_is_complete() -> None:
    names = {v["protocol_name"] for v in _vectors()}
    assert len(_vectors()) == 24
    for pattern in ("KK", "IK", "NN"):
        for cipher in ("AESGCM", "ChaChaPoly"):
            for hash_name in ("SHA256", "SHA512", "BLAKE2s", "BLAKE2b"):
                assert f"Noise_{pattern}_25519_{cipher}_{hash_name}" in names


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["protocol_name"])
def test_shared_vector(vector: dict[str, Any]) -> None:
    run_vector(vector)


def test_a_corrupted_vector_is_reported() -> None:
    vector = dict(_vectors()[0])
    messages = [dict(m) for m in vector["messages"]]
    messages[2]["ciphertext"] = "00" + messages[2]["ciphertext"][2:]
    vector["messages"] = messages
    with pytest.raises(AssertionError, match="message 2"):
        run_vector(vector)


def _pair(protocol_name: str) -> tuple[HandshakeState, HandshakeState]:
    protocol = parse_protocol_name(protocol_name)
    dh = protocol.dh
    i_static, r_static = dh.generate_keypair(), dh.generate_keypair()
    initiator = HandshakeState(
        protocol, initiator=True, prologue=b"p", s=i_static, rs=r_static.public
    )
    responder = HandshakeState(
        protocol, initiator=False, prologue=b"p", s=r_static, rs=i_static.public
    )
    return initiator, responder


@pytest.mark.parametrize(
    "name",
    [
        "Noise_KK_P256_AESGCM_SHA256",
        "Noise_KK_25519_AESGCM_SHA256",
        "Noise_KK_25519_ChaChaPoly_SHA256",
    ],
)
def test_kk_handshake_and_transport_both_ways(name: str) -> None:
    initiator, responder = _pair(name)
    assert responder.read_message(initiator.write_message(b"logon")) == b"logon"
    assert initiator.read_message(responder.write_message(b"reply")) == b"reply"
    assert initiator.finished
    assert responder.finished
    assert initiator.get_handshake_hash() == responder.get_handshake_hash()
    i_send, i_recv = initiator.split()
    r_recv, r_send = responder.split()
    for n in range(5):
        assert r_recv.decrypt_with_ad(b"ad", i_send.encrypt_with_ad(b"ad", b"%d" % n)) == b"%d" % n
        assert i_recv.decrypt_with_ad(b"", r_send.encrypt_with_ad(b"", b"x")) == b"x"


def test_p256_message_one_carries_a_65_byte_uncompressed_ephemeral() -> None:
    initiator, _ = _pair("Noise_KK_P256_AESGCM_SHA256")
    message = initiator.write_message(b"")
    assert len(message) == 65 + 16
    assert message[0] == 0x04
    assert initiator.e is not None
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), message[:65])
    assert isinstance(point.curve, ec.SECP256R1)


def test_p256_dh_is_the_x_coordinate_of_ecdh() -> None:
    dh = DH_FUNCTIONS["P256"]
    a, b = dh.generate_keypair(), dh.generate_keypair()
    shared = dh.dh(a, b.public)
    assert len(shared) == 32
    assert shared == dh.dh(b, a.public)
    assert isinstance(a.private, ec.EllipticCurvePrivateKey)
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b.public)
    assert shared == a.private.exchange(ec.ECDH(), peer)


def _p256_bad_points() -> dict[str, bytes]:
    dh = DH_FUNCTIONS["P256"]
    good = dh.generate_keypair().public
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), good)
    compressed = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    off_curve = good[:-1] + bytes([good[-1] ^ 1])
    return {
        "compressed": compressed,
        "infinity": b"\x00",
        "off-curve": off_curve,
        "too short": good[:64],
        "too long": good + b"\x00",
        "hybrid prefix": b"\x06" + good[1:],
        "all zero": bytes(65),
        "x only zero": b"\x04" + bytes(64),
    }


@pytest.mark.parametrize("label", list(_p256_bad_points()))
def test_p256_refuses_invalid_points(label: str) -> None:
    dh = DH_FUNCTIONS["P256"]
    bad = _p256_bad_points()[label]
    with pytest.raises(InvalidPublicKey):
        dh.validate_public(bad)
    with pytest.raises(InvalidPublicKey):
        dh.dh(dh.generate_keypair(), bad)


# Small-order points of Curve25519 (and their non-canonical encodings), from the literature.
X25519_SMALL_ORDER = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


@pytest.mark.parametrize("point", X25519_SMALL_ORDER)
def test_x25519_refuses_small_order_points(point: str) -> None:
    dh = DH_FUNCTIONS["25519"]
    with pytest.raises(InvalidPublicKey):
        dh.dh(dh.generate_keypair(), bytes.fromhex(point))


@pytest.mark.parametrize("size", [0, 31, 33, 65])
def test_x25519_refuses_wrong_lengths(size: int) -> None:
    dh = DH_FUNCTIONS["25519"]
    with pytest.raises(InvalidPublicKey):
        dh.dh(dh.generate_keypair(), b"\x09" * size)


def test_a_small_order_ephemeral_in_a_handshake_fails_without_output() -> None:
    initiator, responder = _pair("Noise_KK_25519_AESGCM_SHA256")
    message = initiator.write_message(b"secret logon body")
    forged = bytes.fromhex(X25519_SMALL_ORDER[2]) + message[32:]
    with pytest.raises(InvalidPublicKey):
        responder.read_message(forged)


def test_keypair_types_must_match_the_curve() -> None:
    with pytest.raises(TypeError):
        DH_FUNCTIONS["P256"].keypair(DH_FUNCTIONS["25519"].generate_keypair().private)
    with pytest.raises(TypeError):
        DH_FUNCTIONS["25519"].keypair(DH_FUNCTIONS["P256"].generate_keypair().private)
    with pytest.raises(TypeError):
        DH_FUNCTIONS["P256"].keypair(ec.generate_private_key(ec.SECP384R1()))


@pytest.mark.parametrize("data", [bytes(32), bytes.fromhex("ff" * 32), b"\x01" * 31])
def test_p256_private_scalar_range(data: bytes) -> None:
    with pytest.raises(ValueError, match="scalar"):
        DH_FUNCTIONS["P256"].keypair_from_private_bytes(data)


@pytest.mark.parametrize("functions", [AESGCM_FUNCTIONS, CHACHAPOLY_FUNCTIONS])
def test_decrypt_failure_does_not_advance_the_nonce(functions: Any) -> None:
    sender, receiver = CipherState(functions, bytes(32)), CipherState(functions, bytes(32))
    good = sender.encrypt_with_ad(b"ad", b"payload")
    tampered = bytes([good[0] ^ 1]) + good[1:]
    with pytest.raises(DecryptError):
        receiver.decrypt_with_ad(b"ad", tampered)
    with pytest.raises(DecryptError):
        receiver.decrypt_with_ad(b"other ad", good)
    assert receiver.n == 0
    assert receiver.decrypt_with_ad(b"ad", good) == b"payload"
    assert receiver.n == 1


def test_the_reserved_nonce_is_refused_both_ways() -> None:
    cipher = CipherState(AESGCM_FUNCTIONS, bytes(32))
    cipher.set_nonce(MAX_NONCE - 1)
    sealed = cipher.encrypt_with_ad(b"", b"last")
    assert cipher.n == MAX_NONCE
    with pytest.raises(NonceExhausted):
        cipher.encrypt_with_ad(b"", b"one too many")
    receiver = CipherState(AESGCM_FUNCTIONS, bytes(32))
    receiver.set_nonce(MAX_NONCE - 1)
    assert receiver.decrypt_with_ad(b"", sealed) == b"last"
    with pytest.raises(NonceExhausted):
        receiver.decrypt_with_ad(b"", sealed)


@pytest.mark.parametrize("functions", [AESGCM_FUNCTIONS, CHACHAPOLY_FUNCTIONS])
def test_rekey_follows_the_noise_default_and_keeps_the_nonce(functions: Any) -> None:
    key = bytes(range(32))
    a, b = CipherState(functions, key), CipherState(functions, key)
    a.set_nonce(7)
    b.set_nonce(7)
    a.rekey()
    b.rekey()
    assert a.n == b.n == 7
    expected = functions.aead(key).encrypt(functions.nonce(MAX_NONCE), bytes(32), b"")[:32]
    reference = CipherState(functions, expected)
    reference.set_nonce(7)
    message = a.encrypt_with_ad(b"", b"after rekey")
    assert message == reference.encrypt_with_ad(b"", b"after rekey")
    assert b.decrypt_with_ad(b"", message) == b"after rekey"
    stale = CipherState(functions, key)
    stale.set_nonce(7)
    with pytest.raises(DecryptError):
        stale.decrypt_with_ad(b"", message)


def test_an_unkeyed_cipher_state_is_the_identity_and_cannot_rekey() -> None:
    cipher = CipherState(AESGCM_FUNCTIONS)
    assert not cipher.has_key()
    assert cipher.encrypt_with_ad(b"", b"x") == b"x"
    with pytest.raises(NoiseError):
        cipher.rekey()


def test_reprs_never_show_key_material() -> None:
    initiator, responder = _pair("Noise_KK_25519_AESGCM_SHA256")
    responder.read_message(initiator.write_message(b""))
    initiator.read_message(responder.write_message(b""))
    send, _ = initiator.split()
    key = send._key  # the secret itself, to prove it is absent from every repr
    assert key is not None
    assert initiator.s is not None
    private = initiator.s.private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    for text in (repr(send), repr(initiator), repr(initiator.symmetric_state), repr(initiator.s)):
        assert key.hex() not in text
        assert private.hex() not in text
        assert "k=set" in repr(send)


def test_handshake_turns_are_enforced() -> None:
    initiator, responder = _pair("Noise_KK_25519_AESGCM_SHA256")
    with pytest.raises(NoiseError):
        responder.write_message(b"")
    with pytest.raises(NoiseError):
        initiator.read_message(b"")
    with pytest.raises(NoiseError):
        initiator.split()


def test_kk_needs_both_static_keys() -> None:
    protocol = parse_protocol_name("Noise_KK_25519_AESGCM_SHA256")
    with pytest.raises(NoiseError, match="remote s"):
        HandshakeState(protocol, initiator=True, s=protocol.dh.generate_keypair())


@pytest.mark.parametrize(
    "name",
    [
        "Noise_XX_25519_AESGCM_SHA256",
        "Noise_KK_448_AESGCM_SHA256",
        "Noise_KKpsk0_25519_AESGCM_SHA256",
        "Noise_KK_25519_AESGCM",
        "noise_KK_25519_AESGCM_SHA256",
    ],
)
def test_unsupported_protocol_names(name: str) -> None:
    with pytest.raises(ValueError, match=r"unsupported|not a Noise"):
        parse_protocol_name(name)


def test_keypair_repr_is_short() -> None:
    pair = DH_FUNCTIONS["25519"].generate_keypair()
    assert isinstance(pair, KeyPair)
    assert repr(pair).startswith("KeyPair(public=")
    assert len(repr(pair)) < 40
