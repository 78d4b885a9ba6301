"""The workers: each one's state from the status view (or pg_stat_activity), its retention, its table."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from alive_worker import states
from alive_worker.cli._common import Status, ago, shown_sql
from alive_worker.cli.doctor._doctor import Doctor
from alive_worker.cli.doctor.table import check_table
from alive_worker.cli.status import STATE_STATUS
from alive_worker.errors import InsufficientPrivilege, QueryCanceled

STALE_INTERVALS = 3

WORKERS = "SELECT * FROM {} ORDER BY database"
# Without the extension: the databases configured, and the workers running.
CONFIGURED_DATABASES = """
SELECT coalesce(nullif(pg_catalog.current_setting('alive_worker.databases'), ''),
                pg_catalog.current_setting('alive_worker.database')) AS names
"""
RUNNING_WORKERS = "SELECT datname, pid FROM pg_catalog.pg_stat_activity WHERE backend_type = 'alive worker'"


def check_workers(doctor: Doctor) -> None:
    if doctor.extension is None:
        check_workers_without_extension(doctor)
        return
    try:
        doctor.workers = doctor.conn.execute(sql.SQL(WORKERS).format(doctor.name("workers"))).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        doctor.add(
            "workers",
            Status.UNKNOWN,
            "cannot read alive_worker.workers",
            shown_sql(doctor.conn, "GRANT pg_monitor TO {};", sql.Identifier(doctor.server["user"])),
        )
        return
    doctor.worker_pids = [worker["pid"] for worker in doctor.workers if worker["pid"]]
    for worker in doctor.workers:
        check_worker(doctor, worker)
        check_table(doctor, worker["database"], worker["role"], worker["target_table"])
        check_retention(doctor, worker)


def check_retention(doctor: Doctor, worker: dict[str, Any]) -> None:
    """alive_worker.retention that the worker found it cannot apply (extension 1.2 and later)."""
    problem = worker.get("retention_error")
    if problem is None:
        return
    role = shown_sql(doctor.conn, "{}", sql.Identifier(worker["role"]))
    doctor.add(
        f"retention {worker['database']}",
        Status.WARNING,
        f"old heartbeats are not deleted from {worker['target_table']}: {problem}",
        f"Let role {role} DELETE from {worker['target_table']} (and give it a serial pk), "
        "then SELECT pg_reload_conf(); or set alive_worker.retention to 0.",
    )


def check_workers_without_extension(doctor: Doctor) -> None:
    databases = doctor.one(CONFIGURED_DATABASES)["names"]
    activity = doctor.conn.execute(RUNNING_WORKERS).fetchall()
    running = {row["datname"] for row in activity}
    doctor.worker_pids = [row["pid"] for row in activity]
    for database in [name.strip().strip('"') for name in databases.split(",")]:
        if doctor.server["in_recovery"]:
            doctor.add(
                f"worker {database}",
                Status.OK,
                "standby: the worker waits, and writes once this server is promoted",
            )
        elif database in running:
            doctor.add(f"worker {database}", Status.OK, "running (CREATE EXTENSION alive_worker for details)")
        else:
            doctor.add(
                f"worker {database}",
                Status.CRITICAL,
                "not running",
                "CREATE EXTENSION alive_worker; then alive-worker status shows why; the server log too.",
            )
        check_table(doctor, database, None, None)


def check_worker(doctor: Doctor, worker: dict[str, Any]) -> None:
    name = f"worker {worker['database']}"
    state = worker["state"]
    status = STATE_STATUS.get(state, Status.WARNING)
    now = doctor.server["now"]
    if state in states.AVAILABLE:
        text = f"{state}, pid {worker['pid']}, {worker['ticks_ok']} heartbeats, last {ago(worker['last_ok_at'], now)}"
        interval = worker["tick_interval"]
        last_ok = worker["last_ok_at"]
        if last_ok is not None and now - last_ok > STALE_INTERVALS * interval:
            doctor.add(
                name,
                Status.CRITICAL,
                f"{text}: none for {STALE_INTERVALS} intervals",
                "See the server log for what holds the worker up.",
            )
        else:
            doctor.add(name, Status.OK, text)
        return
    if state in states.NOT_EXPECTED_TO_WRITE:
        doctor.add(name, Status.OK, "standby: the worker waits, and writes once this server is promoted")
        return
    if state == states.FAILING:
        error = f"{worker['last_error_sqlstate']} {worker['last_error_message']}"
        doctor.add(
            name,
            status,
            f"failing since {ago(worker['last_error_at'], now)}: {error}",
            failing_fix(worker),
        )
        return
    if state == states.DISABLED:
        doctor.add(
            name,
            status,
            "disabled by its crash guard after repeated crashes",
            "Find the crash in the server log and fix it; then restart the server, or raise "
            "alive_worker.crash_limit and SELECT pg_reload_conf();",
        )
        return
    if state == states.STOPPED:
        doctor.add(
            name,
            status,
            worker.get("state_detail") or "stopped by alive_worker.stop() or SIGTERM",
            shown_sql(doctor.conn, "SELECT alive_worker.start({});", sql.Literal(worker["database"])),
        )
        return
    cause = f": {worker['state_detail']}" if worker.get("state_detail") else ": not running"
    doctor.add(name, status, f"{state}{cause}", cannot_start_fix(doctor, worker))


def failing_fix(worker: dict[str, Any]) -> str:
    sqlstate = worker["last_error_sqlstate"]
    if sqlstate == InsufficientPrivilege.sqlstate:
        return "Grant what the error names (the server log's HINT has the GRANT); heartbeats resume by themselves."
    if sqlstate == QueryCanceled.sqlstate:
        return "Ticks are cancelled by alive_worker.tick_timeout: find what locks or slows the table."
    return "See the server log for the error's HINT and CONTEXT."


def cannot_start_fix(doctor: Doctor, worker: dict[str, Any]) -> str:
    database = worker["database"]
    conn = doctor.conn
    if (
        doctor.one(
            "SELECT pg_catalog.count(*) AS n FROM pg_catalog.pg_database WHERE datname = %s", [database]
        )["n"]
        == 0
    ):
        return (
            f"Database {database} does not exist: "
            + shown_sql(conn, "CREATE DATABASE {};", sql.Identifier(database))
            + " or remove it from alive_worker.databases and restart."
        )
    role = worker["role"]
    if role != "(bootstrap superuser)":
        row = conn.execute(
            "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = %s", [role]
        ).fetchone()
        if row is None:
            return f"Role {role} does not exist: " + shown_sql(
                conn, "CREATE ROLE {} LOGIN;", sql.Identifier(role)
            )
        if not row["rolcanlogin"]:
            return f"Role {role} may not log in: " + shown_sql(
                conn, "ALTER ROLE {} LOGIN;", sql.Identifier(role)
            )
    return (
        "It cannot connect or start: see its FATAL lines in the server log (is there a free "
        "max_worker_processes slot? can the server's OS user read the Python environment?)."
    )
