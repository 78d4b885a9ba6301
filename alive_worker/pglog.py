"""Python's logging, routed to the PostgreSQL server log through ereport."""

from __future__ import annotations

import logging
import sys

from alive_worker._native import lib

LOGGER_NAME = "alive_worker"

# Names the hook in what its threads log (set when the hook is loaded).
hook_context = ""


def server_level(levelno: int) -> int:
    """The bridge's level for a Python level: DEBUG1, LOG or WARNING."""
    if levelno < logging.INFO:
        return int(lib.AW_LOG_DEBUG)
    if levelno < logging.WARNING:
        return int(lib.AW_LOG_LOG)
    # ERROR and CRITICAL too: a PostgreSQL ERROR would abort the tick.
    return int(lib.AW_LOG_WARNING)


class ServerLogHandler(logging.Handler):
    """Writes each record to the server log at the matching level."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
        except Exception:
            self.handleError(record)
            return
        if lib.aw_log(server_level(record.levelno), message.encode(errors="replace")) != lib.AW_OK:
            # Refused: a hook's thread may not call into PostgreSQL.  The
            # worker's standard error goes to the server log too.
            sys.stderr.write(f"alive_worker, thread {record.threadName}{hook_context}: {message}\n")


def install() -> None:
    """Sends every logger's records (hooks' included) to the server log."""
    root = logging.getLogger()
    if not any(isinstance(handler, ServerLogHandler) for handler in root.handlers):
        root.handlers[:] = [ServerLogHandler()]
    logging.captureWarnings(True)
    follow_server_level()


def follow_server_level() -> None:
    """Skips formatting DEBUG records the server would not log (log_min_messages)."""
    debug_wanted = bool(lib.aw_log_enabled(lib.AW_LOG_DEBUG))
    logging.getLogger().setLevel(logging.DEBUG if debug_wanted else logging.INFO)
