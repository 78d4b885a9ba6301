"""What the rows say: each tick's lateness against its deadline, the drift, percentiles."""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def lateness_on_grid(ticks: list[tuple[int, int, int]], interval_us: int) -> list[tuple[int, int, int]]:
    """(deadline, start - deadline, commit - deadline) for ticks on the wall-clock grid."""
    return [
        (start - start % interval_us, start % interval_us, commit - (start - start % interval_us))
        for _, start, commit in ticks
    ]


def lateness_naive(ticks: list[tuple[int, int, int]], interval_us: int) -> list[tuple[int, int, int]]:
    """The same for the naive worker, whose deadline is its previous commit plus the interval."""
    result = []
    for (_, _, previous_commit), (_, start, commit) in itertools.pairwise(ticks):
        deadline = previous_commit + interval_us
        result.append((deadline, start - deadline, commit - deadline))
    return result


def drift_us(ticks: list[tuple[int, int, int]], interval_us: int) -> int:
    """(last ts - first ts) - (n - 1) * interval."""
    return ticks[-1][1] - ticks[0][1] - (len(ticks) - 1) * interval_us
