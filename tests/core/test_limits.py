"""The token bucket, driven by a clock the test holds."""

import pytest

from wsdemo.core.limits import TokenBucket


def test_a_burst_then_the_rate():
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.05) is False, "half a token is not a token"
    assert bucket.take(0.1) is True, "0.1 s at 10/s is one token"
    assert bucket.take(100.0) and bucket.tokens == pytest.approx(2), "never more than burst"


def test_refusals_in_a_row_exhaust_it_and_one_success_forgives():
    bucket = TokenBucket(rate=1, burst=2, now=0.0)
    bucket.take(0.0), bucket.take(0.0)
    assert not bucket.take(0.0) and not bucket.exhausted
    assert not bucket.take(0.0) and bucket.exhausted
    assert bucket.take(5.0) and not bucket.exhausted


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0)])
def test_a_limit_that_means_nothing_is_refused(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, 0.0)
