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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# The causes a window may be given, most specific first (README, Availability report).
PLANNED = "planned"
RESTART = "restart"
CRASH = "crash"
FAILOVER = "failover"
BLOCKED = "blocked"
UNKNOWN = "unknown"
CAUSES = (PLANNED, RESTART, CRASH, FAILOVER, BLOCKED, UNKNOWN)


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


def explain(outages: Sequence[Outage], starts: Sequence[ServerStart]) -> list[Outage]:
    """Each window with the cause the server's starts give it: a start inside a window is a restart
    (after a crash: a crash and its recovery); otherwise unknown."""
    explained = []
    for outage in outages:
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
) -> Ledger:
    """The ledger of [since, until] from the heartbeat times around it (ascending; the last one
    before since and the first after until included, where they exist) and the server's starts.
    first_ever: the table's first heartbeat (default: the first of times)."""
    watched_from = first_ever if first_ever is not None else (times[0] if times else None)
    cut = []
    for outage in explain(find_outages(times, gap, until), starts):
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
