"""alive-worker tail's lateness: from the worker's own schedule, or from a grid inferred from the rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alive_worker.cli.tail import Grid

START = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
INTERVAL = timedelta(milliseconds=100)


def at(ms: float) -> datetime:
    return START + timedelta(milliseconds=ms)


def test_on_the_workers_schedule_lateness_is_the_time_past_the_nearest_deadline_before() -> None:
    grid = Grid()
    grid.follow_schedule(at(1000), INTERVAL)
    assert grid.exact
    assert grid.lateness(at(1003)) == pytest.approx(0.003)
    assert grid.lateness(at(1137)) == pytest.approx(0.037)
    assert grid.lateness(at(893)) == pytest.approx(0.093)
    # A hair early is rounding, not a tick almost an interval late.
    assert grid.lateness(at(1099.5)) == pytest.approx(-0.0005)


def test_without_a_schedule_nothing_is_said_until_two_gaps_show_the_interval() -> None:
    grid = Grid()
    grid.follow_schedule(None, None)
    assert grid.lateness(at(0)) is None
    assert grid.lateness(at(100)) is None
    assert grid.lateness(at(200)) == pytest.approx(0.0)
    assert grid.interval == INTERVAL and not grid.exact
    assert grid.lateness(at(320)) == pytest.approx(0.020)


def test_the_inferred_grid_moves_to_the_most_punctual_tick_seen() -> None:
    grid = Grid()
    for ms in (30, 130, 230):  # the grid is first taken from the third tick
        grid.lateness(at(ms))
    assert grid.lateness(at(340)) == pytest.approx(0.010)
    assert grid.lateness(at(427)) == pytest.approx(0.0)  # earlier than the grid: the grid moves to it
    assert grid.lateness(at(530)) == pytest.approx(0.003)


def test_the_inferred_interval_is_the_median_gap_so_one_stall_does_not_stretch_it() -> None:
    grid = Grid()
    for ms in (0, 100, 200, 300, 900, 1000):
        grid.lateness(at(ms))
    assert grid.interval == INTERVAL


def test_losing_the_schedule_falls_back_to_the_inferred_grid() -> None:
    grid = Grid()
    grid.follow_schedule(at(0), INTERVAL)
    grid.lateness(at(5))
    grid.follow_schedule(None, None)
    assert not grid.exact
    grid.lateness(at(105))
    assert grid.lateness(at(205)) == pytest.approx(0.005)
