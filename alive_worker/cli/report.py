"""alive-worker report: every write outage of a period, availability per day, week and month, the SLO's budget.

Read from the heartbeat table (alive_worker.ledger does the arithmetic), on a
primary or any standby: the table is replicated, so every server tells the
same history.  The rows are read through the extension's reader,
alive_worker.heartbeats(), as the table's owner (docs/SECURITY.md), a page at
a time from the first heartbeat of the period.  --format html writes one
self-contained page (alive_worker.cli.report_page).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import psycopg
from psycopg import sql

from alive_worker.cli import _runners
from alive_worker.cli._common import (
    CliError,
    Connection,
    Extension,
    Status,
    Style,
    connect,
    installed_extension,
    interval_text,
    one_line,
    print_json,
    require_extension,
    safe_output,
    seconds_text,
    to_json,
    translate,
)
from alive_worker.cli.tail import resolve
from alive_worker.ledger import Event, Ledger, ServerStart, build_ledger

DEFAULT_GAP_INTERVALS = 3.0
DEFAULT_SLO = 99.9
DEFAULT_PERIOD = timedelta(days=7)
# alive_worker.heartbeats() returns at most 100,000 rows a call.
PAGE_ROWS = 100_000
FIRST_PK = -(2**63)
DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|min|m|h|d|w)$")
DURATION_UNITS = {"s": 1, "min": 60, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Every window in which no heartbeat committed for longer than the gap, with its cause where the "
        "server knows it; availability per day, week and month; the SLO's error budget."
    )
    parser.add_argument("--table", help="the heartbeat table (default: the configured one)")
    parser.add_argument(
        "--since",
        type=moment_arg,
        metavar="WHEN",
        help="start of the period: a time (2026-12-01, 2026-12-01T08:00Z) or a duration back from --until "
        "(7d, 12h, 30min; default 7d)",
    )
    parser.add_argument(
        "--until", type=moment_arg, metavar="WHEN", help="end of the period: a time or a duration back from now (default now)"
    )  # fmt: skip
    parser.add_argument(
        "--gap",
        type=positive_float,
        default=DEFAULT_GAP_INTERVALS,
        metavar="INTERVALS",
        help=f"an outage is a gap between heartbeats of more than this many intervals (default {DEFAULT_GAP_INTERVALS:g})",
    )  # fmt: skip
    parser.add_argument(
        "--interval",
        type=duration_arg,
        metavar="DURATION",
        help="the heartbeats' interval (default: the server's alive_worker.interval)",
    )
    parser.add_argument(
        "--slo", type=slo_arg, default=DEFAULT_SLO, metavar="PERCENT", help=f"the availability objective (default {DEFAULT_SLO:g})"
    )  # fmt: skip
    parser.add_argument(
        "--format", choices=("text", "json", "html"), default="text", help="text (default), json or html"
    )
    parser.add_argument(
        "--output", type=Path, metavar="FILE", help="write the report to FILE instead of stdout"
    )


def duration_arg(text: str) -> timedelta:
    match = DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30s, 10min, 12h, 7d or 2w")
    return timedelta(seconds=float(match[1]) * DURATION_UNITS[match[2]])


def moment_arg(text: str) -> datetime | timedelta:
    """A time (ISO 8601; UTC unless it says otherwise) or a duration back."""
    if DURATION.match(text.strip()):
        return duration_arg(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a time (2026-12-01, 2026-12-01T08:00Z) nor a duration (7d, 12h)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def slo_arg(text: str) -> float:
    value = positive_float(text)
    if not value < 100:
        raise argparse.ArgumentTypeError(f"{text!r} must be below 100 (a percentage: 99.95)")
    return value


def period(args: argparse.Namespace, now: datetime) -> tuple[datetime, datetime]:
    until = now - args.until if isinstance(args.until, timedelta) else (args.until or now)
    since = args.since if args.since is not None else DEFAULT_PERIOD
    since = until - since if isinstance(since, timedelta) else since
    if since >= until:
        raise CliError(f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})")
    return since, min(until, now)


class HeartbeatReader:
    """The heartbeat times of one table, through alive_worker.heartbeats(), a page at a time."""

    def __init__(self, conn: Connection, extension: Extension, relid: int | None) -> None:
        self.conn = conn
        self.relid = relid
        self.query = sql.SQL(
            "SELECT pk, ts FROM {}(%s::pg_catalog.oid::pg_catalog.regclass, %s::pg_catalog.int4,"
            " %s::pg_catalog.int8, %s::pg_catalog.timestamptz)"
        ).format(extension.name("heartbeats"))

    def read(self, rows: int, after_pk: int | None, after_ts: datetime | None) -> list[dict[str, Any]]:
        return self.conn.execute(self.query, [self.relid, rows, after_pk, after_ts]).fetchall()

    def first(self) -> dict[str, Any] | None:
        rows = self.read(1, FIRST_PK, datetime.min.replace(tzinfo=UTC))
        return rows[0] if rows else None

    def start_key(self, first: dict[str, Any], not_before: datetime) -> tuple[int | None, datetime | None]:
        """Where to read from so that the first row is at or just before not_before's first heartbeat:
        by pk (a binary search, heartbeats being numbered in time order), or by time."""
        if first["pk"] is None:
            return None, not_before
        newest = self.read(1, None, None)
        lo, hi = int(first["pk"]), int(newest[0]["pk"])
        # The last pk whose row is before not_before: read after it.
        while lo < hi:
            mid = (lo + hi + 1) // 2
            row = self.read(1, mid - 1, None)
            if row and row[0]["ts"] < not_before:
                lo = int(row[0]["pk"])
            else:
                hi = mid - 1
        return lo - 1, None

    def times(self, not_before: datetime, until: datetime, now: datetime) -> Iterator[datetime]:
        """Heartbeat times from the first at or after not_before (roughly) to the first after until.

        A row dated after now (the server's, as the reading began) is no heartbeat and ends nothing:
        a role with INSERT on the table may write many (red team: a hundred rows dated 2100 ended the
        reading there, and every heartbeat after them in pk order was an outage)."""
        first = self.first()
        if first is None:
            return
        after_pk, after_ts = self.start_key(first, not_before)
        past_until = 0
        while True:
            rows = self.read(PAGE_ROWS, after_pk, after_ts)
            for row in rows:
                if row["ts"] <= until:
                    yield row["ts"]
                    past_until = 0
                    continue
                if row["ts"] > now:
                    continue
                past_until += 1
                if past_until >= ROWS_PAST_UNTIL:
                    return
            if len(rows) < PAGE_ROWS:
                return
            after_pk, after_ts = rows[-1]["pk"], rows[-1]["ts"] if rows[-1]["pk"] is None else None


class TableHeartbeatReader(HeartbeatReader):
    """The same pages, read from the table itself where the extension is not installed (_runners.TableReader)."""

    def __init__(self, table: _runners.TableReader) -> None:
        self.table = table

    def read(self, rows: int, after_pk: int | None, after_ts: datetime | None) -> list[dict[str, Any]]:
        # The table has an integer pk (TableReader checks it): pages go by pk, never by time.
        return self.table.read(rows, after_pk)


# Events this far outside the period may still explain a window that reaches into it (the event that
# ends a window is stamped at its end, which may be after --until).
EVENTS_AROUND = timedelta(days=7)
# Rows past --until that end the reading: one stray row dated later (a client's) must not.
ROWS_PAST_UNTIL = 100


def read_events(
    conn: Connection, extension: Extension, table: str, since: datetime, until: datetime
) -> list[Event]:
    """The ledger's events of this heartbeat table around [since, until] (alive_worker.events, a
    superuser's table of the extension: reading it runs no one else's code)."""
    query = sql.SQL(
        "SELECT at, kind, cause, outage_from, detail, sqlstate, timeline FROM {}"
        " WHERE pg_catalog.to_regclass(heartbeat_table) OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s::pg_catalog.text)"
        " AND at >= %s AND at <= %s ORDER BY at, pk"
    ).format(extension.name("events"))
    rows = conn.execute(query, [table, since - EVENTS_AROUND, until + EVENTS_AROUND]).fetchall()
    return [
        Event(r["at"], r["kind"], r["cause"], r["outage_from"], r["detail"], r["sqlstate"], r["timeline"])
        for r in rows
    ]


def server_interval(conn: Connection) -> timedelta:
    row = conn.execute(
        "SELECT pg_catalog.current_setting('alive_worker.interval', true)::pg_catalog.interval AS interval"
    ).fetchone()
    if row is None or row["interval"] is None:
        raise CliError(
            "this server has no alive_worker.interval setting (the library is not loaded)",
            "Give the heartbeats' interval with --interval, e.g. --interval 10s.",
        )
    interval: timedelta = row["interval"]
    return interval


def ledger_of(conn: Connection, args: argparse.Namespace) -> tuple[Ledger, str, timedelta]:
    extension = installed_extension(conn)
    reader: HeartbeatReader
    if extension is None and (args.table is not None or _runners.read(conn)):
        # A server written by alive-worker run: the table itself, and no ledger of events.
        direct, table = _runners.open_table(conn, args.table)
        reader = TableHeartbeatReader(direct)
    else:
        extension = require_extension(conn, "1.3")
        table, relid = resolve(conn, args.table)
        reader = HeartbeatReader(conn, extension, relid)
    row = conn.execute(
        "SELECT pg_catalog.clock_timestamp() AS now, pg_catalog.pg_postmaster_start_time() AS started,"
        " pg_catalog.pg_is_in_recovery() AS standby, pg_catalog.pg_last_xact_replay_timestamp() AS replayed"
    ).fetchone()
    assert row is not None
    since, until = period(args, row["now"])
    # A standby knows the primary's writes up to its last replayed commit, and its own start says
    # nothing of them: past that, a lag or a cut link is not an outage of the primary's.
    starts = [] if row["standby"] else [ServerStart(row["started"])]
    if row["standby"] and row["replayed"] is not None and row["replayed"] < until:
        if row["replayed"] <= since:
            raise CliError(
                f"this standby has replayed nothing after --since ({since.isoformat()}): its last replayed "
                f"commit is from {row['replayed'].isoformat()}",
                "Report on the primary, or on a standby that follows it.",
            )
        until = row["replayed"]
    interval = args.interval or (_runners.runner_interval(conn, table) if extension is None else None)
    interval = interval or server_interval(conn)
    gap = interval * args.gap
    first = reader.first()
    # A heartbeat at or before since - gap stands for the last one before the period (ledger.build_ledger).
    not_before = since - gap
    times = list(reader.times(not_before, until, row["now"]))
    if first is not None and first["ts"] < not_before and (not times or times[0] > not_before):
        times.insert(0, not_before)
    events = [] if extension is None else read_events(conn, extension, table, since, until)
    ledger = build_ledger(
        times,
        since,
        until,
        gap,
        starts,
        first_ever=first["ts"] if first else None,
        events=events,
        slack=interval,
    )
    return ledger, table, interval


def as_dict(ledger: Ledger, table: str, interval: timedelta, slo: float) -> dict[str, Any]:
    budget = ledger.budget(slo)
    longest = ledger.longest()
    return {
        "table": table,
        "since": ledger.since,
        "until": ledger.until,
        "measured_from": ledger.measured_from,
        "interval": interval,
        "gap": ledger.gap,
        "slo": slo,
        "availability": ledger.total().availability,
        "down": ledger.total().down,
        "budget": {
            "allowed": budget.allowed,
            "used": budget.used,
            "left": budget.left,
            "left_share": budget.left_share,
        },
        "longest_outage": longest.length(ledger.until) if longest else None,
        "mean_time_to_recover": ledger.mean_time_to_recover(),
        "outages": [
            {
                "start": o.start,
                "end": o.end,
                "length": o.length(ledger.until),
                "cause": o.cause,
                "detail": o.detail,
            }
            for o in ledger.outages
        ],
        **{
            f"per_{unit}": [
                {"period": s.label, "measured": s.measured, "down": s.down, "availability": s.availability}
                for s in ledger.per(unit)
            ]
            for unit in ("day", "week", "month")
        },
    }


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.3f}%"


def when(moment: datetime | None) -> str:
    return "(ongoing)" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def write_text(report: dict[str, Any], ledger: Ledger, out: TextIO, style: Style) -> None:
    budget = report["budget"]
    out.write(
        f"{report['table']}: {when(ledger.since)} to {when(ledger.until)} UTC, measured from "
        f"{when(ledger.measured_from)}; interval {interval_text(report['interval'])}, "
        f"an outage is a gap over {seconds_text(ledger.gap.total_seconds())}\n"
    )
    out.write(f"availability {percent(report['availability'])} (SLO {report['slo']:g}%), "
              f"down {seconds_text(report['down'].total_seconds())}\n")  # fmt: skip
    left = budget["left"].total_seconds()
    out.write(
        f"error budget {seconds_text(budget['allowed'].total_seconds())}: used "
        f"{seconds_text(budget['used'].total_seconds())}, "
        + (style(f"left {seconds_text(left)}", "ok") if left >= 0 else style(f"over by {seconds_text(-left)}", "critical"))
        + f" ({percent(budget['left_share'])})\n"
    )  # fmt: skip
    if report["longest_outage"] is not None:
        mttr = report["mean_time_to_recover"]
        out.write(
            f"longest outage {seconds_text(report['longest_outage'].total_seconds())}; time to recover "
            f"{'-' if mttr is None else seconds_text(mttr.total_seconds())} on average\n"
        )
    out.write(f"\n{len(report['outages'])} outages\n")
    for outage in report["outages"]:
        # An event's detail may hold a trigger's error message: one line, so it forges no outage.
        detail = f" ({one_line(outage['detail'])})" if outage["detail"] else ""
        out.write(
            f"  {when(outage['start'])} to {when(outage['end'])}  "
            f"{seconds_text(outage['length'].total_seconds()):>8}  {outage['cause']}{detail}\n"
        )
    out.write("\nper day\n")
    for day in report["per_day"]:
        out.write(f"  {day['period']}  {percent(day['availability']):>9}  down {seconds_text(day['down'].total_seconds())}\n")  # fmt: skip


def run(args: argparse.Namespace, out: TextIO, style: Style) -> Status:
    if args.json:
        args.format = "json"
    with connect(args.dsn) as conn:
        try:
            ledger, table, interval = ledger_of(conn, args)
        except psycopg.errors.InsufficientPrivilege as error:
            raise CliError(
                f"permission denied to read the heartbeats: {error.diag.message_primary}",
                "The report reads through alive_worker.heartbeats(): grant pg_monitor, or SELECT on a table "
                "you name with --table.",
            ) from error
        except psycopg.Error as error:
            raise translate(error, conn) from error
    report = as_dict(ledger, table, interval, args.slo)
    # A file is escaped as the terminal is: a server's text (an event's detail, an error message) may hold
    # escape sequences for whoever later runs cat on it.
    file = args.output.open("w", encoding="utf-8") if args.output else None
    target = safe_output(file) if file is not None else out
    try:
        if args.format == "json":
            print_json(to_json(report), target)
        elif args.format == "html":
            from alive_worker.cli.report_page import page

            target.write(page(report, ledger))
        else:
            write_text(report, ledger, target, style)
    finally:
        if file is not None:
            file.close()
    return Status.OK if report["budget"]["left"] >= timedelta(0) else Status.CRITICAL
