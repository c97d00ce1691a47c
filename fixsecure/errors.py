"""The exceptions fixsecure raises.

::

    FixSecureError
    ├── ConfigError              a settings or key file is unusable (names file, section, key)
    │   └── KeyFileError         a key file is missing, malformed, of the wrong type or too open
    ├── ConnectionEnded          an adapter's connection is over (``clean`` says how it ended)
    └── ProtocolError
        ├── FramingError         bytes that are not a well-formed FIX message
        ├── LocalProtocolError   the local side (engine or API caller) did something wrong
        ├── LimitExceeded        a key-usage cap was reached; the connection is over
        └── NoiseError           the Noise layer refused something (hazmat level)
            ├── DecryptError     AEAD authentication failed
            ├── InvalidPublicKey a peer public key is malformed, off the curve or of small order
            └── NonceExhausted   a CipherState reached the reserved nonce 2^64-1

What the peer did wrong is not an exception: the sans-IO session reports it as a
``ConnectionFailed`` event whose reason is for the local log only, and the adapters close the
connection with nothing more sent (``ConnectionEnded`` then tells their callers). Nothing in any
message here contains key material or message bodies.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ConfigError",
    "ConnectionEnded",
    "DecryptError",
    "FixSecureError",
    "FramingError",
    "InvalidPublicKey",
    "KeyFileError",
    "LimitExceeded",
    "LocalProtocolError",
    "NoiseError",
    "NonceExhausted",
    "ProtocolError",
]


class FixSecureError(Exception):
    """Base class of every error fixsecure raises on purpose."""


class ConfigError(FixSecureError):
    """A settings or key file cannot be used; the message names the file, section and key."""

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        section: str | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else Path(path)
        self.section = section
        self.key = key
        where = ": ".join(
            part
            for part in (
                None if self.path is None else str(self.path),
                section,
                key,
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class KeyFileError(ConfigError):
    """A key file is missing, malformed, of the wrong type, or readable by group/others."""


class ConnectionEnded(FixSecureError):
    """Raised by the I/O adapters when a connection is over.

    ``clean`` is True only if a verified Logout came from the peer before the end; ``reason`` says
    what happened (for a protocol failure, the local detail the peer never sees).
    """

    def __init__(self, clean: bool, reason: str) -> None:
        self.clean = clean
        self.reason = reason
        super().__init__(f"{'clean' if clean else 'abnormal'} end: {reason}")


class ProtocolError(FixSecureError):
    """Something on a connection broke the FIX or fixsecure rules.

    ``wire``: when :meth:`fixsecure.session.Session.send_data` refuses a message, the protected
    bytes of the messages before it in the same call. They must still be sent: their nonces are
    spent, and the peer expects them in order.
    """

    wire: bytes = b""


class FramingError(ProtocolError):
    """Bytes that are not a well-formed FIX message (``offset`` locates the problem)."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.reason = message
        self.offset = offset
        super().__init__(message if offset is None else f"{message} (at byte {offset})")


class LocalProtocolError(ProtocolError):
    """The local engine or API caller did something the protocol does not allow."""


class LimitExceeded(ProtocolError):
    """A per-connection key-usage cap was reached; a fresh handshake is required."""


class NoiseError(ProtocolError):
    """The Noise layer refused an operation. Sessions report these to the peer uniformly."""


class DecryptError(NoiseError):
    """AEAD authentication failed: wrong key, tampered bytes, or replayed/reordered data."""


class InvalidPublicKey(NoiseError):
    """A peer public key is malformed, not on the curve, or of small order."""


class NonceExhausted(NoiseError):
    """A CipherState reached the nonce value Noise reserves (2^64-1)."""
