"""The ledger's arithmetic over a fixture with known outages: exact windows, shares and budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alive_worker.ledger import CRASH, RESTART, UNKNOWN, Outage, ServerStart, build_ledger, find_outages

T0 = datetime(2026, 3, 30, 23, 0, tzinfo=UTC)  # a Monday, an hour before midnight; March ends the next day
SECOND = timedelta(seconds=1)
GAP = 3 * SECOND  # three intervals of 1 s


def beats(start: datetime, seconds: int) -> list[datetime]:
    """A heartbeat every second for so many seconds."""
    return [start + i * SECOND for i in range(seconds)]


def test_no_window_while_heartbeats_come_on_time() -> None:
    assert find_outages(beats(T0, 100), GAP, T0 + 100 * SECOND) == []


def test_a_window_runs_from_the_last_heartbeat_to_the_next() -> None:
    times = beats(T0, 10) + beats(T0 + 40 * SECOND, 10)
    assert find_outages(times, GAP, T0 + 50 * SECOND) == [Outage(T0 + 9 * SECOND, T0 + 40 * SECOND)]


def test_a_gap_of_exactly_the_limit_is_no_outage() -> None:
    times = [T0, T0 + GAP, T0 + 2 * GAP + SECOND]
    assert find_outages(times, GAP, times[-1]) == [Outage(T0 + GAP, T0 + 2 * GAP + SECOND)]


def test_no_heartbeat_since_is_an_open_window() -> None:
    assert find_outages(beats(T0, 10), GAP, T0 + 60 * SECOND) == [Outage(T0 + 9 * SECOND, None)]


def test_a_heartbeat_from_a_clock_stepped_back_does_not_open_a_window() -> None:
    times = [T0, T0 + SECOND, T0 - 30 * SECOND, T0 + 2 * SECOND]
    assert find_outages(times, GAP, T0 + 2 * SECOND) == []


def test_a_start_inside_a_window_names_the_cause() -> None:
    times = beats(T0, 10) + beats(T0 + 40 * SECOND, 10) + beats(T0 + 100 * SECOND, 10)
    starts = [
        ServerStart(T0 + 38 * SECOND, after_crash=False),
        ServerStart(T0 + 99 * SECOND, after_crash=True),
    ]
    ledger = build_ledger(times, T0, T0 + 110 * SECOND, GAP, starts)
    assert [(o.cause, o.start, o.end) for o in ledger.outages] == [
        (RESTART, T0 + 9 * SECOND, T0 + 40 * SECOND),
        (CRASH, T0 + 49 * SECOND, T0 + 100 * SECOND),
    ]
    assert "after a crash" in ledger.outages[1].detail
    assert "2026-03-30 23:01:39 UTC" in ledger.outages[1].detail


def test_shares_per_day_across_midnight_and_a_month_end() -> None:
    # Heartbeats from 23:00 to 01:00, one outage of 30 minutes from 23:50 to 00:20.
    times = beats(T0, 50 * 60) + beats(T0 + timedelta(minutes=80), 40 * 60 + 1)
    until = T0 + timedelta(hours=2)
    ledger = build_ledger(times, T0, until, GAP)
    [outage] = ledger.outages
    assert outage.start == T0 + timedelta(minutes=50) - SECOND and outage.end == T0 + timedelta(minutes=80)

    days = ledger.per("day")
    assert [d.label for d in days] == ["2026-03-30", "2026-03-31"]
    # The 30th is measured from 23:00 (the first heartbeat) to midnight: 10 min 1 s down of 60 min.
    assert days[0].measured == timedelta(hours=1)
    assert days[0].down == timedelta(minutes=10, seconds=1)
    assert days[1].measured == timedelta(hours=1)
    assert days[1].down == timedelta(minutes=20)
    assert ledger.total().down == timedelta(minutes=30, seconds=1)
    assert ledger.total().availability == pytest.approx(1 - (30 * 60 + 1) / 7200)
    # One ISO week (Monday the 30th), two months.
    assert [w.label for w in ledger.per("week")] == ["2026-W14"]
    assert [(m.label, m.down) for m in ledger.per("month")] == [
        ("2026-03", timedelta(minutes=30, seconds=1)),
    ]


def test_a_window_cut_by_since_counts_only_its_part_inside() -> None:
    times = beats(T0, 10) + beats(T0 + 100 * SECOND, 100)
    since = T0 + 50 * SECOND
    ledger = build_ledger(times, since, T0 + 200 * SECOND, GAP, first_ever=T0)
    [outage] = ledger.outages
    assert (outage.start, outage.end) == (since, T0 + 100 * SECOND)
    assert ledger.total().measured == 150 * SECOND
    assert ledger.total().down == 50 * SECOND


def test_time_before_the_first_heartbeat_is_not_measured() -> None:
    times = beats(T0 + 100 * SECOND, 100)
    ledger = build_ledger(times, T0, T0 + 200 * SECOND, GAP)
    assert ledger.outages == []
    assert ledger.total().measured == 100 * SECOND
    assert ledger.total().availability == 1.0


def test_an_open_window_is_cut_at_until_and_counted() -> None:
    times = beats(T0, 100)
    ledger = build_ledger(times, T0, T0 + 200 * SECOND, GAP)
    [outage] = ledger.outages
    assert outage.end is None and outage.cause == UNKNOWN
    assert ledger.total().down == 101 * SECOND
    assert ledger.longest() == outage
    assert ledger.mean_time_to_recover() is None


def test_the_error_budget() -> None:
    # 1000 s measured, 99% allows 10 s; two outages of 4 s and 5 s (beyond the 3 s gap): 1 s left.
    times = beats(T0, 100) + beats(T0 + 103 * SECOND, 300) + beats(T0 + 407 * SECOND, 594)
    ledger = build_ledger(times, T0, T0 + 1000 * SECOND, GAP)
    assert [o.length(ledger.until) for o in ledger.outages] == [4 * SECOND, 5 * SECOND]
    budget = ledger.budget(99.0)
    assert budget.allowed == 10 * SECOND
    assert budget.used == 9 * SECOND
    assert budget.left == SECOND
    assert budget.left_share == pytest.approx(0.1)
    assert ledger.mean_time_to_recover() == timedelta(seconds=4.5)
    assert ledger.longest() == ledger.outages[1]


def test_a_detail_with_a_newline_forges_no_line_of_the_text_report() -> None:
    """An event's detail may hold a trigger's error message: the text report keeps it on its line."""
    import io

    from alive_worker.cli._common import Style
    from alive_worker.cli.report import as_dict, write_text
    from alive_worker.ledger import Event

    start = datetime(2026, 12, 1, tzinfo=UTC)
    times = [*beats(start, 60), *beats(start + timedelta(seconds=90), 30)]
    forged = "disk full\n  2026-12-01 00:00:00 to 2026-12-01 01:00:00    1 h  planned"
    resumed = Event(
        start + timedelta(seconds=90), "resumed", "failing ticks", start + timedelta(seconds=59), forged
    )
    ledger = build_ledger(
        times,
        start,
        start + timedelta(seconds=120),
        timedelta(seconds=3),
        events=[resumed],
        slack=timedelta(seconds=1),
    )
    out = io.StringIO()
    write_text(
        as_dict(ledger, "public.log_table", timedelta(seconds=1), 99.9), ledger, out, Style(out, "never")
    )
    [outage_line] = [line for line in out.getvalue().splitlines() if "disk full" in line]
    assert "disk full\\n  2026-12-01 00:00:00" in outage_line
    assert "1 outages" in out.getvalue()
    assert not any(
        line.startswith("  2026-12-01 00:00:00 to 2026-12-01 01:00:00")
        for line in out.getvalue().splitlines()
    )
