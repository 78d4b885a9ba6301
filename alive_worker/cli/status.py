"""alive-worker status: the alive_worker.workers view, as a table or as JSON."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any, TextIO

import psycopg

from alive_worker.cli._common import (
    Cell,
    Status,
    Style,
    ago,
    connect,
    interval_text,
    print_json,
    render_table,
    require_extension,
    seconds_text,
    translate,
    where,
)

# What each state means to a monitoring system.
STATE_STATUS = {
    "sleeping": Status.OK,
    "ticking": Status.OK,
    "waiting for recovery to end": Status.OK,
    "starting": Status.WARNING,
    "stopped": Status.WARNING,
    "failing": Status.CRITICAL,
    "disabled by crash guard": Status.CRITICAL,
}
STATUS_STYLE = {Status.OK: "ok", Status.WARNING: "warning", Status.CRITICAL: "critical"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Show every configured alive worker: state, counters, last error, tick times (and the "
        "replication lag on a standby).  Exits 0 if all are running, 1 if one is starting or "
        "stopped, 2 if one is failing or disabled, 3 if the status cannot be read."
    )


def read(conn: psycopg.Connection[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The server's description and the view's rows."""
    version = require_extension(conn)
    try:
        server = conn.execute(
            "SELECT split_part(current_setting('server_version'), ' ', 1) AS server_version, pg_is_in_recovery() AS in_recovery,"
            " clock_timestamp() AS now"
        ).fetchone()
        rows = conn.execute("SELECT * FROM alive_worker.workers ORDER BY database").fetchall()
    except psycopg.Error as error:
        raise translate(error, conn) from error
    assert server is not None
    server["extension_version"] = version
    return server, rows


def worker_status(row: dict[str, Any]) -> Status:
    return STATE_STATUS.get(row["state"], Status.WARNING)


def summary(rows: list[dict[str, Any]]) -> tuple[Status, str]:
    if not rows:
        return Status.UNKNOWN, "no alive worker is configured"
    status = max(worker_status(row) for row in rows)
    counts = Counter(row["state"] for row in rows)
    ordered = sorted(counts.items(), key=lambda item: (-STATE_STATUS.get(item[0], Status.WARNING), item[0]))
    return status, ", ".join(f"{count} {state}" for state, count in ordered)


def run(args: argparse.Namespace, out: TextIO, style: Style) -> Status:
    with connect(args.dsn) as conn:
        server, rows = read(conn)
        place = where(conn)
    status, states = summary(rows)
    if args.json:
        print_json({"status": status, "server": {**server, "connection": place}, "workers": rows}, out)
        return status
    role = "standby" if server["in_recovery"] else "primary"
    out.write(
        f"{style.status(status)}: {states} (alive_worker {server['extension_version']} on PostgreSQL "
        f"{server['server_version']}, {role}, {place})\n"
    )
    if not rows:
        return status
    out.write(render_table(*table(rows, server, style), style) + "\n")
    for row in rows:
        if row["last_error_at"] is not None:
            error = f"{row['last_error_sqlstate']} {row['last_error_message']}"
            line = f"{row['database']}: last error {ago(row['last_error_at'], server['now'])}: {error}"
            out.write(style(line, "critical" if row["state"] == "failing" else "dim") + "\n")
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
            Cell(str(row["ticks_ok"]), right=True),
            Cell(str(row["ticks_failed"]), "critical" if row["ticks_failed"] else None, right=True),
            Cell(str(row["ticks_skipped"]), "warning" if row["ticks_skipped"] else None, right=True),
            Cell(ago(row["last_ok_at"], now), right=True),
            Cell(ago(row["next_tick_at"], now), right=True),
            Cell(milliseconds(row["tick_ms_p50"]), right=True),
            Cell(milliseconds(row["tick_ms_p99"]), right=True),
        ]
        if standby:
            cells.append(Cell(interval_text(row.get("replication_lag")), right=True))
        body.append(cells)
    return headers, body


def milliseconds(value: float | None) -> str:
    return "-" if value is None else seconds_text(value / 1000)
