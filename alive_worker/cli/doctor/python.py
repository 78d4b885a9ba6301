"""Python: whether the workers ran it, and the server's virtual environment, when it is on this machine."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from alive_worker.cli._common import Status
from alive_worker.cli.doctor._doctor import Doctor

PYTHON_FAILURE = re.compile(r"alive_worker could not (load its Python library|start Python)")


def check_python(doctor: Doctor) -> None:
    ticked = sum(worker["ticks_ok"] + worker["ticks_failed"] for worker in doctor.workers)
    if ticked:
        doctor.add(
            "python",
            Status.OK,
            f"the workers ran their Python ticks {ticked} times since they started",
        )
    elif doctor.server["in_recovery"]:
        doctor.add("python", Status.UNKNOWN, "standby: no worker runs here, so Python is not started")
    failures = [line for line in doctor.log_lines() or [] if PYTHON_FAILURE.search(line)]
    if failures:
        doctor.add(
            "python",
            Status.CRITICAL,
            failures[-1].strip(),
            "The server's OS user must read the virtual environment: run make install again "
            "(with the same PYTHON_ENV, if one was given).",
        )
    check_environment(doctor)


def check_environment(doctor: Doctor) -> None:
    """The server's virtual environment, when it is on this machine and a superuser can say where."""
    if not doctor.server["superuser"]:
        doctor.add(
            "environment", Status.UNKNOWN, "where the server's Python environment is needs a superuser"
        )
        return
    pkglibdir = doctor.one("SELECT setting FROM pg_catalog.pg_config WHERE name = 'PKGLIBDIR'")["setting"]
    env = Path(pkglibdir) / "alive_worker"
    if not Path(pkglibdir).is_dir():
        doctor.add(
            "environment", Status.UNKNOWN, f"{pkglibdir} is not on this machine: run doctor on the server"
        )
        return
    natives = list(env.glob("lib/python*/site-packages/alive_worker/_native*.so"))
    if not (env / "bin" / "python3").exists() or not natives:
        doctor.add(
            "environment",
            Status.CRITICAL,
            f"no Python environment with alive_worker's library in {env}",
            "Run make install (as root) with this server's PG_CONFIG.",
        )
        return
    unreadable = unreadable_by_others(env)
    if unreadable:
        doctor.add(
            "environment",
            Status.CRITICAL,
            f"{unreadable} cannot be read by the server's OS user",
            f"chmod -R a+rX {env}  (make install does it)",
        )
        return
    doctor.add("environment", Status.OK, f"{env}: Python and {natives[0].name}, readable by every user")


def unreadable_by_others(root: Path) -> Path | None:
    """The first file or directory under root that other users cannot read (or enter)."""
    for directory, subdirectories, files in os.walk(root):
        for name in [*subdirectories, *files]:
            path = Path(directory) / name
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode):
                continue
            needed = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
            if mode & needed != needed:
                return path
    return None
