"""The runner's grid of deadlines: the worker's (src/schedule.c), on Python's monotonic clock.

The first tick runs at start; each next one is due one interval after the
last one's deadline (not after it ended), so that the time a tick takes
never adds up into drift; with clock_aligned, at the next wall-clock
multiple of the interval at least half an interval later.  A tick more
than an interval late skips the ticks it missed, as the worker does,
rather than running them back to back.  Pure: time is passed in.
"""

from __future__ import annotations

from typing import NamedTuple


class Next(NamedTuple):
    deadline: float  # monotonic seconds
    skipped: int  # ticks missed and skipped


def next_deadline(
    tick_deadline: float, interval: float, clock_aligned: bool, wall_minus_monotonic: float
) -> float:
    """The deadline after the tick due at tick_deadline (monotonic seconds)."""
    if not clock_aligned:
        return tick_deadline + interval
    # Whole microseconds, as the worker counts, so that both land on the same grid.
    interval_us = round(interval * 1_000_000)
    wall_us = round((wall_minus_monotonic + tick_deadline + interval / 2) * 1_000_000)
    return tick_deadline + interval / 2 + (interval_us - wall_us % interval_us) / 1_000_000


def after_tick(
    tick_deadline: float, now: float, interval: float, clock_aligned: bool, wall_minus_monotonic: float
) -> Next:
    """The next deadline once a tick due at tick_deadline is done at now, skipping missed ones."""
    deadline = next_deadline(tick_deadline, interval, clock_aligned, wall_minus_monotonic)
    late = now - deadline
    if late >= interval:
        skipped = int(late // interval)
        return Next(deadline + skipped * interval, skipped)
    return Next(deadline, 0)
