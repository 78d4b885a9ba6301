"""alive-worker status: the alive_worker.workers view, as a table or as JSON."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import datetime
from typing import Any, TextIO

import psycopg
from psycopg import sql

from alive_worker.cli import _runners
from alive_worker.cli._common import (
    Cell,
    Status,
    Style,
    ago,
    connect,
    installed_extension,
    interval_text,
    print_json,
    render_table,
    require_extension,
    seconds_text,
    translate,
    where,
)
from alive_worker.states import NOT_EXPECTED_TO_WRITE, RUNNER_ONLY, STATES, WAITING

# What each state means to a monitoring system (alive_worker/states.py).
STATE_STATUS = {word: Status[state.rating] for word, state in {**STATES, **RUNNER_ONLY}.items()}
DEFAULT_WARN_INTERVALS = 3.0
DEFAULT_CRIT_INTERVALS = 10.0
STATUS_STYLE = {Status.OK: "ok", Status.WARNING: "warning", Status.CRITICAL: "critical"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Show every configured alive worker: state and its cause, counters, last error, tick times "
        "(and the replication lag on a standby).  Exits 0 if all are writing heartbeats, 1 if one is "
        "starting, stopped, waiting or its last OK heartbeat is older than --warn intervals, 2 if one "
        "is failing, cannot connect, is disabled, its last tick failed or its last OK heartbeat is "
        "older than --crit intervals, 3 if the status cannot be read."
    )
    parser.add_argument(
        "--warn",
        type=positive_float,
        default=DEFAULT_WARN_INTERVALS,
        metavar="INTERVALS",
        help=f"WARNING when the last OK heartbeat is older than this many intervals (default {DEFAULT_WARN_INTERVALS:g})",
    )
    parser.add_argument(
        "--crit",
        type=positive_float,
        default=DEFAULT_CRIT_INTERVALS,
        metavar="INTERVALS",
        help=f"CRITICAL when the last OK heartbeat is older than this many intervals (default {DEFAULT_CRIT_INTERVALS:g})",
    )
    parser.add_argument(
        "--runner",
        action="store_true",
        help="judge the alive-worker run sessions of a server without the extension: CRITICAL when none "
        "holds its lock (no runner), WARNING then CRITICAL while one is blocked (docs/MANAGED.md); without "
        "this flag they are read only where the extension is not installed",
    )
    parser.add_argument(
        "--table",
        metavar="TABLE",
        help="the heartbeat table the runners write (default public.log_table, as alive-worker run's): a "
        "runner's claim on another table is not counted",
    )
    parser.add_argument(
        "--disk-warn",
        type=positive_float,
        default=DEFAULT_DISK_WARN_PERCENT,
        metavar="PERCENT",
        help="WARNING when the fullest file system of the data directory, pg_wal and the tablespaces has "
        f"less than this percentage free (default {DEFAULT_DISK_WARN_PERCENT:g})",
    )
    parser.add_argument(
        "--disk-crit",
        type=positive_float,
        default=DEFAULT_DISK_CRIT_PERCENT,
        metavar="PERCENT",
        help=f"CRITICAL when it has less than this percentage free (default {DEFAULT_DISK_CRIT_PERCENT:g})",
    )


# Free space, in percent of the file system, below which status warns and is critical.
DEFAULT_DISK_WARN_PERCENT = 10.0
DEFAULT_DISK_CRIT_PERCENT = 5.0


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
    return value


def read(
    conn: psycopg.Connection[dict[str, Any]], runner: bool = False, table: str | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The server's description and the view's rows, or the runners' (alive_worker.cli._runners).

    With runner, or without the extension where runner sessions are found,
    the rows are the runners' of table: what a server written by alive-worker
    run says.  Claims on other tables are in server["refused_claims"].
    """
    extension = None if runner else installed_extension(conn)
    refused: list[dict[str, Any]] = []
    try:
        if extension is None:
            rows, refused = _runners.read_claims(conn, _runners.asked_table(conn, table))
            if not rows and not refused and not runner:
                require_extension(conn)
        else:
            rows = conn.execute(
                sql.SQL("SELECT * FROM {} ORDER BY database").format(extension.name("workers"))
            ).fetchall()
        # The clock is read after the rows: read before, an error the worker
        # records in between would show as "in 0.4 ms" rather than as past.
        server = conn.execute(
            "SELECT pg_catalog.split_part(pg_catalog.current_setting('server_version'), ' ', 1) AS server_version,"
            " pg_catalog.pg_is_in_recovery() AS in_recovery, pg_catalog.clock_timestamp() AS now"
        ).fetchone()
    except psycopg.Error as error:
        raise translate(error, conn) from error
    assert server is not None
    server["extension_version"] = None if extension is None else extension.version
    server["refused_claims"] = [row["refused_because"] for row in refused]
    if server["in_recovery"]:
        try:
            receiver = conn.execute(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_stat_wal_receiver) AS wal_receiver"
            ).fetchone()
        except psycopg.Error as error:
            raise translate(error, conn) from error
        assert receiver is not None
        server["wal_receiver"] = receiver["wal_receiver"]
    return server, rows


