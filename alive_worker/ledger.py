"""The availability ledger's arithmetic: write outages from heartbeat times, availability, error budget.

A committed heartbeat proves that the server committed a write at its time.
An outage is a window with no such proof for longer than the gap: from the
last heartbeat before it to the first after it (clients' writes in between
may have failed; none is proven).  Time before the first heartbeat of a table
is not measured: nothing was watching.

Pure: times in, windows and shares out; no server (tests/unit/test_ledger.py).
The command that reads a server is alive_worker.cli.report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from alive_worker import states

# The causes a window may be given, most specific first (docs/MONITORING.md, Availability report).
PLANNED = "planned"
RESTART = "restart"
CRASH = "crash"
SWITCHOVER = "switchover"
FAILOVER = "failover"
BLOCKED = "blocked"
UNKNOWN = "unknown"
CAUSES = (PLANNED, RESTART, CRASH, SWITCHOVER, FAILOVER, BLOCKED, UNKNOWN)


@dataclass(frozen=True)
class ServerStart:
    """A start of the server, as the server knows it: when, and whether it recovered from a crash."""

    at: datetime
    after_crash: bool | None = None  # None: not known


@dataclass(frozen=True)
class Outage:
    """A window with no committed heartbeat longer than the gap; end None: still open at the report's end."""

    start: datetime
    end: datetime | None
    cause: str = UNKNOWN
    detail: str = ""

    def length(self, until: datetime) -> timedelta:
        return (self.end or until) - self.start


def find_outages(times: Iterable[datetime], gap: timedelta, until: datetime) -> list[Outage]:
    """The windows between consecutive heartbeats (ascending times) longer than gap, and an open one
    after the last heartbeat if until is more than gap after it."""
    outages = []
    last: datetime | None = None
    for at in times:
        if last is not None and at - last > gap:
            outages.append(Outage(last, at))
        last = at if last is None else max(last, at)
    if last is not None and until - last > gap:
        outages.append(Outage(last, None))
    return outages


# What the worker writes in alive_worker.events.cause, and the report's cause for each.
EVENT_CAUSES = {
    "stop": PLANNED,  # stop() ended the worker
    "shutdown": PLANNED,  # the server shut down cleanly, and started again
    "restart": RESTART,  # the server started again; how it stopped is not known
    "crash": CRASH,  # recovered from a crash at the server's start, or a cluster reset
    "switchover": SWITCHOVER,  # a standby became the primary after its old primary shut down cleanly
    "promotion": FAILOVER,  # a standby became the primary; its old primary's shutdown is not known
    "failing ticks": BLOCKED,  # ticks failed (a lock, read-only, a full disk...) and then committed
    "slow tick": BLOCKED,  # a tick waited (a lock, a synchronous standby) without failing
    "clients refused": BLOCKED,  # the client-path probe failed while heartbeats committed
    "worker exit": UNKNOWN,  # the worker exited other than by SIGTERM; the postmaster started it again
    "crash guard": UNKNOWN,  # the worker was disabled by its crash guard, then started again
    "first start": UNKNOWN,
    "unknown": UNKNOWN,
}
# The events written with the heartbeat that ends a gap: they carry its cause.
CLOSING_KINDS = ("started", "promoted", "resumed")


@dataclass(frozen=True)
class Event:
    """A row of alive_worker.events: what explains the gap [outage_from, at] (outage_from None: none)."""

    at: datetime
    kind: str
    cause: str
    outage_from: datetime | None = None
    detail: str = ""
    sqlstate: str | None = None
    timeline: int | None = None


def closing_event(outage: Outage, events: Sequence[Event], slack: timedelta) -> Event | None:
    """The event written with the heartbeat that ended the window: stamped at its end (the same
    transaction), or up to slack after it; the nearest such if several."""
    if outage.end is None:
        return None
    end = outage.end
    closing = [e for e in events if e.kind in CLOSING_KINDS and outage.start < e.at <= end + slack]
    return min(closing, key=lambda e: abs(e.at - end), default=None)


