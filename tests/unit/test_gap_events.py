"""The ledger's events: which a worker's first heartbeat writes, and how a report uses them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alive_worker.ledger import (
    BLOCKED,
    CLOSING_KINDS,
    CRASH,
    FAILOVER,
    PLANNED,
    RESTART,
    SWITCHOVER,
    UNKNOWN,
    Event,
    NewEvent,
    Outage,
    ServerStart,
    StartFacts,
    build_ledger,
    explain,
    merged,
    primary_of,
    probe_events,
    refusals,
    resumed_event,
    shutdown_event,
    start_events,
)

T0 = datetime(2026, 3, 30, 23, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
GAP = 2 * SECOND


def kinds(events: list[NewEvent]) -> list[tuple[str, str]]:
    return [(e.kind, e.cause) for e in events]


def test_the_first_start_of_a_table_has_no_window() -> None:
    [started] = start_events(StartFacts(T0), None, T0 + SECOND, GAP)
    assert (started.kind, started.cause, started.outage_from) == ("started", "first start", None)


def test_a_start_after_stop_names_its_caller_and_when() -> None:
    facts = StartFacts(T0, previous_state="stopped", previous_state_since=T0 + 10 * SECOND,
                       stop_requested_by=4242, stop_requested_role="dba")  # fmt: skip
    stopped, started = start_events(facts, T0 + 9 * SECOND, T0 + 60 * SECOND, GAP)
    assert kinds([stopped, started]) == [("stopped", "stop"), ("started", "stop")]
    assert stopped.at == T0 + 10 * SECOND and "pid 4242 (role dba)" in stopped.detail
    assert started.outage_from == T0 + 9 * SECOND


def test_a_server_start_inside_the_gap_after_a_clean_shutdown_is_planned() -> None:
    facts = StartFacts(T0 + 30 * SECOND, control_file_read=True, control_file_time=T0 + 20 * SECOND)
    stopped, started = start_events(facts, T0 + 19 * SECOND, T0 + 31 * SECOND, GAP)
    assert kinds([stopped, started]) == [("stopped", "shutdown"), ("started", "shutdown")]
    assert stopped.at == T0 + 20 * SECOND


def test_a_server_start_that_recovered_from_a_crash_is_a_crash() -> None:
    facts = StartFacts(T0 + 30 * SECOND, control_file_read=True, crash_recovery=True)
    stopped, started = start_events(facts, T0 + 19 * SECOND, T0 + 31 * SECOND, GAP)
    assert kinds([stopped, started]) == [("stopped", "crash"), ("started", "crash")]
    assert "after crash recovery" in started.detail


def test_a_cluster_reset_inside_the_gap_is_a_crash_though_the_server_started_long_ago() -> None:
    facts = StartFacts(T0 - timedelta(days=3), cluster_resets=1, last_reset_at=T0 + 5 * SECOND)
    stopped, started = start_events(facts, T0, T0 + 8 * SECOND, GAP)
    assert (stopped.cause, started.cause) == ("crash", "crash")


def test_a_reset_before_the_gap_is_not_its_cause() -> None:
    facts = StartFacts(T0 - timedelta(days=3), cluster_resets=1, last_reset_at=T0 - timedelta(days=1),
                       previous_state="restarting", previous_state_since=T0 + SECOND)  # fmt: skip
    stopped, started = start_events(facts, T0, T0 + 8 * SECOND, GAP)
    assert (stopped.cause, started.cause) == ("worker exit", "worker exit")


def test_a_promotion_is_one_event_with_its_timeline() -> None:
    facts = StartFacts(T0 - timedelta(days=1), promoted_at=T0 + 5 * SECOND, timeline=3)
    [promoted] = start_events(facts, T0, T0 + 6 * SECOND, GAP)
    assert (promoted.kind, promoted.cause, promoted.timeline) == ("promoted", "promotion", 3)
    assert promoted.outage_from == T0 and "timeline 3" in promoted.detail


def test_a_promotion_after_the_old_primarys_clean_shutdown_is_a_switchover() -> None:
    facts = StartFacts(T0 - timedelta(days=1), promoted_at=T0 + 2 * SECOND, timeline=2)
    [promoted] = start_events(facts, T0, T0 + 3 * SECOND, GAP, old_primary_shut_down=True)
    assert (promoted.kind, promoted.cause, promoted.timeline) == ("promoted", "switchover", 2)
    assert promoted.detail.startswith("switchover: the old primary shut down cleanly, then promoted at")
    window = explain([Outage(T0, T0 + 3 * SECOND)], [], [_as_row(promoted, T0 + 3 * SECOND)])
    assert window[0].cause == SWITCHOVER
    # Without the old primary's last heartbeat of a shutdown, a promotion is a failover.
    [promoted] = start_events(facts, T0, T0 + 3 * SECOND, GAP)
    assert (
        explain([Outage(T0, T0 + 3 * SECOND)], [], [_as_row(promoted, T0 + 3 * SECOND)])[0].cause == FAILOVER
    )


def test_the_last_heartbeat_before_a_shutdown_is_a_stopping_event_that_closes_no_window() -> None:
    stopping = shutdown_event()
    assert (stopping.kind, stopping.cause, stopping.at, stopping.outage_from) == (
        "stopping",
        "shutdown",
        None,
        None,
    )
    assert stopping.kind not in CLOSING_KINDS


def _as_row(event: NewEvent, at: datetime) -> Event:
    """A NewEvent as the report reads it back, stamped at."""
    return Event(at, event.kind, event.cause, event.outage_from, event.detail, event.sqlstate, event.timeline)


def test_a_gap_no_longer_than_the_limit_is_no_window() -> None:
    [started] = start_events(StartFacts(T0 - timedelta(days=1)), T0, T0 + GAP, GAP)
    assert (started.cause, started.outage_from) == ("unknown", None)


def test_resumed_after_failures_names_the_first() -> None:
    event = resumed_event(T0, 3, ("25006", "cannot execute INSERT in a read-only transaction"), T0 + SECOND)
    assert (event.kind, event.cause, event.sqlstate, event.outage_from) == (
        "resumed",
        "failing ticks",
        "25006",
        T0,
    )
    assert (
        event.detail.startswith("3 ticks failed from 2026-03-30 23:00:01 UTC")
        and "(SQLSTATE 25006)" in event.detail
    )
    assert resumed_event(T0, 0, None, None).cause == "slow tick"


def test_events_give_a_window_its_cause_before_the_servers_start_does() -> None:
    window = Outage(T0, T0 + 10 * SECOND)
    events = [Event(T0 + 10 * SECOND, "started", "stop", T0, "stop() called by pid 1 (role dba)")]
    [explained] = explain([window], [ServerStart(T0 + 5 * SECOND)], events)
    assert (explained.cause, explained.detail) == (PLANNED, "stop() called by pid 1 (role dba)")
    # Without the events, the server's start says it.
    assert explain([window], [ServerStart(T0 + 5 * SECOND)])[0].cause == RESTART
    # An event stamped a little after the window's end still explains it, within the slack.
    late = [Event(T0 + 11 * SECOND, "resumed", "failing ticks", T0, "2 ticks failed")]
    assert explain([window], [], late)[0].cause == UNKNOWN
    assert explain([window], [], late, slack=SECOND)[0].cause == BLOCKED


def test_the_event_that_ends_a_window_gives_its_cause_not_one_that_begins_the_next() -> None:
    first, second = Outage(T0, T0 + 10 * SECOND), Outage(T0 + 10 * SECOND, T0 + 20 * SECOND)
    events = [
        Event(T0 + 10 * SECOND, "promoted", "promotion", T0, "promoted to timeline 2", timeline=2),
        # A crash's stop is stamped at the last heartbeat before it: the first window's end.
        Event(T0 + 10 * SECOND, "stopped", "crash", None, "a process crashed"),
        Event(T0 + 20 * SECOND, "started", "crash", T0 + 10 * SECOND, "a process crashed; worker started"),
    ]
    causes = [o.cause for o in explain([first, second], [], events, slack=SECOND)]
    assert causes == [FAILOVER, CRASH]
    # A stop alone, which no heartbeat has ended yet, names no window.
    assert explain([first], [], events[1:2])[0].cause == UNKNOWN


def test_windows_outlive_the_heartbeats_retention_deleted() -> None:
    # Heartbeats kept from T0 + 1 day on; the events remember a stop 12 h before and a 1 s blip.
    kept_from = T0 + timedelta(days=1)
    times = [kept_from + i * SECOND for i in range(3600)]
    events = [
        Event(T0 + timedelta(hours=12, minutes=5), "started", "stop", T0 + timedelta(hours=12), "stop()"),
        Event(T0 + timedelta(hours=13), "resumed", "slow tick", T0 + timedelta(hours=13) - SECOND),
    ]
    until = kept_from + 3600 * SECOND
    ledger = build_ledger(times, T0, until, 3 * SECOND, first_ever=kept_from, events=events)
    assert [(o.start, o.end, o.cause) for o in ledger.outages] == [
        (T0 + timedelta(hours=12), T0 + timedelta(hours=12, minutes=5), PLANNED)
    ]
    # Measured from the first event's window, not only from the oldest heartbeat left.
    assert ledger.measured_from == T0 + timedelta(hours=12)
    assert ledger.total().down == timedelta(minutes=5)


def test_the_probe_refused_then_admitted_is_one_window_merged_with_a_gap_it_overlaps() -> None:
    [refused] = probe_events(None, True, T0, T0 - SECOND, "42501", "permission denied")
    assert (refused.kind, refused.at, refused.sqlstate) == ("refused", T0, "42501")
    assert probe_events(T0, True, T0 + SECOND, T0 - SECOND, "42501", "permission denied") == []
    [admitted] = probe_events(T0, False, T0 + 30 * SECOND, T0 + 30 * SECOND, "", "")
    assert (admitted.kind, admitted.outage_from, admitted.at) == ("admitted", T0, T0 + 30 * SECOND)
    events = [
        Event(T0, "refused", "clients refused", None, "permission denied (SQLSTATE 42501)"),
        Event(T0 + 30 * SECOND, "admitted", "clients refused", T0, "the client-path probe wrote again"),
    ]
    [window] = refusals(events)
    assert (window.start, window.end, window.cause) == (T0, T0 + 30 * SECOND, BLOCKED)
    # A restart inside the refusal is one window with it, not two counted twice.
    times = [T0 - 10 * SECOND + i * SECOND for i in range(20)] + [
        T0 + 20 * SECOND + i * SECOND for i in range(20)
    ]
    ledger = build_ledger(times, T0 - 10 * SECOND, T0 + 40 * SECOND, 3 * SECOND, events=events)
    assert [(o.start, o.end) for o in ledger.outages] == [(T0, T0 + 30 * SECOND)]
    assert ledger.total().down == 30 * SECOND
    # Still refused at the report's end: open.
    assert refusals(events[:1])[0].end is None


def test_windows_that_only_touch_stay_two() -> None:
    # A restart, then a crash right after the first heartbeat: one window ends where the next begins.
    first, second = Outage(T0, T0 + 5 * SECOND, PLANNED), Outage(T0 + 5 * SECOND, T0 + 9 * SECOND, CRASH)
    assert merged([second, first]) == [first, second]
    assert merged([first, Outage(T0 + 4 * SECOND, None, BLOCKED)]) == [Outage(T0, None, PLANNED)]


def test_a_promotion_names_the_new_and_old_primary_and_never_a_password() -> None:
    assert (
        primary_of("user=rep password='s3cr et' host=10.0.0.5 port=5433 application_name=x")
        == "10.0.0.5:5433"
    )
    assert primary_of("host=db1 password=hunter2") == "db1"
    assert primary_of("") == ""
    facts = StartFacts(T0, promoted_at=T0, timeline=2, new_primary="node2", old_primary="db1:5432")
    [promoted] = start_events(facts, T0 - SECOND, T0, GAP)
    assert promoted.detail.endswith("to timeline 2; new primary node2; old primary db1:5432")
    assert "hunter2" not in primary_of("host=db1 password=hunter2")
