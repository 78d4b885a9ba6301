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

import itertools
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

from alive_worker.cli._common import CliError, Connection, shown_sql, translate
from alive_worker.runner import state

# How many of the newest heartbeats lag reads to learn the interval (as alive_worker.lag()).
LAG_ROWS = 9
# How long status waits for a lock on the heartbeat table before it gives up reading it.
LOCK_TIMEOUT = "200ms"

# Every runner session of this database (by its name), with the table of the
# lock it holds, if any, and the start of any wait for a lock.
_RUNNERS = """
SELECT a.pid, a.usename AS role, a.application_name, a.backend_start AS started_at,
       a.datname AS database, lock.objid AS table_oid,
       -- Any role may take the lock and name its session so: only one that may write the table is its runner.
       CASE WHEN c.oid IS NOT NULL THEN pg_catalog.has_table_privilege(a.usesysid, c.oid, 'INSERT') END AS may_write,
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

# A heartbeat table the command may read without lending its rights to anyone.
# Reading a table runs code of its owner's beyond policies and types: the
# planner folds an index's predicate or expression, an extended statistic's
# expression or a CHECK constraint (constraint_exclusion, which a database
# owner may turn on) that calls an IMMUTABLE function, as the reader.  So, as
# the owner rule of docs/SECURITY.md: only a table owned by the command's own
# role or by a superuser, whose code then runs as a role that could run it
# anyway or was written by a superuser; an ordinary table (no partitions, no
# inheritance children, read with ONLY), no row level security, pk and ts of
# pg_catalog's types.  Its schema too must be owned by the command's role or
# a superuser (pg_database_owner's is the database's owner): the owner of a
# schema may rename it, which takes no lock on its tables, and put another
# schema's table in the name between this check and a read (red team).
_READABLE = """
SELECT pg_catalog.has_table_privilege(c.oid, 'SELECT')
   AND (SELECT r.oid OPERATOR(pg_catalog.=) (SELECT u.oid FROM pg_catalog.pg_roles u WHERE u.rolname = CURRENT_USER)
               OR r.rolsuper
        FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r
          ON r.oid OPERATOR(pg_catalog.=) CASE WHEN n.nspowner OPERATOR(pg_catalog.=) 'pg_database_owner'::pg_catalog.regrole
                        THEN (SELECT d.datdba FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
                        ELSE n.nspowner END
        WHERE n.oid OPERATOR(pg_catalog.=) c.relnamespace)
   AND (c.relowner OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER)
        OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = c.relowner))
   AND c.relkind = 'r' AND NOT c.relrowsecurity AND NOT c.relhassubclass
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid)
   AND (SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'ts'
        AND NOT a.attisdropped) IN ('pg_catalog.timestamp'::pg_catalog.regtype, 'pg_catalog.timestamptz'::pg_catalog.regtype)
   AND (SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'pk'
        AND NOT a.attisdropped) IN ('pg_catalog.int4'::pg_catalog.regtype, 'pg_catalog.int8'::pg_catalog.regtype)
FROM pg_catalog.pg_class c WHERE c.oid = %s::pg_catalog.oid
"""


# The table a runner writes when none is configured (alive_worker/runner/config.py).
DEFAULT_TABLE = "public.log_table"


def read(conn: Connection) -> list[dict[str, Any]]:
    """One row per runner session of this database, shaped as alive_worker.workers' rows."""
    return read_claims(conn, None)[0]


