"""SQLSTATE-named errors: SPIError and a subclass per condition, as psycopg.errors has.

A PostgreSQL ERROR raised in a statement reaches Python as the subclass named
for its SQLSTATE (:func:`lookup`), so that a hook can write::

    try:
        with spi.subtransaction():
            spi.execute("LOCK TABLE t NOWAIT")
    except spi.errors.LockNotAvailable:
        ...

A SQLSTATE without a class here (XX000, the bridge's own failures, among
them) is a plain :class:`SPIError`; every error has ``sqlstate`` either way.
The names are PostgreSQL's condition names (Appendix A of its manual) in
CamelCase, as psycopg spells them.  Pure Python: the alive-worker command
imports it too, outside the server.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar


class SPIError(Exception):
    """A PostgreSQL error, shaped like psycopg's: ``sqlstate`` and diagnostics."""

    # Each subclass's own; an instance may carry another (a code with no class).
    sqlstate: str = "XX000"
    _by_sqlstate: ClassVar[dict[str, type[SPIError]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # This module's classes only: a hook's own subclass of SPIError (or
        # of QueryCanceled) must not change what the bridge's errors become.
        if cls.__module__ == __name__:
            SPIError._by_sqlstate[cls.sqlstate] = cls

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
        context: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if sqlstate is not None:
            self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint
        self.context = context

    def __str__(self) -> str:
        return f"{self.message} (SQLSTATE {self.sqlstate})"


def lookup(sqlstate: str) -> type[SPIError]:
    """The class for ``sqlstate``: its subclass, or SPIError for a code without one."""
    return SPIError._by_sqlstate.get(sqlstate, SPIError)


def from_sqlstate(
    sqlstate: str,
    message: str,
    *,
    detail: str | None = None,
    hint: str | None = None,
    context: str | None = None,
) -> SPIError:
    """The error for ``sqlstate``, of the class :func:`lookup` names, keeping the code itself."""
    return lookup(sqlstate)(message, sqlstate=sqlstate, detail=detail, hint=hint, context=context)


# Class 0A: feature not supported (the bridge's answer to a call from another thread).
class FeatureNotSupported(SPIError):
    sqlstate = "0A000"


# Class 22: data exception.
class DivisionByZero(SPIError):
    sqlstate = "22012"


# Class 23: integrity constraint violation.
class NotNullViolation(SPIError):
    sqlstate = "23502"


class ForeignKeyViolation(SPIError):
    sqlstate = "23503"


class UniqueViolation(SPIError):
    sqlstate = "23505"


class CheckViolation(SPIError):
    sqlstate = "23514"


# Class 25: invalid transaction state (a write on a standby).
class ReadOnlySqlTransaction(SPIError):
    sqlstate = "25006"


# Class 26: a plan of an earlier tick, released with it.
class InvalidSqlStatementName(SPIError):
    sqlstate = "26000"


# Class 38: an exception in Python code that the worker ran.
class ExternalRoutineException(SPIError):
    sqlstate = "38000"


# Class 3D: a database that does not exist.
class InvalidCatalogName(SPIError):
    sqlstate = "3D000"


# Class 40: transaction rollback.
class SerializationFailure(SPIError):
    sqlstate = "40001"


class DeadlockDetected(SPIError):
    sqlstate = "40P01"


# Class 42: syntax error or access rule violation.
class InsufficientPrivilege(SPIError):
    sqlstate = "42501"


class UndefinedColumn(SPIError):
    sqlstate = "42703"


class UndefinedFunction(SPIError):
    sqlstate = "42883"


class UndefinedTable(SPIError):
    sqlstate = "42P01"


class WrongObjectType(SPIError):
    sqlstate = "42809"


# Class 54: program limit exceeded.
class ProgramLimitExceeded(SPIError):
    sqlstate = "54000"


# Class 55: object not in prerequisite state.
class LockNotAvailable(SPIError):
    sqlstate = "55P03"


# Class 57: operator intervention (statement_timeout, the tick timeout, pg_cancel_backend).
class QueryCanceled(SPIError):
    sqlstate = "57014"