def worker_status(row: dict[str, Any]) -> Status:
    """The state's status, or worse: a judgement added by judge()."""
    judged: Status = row.get("judged_status", Status.OK)
    state: Status = row.get("state_status", STATE_STATUS.get(row["state"], Status.WARNING))
    return max(state, judged)


def last_tick_failed(row: dict[str, Any]) -> bool:
    failed_at, ok_at = row["last_error_at"], row["last_ok_at"]
    return failed_at is not None and (ok_at is None or failed_at > ok_at)


def judge(
    rows: list[dict[str, Any]], now: datetime, warn: float, crit: float, in_recovery: bool = False
) -> None:
    """Adds to each row how stale its heartbeat is, and why that is WARNING or CRITICAL.

    The age of the last OK heartbeat counts whatever the state says: a worker
    "sleeping" or "waiting" that has not written for --crit intervals is
    CRITICAL.  A worker that never wrote one is judged from when it started.
    A runner's claim to wait for recovery is not taken on a primary (any role
    may name its session so): it is judged as any claim there.
    """
    for row in rows:
        row["judged_status"] = Status.OK
        row["judged_reason"] = None
        if row["state"] in NOT_EXPECTED_TO_WRITE:
            if in_recovery or not row.get("runner"):
                continue
            row["judged_status"] = Status.WARNING
            row["judged_reason"] = "it says it waits for recovery, on a primary"
        interval = row["tick_interval"].total_seconds()
        # Every commit waits a moment for a synchronous standby, many a tick for a lock:
        # a warning only once the wait has lasted an interval.
        since = row.get("state_since")
        if row["state"] in WAITING and since is not None and (now - since).total_seconds() < interval:
            row["state_status"] = Status.OK
        since = row["last_ok_at"] or row.get("started_at") or row.get("state_since")
        if row.get("runner") and not row.get("heartbeat_age_known"):
            # A runner's heartbeats this role may not read: only how long it has been blocked is
            # known, and a session's name alone (which any role may set) is never OK.
            since = row["state_since"] if row["state"] in WAITING else None
            if row["judged_status"] < Status.WARNING:
                row["judged_status"] = Status.WARNING
                row["judged_reason"] = (
                    "its heartbeats cannot be read safely: only its session's claim is known"
                )
        if last_tick_failed(row) and row["state"] not in ("stopped",):
            row["judged_status"] = Status.CRITICAL
            row["judged_reason"] = "its last tick failed"
        if since is None or interval <= 0:
            continue
        age = (now - since).total_seconds()
        what = "last OK heartbeat" if row["last_ok_at"] is not None else "no OK heartbeat since it started"
        for limit, status in ((crit, Status.CRITICAL), (warn, Status.WARNING)):
            if age > limit * interval:
                if status > row["judged_status"]:
                    row["judged_status"] = status
                    row["judged_reason"] = (
                        f"{what} {seconds_text(age)} ago, more than {limit:g} intervals ({seconds_text(limit * interval)})"
                    )
                break


def judge_standby(rows: list[dict[str, Any]], server: dict[str, Any], warn: float, crit: float) -> None:
    """On a standby, judges what a standby is for: receiving WAL, and replaying it in time.

    A standby whose primary is down writes nothing and replays nothing: with
    no WAL receiver it is WARNING at once, and its lag (the view's
    replication_lag, in the current database's row) past --warn or --crit
    intervals is WARNING or CRITICAL, as the heartbeat's age is on a primary.
    """
    if not server.get("in_recovery"):
        return
    for row in rows:
        if row["state"] != "waiting for recovery to end":
            continue
        interval = row["tick_interval"].total_seconds()
        lag = row.get("replication_lag")
        if lag is not None and interval > 0:
            seconds = lag.total_seconds()
            for limit, status in ((crit, Status.CRITICAL), (warn, Status.WARNING)):
                if seconds > limit * interval:
                    if status > row["judged_status"]:
                        row["judged_status"] = status
                        row["judged_reason"] = (
                            f"replication lag {seconds_text(seconds)}, more than {limit:g} intervals "
                            f"({seconds_text(limit * interval)})"
                        )
                    break
        if not server.get("wal_receiver", True) and row["judged_status"] < Status.WARNING:
            row["judged_status"] = Status.WARNING
            row["judged_reason"] = "no WAL receiver: this standby receives nothing from a primary"


def judge_disk(rows: list[dict[str, Any]], warn_percent: float, crit_percent: float) -> None:
    """WARNING or CRITICAL when the fullest file system the server writes to is nearly full."""
    for row in rows:
        free, size = row.get("disk_free_bytes"), row.get("disk_size_bytes")
        if free is None or not size:
            continue
        percent = 100.0 * free / size
        for limit, status in ((crit_percent, Status.CRITICAL), (warn_percent, Status.WARNING)):
            if percent < limit:
                if status > row["judged_status"]:
                    row["judged_status"] = status
                    row["judged_reason"] = (
                        f"disk {row['disk_free_where']}: {bytes_text(free)} free of {bytes_text(size)} "
                        f"({percent:.1f} %), less than {limit:g} %"
                    )
                break


