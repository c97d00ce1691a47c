"""The Noise Protocol Framework (revision 34), the parts fixsecure needs, on pyca/cryptography.

Names follow the Noise specification: :class:`CipherState`, :class:`SymmetricState` and
:class:`HandshakeState` with ``mix_key``, ``mix_hash``, ``encrypt_and_hash``, ``split``, ``rekey``
and so on. Handshake patterns: KK (what fixsecure uses), IK and NN (so every public test vector
runs). DH functions: ``25519`` (X25519) and ``P256``, which the Noise specification does not define
and fixsecure does (``specs/fixsecure-v1.md`` §2.2): public keys are 65-byte uncompressed SEC1
points, the DH output is the 32-byte x-coordinate, and compressed points, the point at infinity and
points off the curve are refused. Ciphers: ``AESGCM`` and ``ChaChaPoly``. Hashes: ``SHA256``,
``SHA512``, ``BLAKE2s`` and ``BLAKE2b``.

Every primitive comes from ``cryptography``: the AEADs, X25519, ECDH, hashes, and HKDF (Noise's
HKDF is RFC 5869 with an empty ``info``). This module holds only the Noise state machines.

Failures raise :class:`fixsecure.errors.NoiseError` subclasses; callers above the hazmat layer
turn them into one uniform error for the peer.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fixsecure.errors import DecryptError, InvalidPublicKey, NoiseError, NonceExhausted

__all__ = [
    "MAX_NONCE",
    "PATTERNS",
    "CipherFunctions",
    "CipherState",
    "DHFunctions",
    "HandshakeState",
    "HashFunctions",
    "KeyPair",
    "NoiseProtocol",
    "SymmetricState",
    "parse_protocol_name",
]

#: Nonce value reserved by Noise: EncryptWithAd refuses it, REKEY uses it.
MAX_NONCE: Final = 2**64 - 1

PrivateKey = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, repr=False)
class KeyPair:
    """A DH key pair: the ``cryptography`` private key object and the Noise encoding of its public
    key. The repr never shows key material."""

    private: PrivateKey
    public: bytes

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public[:4].hex()}…)"


# --------------------------------------------------------------------------------------------
# DH functions


class DHFunctions(ABC):
    """GENERATE_KEYPAIR, DH and DHLEN for one curve."""

    name: str
    dhlen: int
    #: Length of the Noise encoding of a public key (what travels in handshake messages).
    publen: int

    def generate_keypair(self) -> KeyPair:
        return self.keypair(self._generate())

    @abstractmethod
    def _generate(self) -> PrivateKey:
        """A fresh private key from the operating system's CSPRNG."""

    @abstractmethod
    def keypair_from_private_bytes(self, data: bytes) -> KeyPair:
        """A key pair from a raw private scalar (test vectors and reproducible transcripts)."""

    @abstractmethod
    def keypair(self, private: PrivateKey) -> KeyPair:
        """The key pair of a ``cryptography`` private key of this curve (TypeError otherwise)."""

    @abstractmethod
    def validate_public(self, public: bytes) -> None:
        """Raise :class:`InvalidPublicKey` unless ``public`` is an acceptable public key."""

    @abstractmethod
    def dh(self, keypair: KeyPair, public: bytes) -> bytes:
        """DH(key_pair, public_key): the shared secret, or :class:`InvalidPublicKey`."""


class X25519(DHFunctions):
    name = "25519"
    dhlen = 32
    publen = 32

    def _generate(self) -> PrivateKey:
        return x25519.X25519PrivateKey.generate()

    def keypair_from_private_bytes(self, data: bytes) -> KeyPair:
        return self.keypair(x25519.X25519PrivateKey.from_private_bytes(data))

    def keypair(self, private: PrivateKey) -> KeyPair:
        if not isinstance(private, x25519.X25519PrivateKey):
            raise TypeError("25519 needs an X25519 private key")
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return KeyPair(private, public)

    def validate_public(self, public: bytes) -> None:
        if len(public) != 32:
            raise InvalidPublicKey(f"X25519 public key must be 32 bytes, not {len(public)}")

    def dh(self, keypair: KeyPair, public: bytes) -> bytes:
        self.validate_public(public)
        assert isinstance(keypair.private, x25519.X25519PrivateKey)
        try:
            # OpenSSL refuses an all-zero result, i.e. every small-order point.
            return keypair.private.exchange(x25519.X25519PublicKey.from_public_bytes(public))
        except ValueError as exc:
            raise InvalidPublicKey("X25519 public key of small order") from exc


