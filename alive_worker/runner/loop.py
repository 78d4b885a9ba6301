"""alive-worker run: the worker's heartbeat written from outside the server, by an ordinary client.

For servers that cannot load the extension (managed services, container
images): one process, one connection, the worker's own policy
(alive_worker.heartbeat, through alive_worker.runner.client_spi: see
alive_worker/transport.py), on the worker's grid (alive_worker.runner.schedule).

The loop, as the worker's main reads:

1. connect (libpq: a multi-host DSN with target_session_attrs=read-write
   finds the primary), with backoff between failures;
2. on a standby, write nothing: wait, looking again every interval, until
   it is promoted (or, with several hosts, until another is the primary);
3. on a primary, make sure the table can take heartbeats, and take the
   runner's advisory lock (alive_worker.runner.state): one runner per table;
4. tick on the grid: a transaction with the heartbeat's INSERT, retention,
   the hook in a savepoint, then COMMIT, and after it, in the same round
   trip, the tick's witness, a commit that waits as clients' do and runs no
   code of the table's (tick_frame); a failed tick is rolled back and
   counted, a lost connection goes back to 1.

SIGTERM (or SIGINT) stops it at once, wherever it is: the signal's handler
cancels a statement in flight, closes the connection (the server rolls back
a tick in flight and ends the session, and the runner's lock with it) and
raises Stop; the process exits 0; nothing waits for the hook or a statement.
SIGHUP reads the configuration again at the next tick.

The table's code (its triggers and defaults, run as the runner's role) may
change the settings of the runner's session.  So that nothing it sets
outlives a tick, every tick's transaction starts by setting again, for
itself, the timeouts, search_path and role (tick_start()); and a tick is
bounded from here too, whatever the server does: at tick_timeout its
statement is cancelled, and TICK_GRACE_SECONDS later the connection is
closed and the tick counted as failed (docs/SECURITY.md, the runner).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import signal
import sys
import time
import types
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.conninfo

from alive_worker.runner import client_log, client_spi, config, state
from alive_worker.runner.schedule import after_tick

if TYPE_CHECKING:
    from collections.abc import Callable

    from alive_worker.heartbeat import Heartbeat

log = logging.getLogger("alive_worker.runner")

CONNECT_TIMEOUT_SECONDS = 10
FIRST_RECONNECT_SECONDS = 0.1
# On a standby, how often to look again at most (and at least once an interval).
STANDBY_POLL_SECONDS = 1.0

# The settings of every session the runner opens, as the command's
# (alive_worker.cli._common.PINNED_SETTINGS, docs/SECURITY.md): search_path
# pg_catalog first, whatever the database or the role set, so that nothing
# the policy runs resolves to another role's object.
PINNED_SETTINGS = (
    "-c search_path=pg_catalog,pg_temp -c DateStyle=ISO,MDY -c IntervalStyle=postgres -c TimeZone=UTC"
)

# The heartbeat table's oid by its names ($1, $2): when the runner connects (_take_lock), and in
# every tick, after COMMIT, against the oid it locked (tick_frame).
_FIND_TABLE = """
SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relname OPERATOR(pg_catalog.=) $2
"""


# The prefix of the tick's witness, a transactional logical message (tick_frame).
WITNESS_PREFIX = "alive_worker.runner"


def witness_function(server_version: int) -> str:
    """The witness's function as GRANT names it: PostgreSQL 17 added an argument, with a default."""
    flush = ", boolean" if server_version >= 170000 else ""
    return f"pg_catalog.pg_logical_emit_message(boolean, pg_catalog.text, pg_catalog.text{flush})"


# Whether the session's role may write the witness ($1: witness_function's name).
_MAY_WITNESS = (
    "SELECT pg_catalog.has_function_privilege($1::pg_catalog.text::pg_catalog.regprocedure, 'EXECUTE')"
)

# What a new session of the runner's role in its database takes from pg_db_role_setting
# (ALTER DATABASE / ROLE [IN DATABASE] ... SET, for the database or every one, for the role or
# every role), and whether the database lets new sessions in (ALLOW_CONNECTIONS, CONNECTION
# LIMIT, CONNECT's grants: its owner's to set), as one text of no ambiguity (each row's and
# array's text form quotes what holds a space): after COMMIT in every tick (tick_frame).  A
# session takes the settings when it connects, clients' new sessions at once: when this changes,
# the runner connects again, and its new session takes what a client's takes or is refused as
# a client's would be (a database owner's default_transaction_read_only = on made every new
# client read-only, and CONNECTION LIMIT 0 refused them, while the runner's session wrote on).
# The text to compare with is the last one the runner saw before its session began (_connect).
_SETTINGS_NEW_SESSIONS_TAKE = """
SELECT pg_catalog.concat_ws(' ',
    (SELECT pg_catalog.array_agg(ROW(s.setdatabase, s.setrole, s.setconfig)::pg_catalog.text
                                 ORDER BY s.setdatabase, s.setrole)::pg_catalog.text
     FROM pg_catalog.pg_db_role_setting s
     WHERE s.setdatabase OPERATOR(pg_catalog.=) ANY (ARRAY[0::pg_catalog.oid, d.oid])
       AND s.setrole OPERATOR(pg_catalog.=) ANY (ARRAY[0::pg_catalog.oid,
           (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) session_user)])),
    ROW(d.datallowconn, d.datconnlimit, d.datacl)::pg_catalog.text)
FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
"""

# How long a tick may outlive its tick_timeout, once its statement was cancelled, before the
# connection is closed: table code may trap the cancel (an EXCEPTION block) and go on.
TICK_GRACE_SECONDS = 1.0
# How long a cancel request may take on the way out: SIGTERM's second must hold.
CANCEL_TIMEOUT_SECONDS = 0.3
# How often the server looks whether the runner's socket is still open while a statement of a
# tick runs (client_connection_check_interval, PostgreSQL 14 and later): a session whose runner
# is gone ends within this, and releases the runner's lock, even if table code ignores cancels.
CONNECTION_CHECK_MS = 500


