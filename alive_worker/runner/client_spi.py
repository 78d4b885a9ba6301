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

Values cross as text, as they do through SPI: each parameter is sent with
the type the prepared statement declares (its oid, looked up once), and every
column comes back as its text form (``'t'``, ``'42'``), whatever its type.

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
import psycopg.adapt
import psycopg.postgres
from psycopg.types.string import TextLoader

# Re-exported, as alive_worker.spi does: hooks write spi.SPIError and spi.errors.QueryCanceled.
from alive_worker import errors as errors
from alive_worker.errors import SPIError as SPIError

Row = tuple[str | None, ...]

# A client cannot act as another role: the table's code runs as the runner's own (alive_worker.spi).
WRITER = "runner"
TABLE_CODE_RUNS_AS_OWNER = False

# Class 08 (connection exception): what a statement meets when the connection is gone.
CONNECTION_FAILURE = "08006"


class _Session:
    """The connection statements run on, and where the runner hears what the policy reports."""

    conn: psycopg.Connection[Any] | None = None
    cursor: psycopg.RawCursor[Any] | None = None
    generation = 0  # one more at every new connection: plans of an older one are gone
    settings: Callable[[str], str | None] = staticmethod(lambda name: None)
    on_in_hook: Callable[[bool], None] = staticmethod(lambda in_hook: None)
    on_retention_error: Callable[[str | None], None] = staticmethod(lambda message: None)
    rowcount = 0
    savepoints = 0


session = _Session()


def attach(conn: psycopg.Connection[Any]) -> None:
    """Makes conn the connection every statement runs on (the runner's, after each connect)."""
    conn.adapters.register_loader(0, TextLoader)
    # Every type psycopg knows is read as its text: what SPI gives the policy.
    for info in psycopg.postgres.types:
        conn.adapters.register_loader(info.oid, TextLoader)
        if info.array_oid:
            conn.adapters.register_loader(info.array_oid, TextLoader)
    for made in _classes_by_oid.values():
        conn.adapters.register_dumper(made, _dumper_of[made])
    session.conn = conn
    # One cursor for every statement: making one per statement costs more than the statement.
    session.cursor = psycopg.RawCursor(conn)
    session.generation += 1
    session.savepoints = 0
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


class _TypedText(str):
    """A parameter's text, to be sent as the type of oid ``type_oid``."""

    type_oid = 0


_parameter_types: dict[str, type[_TypedText]] = {}
_classes_by_oid: dict[int, type[_TypedText]] = {}
_dumper_of: dict[type[_TypedText], type[psycopg.adapt.Dumper]] = {}


def _typed_class(type_oid: int) -> type[_TypedText]:
    """A str subclass whose dumper sends its text as the type type_oid (made once per oid)."""
    made = _classes_by_oid.get(type_oid)
    if made is None:
        made = type(f"_Text{type_oid}", (_TypedText,), {"type_oid": type_oid})
        dumper = type(f"_Text{type_oid}Dumper", (_TextDumper,), {"oid": type_oid})
        _dumper_of[made] = dumper
        _classes_by_oid[type_oid] = made
        if session.conn is not None:
            session.conn.adapters.register_dumper(made, dumper)
    return made


class _TextDumper(psycopg.adapt.Dumper):
    def dump(self, obj: Any) -> bytes:
        return str.encode(obj)


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


def _run(query: str, params: Sequence[Any] = (), prepare: bool | None = None) -> list[Row]:
    """Runs one statement; its rows (text), and last_rowcount() set.  Errors as SPIError."""
    _connection()
    cursor = session.cursor
    assert cursor is not None
    try:
        cursor.execute(query, list(params), prepare=prepare)
        session.rowcount = max(cursor.rowcount, 0)
        rows = cursor.fetchall() if cursor.description is not None else []
    except psycopg.Error as error:
        raise_as_spi_error(error)
    return [tuple(row) for row in rows]


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
    """A statement with declared parameter types, prepared on the server at its first run."""

    __slots__ = ("_generation", "_prepare", "_released", "_types", "keep", "nargs", "query")

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
        self._generation = session.generation
        self._released = False
        # Prepared on the server only if run again: spi.execute()'s statements run once.
        self._prepare: bool | None = None if once else True
        if not keep:
            _tick_plans.append(self)

    def _values(self, values: Sequence[str | None]) -> list[Any]:
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
        typed: list[Any] = []
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
        rows = _run(self.query, self._values(values), prepare=self._prepare)
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
        """Runs a plan of one text parameter, leaving any rows unread: the heartbeat's path."""
        _run(self.query, self._values([value]), prepare=self._prepare)

    def rows_processed(self) -> int:
        """After :meth:`execute_text`: the rows it inserted or changed (the cursor's rowcount)."""
        return session.rowcount

    def free(self) -> None:
        """Releases the plan (psycopg's cache of prepared statements frees the server's side)."""
        self._released = True


def run_script(script: str) -> None:
    """Runs statements of the runner's own, without parameters, in one round trip (a simple query)."""
    _connection()
    cursor = session.cursor
    assert cursor is not None
    try:
        cursor.execute(script, prepare=False)
    except psycopg.Error as error:
        raise_as_spi_error(error)


def begin_tick() -> None:
    """Called by the runner first in each tick: ends the last tick's plans, as the worker does."""
    for plan in _tick_plans:
        plan._released = True
    _tick_plans.clear()


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
