"""alive-worker lag: a standby's replication lag, as a monitoring plugin reports it.

One line, in the format Nagios and Icinga read (status, text, then
performance data after "|"), and the exit code 0, 1, 2 or 3 for OK,
WARNING (lag at --warn or more), CRITICAL (at --crit or more) and UNKNOWN
(nothing to measure: not a standby, no heartbeat yet, no connection).  With
--watch, a line every few seconds with the averages over the last 1, 5 and
15 minutes, as pt-heartbeat --monitor prints them.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from datetime import datetime
from typing import Any, TextIO

import psycopg
from psycopg import sql

from alive_worker.cli import _runners
from alive_worker.cli._common import (
    CliError,
    Connection,
    Status,
    Style,
    connect,
    installed_extension,
    print_json,
    require_extension,
    seconds_text,
    translate,
)

AVERAGE_WINDOWS = (("1m", 60.0), ("5m", 300.0), ("15m", 900.0))
# A heartbeat younger than this is "now": the skew estimate includes the
# message's transit, so a fresh heartbeat may come out a little negative.
NEGATIVE_AGE_TOLERANCE = 0.05
DEFAULT_MAX_SKEW = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Measure the replication lag of a standby from the heartbeats it replays.  Exit codes as a "
        "monitoring plugin: 0 OK, 1 WARNING (lag >= --warn), 2 CRITICAL (lag >= --crit), "
        "3 UNKNOWN (not a standby, no heartbeat, no connection)."
    )
    parser.add_argument("--warn", type=seconds_arg, metavar="SECONDS", help="WARNING at this lag or more")
    parser.add_argument("--crit", type=seconds_arg, metavar="SECONDS", help="CRITICAL at this lag or more")
    parser.add_argument(
        "--max-skew",
        type=seconds_arg,
        default=DEFAULT_MAX_SKEW,
        metavar="SECONDS",
        help="WARNING when the standby's clock is off its primary's by more than this "
        f"(default {DEFAULT_MAX_SKEW:g}); the lag is corrected for the skew either way",
    )
    parser.add_argument(
        "--watch",
        type=seconds_arg,
        nargs="?",
        const=1.0,
        metavar="SECONDS",
        help="measure again every SECONDS (default 1) until interrupted, with 1/5/15-minute averages",
    )
    parser.add_argument(
        "--table",
        metavar="TABLE",
        help="the heartbeat table to read, on any server (for a logical subscriber); "
        "default: the configured one, on a standby",
    )


def seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def measure(conn: Connection, table: str | None) -> dict[str, Any]:
    """One reading of alive_worker.lag(), or an error that says why there is none.

    Without the extension (a server written by alive-worker run), the same
    reading is computed from the table itself (alive_worker.cli._runners).
    """
    extension = installed_extension(conn)
    reading: dict[str, Any] | None
    try:
        if extension is None and (table is not None or _runners.read(conn)):
            reading = _runners.lag_reading(conn, table)
        elif table is None:
            extension = require_extension(conn, "1.1")
            reading = conn.execute(sql.SQL("SELECT * FROM {}()").format(extension.name("lag"))).fetchone()
        else:
            extension = require_extension(conn, "1.1")
            reading = conn.execute(
                sql.SQL("SELECT * FROM {}(%s::pg_catalog.regclass)").format(extension.name("lag")), [table]
            ).fetchone()
    except psycopg.Error as error:
        raise translate(error, conn) from error
    assert reading is not None
    if reading["lag"] is None and reading.get("future_heartbeat_at") is not None:
        raise CliError(
            f"no heartbeat in {reading['source_table']} to measure from: the newest is dated "
            f"{reading['future_heartbeat_at']}, in the future (this server's clock says {reading['measured_at']})",
            "A heartbeat from the future is no evidence that replication is current: a role that may insert "
            "into the table, or a clock set wrong, wrote it. Delete the row, and check who holds INSERT.",
            Status.CRITICAL,
        )
    if reading["lag"] is None:
        if not reading["in_recovery"] and table is None:
            raise CliError(
                f"{conn.info.host}:{conn.info.port} is not a standby (it is not in recovery)",
                "Point --dsn at a standby; for a logical subscriber, name the heartbeat table it "
                "receives with --table.",
            )
        raise CliError(
            f"no heartbeat in {reading['source_table']} yet",
            "The alive worker on the primary writes one every interval: check it with alive-worker status there.",
        )
    return dict(reading)


def evaluate(lag: float, warn: float | None, crit: float | None) -> Status:
    if crit is not None and lag >= crit:
        return Status.CRITICAL
    if warn is not None and lag >= warn:
        return Status.WARNING
    return Status.OK


def judge(reading: dict[str, Any], args: argparse.Namespace) -> tuple[Status, list[str]]:
    """The status of a reading: its lag against --warn/--crit, then what makes it doubtful."""
    status = evaluate(reading["lag"].total_seconds(), args.warn, args.crit)
    doubts = []
    skew = reading.get("clock_skew")
    if skew is not None and abs(skew.total_seconds()) > args.max_skew:
        status = max(status, Status.WARNING)
        doubts.append(
            f"this server's clock is {seconds_text(abs(skew.total_seconds()))} "
            f"{'ahead of' if skew.total_seconds() > 0 else 'behind'} the primary's (--max-skew {args.max_skew:g} s)"
        )
    future = reading.get("future_heartbeat_at")
    if future is not None:
        status = Status.CRITICAL
        doubts.append(
            f"a heartbeat is dated {future}, in the future: it was left out of the measurement; "
            "a role that may insert into the table, or a clock set wrong, wrote it"
        )
    if reading["heartbeat_age"].total_seconds() < -NEGATIVE_AGE_TOLERANCE:
        # From the future: a clock is off and nothing corrected it (no WAL receiver).
        status = max(status, Status.WARNING)
        doubts.append("the newest heartbeat is from the future: the clocks disagree, so the lag is unknown")
    return status, doubts


def describe(reading: dict[str, Any]) -> str:
    """The text after the status: the lag, where it comes from, and why it might be so."""
    parts = [f"lag {seconds_text(reading['lag'].total_seconds())}"]
    if reading["in_recovery"]:
        # Read without the extension, the system's identifier is not known.
        source = (
            "standby"
            if reading["system_identifier"] is None
            else f"standby of system {reading['system_identifier']}"
        )
        if reading["upstream"]:
            source += f" via {reading['upstream']} ({reading['receiver_status']})"
        else:
            source += ", no WAL receiver"
        parts.append(source)
    else:
        parts.append(f"from {reading['source_table']}")
    if reading["replay_paused"]:
        parts.append("replay paused")
    parts.append(
        f"newest heartbeat {seconds_text(reading['heartbeat_age'].total_seconds())} old, "
        f"interval {seconds_text(reading['tick_interval'].total_seconds())}"
    )
    skew = reading.get("clock_skew")
    if skew is not None:
        parts.append(f"clock skew {skew.total_seconds():+.3f} s")
    return ", ".join(parts)


def perfdata(reading: dict[str, Any], warn: float | None, crit: float | None) -> str:
    def number(value: float | None) -> str:
        return "" if value is None else f"{value:g}"

    lag = reading["lag"].total_seconds()
    age = reading["heartbeat_age"].total_seconds()
    text = f"lag={lag:.6f}s;{number(warn)};{number(crit)};0; heartbeat_age={age:.6f}s"
    if reading.get("clock_skew") is not None:
        text += f" clock_skew={reading['clock_skew'].total_seconds():.6f}s"
    return text


def run(args: argparse.Namespace, out: TextIO, style: Style) -> Status:
    if args.warn is not None and args.crit is not None and args.warn > args.crit:
        raise CliError(f"--warn ({args.warn:g}) is above --crit ({args.crit:g})", status=Status.UNKNOWN)
    if args.watch is None:
        with connect(args.dsn) as conn:
            reading = measure(conn, args.table)
        status, doubts = judge(reading, args)
        if args.json:
            print_json(
                {"status": status, **reading, "warn": args.warn, "crit": args.crit, "doubts": doubts}, out
            )
        else:
            text = "; ".join([describe(reading), *doubts])
            out.write(f"{style.status(status)}: {text} | {perfdata(reading, args.warn, args.crit)}\n")
        return status
    return watch(args, out, style)


def watch(args: argparse.Namespace, out: TextIO, style: Style) -> Status:
    """A reading every --watch seconds until interrupted; reconnects after failures."""
    history: deque[tuple[float, float]] = deque()
    conn: Connection | None = None
    status = Status.UNKNOWN
    try:
        while True:
            started = time.monotonic()
            stamp = datetime.now().astimezone().strftime("%H:%M:%S")
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = connect(args.dsn)
                reading = measure(conn, args.table)
            except (CliError, psycopg.Error) as caught:
                # A lost connection (a restart, a failover) is one UNKNOWN line; the next
                # reading connects again.
                status = Status.UNKNOWN
                error = caught if isinstance(caught, CliError) else translate(caught, None)
                if conn is not None and (conn.broken or conn.closed):
                    conn.close()
                    conn = None
                if args.json:
                    print_json({"status": status, "at": stamp, "error": error.message}, out, indent=None)
                else:
                    out.write(f"{stamp}  {style.status(status)}: {error.message}\n")
            else:
                lag = reading["lag"].total_seconds()
                history.append((started, lag))
                while history and history[0][0] < started - AVERAGE_WINDOWS[-1][1]:
                    history.popleft()
                averages = {
                    name: sum(v for t, v in history if t >= started - span)
                    / sum(1 for t, _ in history if t >= started - span)
                    for name, span in AVERAGE_WINDOWS
                }
                status, doubts = judge(reading, args)
                if args.json:
                    record = {"status": status, **reading, "averages": averages, "doubts": doubts}
                    print_json(record, out, indent=None)
                else:
                    shown = ", ".join(f"{name} {seconds_text(value)}" for name, value in averages.items())
                    text = "; ".join([describe(reading), *doubts])
                    out.write(f"{stamp}  {style.status(status)}: {text} [averages {shown}]\n")
            out.flush()
            time.sleep(max(0.0, args.watch - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return status
    finally:
        if conn is not None:
            conn.close()
