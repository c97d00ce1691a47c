"""fixsecure.admission: token buckets with an injected clock, bounded memory, the limits of a
listener, and a per-session budget that one source cannot spend for another."""

from __future__ import annotations

import pytest

from fixsecure import admission as admission_module
from fixsecure.admission import Admission, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bursts_then_refills_at_the_configured_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock)  # 6 a minute: one every 10 s, bursting to 6
    assert [limiter.allow("a") for _ in range(7)] == [True] * 6 + [False]
    clock.now += 9.9
    assert not limiter.allow("a")
    clock.now += 0.2
    assert limiter.allow("a")
    assert not limiter.allow("a")
    assert limiter.allow("b")  # keys are independent


def test_zero_is_unlimited_and_negative_is_refused() -> None:
    limiter = RateLimiter(0, Clock())
    assert all(limiter.allow("a") for _ in range(1000))
    assert len(limiter) == 0
    with pytest.raises(ValueError, match="per_minute"):
        RateLimiter(-1)


def test_idle_buckets_are_forgotten_and_capacity_evicts_the_stalest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admission_module, "_MAX_BUCKETS", 3)
    clock = Clock()
    limiter = RateLimiter(2, clock)
    for key in ("a", "b", "c"):
        limiter.allow(key)
        clock.now += 1
    assert len(limiter) == 3
    limiter.allow("a")  # a is now the most recent
    limiter.allow("d")  # at capacity: the stalest (b) goes, not everybody
    assert len(limiter) == 3
    assert not limiter.allow("a")  # a was kept, not evicted: its burst of 2 is spent
    assert limiter.allow("b")  # b was evicted: it starts afresh
    clock.now += 61  # everything idle for a minute: refilled, so forgotten on the next insert
    limiter.allow("e")
    assert len(limiter) == 1


def test_half_open_slots_are_bounded_and_given_back() -> None:
    admission = Admission.create(max_half_open=2, per_source_per_minute=0, clock=Clock())
    assert admission.open_connection("10.0.0.1")
    assert admission.open_connection("10.0.0.2")
    assert not admission.open_connection("10.0.0.3")
    assert admission.refused["half_open"] == 1
    admission.handshake_done()
    assert admission.open_connection("10.0.0.3")
    admission.handshake_done()
    admission.handshake_done()
    admission.handshake_done()  # never below zero
    assert admission.half_open == 0


def test_per_source_limit_refuses_at_accept() -> None:
    admission = Admission.create(max_half_open=100, per_source_per_minute=2, clock=Clock())
    results = []
    for _ in range(3):
        results.append(admission.open_connection("10.0.0.9"))
        admission.handshake_done()
    assert results == [True, True, False]
    assert admission.refused["source"] == 1
    assert admission.open_connection("10.0.0.10")


def test_one_source_cannot_spend_another_sources_session_budget() -> None:
    admission = Admission.create(per_session_per_minute=3, clock=Clock())
    attacker = [admission.admit_session("VENUE<-BANK", "203.0.113.5") for _ in range(10)]
    assert attacker == [True] * 3 + [False] * 7
    assert admission.refused["session"] == 7
    assert admission.admit_session("VENUE<-BANK", "198.51.100.1")  # the real counterparty
