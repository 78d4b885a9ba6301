"""alive-worker tail: heartbeats as they arrive, like tail -f on the table, with each tick's lateness.

A tick's lateness is how long after its deadline on the worker's grid it
wrote its row.  On the primary the grid is the worker's own (next_tick_at and
the interval from alive_worker.workers); elsewhere (a standby) it is
inferred from the rows: the interval as the
median gap, the deadlines from the most punctual tick seen.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import psycopg
import psycopg.errors
from psycopg import sql

from alive_worker import states
from alive_worker.cli._common import (
    CliError,
    Connection,
    Extension,
    Status,
    Style,
    connect,
    heartbeat_table,
    one_line,
    print_json,
    require_extension,
    seconds_text,
    shown_sql,
    translate,
)

BATCH_ROWS = 1000
MIN_POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Follow the heartbeats as they are written (or replayed), with each tick's lateness."
    parser.add_argument(
        "-n",
        "--lines",
        type=int,
        default=10,
        metavar="N",
        help="show the last N heartbeats first (default 10)",
    )
    parser.add_argument("--count", type=int, metavar="N", help="stop after N new heartbeats")
    parser.add_argument("--table", metavar="TABLE", help="the heartbeat table (default: the configured one)")


class Grid:
    """The deadlines the worker ticks on: exact from its schedule, else inferred from the rows."""

    def __init__(self) -> None:
        self.deadline: datetime | None = None  # any deadline on the grid
        self.interval: timedelta | None = None
        self.exact = False
        self._gaps: list[timedelta] = []
        self._previous: datetime | None = None

    def follow_schedule(self, next_tick_at: datetime | None, interval: timedelta | None) -> None:
        """The worker's own next deadline and interval, from alive_worker.workers."""
        if next_tick_at is not None and interval is not None:
            self.deadline, self.interval, self.exact = next_tick_at, interval, True
        else:
            self.exact = False

    def lateness(self, ts: datetime) -> float | None:
        """Seconds from the tick's deadline to its ts; None until the grid is known."""
        if self._previous is not None and ts > self._previous:
            self._gaps = [*self._gaps[-8:], ts - self._previous]
        self._previous = ts
        if not self.exact:
            if len(self._gaps) < 2:
                return None
            self.interval = timedelta(seconds=statistics.median(gap.total_seconds() for gap in self._gaps))
            if self.deadline is None:
                self.deadline = ts
        assert self.deadline is not None and self.interval is not None
        interval = self.interval.total_seconds()
        # Rounding may put a punctual tick a hair before its deadline.
        slack = min(0.005, interval / 10)
        offset = ((ts - self.deadline).total_seconds() + slack) % interval - slack
        if not self.exact and offset < 0:
            # A tick more punctual than the one the grid was inferred from.
            self.deadline = ts
            offset = 0.0
        return offset


def resolve(conn: Connection, table: str | None) -> tuple[str, int | None]:
    """The table as the server names it, and its OID (None: the configured table)."""
    if table is None:
        return heartbeat_table(conn), None
    try:
        row = conn.execute(
            "SELECT c.oid, c.oid::pg_catalog.regclass::pg_catalog.text AS name FROM pg_catalog.pg_class c"
            " WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s::pg_catalog.text)",
            [table],
        ).fetchone()
    except psycopg.Error as error:
        raise translate(error, conn) from error
    if row is None:
        raise CliError(
            f"heartbeat table {table} does not exist in database {conn.info.dbname}",
            "The alive worker creates it at its first tick, in the database it runs in: "
            "check with alive-worker status.",
        )
    return row["name"], row["oid"]


def schedule_query(conn: Connection, extension: Extension) -> sql.Composed | None:
    """How to read this database's worker's schedule, if the status view can be read."""
    query = sql.SQL(
        "SELECT next_tick_at, tick_interval FROM {} WHERE database OPERATOR(pg_catalog.=)"
        " pg_catalog.current_database() AND state OPERATOR(pg_catalog.=) ANY ({}::pg_catalog.text[])"
    ).format(extension.name("workers"), sql.Literal(sorted(states.AVAILABLE)))
    try:
        conn.execute(query)
    except psycopg.Error:
        return None
    return query


