"""alive_worker.spi over a psycopg connection: the transport of ``alive-worker run``.

The runner puts this module in place of alive_worker.spi (as the hook host
puts alive_worker._host_spi) before it imports the heartbeat's policy, so
that heartbeat, heartbeat_table, retention and the hooks it runs call the same
functions as in the worker (the contract: alive_worker/transport.py), and
meet the same errors: every server error becomes the alive_worker.errors
class its SQLSTATE names (``spi.errors.DivisionByZero``), with detail, hint
and context.  Statements run on the runner's one connection, inside the
transaction the runner opens for each tick; :class:`subtransaction` is a
SAVEPOINT in it.

Every statement goes through libpq's pipeline mode (psycopg.pq, below
psycopg's cursors, whose own work per statement cost more client CPU than
the round trip: docs/BENCHMARKS.md).  Each tick's transaction is opened by
the runner (begin_tick) and sent with the tick's first statement: BEGIN,
the statement that sets what the tick needs for itself, and that
statement, in one round trip.  When nothing runs after the heartbeat's
INSERT, its COMMIT goes in that round trip too: the tick is one round trip.

Values cross as text, as they do through SPI: each parameter is sent with
the type the prepared statement declares (its oid, looked up once), and every
column comes back as its text form (``'t'``, ``'42'``), whatever its type.
Every statement is the unnamed one, parsed where it is bound, in the same
round trip: a name of ours prepared on the server could be taken by the
table's code (a trigger runs in this session, as this role: DEALLOCATE a
name, PREPARE it with SQL of its own), and every later tick would run that
in place of BEGIN, the settings, the INSERT or COMMIT (a red team did, with
each of them).  SQL's PREPARE cannot make the unnamed statement.  psycopg's
own preparing is off on the runner's connection (loop.py).

What differs from the worker, by necessity, and is written in
docs/MANAGED.md: a client cannot act as another role, so ``as_owner_of``
changes nothing here: every statement runs as the role that connected, which
needs its own grants (INSERT, and USAGE on the sequence) and never has more
than it was given.  alive_worker.* settings are the runner's own (its
configuration file, flags and environment), not the server's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, NamedTuple, NoReturn

import psycopg
from psycopg import pq
from psycopg.generators import fetch_many, send

# Re-exported, as alive_worker.spi does: hooks write spi.SPIError and spi.errors.QueryCanceled.
from alive_worker import errors as errors
from alive_worker.errors import SPIError as SPIError

Row = tuple[str | None, ...]

# A client cannot act as another role: the table's code runs as the runner's own (alive_worker.spi).
WRITER = "runner"
TABLE_CODE_RUNS_AS_OWNER = False

# Class 08 (connection exception): what a statement meets when the connection is gone.
CONNECTION_FAILURE = "08006"


class TickFrame(NamedTuple):
    """The runner's own statements around each tick's (loop.tick_frame)."""

    # After BEGIN: what the tick's transaction sets for itself.
    settings: str
    # After COMMIT, in its round trip: what the session takes back for the next tick, and the
    # tick's verdict (each a statement and its text parameters; answers: after_commit_answer()).
    after_commit: tuple[tuple[str, tuple[str, ...]], ...]


class _Session:
    """The connection statements run on, and where the runner hears what the policy reports."""

    conn: psycopg.Connection[Any] | None = None
    generation = 0  # one more at every new connection: plans of an older one are gone
    settings: Callable[[str], str | None] = staticmethod(lambda name: None)
    on_in_hook: Callable[[bool], None] = staticmethod(lambda in_hook: None)
    on_retention_error: Callable[[str | None], None] = staticmethod(lambda message: None)
    # A statement after the tick's COMMIT failed: the connection is closed, the heartbeat stands.
    on_failure_after_commit: Callable[[str], None] = staticmethod(lambda message: None)
    rowcount = 0
    savepoints = 0
    # BEGIN and the tick's settings statement while its transaction is still to be opened
    # (begin_tick): sent with the tick's next statement.  Set again after a COMMIT that went
    # with the INSERT: a statement after it runs in a transaction of its own, with the settings.
    opening: list[_Statement] | None = None
    tick_opening: list[_Statement] | None = None
    frame: TickFrame | None = None
    # The tick's COMMIT, and what the session takes back after it (TickFrame).
    closing: list[_Statement]
    # Whether the tick's COMMIT answered COMMIT, and the rows its first execute_text (the
    # heartbeat's INSERT) wrote: both, and the heartbeat is written, whatever follows.
    commit_answered = False
    heartbeat_rows: int | None = None
    # The results of the tick's closing statements (TickFrame), once COMMIT answered COMMIT:
    # what the statements after it answered is read from them (after_commit_answer()).
    closing_results: list[pq.abc.PGresult]
    # The heartbeat's INSERT is the tick's last statement: its COMMIT goes with it.
    commit_with_insert = False
    # Whether the runner cancelled a statement of the tick (tick_timeout: note_cancel()): a
    # commit's wait for synchronous standbys, cancelled, ends without error, and so does a
    # statement whose code trapped the cancel; either way the tick outlived tick_timeout.
    cancelled = False
    # The results of the round trip read so far (their count is the place of the statement being
    # read), and that count when the round trip's last WARNING came (-1: none): a cancel of the
    # witness's wait for synchronous standbys, whoever sent it, ends it with a WARNING.
    fetched: list[pq.abc.PGresult]
    warned_at = -1
    # The connection's client encoding when it was made: what RESET ALL gives back after each tick.
    encoding = "utf-8"
    # A round trip with the tick's COMMIT was sent and never answered (the connection closed
    # under it): whether the heartbeat committed is not known.
    commit_unanswered = False
    # After the round trip: the session's transaction status (pq.TransactionStatus, as libpq's
    # number), before anything closed it.
    status_after = 0


session = _Session()


def attach(conn: psycopg.Connection[Any]) -> None:
    """Makes conn the connection every statement runs on (the runner's, after each connect)."""
    session.conn = conn
    # A LISTEN of the table's code would have psycopg keep every NOTIFY that any role sends,
    # unread, for as long as the runner lives (a red team grew it by 70 MB a minute): dropped.
    conn.add_notify_handler(_drop_notification)
    # psycopg's receiver calls this directly (not through its handlers' list): the Python that
    # runs inside libpq's reading is _note_notice's, which the runner's signal handlers know
    # (NOTICE_RECEIVER_CODE) and do not close the connection under.
    conn.pgconn.notice_handler = _note_notice
    session.generation += 1
    session.savepoints = 0
    session.opening = session.tick_opening = session.frame = None
    session.closing = [_COMMIT]
    session.commit_with_insert = False
    session.closing_results = []
    session.fetched = []
    session.warned_at = -1
    session.encoding = conn.info.encoding
    _parameter_types.clear()


def _connection() -> psycopg.Connection[Any]:
    conn = session.conn
    if conn is None or conn.closed:
        raise errors.from_sqlstate(CONNECTION_FAILURE, "alive_worker runner: not connected to the server")
    return conn


def raise_as_spi_error(error: psycopg.Error) -> NoReturn:
    """The psycopg error as the alive_worker.errors class its SQLSTATE names."""
    diag = error.diag
    sqlstate = error.sqlstate or CONNECTION_FAILURE
    message = diag.message_primary or str(error).strip() or type(error).__name__
    raise errors.from_sqlstate(
        sqlstate, message, detail=diag.message_detail, hint=diag.message_hint, context=diag.context
    ) from error


# ---- parameters, sent with their declared types ----


_SEVERITY = pq.DiagnosticField.SEVERITY_NONLOCALIZED


def _note_notice(result: pq.abc.PGresult) -> None:
    """Notes where the round trip's last WARNING came.  libpq calls it from inside its reading (a
    table's code may send 100,000 notices a tick): as little as can be, nothing that raises."""
    if result.error_field(_SEVERITY) == b"WARNING":
        session.warned_at = len(session.fetched)


# What the runner's signal handlers look for in the frames they interrupted (loop.py).
NOTICE_RECEIVER_CODE = _note_notice.__code__


def _drop_notification(notification: psycopg.Notify) -> None:
    pass


class _TypedText(str):
    """A parameter's text, to be sent as the type of oid ``type_oid``."""

    type_oid = 0


_parameter_types: dict[str, type[_TypedText]] = {}
_classes_by_oid: dict[int, type[_TypedText]] = {}


def _typed_class(type_oid: int) -> type[_TypedText]:
    """A str subclass whose values are sent as the type type_oid (made once per oid)."""
    made = _classes_by_oid.get(type_oid)
    if made is None:
        made = _classes_by_oid[type_oid] = type(f"_Text{type_oid}", (_TypedText,), {"type_oid": type_oid})
    return made


def _parameter_class(type_name: str) -> type[_TypedText]:
    """The class for parameters declared as type_name, resolved by the server as SPI would."""
    made = _parameter_types.get(type_name)
    if made is None:
        rows = _run("SELECT pg_catalog.to_regtype($1)::pg_catalog.oid", [_typed_class(25)(type_name)])
        oid = rows[0][0] if rows else None
        if oid is None:
            raise errors.from_sqlstate("42704", f'type "{type_name}" does not exist')
        made = _typed_class(int(oid))
        _parameter_types[type_name] = made
    return made


# ---- statements, in libpq's pipeline mode ----

# A statement for _pipeline: its text, its values (text, None for NULL) and their types' oids
# (None and None without parameters).
_Statement = tuple[bytes, Sequence[bytes | None] | None, Sequence[int] | None]

_BEGIN: _Statement = (b"BEGIN", None, None)
_COMMIT: _Statement = (b"COMMIT", None, None)
# As libpq's numbers: each tick compares with them, and an enum's construction costs more.
_FATAL_ERROR = int(pq.ExecStatus.FATAL_ERROR)
_TUPLES_OK = int(pq.ExecStatus.TUPLES_OK)
_ANSWERED = (int(pq.ExecStatus.COMMAND_OK), _TUPLES_OK)
_IDLE = int(pq.TransactionStatus.IDLE)


def _own(text: bytes) -> _Statement:
    """A statement of the runner's own, without parameters."""
    return (text, None, None)


def _statement(query: str, params: Sequence[_TypedText | None]) -> _Statement:
    if not params:
        return (query.encode(), None, None)
    values = [None if value is None else value.encode() for value in params]
    return (query.encode(), values, [0 if value is None else value.type_oid for value in params])


def _pipeline(statements: list[_Statement], tail: int = 0) -> list[pq.abc.PGresult]:
    """Runs statements in one round trip (libpq's pipeline mode, one Sync); returns their results.

    The tick's opening (BEGIN and its settings) goes first if it is still to
    be sent.  Each statement is the unnamed one (the module's docstring).  The
    first error is raised (SPIError by its SQLSTATE) once every result is
    read: the statements after it did not run, and the transaction, if one
    was open, is failed (the runner rolls it back).  Anything else that stops
    the exchange (SIGTERM, tick_timeout, a lost connection) leaves the
    connection closed: what the server did is not known, and the runner
    connects again.  tail: the last statements, after a COMMIT, whose failure
    fails nothing already committed: it closes the connection, and the
    runner starts again with a new session."""
    conn = _connection()
    session.warned_at = -1
    owed = 0
    if session.opening is not None:
        owed = len(session.opening)
        statements = session.opening + statements
        session.opening = None
    pgconn = conn.pgconn
    pgconn.enter_pipeline_mode()
    try:
        send_query_params = pgconn.send_query_params
        for text, values, types in statements:
            send_query_params(text, values, types)
        pgconn.pipeline_sync()
        results: list[pq.abc.PGresult] = conn.wait(_exchange(pgconn, len(statements)))
        pgconn.exit_pipeline_mode()
        session.status_after = pgconn.transaction_status
    except BaseException as stopped:
        if not conn.closed:
            conn.close()
        if isinstance(stopped, psycopg.Error):
            raise_as_spi_error(stopped)  # a lost connection: class 08, as a statement meets it
        raise
    # After an error, every statement up to the Sync answers PIPELINE_ABORTED: the last one
    # answered, none failed.
    if results[-1].status in _ANSWERED:
        return results[owed:] if owed else results
    for index, result in enumerate(results):
        if result.status == _FATAL_ERROR:
            error = psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
            if index >= len(results) - tail:
                session.on_failure_after_commit(f"{error.diag.message_primary} (SQLSTATE {error.sqlstate})")
                conn.close()
                break
            # Before COMMIT: the transaction is failed, the COMMIT in this round trip did not run.
            session.commit_unanswered = False
            raise_as_spi_error(error)
    return results[owed:] if owed else results


def _exchange(pgconn: pq.abc.PGconn, commands: int) -> Any:
    """Sends what the pipeline holds, then reads each command's last result, and the Sync's.

    psycopg's generators (version pinned: scripts/requirements/runtime.txt),
    waited on by the connection's wait(): SIGTERM's handler runs meanwhile.
    Returns the commands' results, without the Sync's."""
    yield from send(pgconn)
    fetched: list[pq.abc.PGresult] = []
    session.fetched = fetched
    append = fetched.append
    for _ in range(commands):
        append((yield from fetch_many(pgconn))[-1])
    yield from fetch_many(pgconn)  # the Sync's
    return fetched


def _run(query: str, params: Sequence[_TypedText | None] = ()) -> list[Row]:
    """Runs one statement; its rows (text), and last_rowcount() set.  Errors as SPIError."""
    result = _pipeline([_statement(query, params)])[0]
    session.rowcount = result.command_tuples or 0
    if result.status != _TUPLES_OK:
        return []
    encoding = _connection().info.encoding
    columns = range(result.nfields)
    return [
        tuple(
            None if (value := result.get_value(row, column)) is None else value.decode(encoding)
            for column in columns
        )
        for row in range(result.ntuples)
    ]


# ---- the transport's functions (alive_worker/transport.py) ----


class TableAccess(NamedTuple):
    """A table's statement and what it needs (alive_worker.spi.TableAccess): checked by the server here.

    A client statement runs as the role that connected, never as the
    table's owner, so the server checks that role's own privileges.
    """

    schema: str
    table: str
    privileges: int

    @classmethod
    def for_insert(cls, schema: str, table: str) -> TableAccess:
        return cls(schema, table, 1)

    @classmethod
    def for_select(cls, schema: str, table: str) -> TableAccess:
        return cls(schema, table, 2)

    @classmethod
    def for_delete(cls, schema: str, table: str) -> TableAccess:
        return cls(schema, table, 8 | 2)


# Plans of this tick that are not kept, forgotten at the next (begin_tick).
_tick_plans: list[Plan] = []


class Plan:
    """A statement with declared parameter types (parsed by the server at each run: the module's docstring)."""

    __slots__ = ("_generation", "_released", "_types", "keep", "nargs", "query", "query_bytes", "type_oids")

    def __init__(self, query: str, argtypes: Sequence[str], keep: bool, once: bool = False) -> None:
        if "\x00" in query:
            raise errors.from_sqlstate(
                "22021",
                "alive_worker: the query contains a NUL character (0x00), which PostgreSQL text cannot hold",
            )
        self.query = query
        self.keep = keep
        self.nargs = len(argtypes)
        self._types = [_parameter_class(name) for name in argtypes]
        # As each run sends them (execute_text, every tick).
        self.query_bytes = query.encode()
        self.type_oids = [kind.type_oid for kind in self._types]
        self._generation = session.generation
        self._released = False
        if not keep:
            _tick_plans.append(self)

    def _values(self, values: Sequence[str | None]) -> list[_TypedText | None]:
        if len(values) != self.nargs:
            raise TypeError(f"{self.query!r} takes {self.nargs} values, got {len(values)}")
        if self._released:
            raise errors.InvalidSqlStatementName(
                f"alive_worker plan for {self.query!r} was prepared without keep=True in an earlier tick "
                "and was released when that tick ended",
                hint="Prepare it with spi.prepare(query, argtypes, keep=True) to use it in later ticks, "
                "or prepare it again in each tick.",
            )
        if self._generation != session.generation:
            raise errors.InvalidSqlStatementName(
                f"alive_worker plan for {self.query!r} was prepared on a connection that has since ended"
            )
        typed: list[_TypedText | None] = []
        for index, (kind, value) in enumerate(zip(self._types, values, strict=True)):
            if value is not None and "\x00" in value:
                raise errors.from_sqlstate(
                    "22021",
                    f"alive_worker: value ${index + 1} contains a NUL character (0x00), which PostgreSQL text "
                    "cannot hold",
                )
            typed.append(None if value is None else kind(value))
        return typed

    def execute(self, *values: str | None, max_rows: int = 0, max_bytes: int = 0) -> list[Row]:
        """Runs the plan with text values (None is SQL NULL); returns its rows."""
        rows = _run(self.query, self._values(values))
        if max_rows and len(rows) > max_rows:
            raise errors.ProgramLimitExceeded(
                f"alive_worker: the hook's statement returns more than {max_rows} rows"
            )
        if max_bytes and sum(len(value) for row in rows for value in row if value) > max_bytes:
            raise errors.ProgramLimitExceeded(
                f"alive_worker: the hook's statement returns more than {max_bytes} bytes of text,"
                " the limit of one statement's result",
                hint="Fetch fewer rows at a time (LIMIT, a cursor of your own, or an aggregate).",
            )
        return rows

    def execute_text(self, value: str) -> None:
        """Runs a plan of one text parameter, leaving any rows unread: the heartbeat's path.

        In one round trip with the tick's opening, if it is still to be sent,
        and with its COMMIT when the runner said that nothing follows
        (begin_tick): the COMMIT then precedes the check of
        rows_processed(), and whatever runs after it runs in a transaction
        of its own, opened with the tick's settings again."""
        if self._released or self._generation != session.generation or self.nargs != 1 or "\x00" in value:
            self._values([value])  # raises what is wrong
        statements: list[_Statement] = [(self.query_bytes, [value.encode()], self.type_oids)]
        commit = session.commit_with_insert
        session.commit_with_insert = False
        if commit:
            statements += session.closing
            session.commit_unanswered = True
        owed = len(session.opening or ())
        results = _pipeline(statements, tail=len(session.closing) - 1 if commit else 0)
        session.rowcount = results[0].command_tuples or 0
        if session.heartbeat_rows is None:
            session.heartbeat_rows = session.rowcount
        if commit:
            _committed(results[1:], owed + 1)
            session.opening = session.tick_opening

    def rows_processed(self) -> int:
        """After :meth:`execute_text`: the rows it inserted or changed (its command's count)."""
        return session.rowcount

    def free(self) -> None:
        """Releases the plan (nothing of it is kept on the server)."""
        self._released = True


def commit_outcome_unknown() -> bool:
    """After a tick: its COMMIT was sent and never answered (the connection closed under it)."""
    return session.commit_unanswered


def begin_tick(frame: TickFrame | None = None, commit_with_insert: bool = False) -> None:
    """Called by the runner first in each tick: ends the last tick's plans, as the worker does.

    frame: the runner's statements around the tick's (TickFrame): BEGIN and
    its settings are sent with the tick's first statement, in its round
    trip; what goes before and after COMMIT, with it.  commit_with_insert:
    nothing runs after the heartbeat's INSERT (Heartbeat.inserts_alone),
    whose COMMIT then goes with it."""
    for plan in _tick_plans:
        plan._released = True
    _tick_plans.clear()
    if frame is not session.frame:
        session.frame = frame
        if frame is None:
            session.tick_opening, session.closing = None, [_COMMIT]
        else:
            session.tick_opening = [_BEGIN, _own(frame.settings.encode())]
            after: list[_Statement] = [
                (text.encode(), [value.encode() for value in values], [0] * len(values))
                if values
                else _own(text.encode())
                for text, values in frame.after_commit
            ]
            session.closing = [_COMMIT, *after]
    session.opening = session.tick_opening
    session.commit_with_insert = commit_with_insert
    session.commit_unanswered = False
    session.cancelled = False
    session.commit_answered = False
    session.heartbeat_rows = None
    session.closing_results = []


def heartbeat_written() -> bool:
    """After a tick: whether its heartbeat's row is committed (the numbering counts it)."""
    return session.commit_answered and bool(session.heartbeat_rows)


def commit() -> None:
    """Ends the tick's transaction with COMMIT, if the INSERT's round trip did not (nothing is open then)."""
    if _connection().pgconn.transaction_status != _IDLE:
        session.commit_unanswered = True
        _committed(_pipeline(list(session.closing), tail=len(session.closing) - 1), 0)


def after_commit_answer(place: int, column: int = 0) -> str | None:
    """After a tick that committed: what TickFrame.after_commit's statement at place answered
    (that column of its first row, as text); None if no row, NULL, or it did not run."""
    index = 1 + place
    if place < 0 or index >= len(session.closing_results):
        return None
    answer = session.closing_results[index]
    if (
        answer.status != _TUPLES_OK
        or not answer.ntuples
        or column >= answer.nfields
        or (value := answer.get_value(0, column)) is None
    ):
        return None
    # The runner's own answers (booleans, the catalog's settings), read after RESET ALL: in the
    # connection's own encoding (attach), whether or not the connection is still open.
    return value.decode(session.encoding, errors="replace")


def _committed(closing: list[pq.abc.PGresult], sent_as: int) -> None:
    """The tick's COMMIT committed, left no transaction open, and its witness's commit waited as
    clients' commits do, or the tick fails.

    closing: the results of the tick's closing statements (TickFrame), sent
    from place sent_as in their round trip.  COMMIT of a transaction that
    failed unseen answers ROLLBACK; whatever else answered was not our
    COMMIT.  The witness (loop.tick_frame), the round trip's last statement,
    commits at its end and waits there for synchronous standbys; a cancel
    ends that wait with a WARNING, and the round trip without error: the
    runner's at tick_timeout, or another session's (pg_cancel_backend, by a
    member of pg_signal_backend or of the runner's role, a red team's).  No
    code of the table's runs from the witness on, so a WARNING there is the
    commit's.  The heartbeat is committed on this server then, and counted,
    but clients' commits wait: the tick fails, as the worker's does
    (src/log_watch.c)."""
    result = closing[0]
    status = session.status_after
    session.commit_answered = result.command_status == b"COMMIT"
    session.commit_unanswered = False  # after commit_answered: a signal between counts it
    if session.commit_answered:
        session.closing_results = closing
    if not session.commit_answered or status != _IDLE:
        answered = (result.command_status or b"").decode(errors="replace")
        raise errors.from_sqlstate(
            "40000",
            f"alive-worker run: the tick's COMMIT answered {answered!r} and left the session "
            f"{pq.TransactionStatus(status).name}: its heartbeat is not counted",
        )
    if session.frame is not None and closing[-1].status != _TUPLES_OK:
        # A statement after COMMIT failed (a cancel, another session's too): the witness did not
        # commit, and the session is closed (_pipeline).  The heartbeat is counted, not rated OK.
        raise errors.from_sqlstate(
            CONNECTION_FAILURE,
            "the tick's witness did not commit: its heartbeat is committed on this server, but not known "
            "to commit as clients' commits do",
        )
    witness_at = sent_as + len(closing) - 1
    if session.frame is not None and session.warned_at >= witness_at:
        raise errors.from_sqlstate(
            "57014",
            "heartbeat not confirmed by a synchronous standby: committed locally only",
            detail="The tick's witness waited for synchronous standbys, and a cancel ended the wait "
            "(tick_timeout's, or another session's); the heartbeat is committed on this server, but "
            "commits that wait as clients' do did not end.",
            hint="Check that the standbys named by synchronous_standby_names are connected and streaming.",
        )
    if session.cancelled:
        raise errors.from_sqlstate(
            "57014",
            "the tick outlived tick_timeout: its statement was cancelled, and went on",
            detail="The heartbeat is committed, and counted; code of the table's that traps the "
            "cancel (an EXCEPTION block) went on past tick_timeout.",
        )


def note_cancel() -> None:
    """The runner cancelled the round trip in flight (tick_timeout): _committed() will say so."""
    session.cancelled = True


def end_tick() -> None:
    """Called by the runner last in each tick: statements outside ticks open no tick transaction."""
    session.opening = None
    session.commit_with_insert = False


def prepare(
    query: str,
    argtypes: Sequence[str] = (),
    *,
    keep: bool = False,
    as_owner_of: TableAccess | None = None,
    for_hook: bool = False,
) -> Plan:
    """Prepares ``query`` with parameters ``$1..$n`` of the named types (alive_worker.spi.prepare).

    ``as_owner_of`` and ``for_hook`` change nothing here: a client runs its
    statements as the role it connected as (module docstring).
    """
    return Plan(query, argtypes, keep)


def execute(query: str, *values: str | None, max_rows: int = 0, max_bytes: int = 0) -> list[Row]:
    """Runs ``query`` once with text parameters; returns its rows as text."""
    plan = Plan(query, ["text"] * len(values), keep=True, once=True)
    return plan.execute(*values, max_rows=max_rows, max_bytes=max_bytes)


def last_rowcount() -> int:
    """Rows the statement run last returned or changed."""
    return session.rowcount


def quote_ident(name: str) -> str:
    """``name`` quoted as PostgreSQL's quote_ident() does (by the server, as the worker asks its own)."""
    rows = _run("SELECT pg_catalog.quote_ident($1)", [_typed_class(25)(name)])
    return str(rows[0][0])


def qualified_name(schema: str, name: str) -> str:
    """``schema.name`` with both parts quoted."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def current_role() -> str:
    """The role the runner's statements run as."""
    return str(_run("SELECT pg_catalog.current_user()::pg_catalog.text")[0][0])


def setting(name: str) -> str | None:
    """alive_worker.* as the runner is configured; any other parameter as the server has it."""
    if name.startswith("alive_worker."):
        return session.settings(name)
    rows = _run("SELECT pg_catalog.current_setting($1, true)", [_typed_class(25)(name)])
    return rows[0][0] if rows else None


def live_plans() -> int:
    """Plans of this tick not yet released (the runner keeps no server-side count)."""
    return len(_tick_plans)


def report_in_hook(in_hook: bool) -> None:
    """Tells the runner's published state that the tick runs the hook (or no longer does)."""
    session.on_in_hook(in_hook)


def report_retention_error(message: str | None) -> None:
    """Tells the runner's published state why retention deletes nothing (None: it works, or is off)."""
    session.on_retention_error(message)


# Lower case, as it was a function: with spi.subtransaction(): ...
class subtransaction:
    """Statements inside may fail without aborting the tick: a SAVEPOINT of the runner's transaction."""

    def __init__(self) -> None:
        self.name = ""

    def __enter__(self) -> None:
        session.savepoints += 1
        self.name = f"alive_worker_{session.savepoints}"
        _run(f"SAVEPOINT {self.name}")

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        conn = session.conn
        if error is not None:
            # A lost connection has nothing to roll back: the runner starts again.
            if conn is not None and not conn.closed:
                _run(f"ROLLBACK TO SAVEPOINT {self.name}")
                _run(f"RELEASE SAVEPOINT {self.name}")
            return
        _run(f"RELEASE SAVEPOINT {self.name}")
