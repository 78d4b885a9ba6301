"""What every group of checks shares: the checks found so far, the server's facts, its log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from alive_worker.cli._common import Connection, Status

LOG_TAIL_BYTES = 256 * 1024

# Who is connected, and what the role may see.
SERVER_FACTS = """
SELECT pg_catalog.split_part(pg_catalog.current_setting('server_version'), ' ', 1) AS version,
       pg_catalog.current_setting('server_version_num')::int AS num,
       pg_catalog.pg_is_in_recovery() AS in_recovery,
       current_user AS user,
       (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AS superuser,
       pg_has_role(current_user, 'pg_monitor', 'USAGE') AS monitor,
       pg_has_role(current_user, 'pg_read_all_settings', 'USAGE') AS read_settings,
       clock_timestamp() AS now
"""

# The worker's role as the worker picks it: alive_worker.role, else the bootstrap superuser.
WORKER_ROLE = """
SELECT coalesce(nullif(pg_catalog.current_setting('alive_worker.role', true), ''),
                (SELECT rolname FROM pg_catalog.pg_roles WHERE oid = 10)) AS role
"""


@dataclass
class Check:
    name: str
    status: Status  # UNKNOWN: skipped
    text: str
    fix: str | None = None


class Doctor:
    """The checks found so far, and what the groups of checks learn for each other."""

    def __init__(self, dsn: str, conn: Connection) -> None:
        self.dsn = dsn
        self.conn = conn
        self.checks: list[Check] = []
        self.server: dict[str, Any] = {}
        self.workers: list[dict[str, Any]] = []
        self.extension: str | None = None  # the version created in this database
        self.schema: str | None = None  # its schema, once found to be a superuser's alone
        self.worker_pids: list[int] = []

    def add(self, name: str, status: Status, text: str, fix: str | None = None) -> None:
        self.checks.append(Check(name, status, text, fix))

    def name(self, obj: str) -> sql.Identifier:
        """One of the extension's objects, with its schema (check_extension found it)."""
        assert self.schema is not None
        return sql.Identifier(self.schema, obj)

    def one(self, query: str | sql.Composed, params: Any = None) -> dict[str, Any]:
        row = self.conn.execute(query, params).fetchone()
        assert row is not None
        return row

    def log_lines(self) -> list[str] | None:
        """The end of the current server log, if a superuser may read it from SQL (logging_collector)."""
        if not self.server["superuser"]:
            return None
        path = self.one("SELECT pg_catalog.pg_current_logfile() AS path")["path"]
        if path is None:
            return None
        size = self.one("SELECT size FROM pg_catalog.pg_stat_file(%s)", [path])["size"]
        offset = max(0, size - LOG_TAIL_BYTES)
        text = self.one("SELECT pg_catalog.pg_read_file(%s, %s, %s) AS text", [path, offset, LOG_TAIL_BYTES])[
            "text"
        ]
        return [str(line) for line in text.splitlines()]