def tick_start(tick_timeout_ms: int, server_version: int) -> str:
    """What the tick's transaction sets for itself: one statement, sent after BEGIN with the tick's
    first statement, in its round trip (client_spi.begin_tick).

    set_config(name, value, true) is SET LOCAL (the same call into
    PostgreSQL, at the same level); set_config(name, NULL, true) is SET LOCAL
    name TO DEFAULT, as SET LOCAL SESSION AUTHORIZATION DEFAULT is; one
    SELECT rather than one SET per setting, since each statement in a
    pipeline is a message of its own (test_runner.py,
    test_the_tick_s_settings_statement_sets_what_set_local_sets).  In every
    tick: a SET by the table's code in an earlier tick (it runs as the
    runner's role, in the runner's session) ends with this tick's
    transaction at the latest.  The statement timer of PostgreSQL is armed
    when a statement starts (each message of a pipeline, the INSERT's too,
    starts a fresh one), so a SET inside the INSERT does not lift that
    INSERT's bound.  Values are integers and fixed words: nothing is pasted
    in.
    """
    timeout = int(tick_timeout_ms)
    settings = [
        # Back to the role that connected: SET ROLE in a trigger lasts the session.  In this order,
        # as SET LOCAL SESSION AUTHORIZATION DEFAULT; SET LOCAL ROLE NONE.
        ("session_authorization", None),
        ("role", "none"),
        ("search_path", "pg_catalog, pg_temp"),
        ("DateStyle", "ISO, MDY"),
        ("IntervalStyle", "postgres"),
        # ts DEFAULT now() in UTC, as the worker writes it and the command reads it.
        ("TimeZone", "UTC"),
        ("statement_timeout", str(timeout)),
        # Bounded by statement_timeout; a shorter one set by the table's code would fail ticks.
        ("lock_timeout", "0"),
        # A runner stopped mid-tick (SIGSTOP, a frozen host) leaves no transaction open for long.
        ("idle_in_transaction_session_timeout", str(timeout)),
        # The heartbeat's own COMMIT waits for no standby: the table's code may choose how it waits
        # (it runs in COMMIT too).  The tick's witness, after it, waits as clients' commits do
        # (tick_frame).
        ("synchronous_commit", "local"),
    ]
    if server_version >= 140000:
        settings.append(("client_connection_check_interval", str(CONNECTION_CHECK_MS)))

    def literal(value: str | None) -> str:
        return "NULL" if value is None else f"'{value}'"

    return "SELECT " + ", ".join(
        f"pg_catalog.set_config('{name}', {literal(value)}, true)" for name, value in settings
    )


def tick_frame(
    tick_timeout_ms: int,
    server_version: int,
    application_name: str,
    table_oid: str,
    schema: str,
    table: str,
) -> client_spi.TickFrame:
    """The runner's statements around each tick's: its settings, and what follows its COMMIT.

    After COMMIT, in its round trip, in a transaction of their own, which
    runs no code of the table's: the session as a new one has it, as
    DISCARD ALL leaves it (SESSION_RESET), but for the runner's lock.  Every
    setting goes back to the server's, the database's, the role's or the
    connection's (a trigger's SET of default_transaction_read_only failed
    every later tick while clients could write, client_encoding garbled the
    message), the role a trigger SET (which RESET ALL keeps), its cursors,
    prepared statements, LISTENs and temporary tables go.  Then its advisory
    locks: pg_advisory_unlock_all() frees them, the runner's with them, so
    a transaction-level lock on the runner's key, taken first, keeps it
    from every other session until this transaction ends, after the lock is
    taken again (DISCARD ALL, which frees both, left a gap in which any role
    that may connect took it, a fourth red team's).  Then one SELECT:

    - the runner's lock taken again (freed above, or by a trigger's
      pg_advisory_unlock_all(), in COMMIT too), and the table the INSERT
      names still the one locked (a table renamed and another made under
      its name would have a second runner lock that one, and both write
      it).  False ends this session after the tick (_tick): another session
      holds the lock, or the table is another;
    - application_name, the name that publishes the runner's state
      (state.py), which RESET ALL took back to the connection's;
    - client_min_messages = warning for this transaction: the WARNING of a
      cancelled wait reaches the runner, whatever the database sets;
    - the tick's witness: a transactional logical message (a WAL record of
      no table, in no catalog; logical decoding's consumers see it under the
      prefix WITNESS_PREFIX), which gives this transaction WAL to commit, so
      its commit waits for synchronous standbys with the session's own
      synchronous_commit, as clients' commits wait.  The heartbeat's COMMIT
      cannot tell that: the table's code runs inside it (a deferred trigger
      that defers again runs after anything the runner sends before
      COMMIT), and may choose how it waits (a third red team set
      synchronous_commit = local there); so the tick sets it local for the
      heartbeat (tick_start), and the witness's wait is the tick's.  A
      transaction that only takes a transaction ID writes no WAL and waits
      for no standby.  A cancel ends that wait with a WARNING and the round
      trip without error (tick_timeout's, or another session's): the tick
      fails (client_spi._committed);
    - what a new session takes from pg_db_role_setting
      (_SETTINGS_NEW_SESSIONS_TAKE): changed since the runner connected, it
      connects again (_tick), and takes what clients' new sessions take.

    A tick that did not commit leaves nothing to take back (its SETs are
    rolled back with it); a failure of these, the heartbeat being
    committed, closes the connection.  The name and the table's names are
    parameters.
    """
    if not state.read_application_name(application_name):
        raise ValueError(f"not a runner's session name: {application_name!r}")
    oid = f"{int(table_oid)}::pg_catalog.oid"
    key = f"{int(state.LOCK_CLASS)}, {oid}::pg_catalog.int4"
    return client_spi.TickFrame(
        # The transaction holds the runner's key too: pg_advisory_unlock_all() in the table's code
        # frees the session's lock, not the transaction's, so no other session takes it while the
        # tick's transaction is open (a fifth red team had a second runner write in that tick).
        # Another session holding it fails the tick at once, saying so (_tick: LOCK_LOST).
        settings=tick_start(tick_timeout_ms, server_version)
        + f", CASE WHEN pg_catalog.pg_try_advisory_xact_lock({key}) THEN NULL"
        # Not a constant: the planner would fold, and fail, a constant's cast in any branch.
        f" ELSE ('{LOCK_LOST}, in session ' OPERATOR(pg_catalog.||) pg_catalog.pg_backend_pid())::pg_catalog.int4"
        " END",
        after_commit=(
            *((statement, ()) for statement in SESSION_RESET),
            # In this order (CASE): the transaction's hold on the key, then every session lock freed.
            (
                f"SELECT CASE WHEN pg_catalog.pg_try_advisory_xact_lock({key}) IS NOT NULL"
                " THEN pg_catalog.pg_advisory_unlock_all()::pg_catalog.text END",
                (),
            ),
            (
                f"SELECT pg_catalog.pg_try_advisory_lock({key})"
                f" AND ({_FIND_TABLE}) OPERATOR(pg_catalog.=) {oid},"
                " pg_catalog.set_config('application_name', $3, false),"
                " pg_catalog.set_config('client_min_messages', 'warning', true),"
                f" pg_catalog.pg_logical_emit_message(true, '{WITNESS_PREFIX}'::pg_catalog.text,"
                f" ''::pg_catalog.text), ({_SETTINGS_NEW_SESSIONS_TAKE})",
                (schema, table, application_name),
            ),
        ),
    )


