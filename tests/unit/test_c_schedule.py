"""The worker's grid of deadlines (src/schedule.c), compiled alone: no server, no cluster.

Deadlines are microseconds on the monotonic clock; wall_offset is the wall
clock's reading minus the monotonic clock's, which only clock_aligned uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from c_leaves import header_constant, load_leaf
from hypothesis import given
from hypothesis import strategies as st

DECLARATIONS = """
int64_t tick_end_deadline(int64_t tick_deadline, int timeout_ms, int64_t now);
int64_t schedule_next_deadline_at(int64_t tick_deadline, int interval_ms, bool clock_aligned,
                                  int64_t wall_offset);
int64_t schedule_ticks_late(int64_t deadline, int64_t now, int interval_ms);
int64_t schedule_skip_late_ticks(int64_t deadline, int64_t now, int interval_ms, int64_t *skipped);
"""

SECOND = 1_000_000
# A wall clock on 2026-12-05, and a monotonic clock an hour after boot.
WALL_NOW = 1_796_428_800 * SECOND
BOOTED_AN_HOUR_AGO = 3600 * SECOND

intervals_ms = st.integers(
    min_value=header_constant("settings.h", "MIN_INTERVAL_MS"),
    max_value=header_constant("settings.h", "MAX_INTERVAL_MS"),
)
# Up to a year of uptime, and a wall clock anywhere from 1970 to 2100.
monotonic_times = st.integers(min_value=0, max_value=365 * 86400 * SECOND)
wall_offsets = st.integers(min_value=0, max_value=4_102_444_800 * SECOND)


@pytest.fixture(scope="module")
def schedule(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    ffi, lib = load_leaf("schedule", DECLARATIONS, Path(tmp_path_factory.mktemp("c_schedule")))

    class Schedule:
        next_deadline_at = lib.schedule_next_deadline_at
        ticks_late = lib.schedule_ticks_late
        tick_end_deadline = lib.tick_end_deadline

        @staticmethod
        def skip_late_ticks(deadline: int, now: int, interval_ms: int, skipped: int = 0) -> tuple[int, int]:
            counter = ffi.new("int64_t *", skipped)
            return lib.schedule_skip_late_ticks(deadline, now, interval_ms, counter), counter[0]

    yield Schedule


# ---- the next deadline ----


def test_the_next_deadline_is_one_interval_after_the_last_tick(schedule: Any) -> None:
    assert schedule.next_deadline_at(BOOTED_AN_HOUR_AGO, 1000, False, WALL_NOW) == BOOTED_AN_HOUR_AGO + SECOND
    # The wall clock plays no part off the aligned grid.
    assert schedule.next_deadline_at(BOOTED_AN_HOUR_AGO, 1000, False, 0) == BOOTED_AN_HOUR_AGO + SECOND


@given(tick_deadline=monotonic_times, interval_ms=intervals_ms, wall_offset=wall_offsets)
def test_off_the_aligned_grid_ticks_are_exactly_an_interval_apart(
    schedule: Any, tick_deadline: int, interval_ms: int, wall_offset: int
) -> None:
    assert (
        schedule.next_deadline_at(tick_deadline, interval_ms, False, wall_offset)
        == tick_deadline + interval_ms * 1000
    )


def test_a_tick_that_ran_late_does_not_move_the_grid(schedule: Any) -> None:
    # The tick due at 3600 s ran for 700 ms: the next is still due at 3601 s.
    tick_deadline = BOOTED_AN_HOUR_AGO
    next_deadline = schedule.next_deadline_at(tick_deadline, 1000, False, WALL_NOW)
    assert next_deadline == tick_deadline + SECOND
    assert schedule.skip_late_ticks(next_deadline, tick_deadline + 700_000, 1000) == (next_deadline, 0)


def test_an_interval_changed_by_a_reload_counts_from_the_last_tick(schedule: Any) -> None:
    tick_deadline = BOOTED_AN_HOUR_AGO
    # 10 s down to 200 ms, reloaded 3.5 s after the last tick: the next tick
    # is due 200 ms after the last one, so at once, and then on the new grid.
    next_deadline = schedule.next_deadline_at(tick_deadline, 200, False, WALL_NOW)
    assert next_deadline == tick_deadline + 200_000
    now = tick_deadline + 3_500_000
    assert schedule.skip_late_ticks(next_deadline, now, 200) == (tick_deadline + 3_400_000, 16)
    # 1 s up to 1 min: the next tick waits the new interval after the last.
    assert schedule.next_deadline_at(tick_deadline, 60_000, False, WALL_NOW) == tick_deadline + 60 * SECOND


def test_clock_aligned_ticks_fall_on_wall_clock_multiples_of_the_interval(schedule: Any) -> None:
    # The last tick was due at 12:00:00.300 by the wall clock (off the grid,
    # as the first tick is): the next at 12:00:01.000, not 12:00:01.300.
    wall_offset = WALL_NOW + 300_000 - BOOTED_AN_HOUR_AGO
    next_deadline = schedule.next_deadline_at(BOOTED_AN_HOUR_AGO, 1000, True, wall_offset)
    assert next_deadline == BOOTED_AN_HOUR_AGO + 700_000
    assert (next_deadline + wall_offset) % SECOND == 0
    # On the grid, the next is one interval later.
    assert schedule.next_deadline_at(next_deadline, 1000, True, wall_offset) == next_deadline + SECOND
    # At 12:00:00.600, 12:00:01 is less than half an interval away: 12:00:02.
    wall_offset = WALL_NOW + 600_000 - BOOTED_AN_HOUR_AGO
    assert (
        schedule.next_deadline_at(BOOTED_AN_HOUR_AGO, 1000, True, wall_offset)
        == BOOTED_AN_HOUR_AGO + 1_400_000
    )


def test_a_wall_clock_jump_moves_the_aligned_grid_not_the_gap_beyond_its_bounds(schedule: Any) -> None:
    # On the grid at 12:00:00, then the wall clock steps back 1 h 0.3 s: the
    # monotonic deadline is where 12:00:01 now falls, 1.3 s later, never an hour.
    on_grid = WALL_NOW - BOOTED_AN_HOUR_AGO
    stepped_back = on_grid - 3600 * SECOND - 300_000
    assert (
        schedule.next_deadline_at(BOOTED_AN_HOUR_AGO, 1000, True, stepped_back)
        == BOOTED_AN_HOUR_AGO + 1_300_000
    )
    # Stepped forward a day and 0.3 s: 0.7 s later, never at once nor a day off.
    stepped_forward = on_grid + 86400 * SECOND + 300_000
    assert (
        schedule.next_deadline_at(BOOTED_AN_HOUR_AGO, 1000, True, stepped_forward)
        == BOOTED_AN_HOUR_AGO + 700_000
    )


@given(tick_deadline=monotonic_times, interval_ms=intervals_ms, wall_offset=wall_offsets)
def test_the_aligned_deadline_is_on_the_wall_clock_grid_half_to_one_and_a_half_intervals_on(
    schedule: Any, tick_deadline: int, interval_ms: int, wall_offset: int
) -> None:
    interval = interval_ms * 1000
    next_deadline = schedule.next_deadline_at(tick_deadline, interval_ms, True, wall_offset)
    assert (next_deadline + wall_offset) % interval == 0
    assert interval // 2 < next_deadline - tick_deadline <= interval * 3 // 2


# ---- ticks skipped ----


def test_a_tick_less_than_an_interval_late_runs_at_once_and_none_is_skipped(schedule: Any) -> None:
    deadline = BOOTED_AN_HOUR_AGO
    assert schedule.ticks_late(deadline, deadline - 1, 1000) == 0
    assert schedule.ticks_late(deadline, deadline + 999_999, 1000) == 0
    assert schedule.skip_late_ticks(deadline, deadline + 999_999, 1000) == (deadline, 0)


def test_whole_intervals_late_are_skipped_to_the_last_deadline_passed(schedule: Any) -> None:
    deadline = BOOTED_AN_HOUR_AGO
    assert schedule.ticks_late(deadline, deadline + SECOND, 1000) == 1
    assert schedule.skip_late_ticks(deadline, deadline + SECOND, 1000) == (deadline + SECOND, 1)
    # Asleep 42.5 s (a suspended VM, a stopped process): 42 skipped, and the
    # count adds to the ticks skipped before.
    assert schedule.skip_late_ticks(deadline, deadline + 42_500_000, 1000, skipped=5) == (
        deadline + 42 * SECOND,
        47,
    )


@given(
    deadline=monotonic_times,
    late=st.integers(min_value=-86400 * SECOND, max_value=86400 * SECOND),
    interval_ms=intervals_ms,
    skipped_before=st.integers(min_value=0, max_value=2**40),
)
def test_after_skipping_the_deadline_stays_on_its_grid_and_within_an_interval_of_now(
    schedule: Any, deadline: int, late: int, interval_ms: int, skipped_before: int
) -> None:
    interval = interval_ms * 1000
    now = deadline + late
    moved, skipped = schedule.skip_late_ticks(deadline, now, interval_ms, skipped_before)
    assert moved >= deadline
    assert (moved - deadline) % interval == 0
    assert skipped - skipped_before == (moved - deadline) // interval
    # Never an interval or more behind now: the worker ticks once, not to catch up.
    assert now - moved < interval
    # Never moved past a deadline that was not yet missed.
    if late < interval:
        assert moved == deadline


# ---- the tick's end ----


def test_a_tick_must_end_one_timeout_after_its_deadline(schedule: Any) -> None:
    deadline = BOOTED_AN_HOUR_AGO
    assert schedule.tick_end_deadline(deadline, 100, deadline) == deadline + 100_000
    # Started 30 ms late, it still ends at the deadline's timeout.
    assert schedule.tick_end_deadline(deadline, 100, deadline + 30_000) == deadline + 100_000


def test_a_tick_started_late_gets_at_least_half_its_timeout(schedule: Any) -> None:
    deadline = BOOTED_AN_HOUR_AGO
    assert schedule.tick_end_deadline(deadline, 100, deadline + 80_000) == deadline + 130_000


@given(
    deadline=monotonic_times,
    late=st.integers(min_value=-SECOND, max_value=86400 * SECOND),
    timeout_ms=intervals_ms,
)
def test_a_ticks_end_is_the_later_of_its_deadlines_timeout_and_half_a_timeout_from_now(
    schedule: Any, deadline: int, late: int, timeout_ms: int
) -> None:
    timeout = timeout_ms * 1000
    now = deadline + late
    end = schedule.tick_end_deadline(deadline, timeout_ms, now)
    assert end >= deadline + timeout
    assert end >= now + timeout // 2
    assert end in (deadline + timeout, now + timeout // 2)
