"""Python's logging, routed to the PostgreSQL server log through ereport.

The logging package is imported at the first record the worker writes, not
at its start: with threading, traceback, string and re it costs each worker
a megabyte and more (issue 25), and a worker whose ticks go well writes none.
The worker's modules log through getLogger() below, whose loggers import
logging and install the server's handler on their first use (DEBUG records
are dropped before that when the server would not log them).  Hooks run in
the hook host, which sets up its own logging (_host.py).  Until the first
record, Python's warnings go to the worker's standard error, which is the
server log too.
"""

from __future__ import annotations

import sys

from alive_worker._native import lib

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

LOGGER_NAME = "alive_worker"

# logging's own level numbers, documented as part of its interface.
_DEBUG, _INFO, _WARNING = 10, 20, 30

# Names the hook in what its threads log (set when the hook is loaded).
hook_context = ""

_installed = False


def server_level(levelno: int) -> int:
    """The bridge's level for a Python level: DEBUG1, LOG or WARNING."""
    if levelno < _INFO:
        return int(lib.AW_LOG_DEBUG)
    if levelno < _WARNING:
        return int(lib.AW_LOG_LOG)
    # ERROR and CRITICAL too: a PostgreSQL ERROR would abort the tick.
    return int(lib.AW_LOG_WARNING)


def debug_enabled() -> bool:
    """Whether the server logs DEBUG1 (log_min_messages): asked without importing logging."""
    return bool(lib.aw_log_enabled(lib.AW_LOG_DEBUG))


def install_now() -> None:
    """Imports logging and sends every logger's records (hooks' included) to the server log."""
    global _installed
    import logging

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

    if not _installed:
        logging.getLogger().handlers[:] = [ServerLogHandler()]
        logging.captureWarnings(True)
        _installed = True
    follow_server_level()


def follow_server_level() -> None:
    """Skips formatting DEBUG records the server would not log (log_min_messages); nothing before logging is."""
    logging = sys.modules.get("logging")
    if logging is None or not _installed:
        return
    logging.getLogger().setLevel(_DEBUG if debug_enabled() else _INFO)


class Logger:
    """A logging.Logger by name, made (and logging imported) at its first record."""

    __slots__ = ("_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: logging.Logger | None = None

    def _real(self) -> logging.Logger:
        if self._logger is None:
            if not _installed:
                install_now()
            import logging

            self._logger = logging.getLogger(self.name)
        return self._logger

    def debug(self, message: str, *args: object) -> None:
        # The usual case, answered without logging: the server does not log DEBUG1.
        if self._logger is None and not debug_enabled():
            return
        self._real().debug(message, *args)

    def info(self, message: str, *args: object) -> None:
        self._real().info(message, *args)

    def warning(self, message: str, *args: object) -> None:
        self._real().warning(message, *args)

    def error(self, message: str, *args: object) -> None:
        self._real().error(message, *args)


def getLogger(name: str) -> Logger:
    """The worker's logger of this name (named as logging's getLogger)."""
    return Logger(name)
