"""answer --workers: each worker's share of [network] rtp_ports (softphone.workers.rtp_slice)."""

from __future__ import annotations

import random

import pytest

from softphone.workers import rtp_slice


def _cases() -> list[tuple[int, int, int]]:
    rng = random.Random(14)
    cases = [(10001, 20000, 2), (10000, 20000, 2), (10001, 10004, 1), (10001, 10005, 2),
             (20000, 20001, 1), (1025, 65535, 7)]
    for _ in range(2000):
        low = rng.randint(1024, 60000)
        high = rng.randint(low + 1, min(65535, low + 5000))
        count = rng.randint(1, 16)
        cases.append((low, high, count))
    return cases


def test_slices_are_disjoint_even_aligned_and_inside_the_range():
    checked = 0
    for low, high, count in _cases():
        try:
            slices = [rtp_slice((low, high), i, count) for i in range(count)]
        except ValueError:
            # refused only when the range cannot give each worker one RTP/RTCP pair
            assert (high - (low + low % 2) + 1) // count < 2, (low, high, count)
            continue
        checked += 1
        for start, end in slices:
            assert low <= start and end <= high, (low, high, count, start, end)
            assert start % 2 == 0 and end % 2 == 1, (low, high, count, start, end)
        for (_, end), (start, _) in zip(slices, slices[1:]):
            assert end < start, (low, high, count, slices)
    assert checked > 1000


def test_odd_low_stays_inside_high():
    # the old slicing gave worker 1 (15002, 20001): one port past the range
    assert rtp_slice((10001, 20000), 0, 2) == (10002, 14999)
    assert rtp_slice((10001, 20000), 1, 2) == (15000, 19997)


def test_a_range_too_small_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"\[network\] rtp_ports 10001-10002"):
        rtp_slice((10001, 10002), 0, 1)