def refusals(events: Sequence[Event]) -> list[Outage]:
    """The windows in which the client-path probe failed while heartbeats committed: from a
    "refused" event to the "admitted" one after it (open if none came)."""
    windows: list[Outage] = []
    refused: Event | None = None
    for event in sorted(events, key=lambda e: e.at):
        if event.kind == "refused" and refused is None:
            refused = event
        elif event.kind == "admitted":
            start = event.outage_from or (refused.at if refused is not None else None)
            if start is not None and event.at > start:
                detail = refused.detail if refused is not None else event.detail
                windows.append(Outage(start, event.at, BLOCKED, f"clients refused: {detail}"))
            refused = None
    if refused is not None:
        windows.append(Outage(refused.at, None, BLOCKED, f"clients refused: {refused.detail}"))
    return windows


def merged(outages: Sequence[Outage]) -> list[Outage]:
    """Windows that overlap made one (a refusal may overlap a gap in the heartbeats): the cause
    of the earliest, the details of all."""
    result: list[Outage] = []
    far = datetime.max.replace(tzinfo=UTC)
    for outage in sorted(outages, key=lambda o: o.start):
        # Windows that only touch (one ends at the heartbeat the next begins at) stay two.
        if result and outage.start < (result[-1].end or far):
            last = result[-1]
            end = None if last.end is None or outage.end is None else max(last.end, outage.end)
            detail = "; ".join(d for d in (last.detail, outage.detail) if d)
            result[-1] = Outage(last.start, end, last.cause, detail)
        else:
            result.append(outage)
    return result


def windows_from_events(events: Sequence[Event], gap: timedelta, before: datetime | None) -> list[Outage]:
    """The outage windows the events keep, for time before ``before`` (the oldest heartbeat left
    by retention; None: all): each event that ends a gap longer than ``gap``."""
    windows = []
    for event in sorted(events, key=lambda e: e.at):
        if event.outage_from is None or event.at - event.outage_from <= gap:
            continue
        if before is not None and event.at > before:
            continue
        windows.append(
            Outage(event.outage_from, event.at, EVENT_CAUSES.get(event.cause, UNKNOWN), event.detail)
        )
    return windows


def explain(
    outages: Sequence[Outage],
    starts: Sequence[ServerStart],
    events: Sequence[Event] = (),
    slack: timedelta = timedelta(0),
) -> list[Outage]:
    """Each window with its cause: what the event written with the heartbeat that ended it says;
    failing that, a server start inside it is a restart (after a crash: a crash and its recovery);
    otherwise unknown.  slack: how long after the window's end its closing event may be stamped."""
    explained = []
    for outage in outages:
        closing = closing_event(outage, events, slack)
        if closing is not None and closing.cause in EVENT_CAUSES and EVENT_CAUSES[closing.cause] != UNKNOWN:
            explained.append(Outage(outage.start, outage.end, EVENT_CAUSES[closing.cause], closing.detail))
            continue
        inside = [s for s in starts if outage.start <= s.at and (outage.end is None or s.at <= outage.end)]
        if not inside:
            explained.append(outage)
            continue
        crashed = [s for s in inside if s.after_crash]
        start = crashed[0] if crashed else inside[0]
        when = start.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if start.after_crash:
            explained.append(
                Outage(outage.start, outage.end, CRASH, f"server started at {when} after a crash")
            )
        else:
            explained.append(Outage(outage.start, outage.end, RESTART, f"server started at {when}"))
    return explained


@dataclass(frozen=True)
class Share:
    """Availability over one period (a day, a week, a month, the whole report)."""

    label: str
    start: datetime
    end: datetime
    measured: timedelta  # the part of the period after the first heartbeat and before the report's end
    down: timedelta

    @property
    def availability(self) -> float | None:
        if self.measured <= timedelta(0):
            return None
        return 1.0 - self.down / self.measured


