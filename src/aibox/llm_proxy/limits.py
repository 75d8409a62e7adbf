"""Requests-per-minute and tokens-per-minute limits as token buckets.

A bucket holds up to ``capacity`` units and refills continuously at
``capacity / 60`` units per second. A request takes one unit from the request
bucket and its estimated token count from the token bucket before it is
forwarded. Once the upstream reports usage, the difference is returned or
charged. A charge may drive a bucket below zero, which delays later requests
until the debt is refilled.

The clock is a parameter so tests can move time without waiting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]

_REFILL_WINDOW_SECONDS = 60.0


class TokenBucket:
    """A refilling budget of ``capacity`` units per minute."""

    def __init__(self, capacity: int, clock: Clock = time.monotonic) -> None:
        if capacity <= 0:
            raise ValueError(f"bucket capacity must be positive, got {capacity}")
        self.capacity = float(capacity)
        self._rate = capacity / _REFILL_WINDOW_SECONDS
        self._clock = clock
        self._level = float(capacity)
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._level = min(self.capacity, self._level + elapsed * self._rate)
        self._updated = now

    @property
    def level(self) -> float:
        self._refill()
        return self._level

    def wait_seconds(self, amount: float) -> float:
        """Return the seconds until ``amount`` units are available (0 when they are)."""
        self._refill()
        missing = amount - self._level
        return 0.0 if missing <= 0 else missing / self._rate

    def take(self, amount: float) -> None:
        """Remove ``amount`` units; the caller checked ``wait_seconds`` first."""
        self._refill()
        self._level -= amount

    def give_back(self, amount: float) -> None:
        """Return units (negative ``amount`` charges more), capped at capacity."""
        self._refill()
        self._level = min(self.capacity, self._level + amount)


@dataclass(frozen=True)
class Reservation:
    """The tokens one admitted request took from the token bucket."""

    tokens: int


@dataclass(frozen=True)
class Rejection:
    """A request over a limit: which one, and whole seconds until it fits."""

    limit: str
    retry_after: int


class RateLimiter:
    """The request and token buckets of one proxy; ``None`` means no limit."""

    def __init__(
        self,
        requests_per_min: int | None,
        tokens_per_min: int | None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.requests = (
            TokenBucket(requests_per_min, clock) if requests_per_min else None
        )
        self.tokens = TokenBucket(tokens_per_min, clock) if tokens_per_min else None

    def reserve(self, estimated_tokens: int) -> Reservation | Rejection:
        """Take one request and ``estimated_tokens`` tokens, or return how long to wait.

        Both buckets are checked before either is charged, so a rejected request
        costs nothing. An estimate above the per-minute capacity is reserved as
        the full capacity, so that a large request waits for a full bucket rather
        than being rejected forever; the correction after the response charges
        the real count.
        """
        token_amount = 0.0
        waits: list[tuple[float, str]] = []
        if self.requests is not None:
            waits.append((self.requests.wait_seconds(1), "requests_per_min"))
        if self.tokens is not None and estimated_tokens > 0:
            token_amount = min(float(estimated_tokens), self.tokens.capacity)
            waits.append((self.tokens.wait_seconds(token_amount), "tokens_per_min"))

        longest, limit = max(waits, default=(0.0, ""))
        if longest > 0:
            return Rejection(limit=limit, retry_after=max(1, math.ceil(longest)))

        if self.requests is not None:
            self.requests.take(1)
        if self.tokens is not None:
            self.tokens.take(token_amount)
        return Reservation(tokens=int(token_amount))

    def settle(self, reservation: Reservation, used_tokens: int | None) -> None:
        """Correct a reservation with the usage the upstream reported.

        ``None`` (no usage reported, for example an OpenAI stream without
        ``stream_options.include_usage``) keeps the estimate as the charge.
        """
        if self.tokens is None or used_tokens is None:
            return
        self.tokens.give_back(reservation.tokens - used_tokens)


# Characters per token for English text and code; a deliberate estimate, since
# the proxy has no tokenizer for every model it may serve.
_CHARS_PER_TOKEN = 4
# Output tokens reserved when the request sets no maximum.
DEFAULT_OUTPUT_RESERVATION = 1024
_OUTPUT_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def estimate_tokens(body: dict[str, object], body_bytes: int, generates: bool) -> int:
    """Estimate the tokens a request will use: its input plus its output cap.

    The input is estimated from the body size. For generating routes the output
    is the request's own maximum (``max_tokens`` and its OpenAI variants), or
    ``DEFAULT_OUTPUT_RESERVATION`` when it sets none.
    """
    input_tokens = math.ceil(body_bytes / _CHARS_PER_TOKEN)
    if not generates:
        return input_tokens
    output_tokens = DEFAULT_OUTPUT_RESERVATION
    for name in _OUTPUT_LIMIT_FIELDS:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            output_tokens = value
            break
    return input_tokens + output_tokens
