"""The runners of a server without the extension, as `alive-worker status` and `metrics` read them.

What a runner publishes (alive_worker/runner/state.py): its session's
application_name (state and interval), the advisory lock it holds while it
writes, and any lock its statement waits for.  All of it is in
pg_stat_activity and pg_locks, which every role may read: the command needs
no grant for it.  The age of the last heartbeat is read from the table where
the command's role may read it (SELECT), under the safeguards below; without
SELECT, the row says the age is unknown and the status rests on the lock.

Rows have the columns of alive_worker.workers that status judges (state,
last_ok_at, tick_interval, ...); what a runner does not publish is None.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg

from alive_worker.cli._common import Connection
from alive_worker.runner import state

# How long status waits for a lock on the heartbeat table before it gives up reading it.
LOCK_TIMEOUT = "200ms"

# Every runner session of this database (by its name), with the table of the
# lock it holds, if any, and the start of any wait for a lock.
_RUNNERS = """
SELECT a.pid, a.usename AS role, a.application_name, a.backend_start AS started_at,
       a.datname AS database, lock.objid AS table_oid,
       CASE WHEN c.oid IS NOT NULL THEN pg_catalog.format('%%I.%%I', n.nspname, c.relname) END AS target_table,
       (SELECT pg_catalog.min(w.waitstart) FROM pg_catalog.pg_locks w
        WHERE w.pid = a.pid AND NOT w.granted) AS blocked_since,
       (SELECT EXISTS (SELECT FROM pg_catalog.pg_locks w WHERE w.pid = a.pid AND NOT w.granted)) AS blocked
FROM pg_catalog.pg_stat_activity a
LEFT JOIN pg_catalog.pg_locks lock
  ON lock.pid = a.pid AND lock.locktype = 'advisory' AND lock.granted
 AND lock.classid = %(lock_class)s::pg_catalog.oid AND lock.objsubid = 2
LEFT JOIN pg_catalog.pg_class c ON c.oid = lock.objid
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE a.datname = pg_catalog.current_database()
  AND a.application_name LIKE %(prefix)s
ORDER BY a.backend_start
"""

# A heartbeat table the command may read without running anyone's code: an
# ordinary or partitioned table without row level security, whose pk and ts
# are of pg_catalog's types (no domain, no type of someone's with its own
# output function or operators).
_READABLE = """
SELECT pg_catalog.has_table_privilege(c.oid, 'SELECT')
   AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity
   AND (SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'ts'
        AND NOT a.attisdropped) IN ('pg_catalog.timestamp'::pg_catalog.regtype, 'pg_catalog.timestamptz'::pg_catalog.regtype)
   AND (SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'pk'
        AND NOT a.attisdropped) IN ('pg_catalog.int4'::pg_catalog.regtype, 'pg_catalog.int8'::pg_catalog.regtype)
FROM pg_catalog.pg_class c WHERE c.oid = %s::pg_catalog.oid
"""


def read(conn: Connection) -> list[dict[str, Any]]:
    """One row per runner session of this database, shaped as alive_worker.workers' rows."""
    sessions = conn.execute(
        _RUNNERS, {"lock_class": state.LOCK_CLASS, "prefix": f"{state.APPLICATION_PREFIX}:%"}
    ).fetchall()
    rows = []
    for session in sessions:
        published = state.read_application_name(session["application_name"])
        if published is None:
            continue
        row = as_worker_row(session, published)
        if session["table_oid"] is not None:
            row["last_ok_at"], row["heartbeat_age_known"] = last_heartbeat(conn, int(session["table_oid"]))
        if not row["heartbeat_age_known"]:
            row["state_detail"] += (
                f" (heartbeat age unknown: role {conn.info.user} cannot read the table safely)"
            )
        rows.append(row)
    return rows


def as_worker_row(session: dict[str, Any], published: state.Published) -> dict[str, Any]:
    current = published.state
    since = session["started_at"]
    if session["blocked"]:
        # A blocked session cannot rename itself: the waiting lock says it.
        current = state.BLOCKED
        since = session["blocked_since"] or since
    elif published.state == state.SLEEPING and session["table_oid"] is None:
        # Writing needs the lock: a session named so without it is no runner of a table.
        current = state.FAILING
    return {
        "database": session["database"],
        "state": current,
        "state_since": since,
        "state_detail": f"alive-worker run, role {session['role']}",
        "pid": session["pid"],
        "target_table": session["target_table"] or "-",
        "tick_interval": timedelta(milliseconds=published.interval_ms),
        "ticks_ok": None,
        "ticks_failed": None,
        "ticks_skipped": None,
        "last_ok_at": None,
        "next_tick_at": None,
        "tick_ms_p50": None,
        "tick_ms_p99": None,
        "started_at": session["started_at"],
        "last_error_at": None,
        "last_error_sqlstate": None,
        "last_error_message": None,
        "heartbeat_age_known": False,
        "runner": True,
    }


def last_heartbeat(conn: Connection, table_oid: int) -> tuple[Any, bool]:
    """When the newest heartbeat was written (as timestamptz), if this role may read it safely."""
    readable = conn.execute(_READABLE, [table_oid]).fetchone()
    if not readable or not next(iter(readable.values())):
        return None, False
    table = conn.execute(
        "SELECT pg_catalog.format('%%I.%%I', n.nspname, c.relname) AS name, "
        "(SELECT a.atttypid = 'pg_catalog.timestamp'::pg_catalog.regtype FROM pg_catalog.pg_attribute a "
        " WHERE a.attrelid = c.oid AND a.attname = 'ts') AS without_zone "
        "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = %s::pg_catalog.oid",
        [table_oid],
    ).fetchone()
    assert table is not None
    # The newest row by the primary key's index, as the worker's readers do.  ts without a time
    # zone is the server's local time (DEFAULT now()), read in the server's time zone.
    ts = "pg_catalog.timezone(pg_catalog.current_setting('TimeZone'), ts)" if table["without_zone"] else "ts"
    try:
        with conn.transaction():
            # A table locked by someone (what blocks a runner) must not block status too.
            conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])
            row = conn.execute(
                f"SELECT {ts} AS at FROM {table['name']} ORDER BY pk DESC LIMIT 1"  # name quoted by format('%I.%I')
            ).fetchone()
    except psycopg.Error:
        return None, False
    return (row["at"] if row else None), True