# What a tick's settings statement fails with when another session holds the runner's key: the
# text of a value that is no integer (SQL has no RAISE), read back by _tick.
LOCK_LOST = "alive-worker run: another session holds the runner lock"  # no quote: pasted into SQL

# What DISCARD ALL does but free advisory locks (PostgreSQL's DiscardAll(), in its order; plans
# and sequences' caches left alone: nothing of the table's code's reaches the runner through them).
SESSION_RESET = (
    "CLOSE ALL",
    "SET SESSION AUTHORIZATION DEFAULT",
    "RESET ALL",
    "DEALLOCATE ALL",
    "UNLISTEN *",
    "DISCARD TEMP",
)
# Where tick_frame's last SELECT is among its statements after COMMIT, and its column of what
# new sessions take (the lock's check is its first).
_CHECK_PLACE = len(SESSION_RESET) + 1
_SETTINGS_COLUMN = 4


# How often psycopg looks up from a statement's wait to let a signal's handler run: its
# own default (0.1 s) alone would use up the 100 ms that SIGTERM is given.
SIGNAL_CHECK_SECONDS = 0.01


# How soon a signal that came while libpq was reading is acted on again (_inside_libpq).
SIGNAL_AGAIN_SECONDS = 0.001


def _inside_libpq(frame: types.FrameType | None) -> bool:
    """Whether the frame a signal's handler interrupted runs inside libpq's reading: the notice
    receiver's (client_spi._note_notice), the only Python that libpq calls."""
    while frame is not None:
        if frame.f_code is client_spi.NOTICE_RECEIVER_CODE:
            return True
        frame = frame.f_back
    return False


class RunnerConnection(psycopg.Connection[Any]):
    """A connection whose waits let SIGTERM's handler run within SIGNAL_CHECK_SECONDS."""

    def wait(self, gen: Any, interval: float = SIGNAL_CHECK_SECONDS, timeout: float | None = None) -> Any:
        return super().wait(gen, interval=min(interval, SIGNAL_CHECK_SECONDS), timeout=timeout)


class Stop(BaseException):
    """SIGTERM or SIGINT: unwinds whatever runs (a statement, the hook, a sleep) at once."""


class RefusedRole(Exception):
    """The role the DSN connects as may not write heartbeats from here."""


# The table's code runs as the runner's role, in its session (a client cannot
# act as another role, as the worker does): with a superuser, whoever can put
# code there would run it as one: the owner of a table or schema of that name,
# a role granted TRIGGER on it, the owner of a child or of a function its
# default calls, and the owner of a table made after the runner checked.
# Roles that run code as the server's OS user, or may make themselves such a role (CREATEROLE
# granted pg_execute_server_program up to PostgreSQL 15), and managed services' admin roles: a
# table's code runs as the runner's role, so whoever can put code there would gain each of them
# (a red team ran COPY ... TO PROGRAM through a trigger, as a role without rolsuper).
POWERFUL_ROLES = (
    "pg_execute_server_program",
    "pg_write_server_files",
    "pg_read_server_files",
    "rds_superuser",
    "cloudsqlsuperuser",
    "azure_pg_admin",
)
_WHAT_MAKES_THE_ROLE_POWERFUL = """
SELECT r.rolsuper, r.rolcreaterole,
       ARRAY(SELECT g.rolname FROM pg_catalog.pg_roles g
             WHERE g.rolname OPERATOR(pg_catalog.=) ANY (%s::pg_catalog.name[])
               AND pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER')
             ORDER BY g.rolname)
FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) session_user
"""


def refuse_a_superuser(conn: psycopg.Connection[Any]) -> None:
    """Raises RefusedRole when conn's session user is a superuser, may create roles, or is a member
    of a role in POWERFUL_ROLES."""
    row = conn.execute(_WHAT_MAKES_THE_ROLE_POWERFUL, [list(POWERFUL_ROLES)]).fetchone()
    if row is None:
        return
    superuser, createrole, memberships = row
    why = (
        "it is a superuser"
        if superuser
        else "it has CREATEROLE"
        if createrole
        else f"it is a member of {', '.join(memberships)}"
        if memberships
        else None
    )
    if why is not None:
        raise RefusedRole(
            f'refusing to write heartbeats as role "{conn.info.user}": {why}, and the table\'s '
            "code (its triggers, defaults, rules and those of its children) runs as the runner's role, "
            "so whoever can put code there would run it with that power; connect as a role with INSERT on "
            "the table and USAGE on its sequence only (docs/MANAGED.md)"
        )


