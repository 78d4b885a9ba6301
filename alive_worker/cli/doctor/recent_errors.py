"""Recent errors: the status view's last error of each worker, and alive_worker's lines in the server log."""

from __future__ import annotations

import re
from datetime import timedelta

from alive_worker import states
from alive_worker.cli._common import Status, ago
from alive_worker.cli.doctor._doctor import Doctor

RECENT_ERRORS = timedelta(hours=1)
SHOWN_LOG_LINES = 3
LOG_PROBLEM = re.compile(r"\b(ERROR|FATAL|PANIC|WARNING):  ")


def check_errors(doctor: Doctor) -> None:
    now = doctor.server["now"]
    recent = [
        worker
        for worker in doctor.workers
        if worker["state"] != states.FAILING
        and worker["last_error_at"] is not None
        and now - worker["last_error_at"] < RECENT_ERRORS
    ]
    for worker in recent:
        doctor.add(
            f"errors {worker['database']}",
            Status.WARNING,
            f"a tick failed {ago(worker['last_error_at'], now)}: "
            f"{worker['last_error_sqlstate']} {worker['last_error_message']}",
            "See the server log for its HINT; heartbeats go on meanwhile.",
        )
    log = doctor.log_lines()
    # The worker's own errors need not name alive_worker: find them by its pid too.
    pids = [re.escape(f"[{pid}]") for pid in doctor.worker_pids]
    ours = re.compile("|".join(["alive_worker", *pids]))
    logged = [line for line in log or [] if LOG_PROBLEM.search(line) and ours.search(line)]
    if logged:
        shown = "\n".join(line.strip() for line in logged[-SHOWN_LOG_LINES:])
        doctor.add(
            "server log",
            Status.WARNING,
            f"{len(logged)} alive_worker warnings or errors near the end of the server log, the last:\n{shown}",
        )
    elif not recent:
        where_seen = "the status view" + (" and the server log" if log is not None else "")
        doctor.add("errors", Status.OK, f"no recent errors in {where_seen}")