class P256(DHFunctions):
    """NIST P-256 as a Noise DH function (fixsecure's definition, see module docstring)."""

    name = "P256"
    dhlen = 32
    publen = 65
    _curve = ec.SECP256R1()
    _order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

    def _generate(self) -> PrivateKey:
        return ec.generate_private_key(self._curve)

    def keypair_from_private_bytes(self, data: bytes) -> KeyPair:
        scalar = int.from_bytes(data, "big")
        if len(data) != 32 or not 0 < scalar < self._order:
            raise ValueError("P-256 private key must be a 32-byte scalar in [1, n-1]")
        return self.keypair(ec.derive_private_key(scalar, self._curve))

    def keypair(self, private: PrivateKey) -> KeyPair:
        if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(
            private.curve, ec.SECP256R1
        ):
            raise TypeError("P256 needs an EC private key on curve P-256 (secp256r1)")
        public = private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return KeyPair(private, public)

    def _load(self, public: bytes) -> ec.EllipticCurvePublicKey:
        if len(public) != 65 or public[0] != 0x04:
            raise InvalidPublicKey(
                "P-256 public key must be a 65-byte uncompressed point (0x04 || x || y)"
            )
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(self._curve, public)
        except ValueError as exc:
            raise InvalidPublicKey("P-256 public key is not a point on the curve") from exc

    def validate_public(self, public: bytes) -> None:
        self._load(public)

    def dh(self, keypair: KeyPair, public: bytes) -> bytes:
        peer = self._load(public)
        assert isinstance(keypair.private, ec.EllipticCurvePrivateKey)
        return keypair.private.exchange(ec.ECDH(), peer)


# --------------------------------------------------------------------------------------------
# Cipher functions

_Aead = AESGCM | ChaCha20Poly1305


class CipherFunctions:
    """ENCRYPT/DECRYPT for one AEAD: the nonce is 32 zero bits then the 64-bit counter, in the
    byte order the Noise specification gives the cipher (AESGCM big-endian, ChaChaPoly little)."""

    def __init__(
        self, name: str, aead: Callable[[bytes], _Aead], byteorder: Literal["big", "little"]
    ) -> None:
        self.name = name
        self.aead = aead
        self.little_endian = byteorder == "little"
        self.nonce: Callable[[int], bytes] = struct.Struct(
            "<4xQ" if self.little_endian else ">4xQ"
        ).pack

    def rekey(self, key: bytes) -> bytes:
        """Noise's default REKEY: the first 32 bytes of ENCRYPT(k, maxnonce, zerolen, zeros)."""
        return self.aead(key).encrypt(self.nonce(MAX_NONCE), bytes(32), b"")[:32]


AESGCM_FUNCTIONS: Final = CipherFunctions("AESGCM", AESGCM, "big")
CHACHAPOLY_FUNCTIONS: Final = CipherFunctions("ChaChaPoly", ChaCha20Poly1305, "little")


# --------------------------------------------------------------------------------------------
# Hash functions


class HashFunctions:
    """HASH, HASHLEN and HKDF for one hash algorithm."""

    def __init__(self, name: str, algorithm: Callable[[], hashes.HashAlgorithm]) -> None:
        self.name = name
        self._algorithm = algorithm
        self.hashlen = algorithm().digest_size

    def hash(self, data: bytes) -> bytes:
        digest = hashes.Hash(self._algorithm())
        digest.update(data)
        return digest.finalize()

    def hkdf(self, chaining_key: bytes, ikm: bytes, outputs: int) -> list[bytes]:
        """Noise's HKDF: RFC 5869 extract with salt = chaining key, expand with empty info."""
        okm = HKDF(self._algorithm(), self.hashlen * outputs, salt=chaining_key, info=b"").derive(
            ikm
        )
        n = self.hashlen
        return [okm[i * n : (i + 1) * n] for i in range(outputs)]


DH_FUNCTIONS: Final[dict[str, DHFunctions]] = {"25519": X25519(), "P256": P256()}
CIPHER_FUNCTIONS: Final = {f.name: f for f in (AESGCM_FUNCTIONS, CHACHAPOLY_FUNCTIONS)}
HASH_FUNCTIONS: Final = {
    f.name: f
    for f in (
        HashFunctions("SHA256", hashes.SHA256),
        HashFunctions("SHA512", hashes.SHA512),
        HashFunctions("BLAKE2s", lambda: hashes.BLAKE2s(32)),
        HashFunctions("BLAKE2b", lambda: hashes.BLAKE2b(64)),
    )
}

Token = Literal["e", "s", "ee", "es", "se", "ss"]


@dataclass(frozen=True)
class Pattern:
    """A handshake pattern: pre-message tokens of each side and the message token lists."""

    name: str
    initiator_pre: tuple[Token, ...]
    responder_pre: tuple[Token, ...]
    messages: tuple[tuple[Token, ...], ...]