@dataclass(frozen=True)
class Budget:
    """The SLO's error budget over the report's measured time."""

    slo: float  # percent, e.g. 99.95
    allowed: timedelta
    used: timedelta

    @property
    def left(self) -> timedelta:
        return self.allowed - self.used

    @property
    def left_share(self) -> float | None:
        if self.allowed <= timedelta(0):
            return None
        return self.left / self.allowed


@dataclass
class Ledger:
    """What a report says over [since, until]: the windows (cut at both ends) and the shares."""

    since: datetime
    until: datetime
    watched_from: datetime | None  # the first heartbeat, if after since
    gap: timedelta
    outages: list[Outage] = field(default_factory=list)

    @property
    def measured_from(self) -> datetime:
        return self.until if self.watched_from is None else max(self.since, self.watched_from)

    def down_between(self, start: datetime, end: datetime) -> timedelta:
        """Outage time inside [start, end], counted only where it is measured."""
        start = max(start, self.measured_from)
        total = timedelta(0)
        for outage in self.outages:
            lo = max(start, outage.start)
            hi = min(end, outage.end or self.until)
            if hi > lo:
                total += hi - lo
        return total

    def share(self, label: str, start: datetime, end: datetime) -> Share:
        lo = max(start, self.measured_from)
        hi = min(end, self.until)
        measured = max(hi - lo, timedelta(0))
        return Share(label, start, end, measured, self.down_between(lo, hi) if measured else timedelta(0))

    def total(self) -> Share:
        return self.share("report", self.since, self.until)

    def per(self, unit: str) -> list[Share]:
        """Availability per calendar day, ISO week or month (UTC), of the periods the report touches."""
        shares = []
        start = period_start(self.since, unit)
        while start < self.until:
            end = next_period(start, unit)
            shares.append(self.share(period_label(start, unit), start, end))
            start = end
        return shares

    def budget(self, slo: float) -> Budget:
        total = self.total()
        return Budget(slo, total.measured * (1 - slo / 100), total.down)

    def longest(self) -> Outage | None:
        return max(self.outages, key=lambda o: o.length(self.until), default=None)

    def mean_time_to_recover(self) -> timedelta | None:
        ended = [o.length(self.until) for o in self.outages if o.end is not None]
        return sum(ended, timedelta(0)) / len(ended) if ended else None


def build_ledger(
    times: Sequence[datetime],
    since: datetime,
    until: datetime,
    gap: timedelta,
    starts: Sequence[ServerStart] = (),
    first_ever: datetime | None = None,
    events: Sequence[Event] = (),
    slack: timedelta = timedelta(0),
) -> Ledger:
    """The ledger of [since, until] from the heartbeat times around it (ascending; the last one
    before since and the first after until included, where they exist), the server's starts and
    the ledger's events.  first_ever: the table's first heartbeat (default: the first of times).
    Before first_ever (heartbeats deleted by retention), the windows are the events'; the ledger
    is then measured from the first event."""
    first_event = min((e.outage_from or e.at for e in events), default=None)
    watched_from = first_ever if first_ever is not None else (times[0] if times else None)
    kept = windows_from_events(events, gap, watched_from)
    if first_event is not None and (watched_from is None or first_event < watched_from):
        watched_from = first_event
    cut = []
    found = explain(find_outages(times, gap, until), starts, events, slack)
    for outage in merged(kept + found + refusals(events)):
        if (outage.end is not None and outage.end <= since) or outage.start >= until:
            continue
        end = None if outage.end is None or outage.end > until else outage.end
        cut.append(Outage(max(outage.start, since), end, outage.cause, outage.detail))
    return Ledger(since, until, watched_from, gap, cut)


def period_start(moment: datetime, unit: str) -> datetime:
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown period {unit!r}: day, week or month")


def next_period(start: datetime, unit: str) -> datetime:
    if unit == "day":
        return start + timedelta(days=1)
    if unit == "week":
        return start + timedelta(weeks=1)
    if unit == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    raise ValueError(f"unknown period {unit!r}: day, week or month")


