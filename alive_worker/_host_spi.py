"""alive_worker.spi as a hook sees it in the hook host: every call is a message to the worker.

The hook host (alive_worker/_host.py) puts this module in place of
alive_worker.spi before it imports the hook, so that hooks keep writing
``from alive_worker import spi``.  Each statement goes to the worker, which
runs it through its own spi (the guarded bridge) in the tick's
subtransaction, as the worker's role, and sends back the rows or the error;
the error is raised here as the same class (``spi.errors.DivisionByZero``).
Only the hook's own thread may call: it is the one the worker answers
(another thread gets FeatureNotSupported, as in the worker before).
Pure Python: nothing of PostgreSQL is loaded in the host.
"""

from __future__ import annotations

import builtins
import contextlib
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any, NamedTuple, NoReturn

from alive_worker import errors as errors
from alive_worker.errors import SPIError as SPIError

Row = tuple[str | None, ...]

# The bridge's privilege bits (alive_worker/_bridge.h), for TableAccess.
_PRIVILEGE_INSERT = 1
_PRIVILEGE_SELECT = 2
_PRIVILEGE_DELETE = 8


class _Channel:
    """The host's end of the connection, set by alive_worker._host."""

    call: Any = None  # (function name, args) -> result, raising what the worker sent
    notify: Any = None  # (message) -> None, for messages without an answer
    hook_thread: int | None = None


channel = _Channel()


def _call(function: str, *args: Any) -> Any:
    if threading.get_ident() != channel.hook_thread:
        # The bridge's words in the worker before 1.3: the hook's thread is the one the worker answers.
        raise errors.FeatureNotSupported("alive_worker.spi was called from a thread other than the worker's")
    return channel.call(function, list(args))


def raise_error(error: dict[str, Any]) -> NoReturn:
    """Raises what the worker sent: an SPIError of its SQLSTATE's class, or a builtin exception."""
    if "sqlstate" in error:
        raise errors.from_sqlstate(
            error["sqlstate"],
            error.get("message") or "",
            detail=error.get("detail"),
            hint=error.get("hint"),
            context=error.get("context"),
        )
    kind = getattr(builtins, str(error.get("type")), None)
    if not (isinstance(kind, type) and issubclass(kind, Exception)):
        kind = RuntimeError
    raise kind(error.get("message", ""))


class TableAccess(NamedTuple):
    """A table whose statement runs as the table's owner (see alive_worker.spi.TableAccess)."""

    schema: str
    table: str
    privileges: int

    @classmethod
    def for_insert(cls, schema: str, table: str) -> TableAccess:
        return cls(schema, table, _PRIVILEGE_INSERT)

    @classmethod
    def for_select(cls, schema: str, table: str) -> TableAccess:
        return cls(schema, table, _PRIVILEGE_SELECT)

    @classmethod
    def for_delete(cls, schema: str, table: str) -> TableAccess:
        return cls(schema, table, _PRIVILEGE_DELETE | _PRIVILEGE_SELECT)


FREED = "alive_worker plan was freed and cannot be executed"


class Plan:
    """A prepared statement held by the worker: the tick's, or with keep=True until freed or dropped."""

    __slots__ = ("_id", "keep", "nargs", "query")

    def __init__(
        self, query: str, argtypes: Sequence[str], keep: bool, as_owner_of: TableAccess | None = None
    ) -> None:
        self._id: int | None = None
        self.keep = keep
        self.query = query
        self.nargs = len(argtypes)
        owner = None if as_owner_of is None else list(as_owner_of)
        self._id = int(_call("prepare", query, list(argtypes), keep, owner))

    def __del__(self) -> None:
        # Any thread, any time: a message without an answer, read by the worker at its next wait.
        plan = getattr(self, "_id", None)
        if plan is not None and channel.notify is not None:
            with contextlib.suppress(Exception):
                channel.notify({"op": "drop", "plan": plan})

    def execute(self, *values: str | None) -> list[Row]:
        """Runs the plan with text values (None is SQL NULL); returns its rows."""
        if len(values) != self.nargs:
            raise TypeError(f"{self.query!r} takes {self.nargs} values, got {len(values)}")
        return [tuple(row) for row in _call("plan_execute", self._live_id(), list(values))]

    def execute_text(self, value: str) -> None:
        """Runs a plan of one text parameter, leaving any rows unread."""
        _call("plan_execute_text", self._live_id(), value)

    def _live_id(self) -> int:
        if self._id is None:
            raise errors.InvalidSqlStatementName(FREED)
        return self._id

    def free(self) -> None:
        """Releases the plan; it cannot be executed afterwards."""
        if self._id is not None:
            _call("plan_free", self._id)
            self._id = None


def prepare(
    query: str, argtypes: Sequence[str] = (), *, keep: bool = False, as_owner_of: TableAccess | None = None
) -> Plan:
    """Prepares ``query`` with parameters ``$1..$n`` of the named types (see alive_worker.spi.prepare)."""
    return Plan(query, argtypes, keep, as_owner_of)


def execute(query: str, *values: str | None) -> list[Row]:
    """Runs ``query`` once with text parameters; returns its rows as text."""
    return [tuple(row) for row in _call("execute", query, list(values))]


def last_rowcount() -> int:
    """Rows the statement run last returned or changed."""
    return int(_call("last_rowcount"))


def quote_ident(name: str) -> str:
    """``name`` quoted as PostgreSQL's quote_identifier() does."""
    return str(_call("quote_ident", name))


def qualified_name(schema: str, name: str) -> str:
    """``schema.name`` with both parts quoted."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def current_role() -> str:
    """The role the worker's statements run as."""
    return str(_call("current_role"))


def setting(name: str) -> str | None:
    """A configuration parameter's current value, or None if unknown."""
    value = _call("setting", name)
    return None if value is None else str(value)


def live_plans() -> int:
    """Plans the worker's bridge holds, kept or not."""
    return int(_call("live_plans"))


# Lower case, as it was a function: with spi.subtransaction(): ...
class subtransaction:
    """Statements inside may fail without aborting the tick, as a SAVEPOINT."""

    def __enter__(self) -> None:
        _call("subtransaction_begin")

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        _call("subtransaction_end", error is None)
