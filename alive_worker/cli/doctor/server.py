"""The server and the library: who is connected, preloading, the settings, the worker's role, the extension."""

from __future__ import annotations

from psycopg import sql

from alive_worker.cli._common import CliError, Status, installed_extension, shown_sql, version_key
from alive_worker.cli.doctor._doctor import SERVER_FACTS, WORKER_ROLE, Check, Doctor

# The set-up README's quick start and docs/SECURITY.md recommend.
LEAST_PRIVILEGE_FIX = (
    "Run it as a role of its own that may only write heartbeats: CREATE ROLE alive LOGIN; "
    "CREATE TABLE public.log_table (pk serial PRIMARY KEY, message text, "
    "ts timestamp without time zone DEFAULT now()); GRANT INSERT ON public.log_table TO alive; "
    "GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO alive; (with alive_worker.retention, also "
    "GRANT SELECT, DELETE ON public.log_table TO alive;) ALTER SYSTEM SET alive_worker.role = 'alive'; "
    "then restart the server."
)

# alive_worker.databases is defined only when the postmaster loaded the library.
LIBRARY_LOADED = (
    "SELECT pg_catalog.count(*) AS n FROM pg_catalog.pg_settings WHERE name = 'alive_worker.databases'"
)
# Visible to superusers and pg_read_all_settings; the value waiting for a
# restart only in the files, to superusers.
PRELOAD_SETTING = (
    "SELECT setting, pending_restart FROM pg_catalog.pg_settings WHERE name = 'shared_preload_libraries'"
)
PRELOAD_IN_FILES = """
SELECT setting FROM pg_catalog.pg_file_settings WHERE name = 'shared_preload_libraries'
ORDER BY seqno DESC LIMIT 1
"""
OUR_SETTINGS = (
    "SELECT name, setting, unit, pending_restart FROM pg_catalog.pg_settings WHERE name LIKE 'alive_worker.%'"
)
REFUSED_IN_FILES = """
SELECT sourcefile, sourceline, name, setting, error FROM pg_catalog.pg_file_settings
WHERE name LIKE 'alive_worker.%' AND error IS NOT NULL
"""
OUR_EXTENSION = """
SELECT default_version, installed_version FROM pg_catalog.pg_available_extensions WHERE name = 'alive_worker'
"""


def check_server(doctor: Doctor) -> None:
    doctor.server = server = doctor.one(SERVER_FACTS)
    role = "standby" if server["in_recovery"] else "primary"
    text = f"PostgreSQL {server['version']}, {role}; connected as {server['user']}"
    if server["superuser"]:
        doctor.add("server", Status.OK, text + " (superuser)")
    elif server["monitor"]:
        doctor.add("server", Status.OK, text + " (pg_monitor: the superuser-only checks are skipped)")
    else:
        doctor.add(
            "server",
            Status.WARNING,
            text + ", without pg_monitor: most checks cannot see enough",
            "Run as a superuser, or "
            + shown_sql(doctor.conn, "GRANT pg_monitor TO {};", sql.Identifier(server["user"])),
        )
    if server["num"] < 150000:
        doctor.add("server version", Status.WARNING, "alive_worker is tested on PostgreSQL 15, 16, 17 and 18")


def check_preloaded(doctor: Doctor) -> bool:
    if doctor.one(LIBRARY_LOADED)["n"]:
        doctor.add("preloaded", Status.OK, "alive_worker is loaded by shared_preload_libraries")
        return True
    row = doctor.conn.execute(PRELOAD_SETTING).fetchone()
    configured = None
    if doctor.server["superuser"]:
        configured = doctor.conn.execute(PRELOAD_IN_FILES).fetchone()
    if (
        row is not None
        and row["pending_restart"]
        and (configured is None or "alive_worker" in configured["setting"])
    ):
        doctor.add(
            "preloaded",
            Status.CRITICAL,
            "alive_worker is in shared_preload_libraries, but the server has not been restarted since",
            "Restart the server.",
        )
    else:
        doctor.add(
            "preloaded",
            Status.CRITICAL,
            "alive_worker is not loaded by shared_preload_libraries: no worker runs",
            "Add alive_worker to shared_preload_libraries in postgresql.conf (keep what is there) "
            "and restart the server.",
        )
    return False


def check_settings(doctor: Doctor) -> None:
    settings = {row["name"]: row for row in doctor.conn.execute(OUR_SETTINGS).fetchall()}
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
    if doctor.server["superuser"]:
        seen_files = True
        for row in doctor.conn.execute(REFUSED_IN_FILES).fetchall():
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
    doctor.checks.extend(problems)
    if not problems:
        interval = settings.get("alive_worker.interval", {})
        shown = f"interval {interval.get('setting')}{interval.get('unit') or ''}" if interval else ""
        note = "" if seen_files else " (the configuration files themselves need a superuser to check)"
        doctor.add("settings", Status.OK, f"alive_worker.* settings valid: {shown}{note}")


def check_role(doctor: Doctor) -> None:
    """Warns when the worker runs as a superuser: docs/SECURITY.md's least-privilege set-up instead."""
    role = doctor.one(WORKER_ROLE)["role"]
    row = doctor.conn.execute(
        "SELECT rolsuper AS superuser FROM pg_catalog.pg_roles WHERE rolname = %s", [role]
    ).fetchone()
    if row is None:
        doctor.add(
            "role",
            Status.CRITICAL,
            f"alive_worker.role names role {role}, which does not exist",
            shown_sql(doctor.conn, "CREATE ROLE {} LOGIN;", sql.Identifier(role))
            + " then grant it INSERT on the heartbeat table (docs/SECURITY.md, least privilege).",
        )
    elif row["superuser"]:
        doctor.add(
            "role",
            Status.WARNING,
            f"the worker runs as superuser {role}: its hook's SQL, and any mistake in it, has every right",
            LEAST_PRIVILEGE_FIX,
        )
    else:
        doctor.add("role", Status.OK, f"the worker runs as {role}, not a superuser")


def check_extension(doctor: Doctor) -> None:
    row = doctor.conn.execute(OUR_EXTENSION).fetchone()
    dbname = doctor.conn.info.dbname
    if row is None:
        doctor.add(
            "extension",
            Status.CRITICAL,
            "the alive_worker extension is not installed on the server",
            "Install alive_worker into this server's tree: make install PG_CONFIG=<its pg_config>.",
        )
        return
    doctor.extension = row["installed_version"]
    if doctor.extension is None:
        doctor.add(
            "extension",
            Status.WARNING,
            f"the extension is not created in database {dbname}: no status view, no lag()",
            "CREATE EXTENSION alive_worker;  (as a superuser, in any one database)",
        )
        return
    try:
        trusted = installed_extension(doctor.conn)
    except CliError as error:
        doctor.extension = None
        doctor.add("extension", Status.CRITICAL, error.message, error.hint)
        return
    doctor.schema = trusted.schema if trusted is not None else None
    if version_key(doctor.extension) < version_key(row["default_version"]):
        doctor.add(
            "extension",
            Status.WARNING,
            f"alive_worker {doctor.extension} in database {dbname}; {row['default_version']} is installed",
            "ALTER EXTENSION alive_worker UPDATE;",
        )
    else:
        doctor.add("extension", Status.OK, f"alive_worker {doctor.extension} in database {dbname}")
