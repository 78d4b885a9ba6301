"""alive-worker status judges the view's rows: each state's status, stale heartbeats, failed ticks."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alive_worker.cli._common import Status, Style
from alive_worker.cli.status import (
    judge,
    judge_disk,
    judge_standby,
    positive_float,
    summary,
    table,
    worker_status,
)

NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def row(state: str = "sleeping", **columns: Any) -> dict[str, Any]:
    """A row of alive_worker.workers, of a worker that wrote a heartbeat a moment ago."""
    return {
        "database": "postgres",
        "state": state,
        "pid": 4242,
        "target_table": "public.log_table",
        "tick_interval": SECOND,
        "ticks_ok": 10,
        "ticks_failed": 0,
        "ticks_skipped": 0,
        "started_at": NOW - 60 * SECOND,
        "state_since": NOW - 60 * SECOND,
        "last_ok_at": NOW - 0.5 * SECOND,
        "last_error_at": None,
        "next_tick_at": NOW + 0.5 * SECOND,
        "tick_ms_p50": 1.5,
        "tick_ms_p99": 4.0,
        **columns,
    }


def judged(*rows: dict[str, Any], warn: float = 3.0, crit: float = 10.0) -> list[dict[str, Any]]:
    judge(list(rows), NOW, warn, crit)
    return list(rows)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("sleeping", Status.OK),
        ("ticking", Status.OK),
        ("in the hook", Status.OK),
        ("starting", Status.WARNING),
        ("stopped", Status.WARNING),
        ("failing", Status.CRITICAL),
        ("cannot connect", Status.CRITICAL),
        ("cannot register", Status.CRITICAL),
        ("clients cannot write", Status.CRITICAL),
        ("disabled by crash guard", Status.CRITICAL),
    ],
)
def test_a_fresh_heartbeat_leaves_the_states_own_status(state: str, expected: Status) -> None:
    [worker] = judged(row(state))
    assert worker_status(worker) == expected
    assert worker["judged_reason"] is None


def test_a_state_the_command_does_not_know_is_a_warning() -> None:
    [worker] = judged(row("some state of a newer server"))
    assert worker_status(worker) == Status.WARNING


def test_a_stale_heartbeat_is_a_warning_past_warn_intervals_and_critical_past_crit() -> None:
    fresh, warned, critical = judged(
        row(last_ok_at=NOW - 2.9 * SECOND),
        row(last_ok_at=NOW - 3.1 * SECOND),
        row(last_ok_at=NOW - 10.1 * SECOND),
    )
    assert worker_status(fresh) == Status.OK
    assert worker_status(warned) == Status.WARNING
    assert warned["judged_reason"] == "last OK heartbeat 3.10 s ago, more than 3 intervals (3.00 s)"
    assert worker_status(critical) == Status.CRITICAL
    assert critical["judged_reason"] == "last OK heartbeat 10.10 s ago, more than 10 intervals (10.00 s)"


def test_the_limits_count_in_intervals_of_the_workers_own_interval() -> None:
    [worker] = judged(row(tick_interval=10 * SECOND, last_ok_at=NOW - 25 * SECOND))
    assert worker_status(worker) == Status.OK


def test_a_worker_that_never_wrote_is_judged_from_when_it_started() -> None:
    just_started, long_started = judged(
        row("starting", last_ok_at=None, started_at=NOW - SECOND),
        row("sleeping", last_ok_at=None, started_at=NOW - 20 * SECOND),
    )
    assert worker_status(just_started) == Status.WARNING  # the state's own
    assert just_started["judged_reason"] is None
    assert worker_status(long_started) == Status.CRITICAL
    assert long_started["judged_reason"].startswith("no OK heartbeat since it started 20.00 s ago")


def test_a_failed_last_tick_is_critical_whatever_the_state() -> None:
    failed_last, failed_before = judged(
        row(last_error_at=NOW - 0.1 * SECOND, last_ok_at=NOW - 0.6 * SECOND),
        row(last_error_at=NOW - 0.6 * SECOND, last_ok_at=NOW - 0.1 * SECOND),
    )
    assert worker_status(failed_last) == Status.CRITICAL
    assert failed_last["judged_reason"] == "its last tick failed"
    assert worker_status(failed_before) == Status.OK


def test_a_stopped_worker_is_not_critical_for_the_failure_before_it_stopped() -> None:
    [worker] = judged(row("stopped", last_error_at=NOW - 0.1 * SECOND, last_ok_at=NOW - 0.6 * SECOND))
    assert worker_status(worker) == Status.WARNING


@pytest.mark.parametrize("state", ["blocked on a lock", "waiting for synchronous standby"])
def test_a_wait_is_ok_for_an_interval_then_a_warning(state: str) -> None:
    short, long = judged(
        row(state, state_since=NOW - 0.5 * SECOND), row(state, state_since=NOW - 1.5 * SECOND)
    )
    assert worker_status(short) == Status.OK
    assert worker_status(long) == Status.WARNING


def test_a_standby_waiting_for_recovery_is_ok_however_old_its_last_heartbeat() -> None:
    [worker] = judged(row("waiting for recovery to end", last_ok_at=NOW - timedelta(days=3)))
    assert worker_status(worker) == Status.OK
    assert worker["judged_reason"] is None


def test_the_summary_is_the_worst_status_and_counts_states_worst_first() -> None:
    rows = judged(row("sleeping"), row("failing"), row("sleeping"), row("stopped"))
    assert summary(rows) == (Status.CRITICAL, "1 failing, 1 stopped, 2 sleeping")


def test_no_worker_is_unknown() -> None:
    assert summary([]) == (Status.UNKNOWN, "no alive worker is configured")


def test_the_table_shows_lag_on_a_standby_only() -> None:
    [worker] = judged(row(replication_lag=timedelta(milliseconds=250)))
    plain = Style(io.StringIO(), "never")
    primary_headers, [primary_cells] = table([worker], {"in_recovery": False, "now": NOW}, plain)
    standby_headers, [standby_cells] = table([worker], {"in_recovery": True, "now": NOW}, plain)
    assert "LAG" not in primary_headers and standby_headers[-1] == "LAG"
    assert standby_cells[-1].text == "250 ms"
    shown = dict(zip(primary_headers, (cell.text for cell in primary_cells), strict=True))
    assert shown["LAST OK"] == "500 ms ago" and shown["NEXT TICK"] == "in 500 ms"
    assert shown["PID"] == "4242" and shown["TICK P50"] == "1.5 ms"


@pytest.mark.parametrize("text", ["0", "-1", "nan", "three"])
def test_warn_and_crit_must_be_numbers_above_zero(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        positive_float(text)
    assert positive_float("0.5") == 0.5


STANDBY = {"in_recovery": True, "wal_receiver": True}


def judged_on_standby(lag: timedelta | None, server: dict[str, Any]) -> dict[str, Any]:
    [worker] = judged(row("waiting for recovery to end", last_ok_at=None, replication_lag=lag))
    judge_standby([worker], server, 3.0, 10.0)
    return worker


@pytest.mark.parametrize(
    ("lag", "expected", "reason"),
    [
        (2.9 * SECOND, Status.OK, None),
        (3.1 * SECOND, Status.WARNING, "replication lag 3.10 s, more than 3 intervals (3.00 s)"),
        (44 * SECOND, Status.CRITICAL, "replication lag 44.00 s, more than 10 intervals (10.00 s)"),
        (None, Status.OK, None),
    ],
)
def test_a_standby_is_judged_by_its_lag_in_intervals(
    lag: timedelta | None, expected: Status, reason: str | None
) -> None:
    worker = judged_on_standby(lag, STANDBY)
    assert worker_status(worker) == expected
    assert worker["judged_reason"] == reason


def test_a_standby_without_a_wal_receiver_is_a_warning_at_once() -> None:
    worker = judged_on_standby(0.1 * SECOND, {"in_recovery": True, "wal_receiver": False})
    assert worker_status(worker) == Status.WARNING
    assert worker["judged_reason"] == "no WAL receiver: this standby receives nothing from a primary"


def test_a_lagging_standby_without_a_wal_receiver_says_the_worse() -> None:
    worker = judged_on_standby(44 * SECOND, {"in_recovery": True, "wal_receiver": False})
    assert worker_status(worker) == Status.CRITICAL
    assert worker["judged_reason"].startswith("replication lag 44.00 s")


def test_a_primary_is_not_judged_as_a_standby() -> None:
    worker = judged_on_standby(44 * SECOND, {"in_recovery": False})
    assert worker_status(worker) == Status.OK


GIB = 1024**3


@pytest.mark.parametrize(
    ("free", "expected", "reason"),
    [
        (20 * GIB, Status.OK, None),
        (9 * GIB, Status.WARNING, "disk /data: 9.0 GB free of 100.0 GB (9.0 %), less than 10 %"),
        (4 * GIB, Status.CRITICAL, "disk /data: 4.0 GB free of 100.0 GB (4.0 %), less than 5 %"),
    ],
)
def test_a_nearly_full_disk_is_a_warning_then_critical(
    free: int, expected: Status, reason: str | None
) -> None:
    [worker] = judged(row(disk_free_bytes=free, disk_size_bytes=100 * GIB, disk_free_where="/data"))
    judge_disk([worker], 10.0, 5.0)
    assert worker_status(worker) == expected
    assert worker["judged_reason"] == reason


def test_disk_not_read_yet_is_not_judged() -> None:
    [worker] = judged(row(disk_free_bytes=None, disk_size_bytes=None))
    judge_disk([worker], 10.0, 5.0)
    assert worker_status(worker) == Status.OK


def test_a_runner_s_claim_to_wait_for_recovery_is_not_taken_on_a_primary() -> None:
    """Any role may name its session as a runner waiting for recovery: on a primary that is no OK."""
    claim = {"runner": True, "heartbeat_age_known": True}
    (on_primary,) = judged(row("waiting for recovery to end", **claim, last_ok_at=NOW - 60 * SECOND))
    assert worker_status(on_primary) == Status.CRITICAL
    (fresh_on_primary,) = judged(row("waiting for recovery to end", **claim))
    assert worker_status(fresh_on_primary) == Status.WARNING
    (on_standby,) = [row("waiting for recovery to end", **claim, last_ok_at=NOW - 60 * SECOND)]
    judge([on_standby], NOW, 3.0, 10.0, in_recovery=True)
    assert worker_status(on_standby) == Status.OK
    # The worker's own state is the shim's, not a session's name: a moment after a promotion it is taken.
    (worker,) = judged(row("waiting for recovery to end", last_ok_at=NOW - 60 * SECOND))
    assert worker_status(worker) == Status.OK
