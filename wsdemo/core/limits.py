"""Rate limits, sans-I/O: a token bucket that the server asks before it accepts a message.

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens a second; each
publish or set takes one. A client may send a burst (a slider dragged fast) and
then ``rate`` a second for as long as it likes; past that it gets ``error
rate-limited`` for each message it sends too soon, and a client that keeps on
(``burst`` refusals in a row) is closed with 4429. Time is passed in, so a test
or a lesson drives it without waiting.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``take(now)``: True if a token was there (and is now used), else False."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "refused")

    def __init__(self, rate: float, burst: float, now: float):
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now
        self.refused = 0  # refusals in a row

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.refused = 0
            return True
        self.refused += 1
        return False

    @property
    def exhausted(self) -> bool:
        """Refused ``burst`` times in a row: the client is not slowing down."""
        return self.refused >= self.burst

    def wait(self, now: float) -> float:
        """Seconds until a token is there again (0 if one is now)."""
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def full(self, now: float) -> bool:
        """Back to a full burst: nothing about this client is worth remembering."""
        return self.tokens + (now - self.stamp) * self.rate >= self.burst