def period_label(start: datetime, unit: str) -> str:
    if unit == "day":
        return start.strftime("%Y-%m-%d")
    if unit == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return start.strftime("%Y-%m")


# ---- the worker's side: which events a heartbeat that ends a gap writes


@dataclass(frozen=True)
class StartFacts:
    """What the worker's start says about the gap before its first heartbeat (src/server_start.c);
    times are datetimes, None when there is none."""

    server_started_at: datetime
    control_file_read: bool = False
    crash_recovery: bool = False  # pg_control did not say "shut down" when the server started
    control_file_time: datetime | None = None  # its last update before the start
    cluster_resets: int = 0  # after a backend's crash, since the server started
    last_reset_at: datetime | None = None
    previous_state: str = ""  # the previous worker's state in its slot; "" when none
    previous_state_since: datetime | None = None
    previous_last_ok_at: datetime | None = None
    stop_requested_by: int = 0  # stop()'s caller, 0 when none
    stop_requested_role: str = ""
    promoted_at: datetime | None = None  # this worker waited on a standby until then
    timeline: int = 0
    new_primary: str = ""  # this server, as cluster_name names it
    old_primary: str = ""  # host and port of the primary it streamed from, as primary_conninfo says


@dataclass(frozen=True)
class NewEvent:
    """A row the worker adds to alive_worker.events; at None: the heartbeat's own time."""

    kind: str
    cause: str
    detail: str
    at: datetime | None = None
    outage_from: datetime | None = None
    sqlstate: str | None = None
    timeline: int | None = None


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def shutdown_event() -> NewEvent:
    """Written with the last heartbeat before the server's shutdown (SIGTERM from the postmaster)."""
    return NewEvent("stopping", "shutdown", "the server is shutting down: the last heartbeat before it")


def start_events(
    facts: StartFacts,
    last_heartbeat: datetime | None,
    now: datetime,
    gap: timedelta,
    old_primary_shut_down: bool = False,
) -> list[NewEvent]:
    """The events of a worker's first heartbeat: how the gap since last_heartbeat came about
    (a "stopped" event at the stop's time, where it is known) and the start or the promotion
    that ended it.  The gap is a window (outage_from) only if longer than ``gap``.
    old_primary_shut_down: promoted, and the table's newest event is the old primary's
    "stopping" (its last heartbeat, written as it shut down): a switchover."""
    outage_from = last_heartbeat if last_heartbeat is not None and now - last_heartbeat > gap else None

    def in_gap(moment: datetime | None) -> bool:
        # Without a heartbeat before (a new table, or one the worker cannot read), no start or
        # reset can be placed in a gap.
        return moment is not None and last_heartbeat is not None and last_heartbeat <= moment <= now

    if facts.promoted_at is not None:
        detail = f"promoted at {_utc(facts.promoted_at)}"
        if facts.timeline:
            detail += f" to timeline {facts.timeline}"
        if facts.new_primary:
            detail += f"; new primary {facts.new_primary}"
        if facts.old_primary:
            detail += f"; old primary {facts.old_primary}"
        if old_primary_shut_down:
            return [
                NewEvent(
                    "promoted",
                    "switchover",
                    f"switchover: the old primary shut down cleanly, then {detail}",
                    outage_from=outage_from,
                    timeline=facts.timeline or None,
                )
            ]
        return [
            NewEvent(
                "promoted", "promotion", detail, outage_from=outage_from, timeline=facts.timeline or None
            )
        ]

    stopped: NewEvent | None = None
    started_detail = f"worker started; server started at {_utc(facts.server_started_at)}"
    if facts.stop_requested_by:
        stopped = NewEvent(
            "stopped",
            "stop",
            f"stop() called by pid {facts.stop_requested_by} (role {facts.stop_requested_role})",
            at=facts.previous_state_since,
        )
    elif facts.cluster_resets and in_gap(facts.last_reset_at):
        assert facts.last_reset_at is not None
        stopped = NewEvent(
            "stopped",
            "crash",
            f"a process crashed: the server reset every session and recovered at {_utc(facts.last_reset_at)}",
            at=last_heartbeat or facts.last_reset_at,
        )
    elif in_gap(facts.server_started_at):
        if not facts.control_file_read:
            stopped = NewEvent("stopped", "restart", "the server started again", at=last_heartbeat)
        elif facts.crash_recovery:
            stopped = NewEvent(
                "stopped",
                "crash",
                "the server stopped without a shutdown checkpoint and recovered from a crash at its start",
                at=last_heartbeat,
            )
            started_detail += " after crash recovery"
        else:
            stopped = NewEvent(
                "stopped",
                "shutdown",
                "the server shut down cleanly",
                at=facts.control_file_time if in_gap(facts.control_file_time) else last_heartbeat,
            )
    elif facts.previous_state == states.RESTARTING:
        stopped = NewEvent(
            "stopped",
            "worker exit",
            "the worker exited; the postmaster started it again",
            at=facts.previous_state_since,
        )
    elif facts.previous_state == states.DISABLED:
        stopped = NewEvent(
            "stopped", "crash guard", "the worker's crash guard held", at=facts.previous_state_since
        )
    first = "first start" if last_heartbeat is None else "unknown"
    cause = stopped.cause if stopped is not None else first
    if stopped is not None:
        started_detail = f"{stopped.detail}; {started_detail}"
    started = NewEvent(
        "started", cause, started_detail, outage_from=outage_from, timeline=facts.timeline or None
    )
    return [stopped, started] if stopped is not None else [started]