# What a session of the runner's role takes from that role's own settings (ALTER ROLE ... [IN
# DATABASE ...] SET, pg_db_role_setting) and clients' sessions do not: where the runner's commits
# and writes would fare otherwise than clients' (the worker ignores its role's own alike:
# src/session_settings.c).  Every other setting the tick needs it sets itself (tick_start).
VERDICT_SETTINGS = ("default_transaction_read_only", "synchronous_commit")
_ROLE_S_OWN_SETTINGS = """
SELECT s.name FROM pg_catalog.pg_settings s
WHERE s.name OPERATOR(pg_catalog.=) ANY (%s::pg_catalog.text[])
  AND s.source OPERATOR(pg_catalog.=) ANY ('{user,"database user"}'::pg_catalog.text[])
ORDER BY s.name
"""


def refuse_the_role_s_own_settings(conn: psycopg.Connection[Any]) -> None:
    """Raises RefusedRole when the session took a VERDICT_SETTINGS value from its role's own settings.

    The table's code runs as the runner's role and may ALTER ROLE
    CURRENT_USER SET synchronous_commit = off (or default_transaction_read_only
    = on): every later session of the role takes it, so the runner would
    commit unlike its clients, for good, and say so nowhere.  A session
    takes them when it connects (and a setting changed later acts on the
    next one), so the runner looks whenever it connects: after a lost
    connection, a failover, a reload."""
    names = [name for (name,) in conn.execute(_ROLE_S_OWN_SETTINGS, [list(VERDICT_SETTINGS)])]
    if names:
        role = conn.info.user
        quoted = conn.execute("SELECT pg_catalog.quote_ident(%s)", [role]).fetchone()
        raise RefusedRole(
            f'refusing to write heartbeats as role "{role}": it has its own {" and ".join(names)} '
            "(ALTER ROLE ... SET), which clients' sessions do not take, so its commits would not fare as "
            "theirs (the table's code runs as this role and can set them); ALTER ROLE "
            f"{quoted[0] if quoted else role} RESET {names[0]}"
            + (f", and RESET {names[1]}" if len(names) > 1 else "")
            + ", with IN DATABASE if it was set so"
        )


class LostConnection(Exception):
    """The connection is gone: connect again."""


class TickOverran(BaseException):
    """The tick outlived tick_timeout and its grace: the connection was closed under it.

    A BaseException, as Stop, so that a hook's ``except Exception`` does not
    keep the tick going."""


def install_transport() -> None:
    """Puts client_spi in place of alive_worker.spi, and client_log in place of alive_worker.pglog
    (which writes to the server log through the embedding library), before the policy is imported
    (transport.py)."""
    import alive_worker

    for name, stand_in in (("spi", client_spi), ("pglog", client_log)):
        already = sys.modules.get(f"alive_worker.{name}")
        if already is not None and already is not stand_in:
            raise RuntimeError(
                f"alive_worker.{name} was imported before the runner's transport was installed"
            )
        sys.modules[f"alive_worker.{name}"] = stand_in
        setattr(alive_worker, name, stand_in)


def client_heartbeat_class() -> type[Heartbeat]:
    """The worker's Heartbeat, with the hook run in this process and no ledger."""
    install_transport()
    from alive_worker import hooks
    from alive_worker.heartbeat import Heartbeat

    class ClientHeartbeat(Heartbeat):
        """The worker's policy; what only the worker has is left out or done here."""

        _hook: hooks.Hook | None = None
        _hook_spec = ""

        def _open_ledger(self, table: Any) -> None:
            # The ledger is the extension's table: a server without it keeps none.
            return None

        def run_hook(self) -> None:
            """Runs the hook here, in the tick's savepoint, with alive_worker.spi on our connection."""
            if self._tick is None:
                return
            if self._hook is None or self._hook_spec != self.settings.hook:
                self._hook = hooks.load(self.settings.hook)
                self._hook_spec = self.settings.hook
            if self._hook is None:
                return
            client_spi.report_in_hook(True)
            try:
                self._hook(self._tick)
            finally:
                client_spi.report_in_hook(False)

        def forget_connection(self) -> None:
            """The plans were the old connection's: prepared again at the next tick."""
            self._discard_insert()
            self._stale.clear()

    return ClientHeartbeat


class Counters:
    """What the runner publishes on its /metrics (read by another thread: plain values only)."""

    def __init__(self) -> None:
        self.state = state.CONNECTING
        self.state_since = time.time()
        self.ticks_ok = 0
        self.ticks_failed = 0
        self.ticks_skipped = 0
        self.hook_failures = 0
        self.connect_failures = 0
        self.last_ok_at: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.retention_error: str | None = None
        self.in_recovery: bool | None = None
        self.server = ""


