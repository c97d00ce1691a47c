"""The cipher suites fixsecure speaks. A suite id is a Noise protocol name.

Suites are fixed per session in the settings on both sides; there is no negotiation. The
initiator names its suite in clear in the Logon and the acceptor refuses any other before doing
any Diffie-Hellman.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["DEFAULT_SUITE", "SUITES", "Curve", "curve_of", "is_suite"]

Curve = Literal["25519", "P256"]

DEFAULT_SUITE: Final = "Noise_KK_25519_AESGCM_SHA256"

#: Every suite fixsecure accepts, in order of preference for documentation.
SUITES: Final[tuple[str, ...]] = (
    DEFAULT_SUITE,
    "Noise_KK_25519_ChaChaPoly_SHA256",
    "Noise_KK_P256_AESGCM_SHA256",
)


def is_suite(name: str) -> bool:
    """True if ``name`` is one of :data:`SUITES` (exact, case-sensitive match)."""
    return name in SUITES


def curve_of(suite: str) -> Curve:
    """The DH curve of a suite: the key files of a session must be of this type."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; expected one of {', '.join(SUITES)}")
    return "P256" if "_P256_" in suite else "25519"