def resumed_event(
    last_heartbeat: datetime,
    failures: int,
    first_failure: tuple[str, str] | None,
    first_failed_at: datetime | None,
    at: datetime | None = None,
) -> NewEvent:
    """The event of a heartbeat that ends a gap in a running worker: ticks failed, or one waited.
    at: when its INSERT returned (a tick that waited on a lock started its transaction, and so
    stamped its row, before the wait: that window ends at the next heartbeat, after the wait)."""
    if failures and first_failure is not None:
        sqlstate, message = first_failure
        when = f" from {_utc(first_failed_at)}" if first_failed_at is not None else ""
        code = f" (SQLSTATE {sqlstate})" if sqlstate else ""
        detail = f"{failures} tick{'s' if failures != 1 else ''} failed{when}, the first: {message}{code}"
        return NewEvent(
            "resumed", "failing ticks", detail, at=at, outage_from=last_heartbeat, sqlstate=sqlstate or None
        )
    return NewEvent(
        "resumed",
        "slow tick",
        "a tick waited (a lock, or a synchronous standby)",
        at=at,
        outage_from=last_heartbeat,
    )


def probe_events(
    refused_since: datetime | None,
    failing: bool,
    last_probe_at: datetime | None,
    last_ok_at: datetime | None,
    sqlstate: str,
    message: str,
) -> list[NewEvent]:
    """The events of the client-path probe's outcome, given when the ledger last saw it refused
    (None: admitted): "refused" at the first failing probe seen, "admitted" at the first success
    after."""
    if failing and refused_since is None and last_probe_at is not None:
        code = f" (SQLSTATE {sqlstate})" if sqlstate else ""
        return [
            NewEvent(
                "refused", "clients refused", f"{message}{code}", at=last_probe_at, sqlstate=sqlstate or None
            )
        ]
    if not failing and refused_since is not None and last_ok_at is not None and last_ok_at > refused_since:
        return [
            NewEvent(
                "admitted",
                "clients refused",
                "the client-path probe wrote again",
                at=last_ok_at,
                outage_from=refused_since,
            )
        ]
    return []


def primary_of(conninfo: str) -> str:
    """host:port of a primary_conninfo (key=value words), never its other words (a password)."""
    words = dict(re.findall(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", conninfo))
    host = words.get("host") or words.get("hostaddr") or ""
    port = words.get("port", "")
    host, port = host.strip("'"), port.strip("'")
    return f"{host}:{port}" if host and port else host