class Runner:
    def __init__(
        self,
        settings: config.RunnerSettings,
        reread: Callable[[], config.RunnerSettings] | None = None,
    ) -> None:
        self.settings = settings
        self.reread = reread
        self.counters = Counters()
        self.conn: psycopg.Connection[Any] | None = None
        self.heartbeat: Heartbeat | None = None
        self.generation = 1
        self.previous_committed = False
        self.reload_requested = False
        self.stopping = False
        self.in_hook = False
        self.published_name = ""
        self._wakeup_read = -1
        self._wakeup_poll = select.poll()
        self._multi_host = False
        self.deadline_passed = False
        # SIGTERM or SIGINT that came while libpq was reading, acted on from SIGALRM's handler.
        self.stop_signal = 0
        # The runner's statements around each tick's (tick_frame), and what they were made from:
        # made again when any of it changes (a new connection or table, a state published).
        self.tick_frame: client_spi.TickFrame | None = None
        self.tick_frame_from: tuple[int, int, str, str, str, str] | None = None
        # The heartbeat table's oid, the second key of the runner's lock (_take_lock).
        self.table_oid = ""
        # What the session took from pg_db_role_setting when it connected (_connect).
        self.settings_sessions_take: str | None = None
        self.settings_seen = False
        # Heartbeats committed since the start (the numbering), counted when COMMIT answered
        # COMMIT: one a synchronous standby did not confirm is written, and fails its tick.
        self.heartbeats_committed = 0

    # ---- signals and sleeping ----

    def _install_signals(self) -> None:
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        os.set_blocking(read_end, False)
        self._wakeup_read = read_end
        # Any signal writes a byte: the sleep's poll() wakes, whatever it waits for.  poll() on an
        # object registered once: select.select() of the one descriptor cost 35 us more CPU a
        # wake-up on this machine (docs/BENCHMARKS.md).
        self._wakeup_poll.register(read_end, select.POLLIN)
        signal.set_wakeup_fd(write_end)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        signal.signal(signal.SIGALRM, self._on_tick_deadline)

    def _on_stop(self, number: int, frame: types.FrameType | None) -> None:
        # Once: the way out must not be interrupted again.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.stopping = True
        if _inside_libpq(frame):
            # Closing the connection here would leave libpq reading a freed one, and Stop would
            # not get out (psycopg's receiver swallows it): again from SIGALRM's handler, soon.
            self.stop_signal = number
            signal.setitimer(signal.ITIMER_REAL, SIGNAL_AGAIN_SECONDS)
            return
        # Closed here, before anything unwinds: a transaction's __exit__ on the
        # way out then finds no statement to wait for.  The server rolls back
        # the tick in flight.  self.stopping ends every loop, should a handler
        # on the way turn Stop into another exception.
        signal.setitimer(signal.ITIMER_REAL, 0)
        self._cancel_and_close()
        raise Stop(signal.Signals(number).name)

    def _cancel_and_close(self) -> None:
        """Ends the server's side of the session now, even while table code sleeps in a statement.

        Closing the socket alone would leave a backend that sleeps in a
        trigger running, holding the runner's lock, until it next reads from
        the client; the cancel ends the statement, after which it reads the
        end of the connection and exits.  Code that traps the cancel is ended
        by client_connection_check_interval (tick_start), where the server has
        it."""
        conn = self.conn
        if conn is None or conn.closed:
            return
        self._cancel_statement(conn)
        conn.pgconn.finish()

    @staticmethod
    def _cancel_statement(conn: psycopg.Connection[Any]) -> None:
        """Asks the server to cancel the statement in flight, if one is (a server ignores one between)."""
        if conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.ACTIVE:
            with contextlib.suppress(Exception):
                conn.cancel_safe(timeout=CANCEL_TIMEOUT_SECONDS)

    def _start_tick_deadline(self) -> None:
        self.deadline_passed = False
        signal.setitimer(signal.ITIMER_REAL, self.settings.tick_timeout_ms / 1000)

    def _stop_tick_deadline(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    def _on_tick_deadline(self, number: int, frame: types.FrameType | None) -> None:
        """tick_timeout passed: cancel the statement; TICK_GRACE_SECONDS later, close and fail the tick.

        The server's statement_timeout (tick_start) should have ended the
        statement already; this bounds what it cannot: a hook's own Python,
        table code that traps the cancel, a server that does not answer."""
        if _inside_libpq(frame):
            signal.setitimer(signal.ITIMER_REAL, SIGNAL_AGAIN_SECONDS)  # as in _on_stop
            return
        if self.stop_signal:
            self._on_stop(self.stop_signal, frame)
        conn = self.conn
        if not self.deadline_passed:
            self.deadline_passed = True
            signal.setitimer(signal.ITIMER_REAL, TICK_GRACE_SECONDS)
            if conn is not None and not conn.closed:
                client_spi.note_cancel()
                self._cancel_statement(conn)
            return
        self._cancel_and_close()
        raise TickOverran(
            f"the tick took longer than tick_timeout ({self.settings.tick_timeout_ms} ms) and "
            f"{TICK_GRACE_SECONDS:g} s more after its statement was cancelled: the connection was closed"
        )

    def _on_reload(self, number: int, frame: types.FrameType | None) -> None:
        self.reload_requested = True

    def _sleep_until(self, deadline: float) -> None:
        """Until the monotonic clock reaches deadline, or a reload is asked for."""
        while not self.reload_requested:
            if self.stopping:
                raise Stop("stopping")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # In whole milliseconds, rounded up: poll() would wake early, and this loop poll again.
            if self._wakeup_poll.poll(math.ceil(remaining * 1000)):
                try:
                    while os.read(self._wakeup_read, 64):
                        pass
                except BlockingIOError:
                    pass

    # ---- the published state ----

    def _set_state(self, new_state: str, detail: str | None = None) -> None:
        counters = self.counters
        if new_state != counters.state:
            counters.state = new_state
            counters.state_since = time.time()
            log.info("alive-worker run: %s%s", new_state, f": {detail}" if detail else "")
        self._publish_name()

    def _publish_name(self) -> None:
        """The session's application_name says the state (state.py), set only when it changes."""
        name = state.application_name(self.counters.state, self.settings.interval)
        conn = self.conn
        if conn is None or conn.closed or name == self.published_name:
            return
        try:
            # set_config() outside the tick's transaction: a rolled-back tick must not undo it.
            with conn.transaction():
                conn.execute("SELECT pg_catalog.set_config('application_name', %s, false)", [name])
            self.published_name = name
        except psycopg.Error as error:
            if conn.broken or conn.closed:
                raise LostConnection(str(error)) from error
            log.warning("alive-worker run cannot publish its state: %s", error)

    def _report_in_hook(self, in_hook: bool) -> None:
        # For /metrics only: naming the session at every tick would cost two round trips.
        self.in_hook = in_hook

    def _report_failure_after_commit(self, message: str) -> None:
        log.warning(
            "alive-worker run: after the heartbeat's COMMIT, giving the session back its defaults failed: %s;"
            " connecting again",
            message,
        )

    def _report_retention_error(self, message: str | None) -> None:
        self.counters.retention_error = message

    # ---- connecting ----

    def _connect(self) -> psycopg.Connection[Any]:
        settings = self.settings
        params = psycopg.conninfo.conninfo_to_dict(settings.dsn)
        self._multi_host = "," in str(params.get("host") or os.environ.get("PGHOST", ""))
        own_options = params.get("options") or os.environ.get("PGOPTIONS", "")
        # idle_session_timeout (PostgreSQL 14 on): the runner's session idles between ticks, and
        # holds its lock and its state there; a role's or a database's would end it every tick.
        timeout = f"-c statement_timeout={settings.tick_timeout_ms} -c idle_session_timeout=0"
        extra: dict[str, Any] = {
            "application_name": state.application_name(state.CONNECTING, settings.interval),
            "options": f"{own_options} {PINNED_SETTINGS} {timeout}".strip(),
        }
        if "connect_timeout" not in params and "PGCONNECT_TIMEOUT" not in os.environ:
            extra["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        # Autocommit: the runner opens each tick's transaction itself, with tick_start's settings.
        # psycopg prepares nothing on its own: it would DEALLOCATE ALL after a rollback, the
        # statements client_spi prepared with the rest (client_spi's docstring).
        conn = RunnerConnection.connect(settings.dsn, autocommit=True, prepare_threshold=None, **extra)
        try:
            refuse_a_superuser(conn)
            refuse_the_role_s_own_settings(conn)
            if not self.settings_seen:
                # The first session: what it took, as near its start as can be read.  Later ones
                # are compared with what the runner last saw before they began (_tick): a change
                # committed between a session's start and a read in it would pass for taken (a
                # fifth red team's race), one before or after its start makes it connect again.
                taken = conn.execute(_SETTINGS_NEW_SESSIONS_TAKE).fetchone()
                self.settings_sessions_take = taken[0] if taken else None
                self.settings_seen = True
        except RefusedRole:
            conn.close()
            raise
        self.published_name = str(extra["application_name"])
        host = conn.info.host
        self.counters.server = (
            f"{host}:{conn.info.port}" if not host.startswith("/") else f"{host} port {conn.info.port}"
        )
        return conn

    def _connect_with_backoff(self) -> None:
        delay = FIRST_RECONNECT_SECONDS
        while True:
            if self.stopping:
                raise Stop("stopping")
            try:
                self.conn = self._connect()
            except RefusedRole as refused:
                self.counters.connect_failures += 1
                self._fail(str(refused), state.CONNECTING)
                self._sleep_until(time.monotonic() + delay)
                delay = min(delay * 2, self.settings.reconnect_max / 1000)
                continue
            except psycopg.Error as error:
                self.counters.connect_failures += 1
                self._fail(f"cannot connect: {client_spi_message(error)}", state.CONNECTING)
                self._sleep_until(time.monotonic() + delay)
                delay = min(delay * 2, self.settings.reconnect_max / 1000)
                continue
            self.counters.connect_failures = 0
            client_spi.attach(self.conn)
            if self.heartbeat is not None:
                self.heartbeat.forget_connection()  # type: ignore[attr-defined]
            log.info(
                "alive-worker run connected to %s (database %s)", self.counters.server, self.conn.info.dbname
            )
            return

    def _close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        self.previous_committed = False

    def _fail(self, message: str, new_state: str = state.FAILING) -> None:
        counters = self.counters
        if message != counters.last_error:
            log.warning("alive-worker run: %s", message)
        counters.last_error = message
        counters.last_error_at = time.time()
        self._set_state(new_state)  # the warning above says why

    # ---- what the policy asks of the runner ----

    def _setting(self, name: str) -> str | None:
        """alive_worker.* as the policy reads them (Settings.current()): the runner's, and the session's."""
        if name == "alive_worker.database":
            return self.conn.info.dbname if self.conn is not None else ""
        if name == "alive_worker.role":
            return client_spi.current_role()
        return self.settings.alive_worker_setting(name)

    def _hand_over_settings(self) -> None:
        """The settings snapshot the policy reads (alive_worker.settings), as the shim hands the worker
        its own at start and after each reload; again only when the generation changed."""
        from alive_worker import settings

        held = settings._snapshot
        if held is not None and held.generation == self.generation:
            return

        def text(name: str) -> str:
            return self._setting(f"alive_worker.{name}") or ""

        settings.receive(
            settings.Snapshot(
                generation=self.generation,
                settings=settings.Settings(
                    database=text("database"),
                    role=text("role"),
                    schema=text("schema"),
                    table=text("table"),
                    message=text("message"),
                    interval_ms=int(text("interval") or 0),
                    hook=text("hook"),
                    retention_s=int(text("retention") or 0),
                ),
                probe_role="",
                hook_memory_limit_kb=0,
            )
        )

    # ---- the loop ----

    def run(self) -> int:
        self._install_signals()
        client_spi.session.settings = self._setting
        client_spi.session.on_in_hook = self._report_in_hook
        client_spi.session.on_retention_error = self._report_retention_error
        client_spi.session.on_failure_after_commit = self._report_failure_after_commit
        self._start_metrics()
        try:
            while not self.stopping:
                if self.conn is None or self.conn.closed:
                    self._close()
                    self._connect_with_backoff()
                try:
                    self._serve_connection()
                except (LostConnection, TickOverran) as error:
                    self._fail(f"lost the connection: {error}", state.CONNECTING)
                    self._close()
        except BaseException as stop:
            if not self.stopping:
                raise
            log.info("alive-worker run stopping (%s)", stop)
        finally:
            self._close()
        return 0

    def _serve_connection(self) -> None:
        """Waits on a standby, then ticks on the grid while this connection lasts."""
        while self._in_recovery():
            self.counters.in_recovery = True
            self._set_state(state.WAITING_FOR_RECOVERY)
            self._sleep_until(time.monotonic() + min(STANDBY_POLL_SECONDS, self.settings.interval / 1000))
            self._follow_reload()
            if self._multi_host:
                # Another host may be the primary now: libpq's target_session_attrs chooses.
                raise LostConnection("a standby; looking for the primary among the DSN's hosts")
        self.counters.in_recovery = False
        if self.heartbeat is None:
            conn = self.conn
            assert conn is not None
            # It reads the role: in a transaction of its own, ended before the ticks'.
            with conn.transaction():
                self._hand_over_settings()
                self.heartbeat = client_heartbeat_class()()
        if not self._take_lock():
            return
        interval = self.settings.interval / 1000
        wall_minus_monotonic = time.time() - time.monotonic()
        deadline = time.monotonic()
        while True:
            self._sleep_until(deadline)
            if self._follow_reload():
                if self.conn is None:
                    return
                interval = self.settings.interval / 1000
            tick_deadline = deadline
            self._tick()
            if self.conn is None or self.conn.closed:
                raise LostConnection("closed")
            if self.counters.state == state.WAITING_FOR_RECOVERY:
                return
            following = after_tick(
                tick_deadline, time.monotonic(), interval, self.settings.clock_aligned, wall_minus_monotonic
            )
            self.counters.ticks_skipped += following.skipped
            deadline = following.deadline

    def _in_recovery(self) -> bool:
        conn = self.conn
        assert conn is not None
        try:
            with conn.transaction():
                rows = client_spi.execute("SELECT pg_catalog.pg_is_in_recovery()")
        except (psycopg.Error, client_spi.SPIError) as error:
            raise LostConnection(str(error)) from error
        return rows[0][0] == "t"

    def _take_lock(self) -> bool:
        """The table ready and the runner's lock held (state.py); False, reported, if not yet."""
        from alive_worker.heartbeat_table import HeartbeatTable

        conn = self.conn
        assert conn is not None
        settings = self.settings
        try:
            with conn.transaction():
                table = HeartbeatTable(settings.schema, settings.table, client_spi.current_role())
                table.prepare_insert().free()  # creates it if missing and allowed, or says why not
                oid = client_spi.execute(_FIND_TABLE, settings.schema, settings.table)[0][0]
                assert oid is not None
                witness = witness_function(conn.pgconn.server_version)
                if client_spi.execute(_MAY_WITNESS, witness)[0][0] != "t":
                    raise client_spi.errors.InsufficientPrivilege(
                        f'role "{client_spi.current_role()}" may not execute {witness}, which writes '
                        "each tick's witness: a commit that waits for synchronous standbys as clients' "
                        "commits do (docs/MANAGED.md)",
                        hint=f"GRANT EXECUTE ON FUNCTION {witness} TO "
                        f"{client_spi.quote_ident(client_spi.current_role())}",
                    )
                got = client_spi.execute(
                    "SELECT pg_catalog.pg_try_advisory_lock($1::pg_catalog.int4, $2::pg_catalog.oid::pg_catalog.int4)",
                    str(state.LOCK_CLASS),
                    oid,
                )[0][0]
        except client_spi.SPIError as error:
            if conn.broken or conn.closed:
                raise LostConnection(error.message) from error
            self._fail(describe(error))
            self._sleep_until(time.monotonic() + self.settings.interval / 1000)
            return False
        self.table_oid = oid
        if got != "t":
            self._fail(
                f"another session holds the runner's lock on {settings.schema}.{settings.table}: "
                "one runner writes a table",
                state.LOCKED_OUT,
            )
            self._sleep_until(time.monotonic() + self.settings.interval / 1000)
            return False
        return True

    def _follow_reload(self) -> bool:
        """Reads the configuration again if SIGHUP asked; True if it did."""
        if not self.reload_requested:
            return False
        self.reload_requested = False
        if self.reread is None:
            return False
        try:
            new = self.reread()
        except config.ConfigError as error:
            log.warning("alive-worker run keeps its settings: %s", error)
            return False
        old, self.settings = self.settings, new
        self.generation += 1
        self._hand_over_settings()
        log.info("alive-worker run read its configuration again")
        if (old.dsn, old.schema, old.table, old.tick_timeout_ms) != (
            new.dsn,
            new.schema,
            new.table,
            new.tick_timeout_ms,
        ):
            # Another server, table or session timeout: start over with a new session and lock.
            self._close()
        else:
            self.published_name = ""  # the interval in the name may have changed
            self._publish_name()
        return True

    def _tick(self) -> None:
        """One heartbeat in one transaction, as the worker's tick (alive_worker.c)."""
        conn = self.conn
        heartbeat = self.heartbeat
        assert conn is not None and heartbeat is not None
        # The transaction, and the settings it holds whatever the table's code set before, sent
        # with the tick's first statement; with no hook and no retention batch due, COMMIT goes
        # with the INSERT: the tick is one round trip.
        client_spi.begin_tick(self._current_tick_frame(conn), heartbeat.inserts_alone(self.generation))
        committed = False
        self._start_tick_deadline()
        try:
            # Numbered as the worker numbers: heartbeats committed since the start, across reconnects.
            heartbeat.tick(self.heartbeats_committed + 1, self.generation, self.previous_committed)
            if self.settings.hook:
                self._run_hook_in_savepoint(heartbeat)
            client_spi.commit()
            committed = True
        except TickOverran as overran:
            self.counters.ticks_failed += 1
            self._fail(f"{overran} (SQLSTATE 57014)")
            self.previous_committed = False
            raise LostConnection(str(overran)) from overran
        except Exception as raised:
            failure: client_spi.SPIError
            if isinstance(raised, client_spi.SPIError):
                failure = raised
            else:
                # Not the server's: a bug or a bad setting, reported as the worker reports one (38000).
                log.exception("alive-worker run: the tick failed")
                failure = client_spi.errors.ExternalRoutineException(f"{type(raised).__name__}: {raised}")
            self._rollback()
            if conn.broken or conn.closed:
                self.previous_committed = False
                raise LostConnection(failure.message) from raised
            self.counters.ticks_failed += 1
            if failure.sqlstate == "22P02" and LOCK_LOST in failure.message:
                raise LostConnection(LOCK_LOST) from raised  # the next session is locked out
            if failure.sqlstate == "25006" and self._in_recovery():
                # The server became a standby under us: wait for a primary.  A primary that
                # refuses writes (default_transaction_read_only, the table's code raising 25006)
                # is a failing tick like any other, on the grid: clients cannot write there either.
                self._set_state(state.WAITING_FOR_RECOVERY, failure.message)
            else:
                self._fail(describe(failure))
        finally:
            self._stop_tick_deadline()
            client_spi.end_tick()
            self.previous_committed = committed
            if client_spi.heartbeat_written():
                self.heartbeats_committed += 1
            elif client_spi.commit_outcome_unknown():
                # The connection closed under a round trip with COMMIT in it: the server may have
                # committed the heartbeat (table code that outlived the tick's grace, a red team's).
                # Its number is not used again: a gap, never two rows of one number.
                self.heartbeats_committed += 1
                log.warning(
                    "alive-worker run: heartbeat %d may have committed (the connection closed before"
                    " COMMIT answered); the next is numbered %d",
                    self.heartbeats_committed,
                    self.heartbeats_committed + 1,
                )
        if committed:
            counters = self.counters
            counters.ticks_ok += 1
            counters.last_ok_at = time.time()
            self._set_state(state.SLEEPING)
        if client_spi.heartbeat_written() and client_spi.after_commit_answer(_CHECK_PLACE) != "t":
            # Another session took the runner's lock when it was freed, or the table of that name
            # is not the one locked: this session ends, and the next takes the lock again
            # (tick_frame), or is refused.
            log.warning(
                "alive-worker run: another session holds the runner's lock on %s.%s, or that name is"
                " another table now; connecting again",
                self.settings.schema,
                self.settings.table,
            )
            raise LostConnection("the runner's lock was taken by another session, or the table replaced")
        # ALTER DATABASE / ROLE ... SET: clients' new sessions take it now, this one never would.  Read
        # after COMMIT in the tick's round trip; a tick that failed (read-only, say) reads it here.
        if client_spi.heartbeat_written():
            taken_now = client_spi.after_commit_answer(_CHECK_PLACE, _SETTINGS_COLUMN)
        else:
            taken_now = self._settings_sessions_take_now()
        if taken_now != self.settings_sessions_take:
            self.settings_sessions_take = taken_now
            log.info(
                "alive-worker run: what new sessions take from the database and the roles changed"
                " (ALTER DATABASE / ROLE ... SET, CONNECTION LIMIT, ALLOW_CONNECTIONS, CONNECT);"
                " connecting again to take them as clients do"
            )
            raise LostConnection("the database's or the role's settings changed")

    def _settings_sessions_take_now(self) -> str | None:
        conn = self.conn
        assert conn is not None
        if conn.closed:
            raise LostConnection("closed")
        try:
            row = conn.execute(_SETTINGS_NEW_SESSIONS_TAKE).fetchone()
        except psycopg.Error as error:
            raise LostConnection(str(error)) from error
        return row[0] if row else None

    def _current_tick_frame(self, conn: psycopg.Connection[Any]) -> client_spi.TickFrame:
        made_from = (
            self.settings.tick_timeout_ms,
            conn.pgconn.server_version,
            # "" while a name is to be published again (a reload): the state's, as it will be.
            self.published_name or state.application_name(self.counters.state, self.settings.interval),
            self.table_oid,
            self.settings.schema,
            self.settings.table,
        )
        if made_from != self.tick_frame_from or self.tick_frame is None:
            self.tick_frame = tick_frame(*made_from)
            self.tick_frame_from = made_from
        return self.tick_frame

    def _run_hook_in_savepoint(self, heartbeat: Heartbeat) -> None:
        """The hook, as the shim runs it: its failure is logged (hook_failure = log) or fails the tick."""
        try:
            with client_spi.subtransaction():
                heartbeat.run_hook()
        except Stop:
            raise
        except Exception as error:
            conn = self.conn
            if conn is None or conn.broken or conn.closed:
                raise
            self.counters.hook_failures += 1
            sqlstate = getattr(error, "sqlstate", "38000")
            message = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
            if self.settings.hook_failure == "fail_tick":
                raise client_spi.errors.from_sqlstate(
                    sqlstate, f'alive_worker.hook "{self.settings.hook}" failed: {message}'
                ) from error
            log.warning(
                'alive_worker.hook "%s" failed: %s (SQLSTATE %s)',
                self.settings.hook,
                message,
                sqlstate,
                exc_info=not hasattr(error, "sqlstate"),
            )

    def _rollback(self) -> None:
        conn = self.conn
        if conn is None or conn.closed:
            return
        with contextlib.suppress(psycopg.Error):
            conn.rollback()

    # ---- its own /metrics ----

    def _start_metrics(self) -> None:
        if not self.settings.metrics_listen:
            return
        from alive_worker.runner.metrics import serve

        serve(self.settings.metrics_listen, self)


def describe(error: client_spi.SPIError) -> str:
    """An error as the server log would give it: message, SQLSTATE, then detail and hint."""
    parts = [f"{error.message} (SQLSTATE {error.sqlstate})"]
    parts += [f"{label}: {text}" for label, text in (("detail", error.detail), ("hint", error.hint)) if text]
    return "; ".join(parts)


def client_spi_message(error: psycopg.Error) -> str:
    text = getattr(error.diag, "message_primary", None) or str(error)
    return " ".join(text.split())
