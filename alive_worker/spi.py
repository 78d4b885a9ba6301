"""Python face of SPI: statements, plans, quoting and subtransactions.

Every function here calls the C bridge, which catches PostgreSQL ERRORs and
returns them as :class:`SPIError`, of the subclass its SQLSTATE names (see
:mod:`alive_worker.errors`, here as ``spi.errors``).  Outside
:func:`subtransaction` an error aborts the whole tick (the transaction is
rolled back when Python returns); inside it, the error can be caught, by
name (``except spi.errors.LockNotAvailable``), and the tick goes on.

A plan belongs to the tick that prepared it unless prepared with keep=True:
its SPI plan goes with the tick's transaction, so at the next tick the worker
calls :func:`begin_tick`, which forgets it (executing it then raises
:class:`SPIError` naming keep=True) and frees what the bridge held for it.  A
kept plan lives until :meth:`Plan.free`, or until Python drops it: then it is
freed at the next tick, on the worker's thread, since garbage collection may
run on a hook's thread or in the middle of a bridge call.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

# Re-exported: hooks write spi.SPIError and spi.errors.QueryCanceled.
from alive_worker import errors as errors
from alive_worker._native import ffi, lib
from alive_worker.errors import SPIError as SPIError

# typing is not imported at run time: with re, which it imports, it costs
# each worker some 750 kB (issue 25).  mypy reads the first branch.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple, NoReturn

    class _TableAccessFields(NamedTuple):
        schema: str
        table: str
        privileges: int

else:
    from collections import namedtuple

    _TableAccessFields = namedtuple("TableAccess", ("schema", "table", "privileges"))

Row = tuple[str | None, ...]

# Who writes the heartbeats through this transport, in the words of its messages, and
# whether the table's code (triggers, defaults, policies) runs as the table's owner: the
# worker's INSERT is a security-restricted operation as the owner (docs/SECURITY.md).
WRITER = "worker"
TABLE_CODE_RUNS_AS_OWNER = True

# Looked up once: every lookup on lib costs a dictionary search in cffi.
_OK = int(lib.AW_OK)
_execute_text = lib.aw_execute_text


def _text(pointer: object) -> str | None:
    return None if pointer == ffi.NULL else ffi.string(pointer).decode()


def _raise_last_error() -> NoReturn:
    error = lib.aw_last_error()
    if error == ffi.NULL:
        raise SPIError("alive_worker bridge failed without an error")
    raise errors.from_sqlstate(
        ffi.string(error.sqlstate).decode(),
        _text(error.message) or "",
        detail=_text(error.detail),
        hint=_text(error.hint),
        context=_text(error.context),
    )


def _check(result: int) -> None:
    if result != lib.AW_OK:
        _raise_last_error()


def _c_string(text: str, what: str) -> bytes:
    """``text`` for the bridge, which takes C strings: a NUL would silently end it there."""
    if "\x00" in text:
        # PostgreSQL's own code for a NUL in text (and psycopg's refusal of one).
        raise errors.from_sqlstate(
            "22021",
            f"alive_worker: {what} contains a NUL character (0x00), which PostgreSQL text cannot hold",
        )
    return text.encode()


class TableAccess(_TableAccessFields):
    """A table whose statement runs as the table's owner, and what the worker's role needs on it.

    The table's triggers, defaults, rules, policies and the like then run
    with its owner's rights, never the worker's (which may be a superuser's):
    see docs/SECURITY.md.  ``privileges`` are the worker role's, checked at every
    execution, as if it ran the statement itself.
    """

    __slots__ = ()

    @classmethod
    def for_insert(cls, schema: str, table: str) -> TableAccess:
        return cls(schema, table, int(lib.AW_PRIVILEGE_INSERT))

    @classmethod
    def for_select(cls, schema: str, table: str) -> TableAccess:
        """A read: a partial index's predicate or a policy of the owner's runs as the owner."""
        return cls(schema, table, int(lib.AW_PRIVILEGE_SELECT))

    @classmethod
    def of_the_extension(cls, access: TableAccess) -> TableAccess:
        """The extension's own table (alive_worker.events): run as its owner, a superuser, whoever
        the worker's role is (which needs no grant); refused unless it is the extension's."""
        return cls(access.schema, access.table, access.privileges | int(lib.AW_EXTENSION_TABLE))

    @classmethod
    def for_delete(cls, schema: str, table: str) -> TableAccess:
        """DELETE ... WHERE reads the rows too."""
        return cls(schema, table, int(lib.AW_PRIVILEGE_DELETE) | int(lib.AW_PRIVILEGE_SELECT))


# Plans of this tick that are not kept, by id(); handles of kept plans dropped.
_tick_plans: dict[int, Plan] = {}
_dropped: list[object] = []


class Plan:
    """A prepared statement: the tick's, or with keep=True until :meth:`free` or dropped."""

    __slots__ = ("_handle", "_released", "_rows", "_values", "keep", "nargs", "query")

    def __init__(
        self,
        query: str,
        argtypes: Sequence[str],
        keep: bool,
        as_owner_of: TableAccess | None = None,
        for_hook: bool = False,
    ) -> None:
        handle = ffi.new("aw_plan **")
        types = [ffi.new("char[]", name.encode()) for name in argtypes]
        self._handle = ffi.NULL
        self.keep = keep
        if as_owner_of is None:
            _check(lib.aw_prepare(_c_string(query, "the query"), len(types), types, int(keep), handle))
        else:
            _check(
                lib.aw_prepare_as_owner(
                    _c_string(query, "the query"),
                    len(types),
                    types,
                    int(keep),
                    as_owner_of.schema.encode(),
                    as_owner_of.table.encode(),
                    as_owner_of.privileges,
                    int(for_hook),
                    handle,
                )
            )
        self.query = query
        self.nargs = len(types)
        self._handle = handle[0]
        self._released = False
        self._values = ffi.new("char *[]", max(self.nargs, 1))
        self._rows = ffi.new("long *")
        if not keep:
            _tick_plans[id(self)] = self

    def __del__(self) -> None:
        # getattr: __init__ may have been interrupted before it set them.
        handle = getattr(self, "_handle", ffi.NULL)
        if getattr(self, "keep", False) and handle != ffi.NULL:
            _dropped.append(handle)  # one bytecode: safe on any thread

    def _raise_failure(self) -> NoReturn:
        if self._released:
            raise errors.InvalidSqlStatementName(
                f"alive_worker plan for {self.query!r} was prepared without keep=True in an earlier tick "
                "and was released when that tick ended",
                hint="Prepare it with spi.prepare(query, argtypes, keep=True) to use it in later ticks, "
                "or prepare it again in each tick.",
            )
        _raise_last_error()

    def execute(self, *values: str | None, max_rows: int = 0, max_bytes: int = 0) -> list[Row]:
        """Runs the plan with text values (None is SQL NULL); returns its rows.

        A hook's statement is bounded: more than ``max_rows`` rows (the executor
        stops one past) or more than ``max_bytes`` of text fail with
        ProgramLimitExceeded; 0 is no limit.
        """
        if len(values) != self.nargs:
            raise TypeError(f"{self.query!r} takes {self.nargs} values, got {len(values)}")
        if self.nargs == 1 and values[0] is not None and max_rows == 0:
            self.execute_text(values[0])
            # execute_text leaves the rows it processed: as many as it returned, if it returns any.
            columns = lib.aw_result_columns()
            if columns < 0:
                return []
            return _fetch(self._rows[0], columns, max_bytes)
        else:
            keep_alive = []
            for index, value in enumerate(values):
                if value is None:
                    self._values[index] = ffi.NULL
                else:
                    buffer = ffi.new("char[]", _c_string(value, f"value ${index + 1}"))
                    keep_alive.append(buffer)
                    self._values[index] = buffer
            if lib.aw_execute_bounded(self._handle, self._values, max_rows, self._rows) != _OK:
                self._raise_failure()
        row_count = self._rows[0]
        if row_count < 0:
            return []
        return _fetch(row_count, lib.aw_result_columns(), max_bytes)

    def execute_text(self, value: str) -> None:
        """Runs a plan of one text parameter, leaving any rows unread: the heartbeat's path.

        cffi passes the bytes' own buffer, no copy; the bridge refuses a freed plan.
        """
        if _execute_text(self._handle, _c_string(value, "value $1"), self._rows) != _OK:
            self._raise_failure()

    def rows_processed(self) -> int:
        """After :meth:`execute_text`: the rows it inserted or changed, as last_rowcount() says.

        Read from what the execution left here, without a call into the bridge.
        """
        return int(self._rows[0])

    def free(self) -> None:
        """Releases the plan; it cannot be executed afterwards."""
        if self._handle != ffi.NULL:
            lib.aw_free_plan(self._handle)
            self._handle = ffi.NULL
        _tick_plans.pop(id(self), None)


def begin_tick() -> None:
    """Called by the worker first in a tick that has any: ends the last tick's plans, frees dropped ones."""
    if _tick_plans:
        for plan in _tick_plans.values():
            plan._handle = ffi.NULL
            plan._released = True
        _tick_plans.clear()
        lib.aw_forget_tick_plans()
    while _dropped:
        lib.aw_free_plan(_dropped.pop())


def live_plans() -> int:
    """Plans the bridge holds, kept or not (what a test of their lifetime counts)."""
    return int(lib.aw_live_plans())


def _fetch(row_count: int, columns: int, max_bytes: int = 0) -> list[Row]:
    value = ffi.new("char **")
    rows: list[Row] = []
    size = 0
    for row in range(row_count):
        fields: list[str | None] = []
        for column in range(columns):
            _check(lib.aw_result_value(row, column, value))
            text = _text(value[0])
            fields.append(text)
            if max_bytes and text is not None:
                size += len(text)
                if size > max_bytes:
                    # Before the rest is copied: the result could never be sent anyway.
                    raise errors.ProgramLimitExceeded(
                        f"alive_worker: the hook's statement returns more than {max_bytes} bytes of text,"
                        " the limit of one statement's result",
                        hint="Fetch fewer rows at a time (LIMIT, a cursor of your own, or an aggregate).",
                    )
        rows.append(tuple(fields))
    return rows


def prepare(
    query: str,
    argtypes: Sequence[str] = (),
    *,
    keep: bool = False,
    as_owner_of: TableAccess | None = None,
    for_hook: bool = False,
) -> Plan:
    """Prepares ``query`` with parameters ``$1..$n`` of the named types.

    With ``as_owner_of``, the statement (on that table) is prepared and run as
    the table's owner in a security-restricted operation, after checking that
    the worker's role holds the privileges it names.  ``for_hook``: a hook's
    statement, whose SQL is the hook's: as the owner only where that lends the
    worker's role no rights (a superuser's worker, or one that holds the
    owner's privileges), else as the worker's role.
    """
    return Plan(query, argtypes, keep, as_owner_of, for_hook)


def execute(query: str, *values: str | None, max_rows: int = 0, max_bytes: int = 0) -> list[Row]:
    """Runs ``query`` once with text parameters; returns its rows as text (limits: Plan.execute)."""
    plan = Plan(query, ["text"] * len(values), keep=False)
    try:
        return plan.execute(*values, max_rows=max_rows, max_bytes=max_bytes)
    finally:
        plan.free()


def last_rowcount() -> int:
    """Rows the statement run last returned or changed (a DELETE's, say)."""
    return int(lib.aw_rows_processed())


def quote_ident(name: str) -> str:
    """``name`` quoted as PostgreSQL's quote_identifier() does."""
    quoted = ffi.new("char **")
    _check(lib.aw_quote_identifier(name.encode(), quoted))
    return str(ffi.string(quoted[0]).decode())


def qualified_name(schema: str, name: str) -> str:
    """``schema.name`` with both parts quoted."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def current_role() -> str:
    """The role the worker's statements run as."""
    name = ffi.new("char **")
    _check(lib.aw_current_role(name))
    return str(ffi.string(name[0]).decode())


def setting(name: str) -> str | None:
    """A configuration parameter's current value, or None if unknown."""
    value = ffi.new("char **")
    _check(lib.aw_setting(name.encode(), value))
    return _text(value[0])


# The tick in flight, as the shim handed it to Python (aw_tick in _bridge.h):
# set by _worker.aw_python_tick, read and written here, never a call into C.
_tick: Any = None


def given_tick() -> Any:
    """The aw_tick the shim handed this tick: its start and probe facts (events.py)."""
    assert _tick is not None, "no tick in flight"
    return _tick


def report_retention_error(message: str | None) -> None:
    """Hands the shim, with this tick, why alive_worker.retention deletes nothing (None: it works,
    or is off); the shim writes it to the status view."""
    if _tick is None:
        return
    size = len(_tick.retention_error)
    data = (message or "").encode(errors="replace")[: size - 1]
    # Whole characters only: the cut must not leave half a UTF-8 sequence.
    data = data.decode(errors="ignore").encode()
    ffi.memmove(_tick.retention_error, data + b"\0", len(data) + 1)
    _tick.retention_reported = 1


# Lower case, as it was a function: with spi.subtransaction(): ...
class subtransaction:
    """Statements inside may fail without aborting the tick, as a SAVEPOINT."""

    def __enter__(self) -> None:
        _check(lib.aw_subtransaction_begin())

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is not None:
            lib.aw_subtransaction_end(0)
            return
        _check(lib.aw_subtransaction_end(1))
