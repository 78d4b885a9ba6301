"""alive-worker doctor: checks an installation end to end and says how to fix what is wrong.

Each check is OK, WARNING or CRITICAL (or SKIPPED, when the role or the place
it runs from cannot see enough), with the fix beside what fails.  It asks the
server itself wherever it can: the worker's state says whether Python ran,
the catalogs whether the table and the privileges are right.  Checks that
need a superuser (the configuration files, the server log, the server's
directories) say so instead of guessing.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import psycopg

from alive_worker.cli._common import (
    CliError,
    Connection,
    Status,
    Style,
    ago,
    connect,
    print_json,
    quote_ident,
    seconds_text,
    version_key,
    where,
)
from alive_worker.cli.status import STATE_STATUS

LOG_TAIL_BYTES = 256 * 1024
RECENT_ERRORS = timedelta(hours=1)
SHOWN_LOG_LINES = 3
STALE_INTERVALS = 3
LOG_PROBLEM = re.compile(r"\b(ERROR|FATAL|PANIC|WARNING):  ")
PYTHON_FAILURE = re.compile(r"alive_worker could not (load its Python library|start Python)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check an alive_worker installation end to end: the library preloaded, the settings, the "
        "extension, each worker, its table and privileges, the server's Python environment, recent "
        "errors and replication.  Exits 0 if all is well, 1 on warnings, 2 on failures, 3 if the "
        "server cannot be reached.  Run it as a superuser for every check."
    )


# The set-up README's quick start and docs/SECURITY.md recommend.
LEAST_PRIVILEGE_FIX = (
    "Run it as a role of its own that may only write heartbeats: CREATE ROLE alive LOGIN; "
    "CREATE TABLE public.log_table (pk serial PRIMARY KEY, message text, "
    "ts timestamp without time zone DEFAULT now()); GRANT INSERT ON public.log_table TO alive; "
    "GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO alive; (with alive_worker.retention, also "
    "GRANT SELECT, DELETE ON public.log_table TO alive;) ALTER SYSTEM SET alive_worker.role = 'alive'; "
    "then restart the server."
)


@dataclass
class Check:
    name: str
    status: Status  # UNKNOWN: skipped
    text: str
    fix: str | None = None


class Doctor:
    def __init__(self, dsn: str, conn: Connection) -> None:
        self.dsn = dsn
        self.conn = conn
        self.checks: list[Check] = []
        self.server: dict[str, Any] = {}
        self.workers: list[dict[str, Any]] = []
        self.extension: str | None = None
        self.worker_pids: list[int] = []

    def add(self, name: str, status: Status, text: str, fix: str | None = None) -> None:
        self.checks.append(Check(name, status, text, fix))

    def one(self, query: str, params: Any = None) -> dict[str, Any]:
        row = self.conn.execute(query, params).fetchone()
        assert row is not None
        return row

    def run(self) -> None:
        self.check_server()
        if not self.check_preloaded():
            self.check_extension()
            return
        self.check_settings()
        self.check_role()
        self.check_extension()
        self.check_workers()
        self.check_python()
        self.check_errors()
        self.check_replication()

    # ---- the server and the library ----

    def check_server(self) -> None:
        self.server = self.one(
            "SELECT split_part(current_setting('server_version'), ' ', 1) AS version, current_setting('server_version_num')::int AS num,"
            " pg_is_in_recovery() AS in_recovery, current_user AS user,"
            " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,"
            " pg_has_role(current_user, 'pg_monitor', 'USAGE') AS monitor,"
            " pg_has_role(current_user, 'pg_read_all_settings', 'USAGE') AS read_settings,"
            " clock_timestamp() AS now"
        )
        role = "standby" if self.server["in_recovery"] else "primary"
        text = f"PostgreSQL {self.server['version']}, {role}; connected as {self.server['user']}"
        if self.server["superuser"]:
            self.add("server", Status.OK, text + " (superuser)")
        elif self.server["monitor"]:
            self.add("server", Status.OK, text + " (pg_monitor: the superuser-only checks are skipped)")
        else:
            self.add(
                "server",
                Status.WARNING,
                text + ", without pg_monitor: most checks cannot see enough",
                f"Run as a superuser, or GRANT pg_monitor TO {quote_ident(self.server['user'])};",
            )
        if self.server["num"] < 150000:
            self.add(
                "server version", Status.WARNING, "alive_worker is tested on PostgreSQL 15, 16, 17 and 18"
            )

    def check_preloaded(self) -> bool:
        # alive_worker.databases is defined only when the postmaster loaded the library.
        if self.one("SELECT count(*) AS n FROM pg_settings WHERE name = 'alive_worker.databases'")["n"]:
            self.add("preloaded", Status.OK, "alive_worker is loaded by shared_preload_libraries")
            return True
        # Visible to superusers and pg_read_all_settings; the value waiting
        # for a restart only in the files, to superusers.
        row = self.conn.execute(
            "SELECT setting, pending_restart FROM pg_settings WHERE name = 'shared_preload_libraries'"
        ).fetchone()
        configured = None
        if self.server["superuser"]:
            configured = self.conn.execute(
                "SELECT setting FROM pg_file_settings WHERE name = 'shared_preload_libraries'"
                " ORDER BY seqno DESC LIMIT 1"
            ).fetchone()
        if (
            row is not None
            and row["pending_restart"]
            and (configured is None or "alive_worker" in configured["setting"])
        ):
            self.add(
                "preloaded",
                Status.CRITICAL,
                "alive_worker is in shared_preload_libraries, but the server has not been restarted since",
                "Restart the server.",
            )
        else:
            self.add(
                "preloaded",
                Status.CRITICAL,
                "alive_worker is not loaded by shared_preload_libraries: no worker runs",
                "Add alive_worker to shared_preload_libraries in postgresql.conf (keep what is there) "
                "and restart the server.",
            )
        return False

    def check_settings(self) -> None:
        settings = {
            row["name"]: row
            for row in self.conn.execute(
                "SELECT name, setting, unit, pending_restart FROM pg_settings WHERE name LIKE 'alive_worker.%'"
            ).fetchall()
        }
        problems: list[Check] = []
        for name, row in sorted(settings.items()):
            if row["pending_restart"]:
                problems.append(
                    Check(
                        "settings",
                        Status.WARNING,
                        f"{name} was changed, but takes effect only at the next server start",
                        "Restart the server when convenient.",
                    )
                )
        seen_files = False
        if self.server["superuser"]:
            seen_files = True
            for row in self.conn.execute(
                "SELECT sourcefile, sourceline, name, setting, error FROM pg_file_settings"
                " WHERE name LIKE 'alive_worker.%' AND error IS NOT NULL"
            ).fetchall():
                if settings.get(row["name"], {}).get("pending_restart"):
                    continue  # a server-start setting, waiting for the restart: said above
                problems.append(
                    Check(
                        "settings",
                        Status.CRITICAL,
                        f"{row['name']} = '{row['setting']}' in {row['sourcefile']} line {row['sourceline']} "
                        f"is refused ({row['error']}); the previous value stays in force",
                        "Correct it (the server log says what is allowed), then SELECT pg_reload_conf();",
                    )
                )
        self.checks.extend(problems)
        if not problems:
            interval = settings.get("alive_worker.interval", {})
            shown = f"interval {interval.get('setting')}{interval.get('unit') or ''}" if interval else ""
            note = "" if seen_files else " (the configuration files themselves need a superuser to check)"
            self.add("settings", Status.OK, f"alive_worker.* settings valid: {shown}{note}")

    def check_role(self) -> None:
        """Warns when the worker runs as a superuser: docs/SECURITY.md's least-privilege set-up instead."""
        role = self.one(
            "SELECT coalesce(nullif(current_setting('alive_worker.role', true), ''),"
            " (SELECT rolname FROM pg_roles WHERE oid = 10)) AS role"
        )["role"]
        row = self.conn.execute(
            "SELECT rolsuper AS superuser FROM pg_roles WHERE rolname = %s", [role]
        ).fetchone()
        if row is None:
            self.add(
                "role",
                Status.CRITICAL,
                f"alive_worker.role names role {role}, which does not exist",
                f"CREATE ROLE {quote_ident(role)} LOGIN; then grant it INSERT on the heartbeat table "
                "(docs/SECURITY.md, least privilege).",
            )
        elif row["superuser"]:
            self.add(
                "role",
                Status.WARNING,
                f"the worker runs as superuser {role}: its hook's SQL, and any mistake in it, has every right",
                LEAST_PRIVILEGE_FIX,
            )
        else:
            self.add("role", Status.OK, f"the worker runs as {role}, not a superuser")

    def check_extension(self) -> None:
        row = self.conn.execute(
            "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'alive_worker'"
        ).fetchone()
        dbname = self.conn.info.dbname
        if row is None:
            self.add(
                "extension",
                Status.CRITICAL,
                "the alive_worker extension is not installed on the server",
                "Install alive_worker into this server's tree: make install PG_CONFIG=<its pg_config>.",
            )
            return
        self.extension = row["installed_version"]
        if self.extension is None:
            self.add(
                "extension",
                Status.WARNING,
                f"the extension is not created in database {dbname}: no status view, no lag()",
                "CREATE EXTENSION alive_worker;  (as a superuser, in any one database)",
            )
        elif version_key(self.extension) < version_key(row["default_version"]):
            self.add(
                "extension",
                Status.WARNING,
                f"alive_worker {self.extension} in database {dbname}; {row['default_version']} is installed",
                "ALTER EXTENSION alive_worker UPDATE;",
            )
        else:
            self.add("extension", Status.OK, f"alive_worker {self.extension} in database {dbname}")

    # ---- the workers and their tables ----

    def check_workers(self) -> None:
        if self.extension is None:
            self.check_workers_without_extension()
            return
        try:
            self.workers = self.conn.execute(
                "SELECT * FROM alive_worker.workers ORDER BY database"
            ).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            self.add(
                "workers",
                Status.UNKNOWN,
                "cannot read alive_worker.workers",
                f"GRANT pg_monitor TO {quote_ident(self.server['user'])};",
            )
            return
        self.worker_pids = [worker["pid"] for worker in self.workers if worker["pid"]]
        for worker in self.workers:
            self.check_worker(worker)
            self.check_table(worker["database"], worker["role"], worker["target_table"])
            self.check_retention(worker)

    def check_retention(self, worker: dict[str, Any]) -> None:
        """alive_worker.retention that the worker found it cannot apply (extension 1.2 and later)."""
        problem = worker.get("retention_error")
        if problem is None:
            return
        self.add(
            f"retention {worker['database']}",
            Status.WARNING,
            f"old heartbeats are not deleted from {worker['target_table']}: {problem}",
            f"Let role {quote_ident(worker['role'])} DELETE from {worker['target_table']} (and give it a serial pk), "
            "then SELECT pg_reload_conf(); or set alive_worker.retention to 0.",
        )

    def check_workers_without_extension(self) -> None:
        databases = self.one(
            "SELECT coalesce(nullif(current_setting('alive_worker.databases'), ''),"
            " current_setting('alive_worker.database')) AS names"
        )["names"]
        activity = self.conn.execute(
            "SELECT datname, pid FROM pg_stat_activity WHERE backend_type = 'alive worker'"
        ).fetchall()
        running = {row["datname"] for row in activity}
        self.worker_pids = [row["pid"] for row in activity]
        for database in [name.strip().strip('"') for name in databases.split(",")]:
            if self.server["in_recovery"]:
                self.add(
                    f"worker {database}",
                    Status.OK,
                    "standby: the worker waits, and writes once this server is promoted",
                )
            elif database in running:
                self.add(
                    f"worker {database}", Status.OK, "running (CREATE EXTENSION alive_worker for details)"
                )
            else:
                self.add(
                    f"worker {database}",
                    Status.CRITICAL,
                    "not running",
                    "CREATE EXTENSION alive_worker; then alive-worker status shows why; the server log too.",
                )
            self.check_table(database, None, None)

    def check_worker(self, worker: dict[str, Any]) -> None:
        name = f"worker {worker['database']}"
        state = worker["state"]
        status = STATE_STATUS.get(state, Status.WARNING)
        now = self.server["now"]
        if state in ("sleeping", "ticking", "in the hook"):
            text = f"{state}, pid {worker['pid']}, {worker['ticks_ok']} heartbeats, last {ago(worker['last_ok_at'], now)}"
            interval = worker["tick_interval"]
            last_ok = worker["last_ok_at"]
            if last_ok is not None and now - last_ok > STALE_INTERVALS * interval:
                self.add(
                    name,
                    Status.CRITICAL,
                    f"{text}: none for {STALE_INTERVALS} intervals",
                    "See the server log for what holds the worker up.",
                )
            else:
                self.add(name, Status.OK, text)
            return
        if state == "waiting for recovery to end":
            self.add(name, Status.OK, "standby: the worker waits, and writes once this server is promoted")
            return
        if state == "failing":
            error = f"{worker['last_error_sqlstate']} {worker['last_error_message']}"
            self.add(
                name,
                status,
                f"failing since {ago(worker['last_error_at'], now)}: {error}",
                failing_fix(worker),
            )
            return
        if state == "disabled by crash guard":
            self.add(
                name,
                status,
                "disabled by its crash guard after repeated crashes",
                "Find the crash in the server log and fix it; then restart the server, or raise "
                "alive_worker.crash_limit and SELECT pg_reload_conf();",
            )
            return
        if state == "stopped":
            self.add(
                name,
                status,
                worker.get("state_detail") or "stopped by alive_worker.stop() or SIGTERM",
                f"SELECT alive_worker.start({literal(worker['database'])});",
            )
            return
        cause = f": {worker['state_detail']}" if worker.get("state_detail") else ": not running"
        self.add(name, status, f"{state}{cause}", self.cannot_start_fix(worker))

    def cannot_start_fix(self, worker: dict[str, Any]) -> str:
        database = worker["database"]
        if self.one("SELECT count(*) AS n FROM pg_database WHERE datname = %s", [database])["n"] == 0:
            return (
                f"Database {database} does not exist: CREATE DATABASE {quote_ident(database)}; "
                "or remove it from alive_worker.databases and restart."
            )
        role = worker["role"]
        if role != "(bootstrap superuser)":
            row = self.conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", [role]).fetchone()
            if row is None:
                return f"Role {role} does not exist: CREATE ROLE {quote_ident(role)} LOGIN;"
            if not row["rolcanlogin"]:
                return f"Role {role} may not log in: ALTER ROLE {quote_ident(role)} LOGIN;"
        return (
            "It cannot connect or start: see its FATAL lines in the server log (is there a free "
            "max_worker_processes slot? can the server's OS user read the Python environment?)."
        )

    def check_table(self, database: str, role: str | None, target_table: str | None) -> None:
        name = f"table {database}"
        try:
            conn = self.conn if database == self.conn.info.dbname else connect(self.dsn, database)
        except CliError as error:
            self.add(name, Status.UNKNOWN, f"cannot connect to database {database}: {error.message}")
            return
        try:
            self.inspect_table(conn, name, role, target_table)
        finally:
            if conn is not self.conn:
                conn.close()

    def inspect_table(self, conn: Connection, name: str, role: str | None, target_table: str | None) -> None:
        settings = conn.execute(
            "SELECT coalesce(nullif(current_setting('alive_worker.schema', true), ''), 'public') AS schema,"
            " coalesce(nullif(current_setting('alive_worker.table', true), ''), 'log_table') AS table,"
            " coalesce(nullif(current_setting('alive_worker.role', true), ''),"
            "          (SELECT rolname FROM pg_roles WHERE oid = 10)) AS role"
        ).fetchone()
        assert settings is not None
        schema, table = settings["schema"], settings["table"]
        role = settings["role"] if role in (None, "(bootstrap superuser)") else role
        qualified = target_table or f"{quote_ident(schema)}.{quote_ident(table)}"
        row = conn.execute(
            "SELECT c.oid, c.relkind, pg_get_userbyid(c.relowner) AS owner,"
            " (SELECT rolsuper FROM pg_roles WHERE oid = c.relowner) AS owner_is_superuser,"
            " (SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = c.oid AND attname = 'message'"
            "  AND attnum > 0 AND NOT attisdropped) AS message,"
            " (SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = c.oid AND attname = 'ts'"
            "  AND attnum > 0 AND NOT attisdropped) AS ts,"
            " (SELECT true FROM pg_attribute WHERE attrelid = c.oid AND attname = 'pk'"
            "  AND attnum > 0 AND NOT attisdropped) AS pk,"
            " has_table_privilege(%(role)s, c.oid, 'INSERT') AS may_insert,"
            " (SELECT string_agg(format('%%s.%%I', s.relnamespace::regnamespace, s.relname), ', ') FROM pg_depend d"
            "  JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'"
            "  WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass"
            "  AND d.refobjid = c.oid AND d.deptype IN ('a', 'i')"
            # CASE: the planner may test rows of other kinds before relkind.
            "  AND CASE WHEN s.relkind = 'S' THEN NOT has_sequence_privilege(%(role)s, s.oid, 'USAGE') END)"
            " AS sequences_denied"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %(schema)s AND c.relname = %(table)s",
            {"role": role, "schema": schema, "table": table},
        ).fetchone()
        if row is None:
            may_create = conn.execute(
                "SELECT CASE WHEN EXISTS (SELECT FROM pg_namespace WHERE nspname = %(schema)s)"
                " THEN has_schema_privilege(%(role)s, %(schema)s, 'CREATE')"
                " ELSE has_database_privilege(%(role)s, current_database(), 'CREATE') END AS ok",
                {"role": role, "schema": schema},
            ).fetchone()
            if may_create is not None and may_create["ok"] and not self.server["in_recovery"]:
                self.add(name, Status.WARNING, f"{qualified} does not exist yet; role {role} will create it")
            else:
                self.add(
                    name,
                    Status.CRITICAL,
                    f"{qualified} does not exist, and role {role} may not create it",
                    f"CREATE TABLE {qualified} (pk serial PRIMARY KEY, message text, "
                    f"ts timestamp without time zone DEFAULT now()); GRANT INSERT ON {qualified} TO "
                    f"{quote_ident(role)}; and USAGE on its sequence.",
                )
            return
        if row["relkind"] not in ("r", "p"):
            self.add(
                name,
                Status.CRITICAL,
                f"{qualified} is not a table (relkind {row['relkind']}, owner {row['owner']}): the worker refuses it",
                f"Drop it, or set alive_worker.schema and alive_worker.table to a table of role {role}'s.",
            )
            return
        if row["owner"] != role and not row["owner_is_superuser"]:
            self.add(
                f"{name} owner",
                Status.WARNING,
                f"{qualified} belongs to role {row['owner']}, neither the worker's role nor a superuser: "
                "its triggers and defaults run as that role, which can change or delete the heartbeats",
                f"ALTER TABLE {qualified} OWNER TO {quote_ident(role)};  (as a superuser)",
            )
        if row["message"] is None:
            self.add(
                name,
                Status.CRITICAL,
                f"{qualified} has no column message",
                f"ALTER TABLE {qualified} ADD COLUMN message text;",
            )
            return
        if not row["may_insert"]:
            self.add(
                name,
                Status.CRITICAL,
                f"role {role} may not insert into {qualified}",
                f"GRANT INSERT ON {qualified} TO {quote_ident(role)};",
            )
            return
        if row["sequences_denied"]:
            self.add(
                name,
                Status.CRITICAL,
                f"role {role} may not use sequence {row['sequences_denied']}",
                f"GRANT USAGE ON SEQUENCE {row['sequences_denied']} TO {quote_ident(role)};",
            )
            return
        shape = f"{qualified} (message {row['message']}, ts {row['ts'] or 'missing'}{', pk' if row['pk'] else ''})"
        if row["ts"] is None or not row["ts"].startswith("timestamp"):
            self.add(
                name,
                Status.WARNING,
                f"{shape}: lag() and tail need a ts timestamp column",
                f"ALTER TABLE {qualified} ADD COLUMN ts timestamp without time zone DEFAULT now();",
            )
        elif not row["pk"]:
            self.add(
                name,
                Status.WARNING,
                f"{shape}: without pk, retention cannot delete old rows",
                f"ALTER TABLE {qualified} ADD COLUMN pk serial PRIMARY KEY;",
            )
        else:
            self.add(name, Status.OK, f"{shape}; role {role} may insert")

    # ---- Python, errors, replication ----

    def check_python(self) -> None:
        ticked = sum(worker["ticks_ok"] + worker["ticks_failed"] for worker in self.workers)
        if ticked:
            self.add(
                "python",
                Status.OK,
                f"the workers ran their Python ticks {ticked} times since the server started",
            )
        elif self.server["in_recovery"]:
            self.add("python", Status.UNKNOWN, "standby: no worker runs here, so Python is not started")
        failures = [line for line in self.log_lines() or [] if PYTHON_FAILURE.search(line)]
        if failures:
            self.add(
                "python",
                Status.CRITICAL,
                failures[-1].strip(),
                "The server's OS user must read the virtual environment: run make install again "
                "(with the same PYTHON_ENV, if one was given).",
            )
        self.check_environment()

    def check_environment(self) -> None:
        """The server's virtual environment, when it is on this machine and a superuser can say where."""
        if not self.server["superuser"]:
            self.add(
                "environment", Status.UNKNOWN, "where the server's Python environment is needs a superuser"
            )
            return
        pkglibdir = self.one("SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'")["setting"]
        env = Path(pkglibdir) / "alive_worker"
        if not Path(pkglibdir).is_dir():
            self.add(
                "environment", Status.UNKNOWN, f"{pkglibdir} is not on this machine: run doctor on the server"
            )
            return
        natives = list(env.glob("lib/python*/site-packages/alive_worker/_native*.so"))
        if not (env / "bin" / "python3").exists() or not natives:
            self.add(
                "environment",
                Status.CRITICAL,
                f"no Python environment with alive_worker's library in {env}",
                "Run make install (as root) with this server's PG_CONFIG.",
            )
            return
        unreadable = unreadable_by_others(env)
        if unreadable:
            self.add(
                "environment",
                Status.CRITICAL,
                f"{unreadable} cannot be read by the server's OS user",
                f"chmod -R a+rX {env}  (make install does it)",
            )
            return
        self.add("environment", Status.OK, f"{env}: Python and {natives[0].name}, readable by every user")

    def log_lines(self) -> list[str] | None:
        """The end of the current server log, if a superuser may read it from SQL (logging_collector)."""
        if not self.server["superuser"]:
            return None
        path = self.one("SELECT pg_current_logfile() AS path")["path"]
        if path is None:
            return None
        size = self.one("SELECT size FROM pg_stat_file(%s)", [path])["size"]
        offset = max(0, size - LOG_TAIL_BYTES)
        text = self.one("SELECT pg_read_file(%s, %s, %s) AS text", [path, offset, LOG_TAIL_BYTES])["text"]
        return [str(line) for line in text.splitlines()]

    def check_errors(self) -> None:
        now = self.server["now"]
        recent = [
            worker
            for worker in self.workers
            if worker["state"] != "failing"
            and worker["last_error_at"] is not None
            and now - worker["last_error_at"] < RECENT_ERRORS
        ]
        for worker in recent:
            self.add(
                f"errors {worker['database']}",
                Status.WARNING,
                f"a tick failed {ago(worker['last_error_at'], now)}: "
                f"{worker['last_error_sqlstate']} {worker['last_error_message']}",
                "See the server log for its HINT; heartbeats go on meanwhile.",
            )
        log = self.log_lines()
        # The worker's own errors need not name alive_worker: find them by its pid too.
        pids = [re.escape(f"[{pid}]") for pid in self.worker_pids]
        ours = re.compile("|".join(["alive_worker", *pids]))
        logged = [line for line in log or [] if LOG_PROBLEM.search(line) and ours.search(line)]
        if logged:
            shown = "\n".join(line.strip() for line in logged[-SHOWN_LOG_LINES:])
            self.add(
                "server log",
                Status.WARNING,
                f"{len(logged)} alive_worker warnings or errors near the end of the server log, the last:\n{shown}",
            )
        elif not recent:
            where_seen = "the status view" + (" and the server log" if log is not None else "")
            self.add("errors", Status.OK, f"no recent errors in {where_seen}")

    def check_replication(self) -> None:
        if self.server["in_recovery"]:
            self.check_standby()
            return
        standbys = self.conn.execute(
            "SELECT application_name, state, replay_lag FROM pg_stat_replication ORDER BY application_name"
        ).fetchall()
        if standbys:
            listed = ", ".join(
                f"{s['application_name']} {s['state']} (replay lag {seconds_text(s['replay_lag'].total_seconds()) if s['replay_lag'] else '-'})"
                for s in standbys
            )
            self.add("replication", Status.OK, f"{len(standbys)} standby(s): {listed}")
        else:
            self.add("replication", Status.OK, "no standby streams from this server")
        for slot in self.conn.execute(
            "SELECT slot_name, slot_type, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) AS retained"
            " FROM pg_replication_slots WHERE NOT active AND restart_lsn IS NOT NULL ORDER BY slot_name"
        ).fetchall():
            retained = int(slot["retained"] or 0)
            self.add(
                f"slot {slot['slot_name']}",
                Status.WARNING,
                f"{slot['slot_type']} slot {slot['slot_name']} is inactive and holds {retained // 1024} kB of WAL",
                f"Reconnect its client, or SELECT pg_drop_replication_slot({literal(slot['slot_name'])});",
            )

    def check_standby(self) -> None:
        if self.extension is None or version_key(self.extension) < (1, 1):
            self.add("replication", Status.UNKNOWN, "lag() needs the extension at version 1.1")
            return
        try:
            reading = self.one("SELECT * FROM alive_worker.lag()")
        except psycopg.Error as error:
            self.add("replication", Status.WARNING, f"cannot measure the lag: {error.diag.message_primary}")
            return
        if reading["lag"] is None:
            self.add("replication", Status.WARNING, f"no heartbeat in {reading['source_table']} yet")
            return
        text = (
            f"lag {seconds_text(reading['lag'].total_seconds())} behind system {reading['system_identifier']}"
            f" via {reading['upstream'] or 'no WAL receiver'}"
        )
        if reading["replay_paused"]:
            self.add(
                "replication", Status.WARNING, f"{text}; replay is paused", "SELECT pg_wal_replay_resume();"
            )
        elif not reading["upstream"]:
            self.add("replication", Status.WARNING, f"{text}; not streaming", "Check primary_conninfo.")
        else:
            self.add("replication", Status.OK, text)


def failing_fix(worker: dict[str, Any]) -> str:
    sqlstate = worker["last_error_sqlstate"]
    if sqlstate == "42501":
        return "Grant what the error names (the server log's HINT has the GRANT); heartbeats resume by themselves."
    if sqlstate == "57014":
        return "Ticks are cancelled by alive_worker.tick_timeout: find what locks or slows the table."
    return "See the server log for the error's HINT and CONTEXT."


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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


def run(args: argparse.Namespace, out: TextIO, style: Style) -> Status:
    with connect(args.dsn) as conn:
        doctor = Doctor(args.dsn, conn)
        place = where(conn)
        stopped: str | None = None
        try:
            doctor.run()
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