PATTERNS: Final = {
    p.name: p
    for p in (
        Pattern("NN", (), (), (("e",), ("e", "ee"))),
        Pattern("KK", ("s",), ("s",), (("e", "es", "ss"), ("e", "ee", "se"))),
        Pattern("IK", (), ("s",), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
    )
}


@dataclass(frozen=True)
class NoiseProtocol:
    """A parsed Noise protocol name such as ``Noise_KK_25519_AESGCM_SHA256``."""

    name: str
    pattern: Pattern
    dh: DHFunctions
    cipher: CipherFunctions
    hash: HashFunctions


def parse_protocol_name(name: str) -> NoiseProtocol:
    """Parse a Noise protocol name; :class:`ValueError` if any part is unsupported."""
    parts = name.split("_")
    if len(parts) != 5 or parts[0] != "Noise":
        raise ValueError(f"not a Noise protocol name fixsecure supports: {name!r}")
    _, pattern, dh, cipher, hash_name = parts
    try:
        return NoiseProtocol(
            name,
            PATTERNS[pattern],
            DH_FUNCTIONS[dh],
            CIPHER_FUNCTIONS[cipher],
            HASH_FUNCTIONS[hash_name],
        )
    except KeyError as exc:
        raise ValueError(f"unsupported part {exc.args[0]!r} in Noise protocol {name!r}") from None


# --------------------------------------------------------------------------------------------
# The three state objects


class CipherState:
    """A key ``k`` and a counter nonce ``n``. Without a key, encryption is the identity."""

    __slots__ = ("_aead", "_functions", "_key", "_nonce", "n")

    def __init__(self, functions: CipherFunctions, key: bytes | None = None) -> None:
        self._functions = functions
        self._nonce = functions.nonce
        self._key: bytes | None = None
        self._aead: _Aead | None = None
        self.n = 0
        if key is not None:
            self.initialize_key(key)

    def __repr__(self) -> str:
        keyed = "set" if self._key is not None else "empty"
        return f"CipherState({self._functions.name}, k={keyed}, n={self.n})"

    def initialize_key(self, key: bytes) -> None:
        self._key = key
        self._aead = self._functions.aead(key)
        self.n = 0

    def has_key(self) -> bool:
        return self._key is not None

    @property
    def functions(self) -> CipherFunctions:
        return self._functions

    @property
    def aead(self) -> _Aead | None:
        """The keyed ``cryptography`` AEAD object, for batch paths that call it directly and
        advance ``n`` themselves (``specs/hot-path.md``); None without a key."""
        return self._aead

    def set_nonce(self, nonce: int) -> None:
        self.n = nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        aead = self._aead
        if aead is None:
            return plaintext
        n = self.n
        if n >= MAX_NONCE:
            raise NonceExhausted("nonce 2^64-1 is reserved: this CipherState is exhausted")
        ciphertext = aead.encrypt(self._nonce(n), plaintext, ad)
        self.n = n + 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """Decrypt; the nonce advances only on success, so a forgery changes no state."""
        aead = self._aead
        if aead is None:
            return ciphertext
        n = self.n
        if n >= MAX_NONCE:
            raise NonceExhausted("nonce 2^64-1 is reserved: this CipherState is exhausted")
        try:
            plaintext = aead.decrypt(self._nonce(n), ciphertext, ad)
        except InvalidTag:
            raise DecryptError("authentication failed") from None
        self.n = n + 1
        return plaintext

    def rekey(self) -> None:
        """Noise Rekey(): k = REKEY(k); the nonce is unchanged."""
        if self._key is None:
            raise NoiseError("cannot rekey a CipherState without a key")
        key = self._functions.rekey(self._key)
        self._key = key
        self._aead = self._functions.aead(key)


class SymmetricState:
    """The chaining key ``ck``, the handshake hash ``h`` and a :class:`CipherState`."""

    def __init__(self, protocol: NoiseProtocol) -> None:
        """InitializeSymmetric(protocol_name)."""
        self._protocol = protocol
        self._hash = protocol.hash
        name = protocol.name.encode("ascii")
        if len(name) <= self._hash.hashlen:
            self.h = name.ljust(self._hash.hashlen, b"\x00")
        else:
            self.h = self._hash.hash(name)
        self.ck = self.h
        self.cipher_state = CipherState(protocol.cipher)

    def __repr__(self) -> str:
        return f"SymmetricState({self._protocol.name}, h={self.h.hex()})"

    def mix_key(self, input_key_material: bytes) -> None:
        self.ck, temp_k = self._hash.hkdf(self.ck, input_key_material, 2)
        self.cipher_state.initialize_key(temp_k[:32])

    def mix_hash(self, data: bytes) -> None:
        self.h = self._hash.hash(self.h + data)

    def get_handshake_hash(self) -> bytes:
        return self.h

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher_state.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher_state.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """Two CipherStates: the first encrypts initiator→responder, the second the reverse."""
        temp_k1, temp_k2 = self._hash.hkdf(self.ck, b"", 2)
        cipher = self._protocol.cipher
        return CipherState(cipher, temp_k1[:32]), CipherState(cipher, temp_k2[:32])


class HandshakeState:
    """One side of a handshake: Initialize(), then alternate write_message / read_message.

    ``e`` may be given (test vectors, reproducible transcripts); otherwise a fresh ephemeral key
    is generated when the pattern first needs it. After the last message :meth:`split` yields the
    transport CipherStates.
    """

    def __init__(
        self,
        protocol: NoiseProtocol,
        *,
        initiator: bool,
        prologue: bytes = b"",
        s: KeyPair | None = None,
        e: KeyPair | None = None,
        rs: bytes | None = None,
        re: bytes | None = None,
    ) -> None:
        self.protocol = protocol
        self.initiator = initiator
        self.symmetric_state = SymmetricState(protocol)
        self.s, self.e, self.rs, self.re = s, e, rs, re
        self._dh = protocol.dh
        self._messages: Sequence[tuple[Token, ...]] = protocol.pattern.messages
        self._index = 0
        self.symmetric_state.mix_hash(prologue)
        pattern = protocol.pattern
        for side_is_initiator, tokens in (
            (True, pattern.initiator_pre),
            (False, pattern.responder_pre),
        ):
            for token in tokens:
                mine = side_is_initiator == initiator
                key = self._local(token) if mine else self._remote(token)
                if key is None:
                    side = "local" if mine else "remote"
                    raise NoiseError(f"pattern {pattern.name} needs the {side} {token} key")
                self.symmetric_state.mix_hash(key)

    def __repr__(self) -> str:
        role = "initiator" if self.initiator else "responder"
        return f"HandshakeState({self.protocol.name}, {role}, message={self._index})"

    def _local(self, token: str) -> bytes | None:
        pair = self.s if token == "s" else self.e
        return None if pair is None else pair.public

    def _remote(self, token: str) -> bytes | None:
        return self.rs if token == "s" else self.re

    @property
    def finished(self) -> bool:
        return self._index >= len(self._messages)

    @property
    def my_turn(self) -> bool:
        """True when the next handshake message is ours to write."""
        return not self.finished and (self._index % 2 == 0) == self.initiator

    def _dh_token(self, token: Token) -> bytes:
        # Token "xy": x is the initiator's key, y the responder's; each side computes its half.
        mine, theirs = (token[0], token[1]) if self.initiator else (token[1], token[0])
        pair = self.e if mine == "e" else self.s
        public = self.re if theirs == "e" else self.rs
        if pair is None or public is None:
            raise NoiseError(f"token {token} needs keys this handshake does not have")
        return self._dh.dh(pair, public)

    def write_message(self, payload: bytes) -> bytes:
        if not self.my_turn:
            raise NoiseError("not this side's turn to write a handshake message")
        ss = self.symmetric_state
        out = bytearray()
        for token in self._messages[self._index]:
            if token == "e":
                if self.e is None:
                    self.e = self._dh.generate_keypair()
                out += self.e.public
                ss.mix_hash(self.e.public)
            elif token == "s":
                if self.s is None:
                    raise NoiseError("pattern needs a local static key")
                out += ss.encrypt_and_hash(self.s.public)
            else:
                ss.mix_key(self._dh_token(token))
        out += ss.encrypt_and_hash(payload)
        self._index += 1
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        if self.finished or self.my_turn:
            raise NoiseError("not this side's turn to read a handshake message")
        ss = self.symmetric_state
        publen = self._dh.publen
        pos = 0
        for token in self._messages[self._index]:
            if token == "e":
                re = message[pos : pos + publen]
                if len(re) != publen:
                    raise DecryptError("handshake message too short")
                self._dh.validate_public(re)
                self.re = re
                ss.mix_hash(re)
                pos += publen
            elif token == "s":
                size = publen + (16 if ss.cipher_state.has_key() else 0)
                chunk = message[pos : pos + size]
                if len(chunk) != size:
                    raise DecryptError("handshake message too short")
                rs = ss.decrypt_and_hash(chunk)
                self._dh.validate_public(rs)
                self.rs = rs
                pos += size
            else:
                ss.mix_key(self._dh_token(token))
        payload = ss.decrypt_and_hash(message[pos:])
        self._index += 1
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        if not self.finished:
            raise NoiseError("handshake not finished")
        return self.symmetric_state.split()

    def get_handshake_hash(self) -> bytes:
        return self.symmetric_state.get_handshake_hash()