def bytes_text(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def summary(rows: list[dict[str, Any]], runner: bool = False, refused: int = 0) -> tuple[Status, str]:
    if not rows and refused:
        return Status.CRITICAL, (
            f"no runner: no alive-worker run session writes the table asked about ({refused} "
            f"claim{'s' if refused > 1 else ''} on another table not counted)"
        )
    if not rows and runner:
        return Status.CRITICAL, "no runner: no alive-worker run session is connected to this database"
    if not rows:
        return Status.UNKNOWN, "no alive worker is configured"
    status = max(worker_status(row) for row in rows)
    counts = Counter(row["state"] for row in rows)
    ordered = sorted(counts.items(), key=lambda item: (-STATE_STATUS.get(item[0], Status.WARNING), item[0]))
    return status, ", ".join(f"{count} {state}" for state, count in ordered)


def run(args: argparse.Namespace, out: TextIO, style: Style) -> Status:
    with connect(args.dsn) as conn:
        server, rows = read(conn, args.runner, args.table)
        place = where(conn)
    judge(rows, server["now"], args.warn, args.crit, bool(server.get("in_recovery")))
    judge_standby(rows, server, args.warn, args.crit)
    judge_disk(rows, args.disk_warn, args.disk_crit)
    status, states = summary(rows, args.runner, len(server["refused_claims"]))
    if args.json:
        for row in rows:
            row["status"] = worker_status(row)
            row.pop("judged_status")
            row.pop("state_status", None)
            row["status_reason"] = row.pop("judged_reason")
        print_json({"status": status, "server": {**server, "connection": place}, "workers": rows}, out)
        return status
    role = "standby" if server["in_recovery"] else "primary"
    what = (
        "alive-worker run"
        if server["extension_version"] is None
        else f"alive_worker {server['extension_version']}"
    )
    out.write(
        f"{style.status(status)}: {states} ({what} on PostgreSQL "
        f"{server['server_version']}, {role}, {place})\n"
    )
    for refusal in server["refused_claims"]:
        out.write(style(refusal, "critical" if not rows else "warning") + "\n")
    if not rows:
        return status
    out.write(render_table(*table(rows, server, style), style) + "\n")
    now = server["now"]
    for row in rows:
        why = STATUS_STYLE.get(worker_status(row))
        if row.get("state_detail") and row["state_detail"] != row["last_error_message"]:
            since = f" (since {ago(row['state_since'], now)})" if row.get("state_since") else ""
            out.write(style(f"{row['database']}: {row['state']}{since}: {row['state_detail']}", why) + "\n")
        if row.get("next_retry_at") is not None and row["pid"] is None:
            out.write(style(f"{row['database']}: next attempt {ago(row['next_retry_at'], now)}", why) + "\n")
        if row["judged_reason"]:
            out.write(style(f"{row['database']}: {row['judged_reason']}", why) + "\n")
        if row["last_error_at"] is not None:
            error = f"{row['last_error_sqlstate']} {row['last_error_message']}"
            line = f"{row['database']}: last error {ago(row['last_error_at'], now)}: {error}"
            out.write(
                style(line, "critical" if last_tick_failed(row) or row["pid"] is None else "dim") + "\n"
            )
    return status


def table(
    rows: list[dict[str, Any]], server: dict[str, Any], style: Style
) -> tuple[list[str], list[list[Cell]]]:
    headers = [
        "DATABASE",
        "STATE",
        "PID",
        "TABLE",
        "INTERVAL",
        "OK",
        "FAILED",
        "SKIPPED",
        "LAST OK",
        "NEXT TICK",
    ]
    headers += ["TICK P50", "TICK P99"]
    standby = server["in_recovery"]
    if standby:
        headers.append("LAG")
    now = server["now"]
    body = []
    for row in rows:
        cells = [
            Cell(row["database"]),
            Cell(row["state"], STATUS_STYLE.get(worker_status(row))),
            Cell("-" if row["pid"] is None else str(row["pid"]), right=True),
            Cell(row["target_table"]),
            Cell(interval_text(row["tick_interval"]), right=True),
            Cell(count_text(row["ticks_ok"]), right=True),
            Cell(count_text(row["ticks_failed"]), "critical" if row["ticks_failed"] else None, right=True),
            Cell(count_text(row["ticks_skipped"]), "warning" if row["ticks_skipped"] else None, right=True),
            Cell(ago(row["last_ok_at"], now), right=True),
            Cell(ago(row["next_tick_at"], now), right=True),
            Cell(milliseconds(row["tick_ms_p50"]), right=True),
            Cell(milliseconds(row["tick_ms_p99"]), right=True),
        ]
        if standby:
            cells.append(Cell(interval_text(row.get("replication_lag")), right=True))
        body.append(cells)
    return headers, body


def count_text(value: int | None) -> str:
    """A counter; "-" for a runner's, which the server does not hold."""
    return "-" if value is None else str(value)


def milliseconds(value: float | None) -> str:
    return "-" if value is None else seconds_text(value / 1000)
