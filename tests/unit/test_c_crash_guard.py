"""The crash guard's verdict (src/crash_guard.c), compiled alone: which crashes count, and when it holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from c_leaves import header_constant, load_leaf
from hypothesis import given
from hypothesis import strategies as st

DECLARATIONS = """
int crash_guard_count_crashes(int64_t *crash_times, int crash_count, bool previous_run_crashed,
                              int64_t now, int window_seconds);
bool crash_guard_holds(int crash_count, int crash_limit);
"""

MAX_CRASHES = header_constant("crash_guard.h", "MAX_RECORDED_CRASHES")
NOW = 1_796_428_800  # 2026-12-05, seconds since the epoch
WINDOW = 300


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    ffi, lib = load_leaf("crash_guard", DECLARATIONS, Path(tmp_path_factory.mktemp("c_crash_guard")))

    class Guard:
        holds = lib.crash_guard_holds

        @staticmethod
        def count(recorded: list[int], crashed: bool, now: int = NOW, window: int = WINDOW) -> list[int]:
            times = ffi.new("int64_t[]", MAX_CRASHES)
            times[0 : len(recorded)] = recorded
            kept = lib.crash_guard_count_crashes(times, len(recorded), crashed, now, window)
            return list(times[0:kept])

    yield Guard


def test_a_crash_of_the_previous_run_is_recorded_at_this_start(guard: Any) -> None:
    assert guard.count([], crashed=True) == [NOW]
    assert guard.count([NOW - 10], crashed=True) == [NOW - 10, NOW]


def test_a_clean_exit_or_the_postmasters_quit_adds_no_crash(guard: Any) -> None:
    assert guard.count([], crashed=False) == []
    assert guard.count([NOW - 10], crashed=False) == [NOW - 10]


def test_crashes_older_than_the_window_no_longer_count(guard: Any) -> None:
    recorded = [NOW - WINDOW - 1, NOW - WINDOW, NOW - WINDOW + 1]
    assert guard.count(recorded, crashed=False) == [NOW - WINDOW + 1]
    assert guard.count(recorded, crashed=True) == [NOW - WINDOW + 1, NOW]


def test_a_full_record_gives_up_its_oldest_crash(guard: Any) -> None:
    recorded = [NOW - MAX_CRASHES + i for i in range(MAX_CRASHES)]
    assert guard.count(recorded, crashed=True) == [*recorded[1:], NOW]


def test_the_guard_holds_from_the_limit_on_and_never_with_a_limit_of_0(guard: Any) -> None:
    assert not guard.holds(2, 3)
    assert guard.holds(3, 3)
    assert guard.holds(4, 3)
    assert not guard.holds(MAX_CRASHES, 0)


@given(
    ages=st.lists(st.integers(min_value=-3600, max_value=86400), max_size=MAX_CRASHES).map(sorted),
    crashed=st.booleans(),
    window=st.integers(min_value=1, max_value=86400),
)
def test_what_counts_is_the_newest_crashes_within_the_window_in_order(
    guard: Any, ages: list[int], crashed: bool, window: int
) -> None:
    recorded = [NOW - age for age in reversed(ages)]
    kept = guard.count(recorded, crashed=crashed, window=window)
    expected = ([*recorded, NOW] if crashed else recorded)[-MAX_CRASHES:]
    assert kept == [time for time in expected if time > NOW - window]
    assert len(kept) <= MAX_CRASHES
