"""Admission control for an acceptor endpoint, sans-IO: Logon rate limits and half-open handshakes.

Token buckets refilled continuously at ``per_minute / 60`` tokens per second, with a burst of
``per_minute`` (at least 1). One bucket per source address (checked when a connection is accepted,
before a byte is read) and one per session (checked after the Logon's cheap checks, before any DH,
through :class:`fixsecure.session.AcceptorDirectory`'s ``admit`` hook). The clock is injected and
measured in seconds; idle buckets are dropped so memory stays bounded under address-spraying floods.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Admission", "RateLimiter"]

_MAX_BUCKETS: Final = 100_000


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """``per_minute`` events per key and minute, bursting to ``per_minute``; 0 means unlimited."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 0:
            raise ValueError("per_minute must be >= 0")
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[Hashable, _Bucket] = {}

    def allow(self, key: Hashable) -> bool:
        """Take one token for ``key`` if there is one."""
        if self.per_minute == 0:
            return True
        now = self._clock()
        rate = self.per_minute / 60.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._prune(now, rate)
            bucket = self._buckets[key] = _Bucket(float(self.per_minute), now)
        else:
            bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _prune(self, now: float, rate: float) -> None:
        """Forget buckets that have refilled completely: they carry no information."""
        full = self.per_minute / rate
        for key in [k for k, b in self._buckets.items() if now - b.stamp >= full]:
            del self._buckets[key]
        if len(self._buckets) >= _MAX_BUCKETS:  # a flood from that many live sources: start over
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass
class Admission:
    """The limits of one listening endpoint (see the module docstring)."""

    max_half_open: int
    per_source: RateLimiter
    per_session: RateLimiter
    half_open: int = 0
    refused: dict[str, int] = field(
        default_factory=lambda: {"half_open": 0, "source": 0, "session": 0}
    )

    @classmethod
    def create(
        cls,
        *,
        max_half_open: int = 64,
        per_source_per_minute: int = 30,
        per_session_per_minute: int = 12,
        clock: Callable[[], float] = time.monotonic,
    ) -> Admission:
        return cls(
            max_half_open,
            RateLimiter(per_source_per_minute, clock),
            RateLimiter(per_session_per_minute, clock),
        )

    def open_connection(self, source: Hashable) -> bool:
        """A TCP connection arrived: admit it as a new half-open handshake, or refuse it."""
        if self.half_open >= self.max_half_open:
            self.refused["half_open"] += 1
            return False
        if not self.per_source.allow(source):
            self.refused["source"] += 1
            return False
        self.half_open += 1
        return True

    def handshake_done(self) -> None:
        """The connection left the half-open state (handshake finished, failed or timed out)."""
        self.half_open = max(self.half_open - 1, 0)

    def admit_session(self, session: Hashable) -> bool:
        """The ``admit`` hook: one more Logon for this session, before any DH?"""
        if self.per_session.allow(session):
            return True
        self.refused["session"] += 1
        return False