def read_claims(
    conn: Connection, asked: tuple[int | None, str] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The runner sessions' rows, and with asked (asked_table()) the claims refused.

    With asked, only a session holding the runner's lock on that table, or
    none yet, is a row: one that holds it on another table is refused,
    unread, and counts for nothing.  Any role may take that lock and name its
    session so, on a table of its own choosing with fresh rows of its own:
    such a claim says nothing of the table asked about.
    """
    sessions = conn.execute(
        _RUNNERS, {"lock_class": state.LOCK_CLASS, "prefix": f"{state.APPLICATION_PREFIX}:%"}
    ).fetchall()
    rows = []
    refused = []
    primary = not bool(conn.execute("SELECT pg_catalog.pg_is_in_recovery() AS standby").fetchone()["standby"])  # type: ignore[index]
    for session in sessions:
        published = state.read_application_name(session["application_name"])
        if published is None:
            continue
        row = as_worker_row(session, published, primary)
        if asked is not None and session["table_oid"] is not None and session["table_oid"] != asked[0]:
            row["refused_because"] = (
                f"alive-worker run session {session['pid']} of role {session['role']} holds the runner's lock on "
                f"{row['target_table']}, not on {asked[1]}, the table asked about (--table): not counted"
            )
            refused.append(row)
            continue
        if session["table_oid"] is not None and not session["may_write"]:
            # A runner whose INSERT was revoked, or a claim anyone may forge (its interval too): never OK.
            row["state"] = state.FAILING
            row["may_write"] = False
            row["state_detail"] += f" (its role may not write {row['target_table']}: failing, or no runner)"
        if session["table_oid"] is not None:
            row["last_ok_at"], row["heartbeat_age_known"] = last_heartbeat(conn, int(session["table_oid"]))
        if not row["heartbeat_age_known"]:
            row["state_detail"] += (
                f" (heartbeat age unknown: role {conn.info.user} cannot read the table safely)"
            )
        rows.append(row)
    return rows, refused


def as_worker_row(
    session: dict[str, Any], published: state.Published, primary: bool = True
) -> dict[str, Any]:
    current = published.state
    since = session["started_at"]
    if session["blocked"]:
        # A blocked session cannot rename itself: the waiting lock says it.
        current = state.BLOCKED
        since = session["blocked_since"] or since
    elif session["table_oid"] is None and (published.state == state.SLEEPING or primary):
        # Writing needs the lock: a session named so without it is no runner of a table.  On a
        # primary, a runner without it writes nothing whatever its name says ("waiting for
        # recovery to end" is anyone's to claim: red team, round two).
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
    """When the newest heartbeat was written, and whether this role could read the table safely."""
    reader = TableReader.open(conn, table_oid)
    if reader is None:
        return None, False
    try:
        rows = reader.read(1, None)
    except psycopg.Error:
        return None, False
    return (rows[0]["ts"] if rows else None), True


class TableReader:
    """A heartbeat table read directly, where no extension reads it as its owner (report, lag, status).

    Only a table that passes _READABLE: one of the command's own role or a
    superuser's, so that whatever code of its owner's the read runs (an index
    predicate the planner folds, a policy) lends no one the command's rights.  ts without a time zone is UTC,
    as the worker and the runner write it (their sessions' TimeZone is UTC), read as such whatever
    TimeZone the database sets for this session.  A lock on the table fails the read after LOCK_TIMEOUT.
    """

    def __init__(self, conn: Connection, name: str, without_zone: bool) -> None:
        self.conn = conn
        self.name = name  # quoted by the server's format('%I.%I')
        self.ts = "pg_catalog.timezone('UTC'::pg_catalog.text, ts)" if without_zone else "ts"

    @classmethod
    def open(cls, conn: Connection, table_oid: int) -> TableReader | None:
        readable = conn.execute(_READABLE, [table_oid]).fetchone()
        if not readable or not next(iter(readable.values())):
            return None
        table = conn.execute(
            "SELECT pg_catalog.format('%%I.%%I', n.nspname, c.relname) AS name, "
            "(SELECT a.atttypid = 'pg_catalog.timestamp'::pg_catalog.regtype FROM pg_catalog.pg_attribute a "
            " WHERE a.attrelid = c.oid AND a.attname = 'ts') AS without_zone "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = %s::pg_catalog.oid",
            [table_oid],
        ).fetchone()
        assert table is not None
        return cls(conn, table["name"], bool(table["without_zone"]))

    def read(self, rows: int, after_pk: int | None) -> list[dict[str, Any]]:
        """rows (pk, ts) after after_pk in pk order, or with None the newest, newest first
        (as alive_worker.heartbeats() pages)."""
        if after_pk is None:
            query = f"SELECT pk, {self.ts} AS ts FROM ONLY {self.name} ORDER BY pk DESC LIMIT %s"
            params: list[Any] = [rows]
        else:
            query = f"SELECT pk, {self.ts} AS ts FROM ONLY {self.name} WHERE pk > %s::pg_catalog.int8 ORDER BY pk LIMIT %s"
            params = [after_pk, rows]
        with self.conn.transaction():
            # A table locked by someone (what blocks a runner) must not block the command too.
            self.conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])
            return self.conn.execute(query, params).fetchall()


def asked_table(conn: Connection, table: str | None) -> tuple[int | None, str]:
    """The oid of the table named (None if there is none) and its name as the server quotes it."""
    row = conn.execute(
        "SELECT c.oid, pg_catalog.format('%%I.%%I', n.nspname, c.relname) AS name FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = pg_catalog.to_regclass(%s::pg_catalog.text)",
        [table or DEFAULT_TABLE],
    ).fetchone()
    if row is None:
        return None, table or DEFAULT_TABLE
    return int(row["oid"]), str(row["name"])


def table_oid(conn: Connection, table: str | None) -> tuple[int, str]:
    """The heartbeat table named (default public.log_table, as the runner's): its oid and quoted name."""
    oid, name = asked_table(conn, table)
    if oid is None:
        raise CliError(
            f"no heartbeat table {name} in database {conn.info.dbname}",
            "Name the table alive-worker run writes with --table.",
        )
    return oid, name


def open_table(conn: Connection, table: str | None) -> tuple[TableReader, str]:
    """A reader of the named table, or an error saying why this role may not read it directly."""
    oid, name = table_oid(conn, table)
    reader = TableReader.open(conn, oid)
    if reader is None:
        raise CliError(
            f"role {conn.info.user} cannot read heartbeat table {name} safely without the extension",
            "Without the extension the command reads the table itself: it needs SELECT on it, an ordinary "
            "table without row level security, with pk and ts of pg_catalog's types, owned, as its schema is, "
            "by this role or a superuser (docs/SECURITY.md). "
            + shown_sql(conn, "GRANT SELECT ON {} TO {};", sql.SQL(name), sql.Identifier(conn.info.user)),
        )
    return reader, name


def runner_interval(conn: Connection, table: str) -> timedelta | None:
    """The interval a runner of this table publishes, if one is connected."""
    for row in read(conn):
        # Not the interval of a session whose role may not write the table: anyone may name one so.
        if row["target_table"] == table and row.get("may_write", True):
            interval: timedelta = row["tick_interval"]
            return interval
    return None


def lag_reading(conn: Connection, table: str | None) -> dict[str, Any]:
    """alive_worker.lag()'s reading, computed here from the table (no clock skew: that needs the extension)."""
    reader, name = open_table(conn, table)
    server = conn.execute(
        "SELECT pg_catalog.pg_is_in_recovery() AS in_recovery, pg_catalog.clock_timestamp() AS measured_at"
    ).fetchone()
    assert server is not None
    try:
        newest = reader.read(LAG_ROWS, None)
    except psycopg.Error as error:
        raise translate(error, conn) from error
    latest_possible = server["measured_at"] + timedelta(seconds=1)
    future = [r["ts"] for r in newest if r["ts"] > latest_possible]
    recent = sorted((r["ts"] for r in newest if r["ts"] <= latest_possible), reverse=True)
    gaps = sorted(a - b for a, b in itertools.pairwise(recent))
    configured = runner_interval(conn, name)
    interval = gaps[len(gaps) // 2] if gaps else configured or timedelta(seconds=10)
    if configured is not None:
        # Rows a day apart from whoever may insert must not make a day's lag look like none.
        interval = min(interval, configured * 10)
    reading: dict[str, Any] = {
        "in_recovery": server["in_recovery"],
        "lag": None,
        "last_heartbeat_at": recent[0] if recent else None,
        "heartbeat_age": None,
        "tick_interval": interval,
        "replay_paused": False,
        "system_identifier": None,
        "upstream": None,
        "receiver_status": None,
        "source_table": name,
        "measured_at": server["measured_at"],
        "clock_skew": None,
        "future_heartbeat_at": max(future) if future else None,
    }
    if recent:
        reading["heartbeat_age"] = server["measured_at"] - recent[0]
        if server["in_recovery"] or table is not None:
            reading["lag"] = max(timedelta(0), reading["heartbeat_age"] - interval)
    return reading
