"""alive-worker doctor: checks an installation end to end and says how to fix what is wrong.

Each check is OK, WARNING or CRITICAL (or SKIPPED, when the role or the place
it runs from cannot see enough), with the fix beside what fails.  It asks the
server itself wherever it can: the worker's state says whether Python ran,
the catalogs whether the table and the privileges are right.  Checks that
need a superuser (the configuration files, the server log, the server's
directories) say so instead of guessing.

The checks are grouped by what they look at, one module each: server (the
server, the library, the settings, the role, the extension), workers and
table, python, recent_errors, replication.  _doctor holds what they share.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import TextIO

import psycopg

from alive_worker.cli._common import Status, Style, connect, print_json, where
from alive_worker.cli.doctor._doctor import Doctor
from alive_worker.cli.doctor.python import check_python
from alive_worker.cli.doctor.recent_errors import check_errors
from alive_worker.cli.doctor.replication import check_replication
from alive_worker.cli.doctor.server import (
    check_extension,
    check_preloaded,
    check_role,
    check_server,
    check_settings,
)
from alive_worker.cli.doctor.workers import check_workers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check an alive_worker installation end to end: the library preloaded, the settings, the "
        "extension, each worker, its table and privileges, the server's Python environment, recent "
        "errors and replication.  Exits 0 if all is well, 1 on warnings, 2 on failures, 3 if the "
        "server cannot be reached.  Run it as a superuser for every check."
    )


def run_checks(doctor: Doctor) -> None:
    """Every check, in the order the report lists them."""
    check_server(doctor)
    if not check_preloaded(doctor):
        check_extension(doctor)
        return
    check_settings(doctor)
    check_role(doctor)
    check_extension(doctor)
    check_workers(doctor)
    check_python(doctor)
    check_errors(doctor)
    check_replication(doctor)


def run(args: argparse.Namespace, out: TextIO, style: Style) -> Status:
    with connect(args.dsn) as conn:
        doctor = Doctor(args.dsn, conn)
        place = where(conn)
        stopped: str | None = None
        try:
            run_checks(doctor)
        except psycopg.Error as error:
            stopped = f"{error.diag.message_primary or error} (SQLSTATE {error.sqlstate})"
            doctor.add("doctor", Status.UNKNOWN, f"could not finish the checks: {stopped}")
    counted = [check.status for check in doctor.checks if check.status != Status.UNKNOWN]
    status = Status.UNKNOWN if stopped else max(counted, default=Status.OK)
    if args.json:
        print_json({"status": status, "connection": place, "checks": [asdict(c) for c in doctor.checks]}, out)
        return status
    out.write(f"alive-worker doctor: {place}\n")
    width = max(len(check.name) for check in doctor.checks)
    labels = {Status.OK: "ok", Status.WARNING: "warn", Status.CRITICAL: "FAIL", Status.UNKNOWN: "skip"}
    styles = {Status.OK: "ok", Status.WARNING: "warning", Status.CRITICAL: "critical", Status.UNKNOWN: "dim"}
    for check in doctor.checks:
        label = style(labels[check.status].ljust(4), styles[check.status])
        text = check.text.replace("\n", "\n" + " " * (width + 10))
        out.write(f"  {label}  {check.name.ljust(width)}  {text}\n")
        if check.fix:
            out.write(f"  {' ' * 4}  {' ' * width}  {style('fix:', 'bold')} {check.fix}\n")
    counts = {s: counted.count(s) for s in (Status.CRITICAL, Status.WARNING, Status.OK)}
    skipped = len(doctor.checks) - len(counted)
    out.write(
        f"{style.status(status)}: {counts[Status.CRITICAL]} failed, {counts[Status.WARNING]} warnings, "
        f"{counts[Status.OK]} ok{f', {skipped} skipped' if skipped else ''}\n"
    )
    return status