def run(args: argparse.Namespace, out: TextIO, style: Style) -> Status:
    with connect(args.dsn) as conn:
        # The rows are read through the extension's one reader, as the
        # table's owner: a table (or a view in its place) of another role's
        # never runs its code as the caller (docs/SECURITY.md).
        extension = require_extension(conn, "1.3")
        table, relid = resolve(conn, args.table)
        status_query = schedule_query(conn, extension)
        grid = Grid()
        read = sql.SQL(
            "SELECT pk, ts, message FROM {}(%s::pg_catalog.oid::pg_catalog.regclass, %s::pg_catalog.int4,"
            " %s::pg_catalog.int8, %s::pg_catalog.timestamptz)"
        ).format(extension.name("heartbeats"))
        if not args.json:
            out.write(
                style(f"following {table} in database {conn.info.dbname}; Ctrl-C to stop", "dim") + "\n"
            )
            out.flush()
        try:
            follow(conn, lambda rows, after: conn.execute(read, [relid, rows, *after]).fetchall(),
                   status_query, grid, args, out, style)  # fmt: skip
        except psycopg.errors.InsufficientPrivilege as error:
            if not (error.diag.message_primary or "").startswith("permission denied"):
                raise translate(error, conn) from error
            raise CliError(
                f"permission denied for table {table}",
                "A superuser can grant it: "
                + shown_sql(
                    conn, "GRANT SELECT ON {} TO {};", sql.SQL(table), sql.Identifier(conn.info.user)
                ),
            ) from error
        except psycopg.Error as error:
            raise translate(error, conn) from error
    return Status.OK


# Before the first row: any pk, any time.
FROM_THE_START = (-(2**63), "-infinity")


def follow(
    conn: Connection,
    read: Callable[[int, tuple[Any, Any] | tuple[None, None]], list[dict[str, Any]]],
    status_query: sql.Composed | None,
    grid: Grid,
    args: argparse.Namespace,
    out: TextIO,
    style: Style,
) -> None:
    """read(rows, after): the newest rows (after (None, None)), or the first rows after (pk, ts)."""
    lines = max(args.lines, 0)

    def refresh_schedule() -> None:
        if status_query is not None:
            schedule = conn.execute(status_query).fetchone() or {}
            grid.follow_schedule(schedule.get("next_tick_at"), schedule.get("tick_interval"))

    # A few rows before those shown teach an inferred grid its interval.
    rows = read(lines + 9, (None, None))
    refresh_schedule()
    for index, row in enumerate(rows):
        if index < len(rows) - lines:
            grid.lateness(utc(row["ts"]))
        else:
            write(row, grid, args, out, style)
    last: tuple[Any, Any] = (rows[-1]["pk"], rows[-1]["ts"]) if rows else FROM_THE_START
    new = 0
    try:
        while args.count is None or new < args.count:
            interval = grid.interval.total_seconds() if grid.interval else 1.0
            time.sleep(min(MAX_POLL_SECONDS, max(MIN_POLL_SECONDS, interval / 4)))
            refresh_schedule()
            batch = read(BATCH_ROWS, last)
            for row in batch[: None if args.count is None else args.count - new]:
                write(row, grid, args, out, style)
                last = (row["pk"], row["ts"])
                new += 1
    except KeyboardInterrupt:
        return


def utc(ts: datetime) -> datetime:
    """ts as written: timestamp without time zone in UTC, or timestamptz."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def write(row: dict[str, Any], grid: Grid, args: argparse.Namespace, out: TextIO, style: Style) -> None:
    ts = utc(row["ts"])
    late = grid.lateness(ts)
    if args.json:
        record = {
            "pk": row["pk"],
            "ts": ts,
            "message": row["message"],
            "late_ms": None if late is None else round(late * 1000, 3),
            "grid": "schedule" if grid.exact else "inferred",
        }
        print_json(record, out, indent=None)
        return
    pk = "" if row["pk"] is None else str(row["pk"])
    stamp = ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    late_text = "late -" if late is None else f"late {seconds_text(late)}"
    interval = grid.interval.total_seconds() if grid.interval else None
    late_style = "warning" if late is not None and interval and late > interval / 2 else "dim"
    # One row, one line: whoever may insert into the table could otherwise
    # forge rows on the operator's screen with a newline in a message.
    message = one_line(row["message"] or "")
    out.write(f"{pk:>8}  {stamp}  {message}  {style(late_text, late_style)}\n")
    out.flush()
