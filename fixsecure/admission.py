"""Admission control for an acceptor endpoint, sans-IO: Logon rate limits and half-open handshakes.

Token buckets refilled continuously at ``per_minute / 60`` tokens per second, with a burst of
``per_minute`` (at least 1). One bucket per source address (checked when a connection is accepted,
before a byte is read) and one per session (checked after the Logon's cheap checks, before any DH,
through :class:`fixsecure.session.AcceptorDirectory`'s ``admit`` hook). The clock is injected and
measured in seconds; idle buckets are dropped so memory stays bounded under address-spraying floods.
"""

from __future__ import annotations

import time
from collections import OrderedDict
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
    """``per_minute`` events per key and minute, bursting to ``per_minute``; 0 means unlimited.

    Buckets are kept in least-recently-used order, so bounding memory costs O(1) per event: full
    (idle) buckets are dropped from the front, and at capacity the stalest one goes. An address
    sprayer thus costs constant time and cannot reset anybody else's limit."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 0:
            raise ValueError("per_minute must be >= 0")
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def allow(self, key: Hashable) -> bool:
        """Take one token for ``key`` if there is one."""
        if self.per_minute == 0:
            return True
        now = self._clock()
        rate = self.per_minute / 60.0
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            self._prune(now)
            bucket = _Bucket(float(self.per_minute), now)
        else:
            bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
        self._buckets[key] = bucket  # most recently used last
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _prune(self, now: float) -> None:
        """Drop buckets idle for a full minute (refilled: they carry no information), oldest
        first, and the stalest beyond the capacity."""
        buckets = self._buckets
        while buckets:
            oldest = next(iter(buckets.values()))
            if now - oldest.stamp < 60.0 and len(buckets) < _MAX_BUCKETS:
                break
            buckets.popitem(last=False)

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

    def admit_session(self, session: Hashable, source: Hashable = None) -> bool:
        """The ``admit`` hook: one more Logon for this session from this source, before any DH?

        Keyed by (session, source) on purpose: keyed by the session alone, anyone who can reach
        the port and knows a session's CompIDs could spend its tokens and lock the real
        counterparty out. Each source is bounded by the per-source limit as well."""
        if self.per_session.allow((session, source)):
            return True
        self.refused["session"] += 1
        return False
