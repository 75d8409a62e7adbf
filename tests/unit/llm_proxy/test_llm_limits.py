"""Token buckets and the request/token limiter with a test clock."""

from __future__ import annotations

import pytest

from aibox.llm_proxy.limits import (
    DEFAULT_OUTPUT_RESERVATION,
    RateLimiter,
    Rejection,
    Reservation,
    TokenBucket,
    estimate_tokens,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_per_minute() -> None:
    clock = Clock()
    bucket = TokenBucket(60, clock)
    bucket.take(60)

    assert bucket.wait_seconds(1) == pytest.approx(1.0)
    clock.now = 30
    assert bucket.level == pytest.approx(30)
    clock.now = 500
    assert bucket.level == pytest.approx(60)  # capped at capacity


def test_bucket_rejects_bad_capacity() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)


def test_requests_limit_and_recovery() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_min=2, tokens_per_min=None, clock=clock)

    assert isinstance(limiter.reserve(0), Reservation)
    assert isinstance(limiter.reserve(0), Reservation)
    verdict = limiter.reserve(0)
    assert verdict == Rejection(limit="requests_per_min", retry_after=30)

    clock.now = 29.9
    assert isinstance(limiter.reserve(0), Rejection)
    clock.now = 30.0
    assert isinstance(limiter.reserve(0), Reservation)


def test_tokens_limit_and_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_min=None, tokens_per_min=600, clock=clock)

    assert limiter.reserve(500) == Reservation(tokens=500)
    verdict = limiter.reserve(200)

    # 100 left, 100 missing, refilled at 10 tokens per second.
    assert verdict == Rejection(limit="tokens_per_min", retry_after=10)


def test_rejection_charges_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_min=10, tokens_per_min=100, clock=clock)

    assert isinstance(limiter.reserve(1000), Reservation)  # capped at capacity
    assert isinstance(limiter.reserve(10), Rejection)
    assert limiter.requests is not None
    assert limiter.requests.level == pytest.approx(9)


def test_settle_corrects_with_usage() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_min=None, tokens_per_min=1000, clock=clock)
    reservation = limiter.reserve(800)
    assert isinstance(reservation, Reservation)

    limiter.settle(reservation, used_tokens=100)
    assert limiter.tokens is not None
    assert limiter.tokens.level == pytest.approx(900)

    second = limiter.reserve(100)
    assert isinstance(second, Reservation)
    limiter.settle(second, used_tokens=1500)  # more than estimated: debt
    assert limiter.tokens.level == pytest.approx(-600)
    assert limiter.reserve(1) == Rejection(limit="tokens_per_min", retry_after=37)


def test_settle_without_usage_keeps_estimate() -> None:
    limiter = RateLimiter(requests_per_min=None, tokens_per_min=1000, clock=Clock())
    reservation = limiter.reserve(300)
    assert isinstance(reservation, Reservation)

    limiter.settle(reservation, used_tokens=None)

    assert limiter.tokens is not None
    assert limiter.tokens.level == pytest.approx(700)


def test_no_limits_admit_everything() -> None:
    limiter = RateLimiter(None, None)

    for _ in range(1000):
        assert isinstance(limiter.reserve(10**9), Reservation)


@pytest.mark.parametrize(
    ("body", "size", "generates", "expected"),
    [
        ({"max_tokens": 100}, 400, True, 200),
        ({"max_completion_tokens": 50}, 4, True, 51),
        ({"max_output_tokens": 7}, 0, True, 7),
        ({}, 8, True, 2 + DEFAULT_OUTPUT_RESERVATION),
        ({"max_tokens": True}, 8, True, 2 + DEFAULT_OUTPUT_RESERVATION),  # bool ignored
        ({"max_tokens": 100}, 40, False, 10),  # embeddings: input only
    ],
)
def test_estimate_tokens(
    body: dict[str, object], size: int, generates: bool, expected: int
) -> None:
    assert estimate_tokens(body, size, generates) == expected
