"""The worker's log records, written to the PostgreSQL server log through ereport.

The worker's modules log through getLogger() below, named and called as
Python's logging is, but the worker never imports logging: with threading,
traceback, string and re it cost a worker 2 MB, and it came in with the
first record (a worker that created its table said so and kept the 2 MB:
issue 25's memory per database).  A record is formatted as logging's
default format would ("message % args") and handed to the bridge at the
matching level; DEBUG records are dropped before formatting when the server
would not log them.  Hooks run in the hook host, which sets up its own
logging (_host.py).  Python's warnings go to the worker's standard error,
which is the server log too.
"""

from __future__ import annotations

import sys

from alive_worker._native import lib

# logging's own level numbers, documented as part of its interface.
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40

# Names the hook in what its threads log (set when the hook is loaded).
hook_context = ""


def server_level(levelno: int) -> int:
    """The bridge's level for a Python level: DEBUG1, LOG or WARNING."""
    if levelno < INFO:
        return int(lib.AW_LOG_DEBUG)
    if levelno < WARNING:
        return int(lib.AW_LOG_LOG)
    # ERROR and CRITICAL too: a PostgreSQL ERROR would abort the tick.
    return int(lib.AW_LOG_WARNING)


def debug_enabled() -> bool:
    """Whether the server logs DEBUG1 (log_min_messages): asked without importing logging."""
    return bool(lib.aw_log_enabled(lib.AW_LOG_DEBUG))


def write(levelno: int, message: str, args: tuple[object, ...]) -> None:
    """One record to the server log, as logging's default format would make it."""
    text = message % args if args else message
    if lib.aw_log(server_level(levelno), text.encode(errors="replace")) != lib.AW_OK:
        # Refused: not from the worker's main thread.  Its standard error goes to the server log too.
        sys.stderr.write(f"alive_worker{hook_context}: {text}\n")


class Logger:
    """A logger by name, as logging's, writing to the server log (module docstring)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def debug(self, message: str, *args: object) -> None:
        # The usual case: the server does not log DEBUG1, and nothing is formatted.
        if debug_enabled():
            write(DEBUG, message, args)

    def info(self, message: str, *args: object) -> None:
        write(INFO, message, args)

    def warning(self, message: str, *args: object) -> None:
        write(WARNING, message, args)

    def error(self, message: str, *args: object) -> None:
        write(ERROR, message, args)


def getLogger(name: str) -> Logger:
    """The worker's logger of this name (named as logging's getLogger)."""
    return Logger(name)
